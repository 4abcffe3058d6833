"""The PK-VAE: a conditional variational autoencoder of multi-dose concentration profiles.

Notation: a patient has covariates ``x`` (C values), per-interval doses ``d_1..d_K`` (mg) and
a latent ``z`` (``latent_dim`` values, prior N(0, I)) holding the patient's PK individuality.

Decoder p(C | z, x, d): a GRU runs over dosing intervals. Its state ``h_k`` is the
carried-over patient state (what remains in the body, saturation, recirculation), so
accumulation and nonlinear behaviour across changing doses come through it:

    h_0 = tanh(W [z, x]),   h_k = GRU([z, x, d_k], h_{k-1}),
    [mu_k, log_sigma_k] = MLP([h_k, z, d_k])       (G grid values each)

``mu_k`` is the mean of ``y = (log(C + c0) - y_shift) / y_scale`` on the interval's recording
grid and ``sigma_k`` its learned observation noise. Working on a log scale lets one model
fit concentrations that span orders of magnitude; ``c0`` (mg/L, half the assay LLOQ) keeps
near-zero values finite.

Encoder q(z | observations, d, x): a set encoder. Each observation (any number, at any
time) becomes a token ``[y, below-LLOQ flag, time in interval / tau, interval / K,
dose context of its interval]`` where the dose context comes from a GRU over the doses;
tokens are embedded, masked-mean and masked-max pooled, joined with the covariates and
mapped to the mean and log-variance of z. With no observations it returns a covariate-
only posterior, close to the population prior.

Training loss (per patient): Gaussian negative log-likelihood of the noisy grid
observations, with results below the assay's LLOQ censored (Beal's M3: ``-log P(y < y_LLOQ)``,
so the decoder learns the concentration, not the LLOQ/2 that the data report), plus
``beta * KL(q || N(0, I))``, with the reparameterisation trick.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

N_TOKEN_FEATURES = 4  # y, blq flag, time in interval / tau, interval index / K


@dataclass(frozen=True)
class VAEConfig:
    """Architecture and scaling of a PK-VAE (everything needed to rebuild it)."""

    drug: str
    n_covariates: int
    grid_size: int
    latent_dim: int = 6
    hidden: int = 128
    dose_context: int = 32
    interval_h: float = 12.0
    max_intervals: int = 10
    dose_max_mg: float = 1000.0
    c0_mg_l: float = 0.05
    min_log_sigma: float = -5.0

    def to_dict(self) -> dict:
        return asdict(self)


class Normalizer(nn.Module):
    """Fixed affine scaling of covariates and log-concentrations, stored with the weights."""

    def __init__(self, n_covariates: int):
        super().__init__()
        self.register_buffer("cov_mean", torch.zeros(n_covariates))
        self.register_buffer("cov_std", torch.ones(n_covariates))
        self.register_buffer("cov_log", torch.zeros(n_covariates))  # 1 where the covariate is log-transformed
        self.register_buffer("y_shift", torch.zeros(()))
        self.register_buffer("y_scale", torch.ones(()))

    def covariates(self, cov: torch.Tensor) -> torch.Tensor:
        logged = torch.where(self.cov_log > 0, torch.log(cov.clamp_min(1e-6)), cov)
        return (logged - self.cov_mean) / self.cov_std


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class Decoder(nn.Module):
    """p(y | z, x, d): a GRU over intervals, emitting each interval's grid profile."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        zx = cfg.latent_dim + cfg.n_covariates
        self.init = nn.Linear(zx, cfg.hidden)
        self.cell = nn.GRUCell(zx + 1, cfg.hidden)
        self.head = _mlp([cfg.hidden + cfg.latent_dim + 1, cfg.hidden, cfg.hidden, 2 * cfg.grid_size])

    def initial_state(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.init(torch.cat([z, x], dim=-1)))

    def step(self, h: torch.Tensor, z: torch.Tensor, x: torch.Tensor, dose: torch.Tensor):
        """One interval: scaled dose ``(n, 1)`` -> (mean ``(n, G)``, log-sigma ``(n, G)``, new state)."""
        h = self.cell(torch.cat([z, x, dose], dim=-1), h)
        out = self.head(torch.cat([h, z, dose], dim=-1))
        mean, raw_sigma = out.chunk(2, dim=-1)
        log_sigma = self.cfg.min_log_sigma + nn.functional.softplus(raw_sigma - self.cfg.min_log_sigma)
        return mean, log_sigma, h

    def forward(self, z: torch.Tensor, x: torch.Tensor, doses: torch.Tensor):
        """Scaled doses ``(n, K)`` -> mean and log-sigma ``(n, K, G)``."""
        h = self.initial_state(z, x)
        means, log_sigmas = [], []
        for k in range(doses.shape[1]):
            mean, log_sigma, h = self.step(h, z, x, doses[:, k:k + 1])
            means.append(mean)
            log_sigmas.append(log_sigma)
        return torch.stack(means, dim=1), torch.stack(log_sigmas, dim=1)


class Encoder(nn.Module):
    """q(z | observations, d, x): masked set encoder over observation tokens."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.dose_gru = nn.GRU(1, cfg.dose_context, batch_first=True)
        self.token = _mlp([N_TOKEN_FEATURES + cfg.dose_context, cfg.hidden, cfg.hidden])
        self.out = _mlp([2 * cfg.hidden + cfg.n_covariates, cfg.hidden, 2 * cfg.latent_dim])

    def forward(self, tokens: torch.Tensor, interval_index: torch.Tensor, mask: torch.Tensor,
                doses: torch.Tensor, x: torch.Tensor):
        """``tokens (n, L, 4)``, ``interval_index (n, L)`` long, ``mask (n, L)`` bool, scaled ``doses (n, K)``."""
        context, _ = self.dose_gru(doses.unsqueeze(-1))  # (n, K, D): dose history up to each interval
        idx = interval_index.clamp(0, doses.shape[1] - 1).unsqueeze(-1).expand(-1, -1, context.shape[-1])
        features = torch.cat([tokens, torch.gather(context, 1, idx)], dim=-1)
        # Embed only the observed tokens: sparse views leave most of the padded pool empty.
        emb = features.new_zeros(features.shape[:2] + (self.cfg.hidden,))
        emb[mask] = self.token(features[mask])
        m = mask.unsqueeze(-1).to(emb.dtype)
        count = m.sum(dim=1)
        mean_pool = (emb * m).sum(dim=1) / count.clamp_min(1.0)
        max_pool = torch.where(m > 0, emb, torch.full_like(emb, -1e4)).amax(dim=1)
        max_pool = torch.where(count > 0, max_pool, torch.zeros_like(max_pool))
        mu, logvar = self.out(torch.cat([mean_pool, max_pool, x], dim=-1)).chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 6.0)


class LatentPopulation(nn.Module):
    """Where the population's patients lie in latent space: ``z | x ~ N(W x_scaled + b, L L^T)``.

    A trained VAE's aggregate posterior is not exactly its N(0, I) prior ("prior holes"), so new
    patients drawn from the prior are not the population it learned. Fitted after training on the
    training patients' posteriors (ex-post density estimation, Ghosh et al. 2020, ICLR; Dai & Wipf
    2019, ICLR), conditional on the scaled covariates so latent and covariates stay consistent.
    Defaults to the prior (W = 0, b = 0, L = I) until fitted.
    """

    def __init__(self, latent_dim: int, n_covariates: int):
        super().__init__()
        self.register_buffer("weight", torch.zeros(latent_dim, n_covariates))
        self.register_buffer("bias", torch.zeros(latent_dim))
        self.register_buffer("chol", torch.eye(latent_dim))

    def mean(self, x_scaled: torch.Tensor) -> torch.Tensor:
        return x_scaled @ self.weight.T + self.bias


class PKVAE(nn.Module):
    """Encoder, decoder and scaling of one drug's PK-VAE (see module docstring)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.normalizer = Normalizer(cfg.n_covariates)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.population = LatentPopulation(cfg.latent_dim, cfg.n_covariates)

    # scaling helpers ---------------------------------------------------------
    def scale_doses(self, doses_mg: torch.Tensor) -> torch.Tensor:
        return doses_mg / self.cfg.dose_max_mg

    def to_y(self, conc_mg_l: torch.Tensor) -> torch.Tensor:
        n = self.normalizer
        return (torch.log(conc_mg_l.clamp_min(0.0) + self.cfg.c0_mg_l) - n.y_shift) / n.y_scale

    def from_y(self, y: torch.Tensor) -> torch.Tensor:
        n = self.normalizer
        return (torch.exp(y * n.y_scale + n.y_shift) - self.cfg.c0_mg_l).clamp_min(0.0)

    # model -------------------------------------------------------------------
    def encode(self, tokens, interval_index, mask, doses_mg, cov):
        return self.encoder(tokens, interval_index, mask, self.scale_doses(doses_mg), self.normalizer.covariates(cov))

    def decode(self, z: torch.Tensor, cov: torch.Tensor, doses_mg: torch.Tensor):
        """Mean and log-sigma of scaled log-concentration, ``(n, K, G)`` each.

        Before a patient's first dose the mean is exactly that of C = 0: nothing given, nothing in
        the body. (Below the assay's LLOQ the data cannot tell 0 from a trace, so this is built in
        rather than learned.)
        """
        mean, log_sigma = self.decoder(z, self.normalizer.covariates(cov), self.scale_doses(doses_mg))
        dosed = (torch.cumsum((doses_mg > 0).to(mean.dtype), dim=1) > 0).unsqueeze(-1)
        return torch.where(dosed, mean, self.y_of_zero()), log_sigma

    def y_of_zero(self) -> torch.Tensor:
        """Scaled log-concentration of C = 0 mg/L."""
        return (torch.log(torch.tensor(self.cfg.c0_mg_l)) - self.normalizer.y_shift) / self.normalizer.y_scale

    def decode_profile(self, z: torch.Tensor, cov: torch.Tensor, doses_mg: torch.Tensor) -> torch.Tensor:
        """Median concentration profile in mg/L, ``(n, K, G)``."""
        mean, _ = self.decode(z, cov, doses_mg)
        return self.from_y(mean)

    def loss(self, batch: dict[str, torch.Tensor], beta: float = 1.0, sample: bool = True):
        """Negative ELBO per patient (mean over the batch) and its parts."""
        mu, logvar = self.encode(batch["tokens"], batch["interval_index"], batch["mask"], batch["doses_mg"],
                                 batch["cov"])
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
        mean, log_sigma = self.decode(z, batch["cov"], batch["doses_mg"])
        sigma = torch.exp(log_sigma)
        nll = 0.5 * ((batch["y"] - mean) / sigma) ** 2 + log_sigma
        if "blq" in batch:  # below-LLOQ results are censored (Beal's M3): -log P(y < y_LLOQ)
            censored = -torch.special.log_ndtr((batch["y_lloq"] - mean) / sigma)
            nll = torch.where(batch["blq"], censored, nll)
        nll = nll.sum(dim=(1, 2))
        kl = 0.5 * (mu ** 2 + torch.exp(logvar) - 1.0 - logvar).sum(dim=1)
        total = (nll + beta * kl).mean()
        return total, {"nll": nll.mean().detach(), "kl": kl.mean().detach()}

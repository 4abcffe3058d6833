"""The continuous-time PK-VAE: concentrations at any time after doses at any times.

Notation: a patient has covariates ``x``, a latent ``z`` (prior N(0, I)) and a dosing history of
events ``e = (t_e h, amount a_e mg, infusion length d_e h)`` (:class:`~vae_simulator.events.DosingEvents`).

Decoder p(C(t) | z, x, events). Why this architecture: the profile after a dose is a sum of
decaying exponentials whose amplitudes depend on everything given before (accumulation,
saturation, recirculation), so we carry a recurrent state over *events* and read the profile
off it with a head on the time since the last event:

    h_0 = tanh(W [z, x]),   h_e = GRU([a_e / a_max, d_e / d_scale, phi(t_e - t_{e-1})], h_{e-1})
    mu(t) = MLP([h_e, z, a_e / a_max, phi(t - t_e), phi(max(t - t_e - d_e, 0)), min(t - t_e, d_e) / d_scale])

(plus, where the profile follows the time of day, :class:`ClockFeatures` of ``t``: mycophenolate)
with ``e`` the last event strictly before ``t`` (a sample at a dose time is pre-dose) and
``phi(s) = exp(-s / tau_i)`` over time constants ``tau_i`` log-spaced from
:attr:`CTConfig.time_scale_min_h` (default 0.25 h for new models: distribution phases of
paclitaxel and carboplatin last under an hour; the first shipped decoders used 1/48 of the
interval, 10.5 h on the 3-weekly drugs, too slow for them) to 10 intervals: in these features a one-compartment decay is linear, so the head
learns multi-exponential decays, lag and recirculation bumps without an ODE. Before the first
event the concentration is exactly 0, by construction, not learned. Compared with the
interval-grid decoder it replaces (one GRU step per fixed interval, a fixed grid), this one
answers at any time for any schedule with the same state; with a latent ODE it shares the
event-driven state but needs no solver (the CPU budget of the project trains a drug in minutes).

The predicted concentration is ``C_hat(t) = exp(y_shift + y_scale * mu(t))`` (mg/L, > 0).
Residual error is learned, global per drug, proportional + additive on the *linear* scale as
assays report it: ``obs ~ N(C_hat, (sigma_prop * C_hat)^2 + sigma_add^2)``, so a 46 %
proportional error (mycophenolate) does not bias the median as a log-scale Gaussian does.
Results below the LLOQ are censored (Beal M3: ``-log P(obs < LLOQ)``). A short warm-up in log
space (:meth:`CTPKVAE.log_warmup_nll`) starts the optimisation near the data.

Encoder q(z | samples, events, x): a set encoder; each sample at any time becomes a token
``[y, below-LLOQ flag, phi(t - t_e), a_e / a_max, d_e / d_scale, t / horizon, g_e]`` where ``g_e``
is the state of an encoder GRU over the events (the dosing history the sample follows, without
``z``); tokens are embedded, masked-mean and masked-max pooled, joined with the covariates and
mapped to the mean and log-variance of ``z``. No samples gives a covariate-only posterior.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from vae_simulator.vae.model import LatentPopulation, Normalizer, _mlp

#: Longest time constant as a multiple of the drug's usual interval.
TIME_SCALE_MAX_INTERVALS = 10.0
#: Shortest time constant of models whose config names none (the first shipped decoders).
LEGACY_TIME_SCALE_MIN_INTERVALS = 1.0 / 48.0


@dataclass(frozen=True)
class CTConfig:
    """Architecture, scaling and trained range of a continuous-time PK-VAE."""

    drug: str
    n_covariates: int
    interval_h: float
    horizon_h: float
    max_gap_h: float
    dose_max_mg: float
    infusion_range_h: tuple[float, float]
    lloq_mg_l: float
    latent_dim: int = 6
    hidden: int = 96
    c0_mg_l: float = 0.05
    #: shortest time constant (h) of the time features; ``None``: 1/48 of the interval
    time_scale_min_h: float | None = None
    n_time_scales: int = 8
    #: add ``log`` of the time since an event to the time features (new models; see TimeFeatures)
    log_time: bool = False
    #: clock features (:class:`ClockFeatures`): period (h) and number of bumps; 0 bumps = none
    clock_period_h: float = 24.0
    n_clock_features: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CTConfig:
        d = dict(d)
        d["infusion_range_h"] = tuple(d["infusion_range_h"])
        return cls(**d)

    @property
    def time_scales_h(self) -> tuple[float, float]:
        """Shortest and longest time constant (h) of :class:`TimeFeatures`."""
        lo = self.time_scale_min_h
        lo = self.interval_h * LEGACY_TIME_SCALE_MIN_INTERVALS if lo is None else float(lo)
        return lo, self.interval_h * TIME_SCALE_MAX_INTERVALS

    @property
    def duration_scale_h(self) -> float:
        return max(float(self.infusion_range_h[1]), 1.0)


class TimeFeatures(nn.Module):
    """``phi(s) = exp(-s / tau_i)`` for ``s >= 0`` h, plus ``log1p(s / interval)`` and, with
    ``log_time``, ``log((s + tau_min / 64) / tau_min) / log(tau_max / tau_min)``.

    Why the log time: just after an infusion starts or an oral dose is taken the concentration
    rises in proportion to the time since the dose, so its logarithm (what the head predicts)
    behaves like ``log s``, which no sum of ``exp(-s / tau)`` with ``tau >= tau_min`` follows, so without
    it the first samples after each dose are misfit and the learned proportional error has to absorb
    the misfit. The offset ``tau_min / 64`` keeps the feature finite at ``s = 0``.
    """

    #: the log feature's offset as a fraction of the shortest time constant
    LOG_OFFSET_FRACTION = 1.0 / 64.0

    def __init__(self, interval_h: float, scales_h: tuple[float, float], n_scales: int, log_time: bool = False):
        super().__init__()
        lo, hi = scales_h
        if not 0.0 < lo < hi or n_scales < 2:
            raise ValueError(f"time scales need 0 < min {lo} h < max {hi} h and at least 2 of them, got {n_scales}")
        taus = torch.logspace(math.log10(lo), math.log10(hi), n_scales)
        self.register_buffer("inv_tau", 1.0 / taus)
        self.interval_h = interval_h
        self.log_time = bool(log_time)
        self.log_offset_h, self.log_min_h, self.log_span = lo * self.LOG_OFFSET_FRACTION, lo, math.log(hi / lo)

    @property
    def size(self) -> int:
        return self.inv_tau.numel() + 1 + int(self.log_time)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        s = s.clamp_min(0.0).unsqueeze(-1)
        parts = [torch.exp(-s * self.inv_tau), torch.log1p(s / self.interval_h)]
        if self.log_time:
            parts.append(torch.log((s + self.log_offset_h) / self.log_min_h) / self.log_span)
        return torch.cat(parts, dim=-1)


class ClockFeatures(nn.Module):
    """Periodic bumps over the clock: ``exp(kappa (cos(2 pi (t - c_k) / P) - 1))`` for ``K`` centres
    ``c_k = k P / K`` h of a period ``P`` h (:attr:`CTConfig.clock_period_h`), ``t`` the time on the
    data's clock (h from the record's time origin, the first dose for the virtual patients).

    Why: some profiles follow the clock, not the doses. Mycophenolic acid's second peaks come from
    gallbladder emptying at meals, at fixed times of day (the ground truth puts them 4 h and 10 h
    into every 12-h period, :mod:`vae_simulator.groundtruth.mycophenolate`); once doses are late,
    held or q8h, no feature of the time since a dose says when the next meal is, and the decoder
    without these features smoothed the second peaks away. ``kappa = (K / 2 pi)^2`` gives each bump
    an SD of one centre spacing, so ``K = 48`` over 24 h resolves the 0.5-h emptying windows.
    """

    def __init__(self, period_h: float, n_features: int):
        super().__init__()
        if not (math.isfinite(period_h) and period_h > 0) or n_features < 2:
            raise ValueError(f"clock features need a period > 0 h and at least 2 bumps, got {period_h!r} h "
                             f"and {n_features}")
        self.register_buffer("centres", torch.arange(n_features) * (2.0 * math.pi / n_features))
        self.kappa = (n_features / (2.0 * math.pi)) ** 2
        self.period_h = float(period_h)

    @property
    def size(self) -> int:
        return self.centres.numel()

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angle = torch.remainder(t, self.period_h).unsqueeze(-1) * (2.0 * math.pi / self.period_h)
        return torch.exp(self.kappa * (torch.cos(angle - self.centres) - 1.0))


def clock_features(clock: ClockFeatures | None, t: torch.Tensor) -> list[torch.Tensor]:
    """``[clock(t)]``, or ``[]`` for a model without clock features."""
    return [] if clock is None else [clock(t)]


def event_inputs(cfg: CTConfig, phi: TimeFeatures, times_h, amounts_mg, infusion_h) -> torch.Tensor:
    """Per-event GRU inputs ``(n, E, 2 + phi.size)``: scaled amount and length, phi(gap to previous)."""
    finite_t = torch.where(torch.isfinite(times_h), times_h, torch.zeros_like(times_h))
    gap = torch.diff(finite_t, dim=1, prepend=finite_t[:, :1])
    return torch.cat([(amounts_mg / cfg.dose_max_mg).unsqueeze(-1), (infusion_h / cfg.duration_scale_h).unsqueeze(-1),
                      phi(gap)], dim=-1)


def gather_last_event(values: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """``values (n, E, F)`` at the last-event index ``last (n, T)`` (``-1`` -> index 0): ``(n, T, F)``."""
    idx = last.clamp_min(0).unsqueeze(-1).expand(-1, -1, values.shape[-1])
    return torch.gather(values, 1, idx)


def query_features(cfg: CTConfig, phi: TimeFeatures, query_h, last, times_h, amounts_mg, infusion_h) -> torch.Tensor:
    """``[a_e, phi(t - t_e), phi(t - t_e - d_e), min(t - t_e, d_e)]`` per query ``(n, T, 1 + 2 phi + 1)``."""
    per_event = torch.stack([torch.where(torch.isfinite(times_h), times_h, torch.zeros_like(times_h)),
                             amounts_mg, infusion_h], dim=-1)
    t_e, a_e, d_e = gather_last_event(per_event, last).unbind(-1)
    since = (query_h - t_e).clamp_min(0.0)
    return torch.cat([(a_e / cfg.dose_max_mg).unsqueeze(-1), phi(since), phi(since - d_e),
                      (torch.minimum(since, d_e) / cfg.duration_scale_h).unsqueeze(-1)], dim=-1)


def last_event_index(times_h: torch.Tensor, query_h: torch.Tensor) -> torch.Tensor:
    """Index of the last event strictly before each query (``-1`` if none); padding times are +inf."""
    return (times_h.unsqueeze(1) < query_h.unsqueeze(2)).sum(dim=2) - 1


class CTDecoder(nn.Module):
    """p(C(t) | z, x, events): an event GRU and a head on the time since the last event."""

    def __init__(self, cfg: CTConfig, phi: TimeFeatures, clock: ClockFeatures | None = None):
        super().__init__()
        self.cfg, self.phi, self.clock = cfg, phi, clock
        zx = cfg.latent_dim + cfg.n_covariates
        self.init = nn.Linear(zx, cfg.hidden)
        self.gru = nn.GRU(2 + phi.size + zx, cfg.hidden, batch_first=True)
        n_clock = 0 if clock is None else clock.size
        self.head = _mlp([cfg.hidden + cfg.latent_dim + 2 * phi.size + 2 + n_clock, cfg.hidden, cfg.hidden, 1])

    def event_states(self, z, x, times_h, amounts_mg, infusion_h) -> torch.Tensor:
        """GRU state after each event, ``(n, E, hidden)``."""
        h0 = torch.tanh(self.init(torch.cat([z, x], dim=-1)))
        u = event_inputs(self.cfg, self.phi, times_h, amounts_mg, infusion_h)
        zx = torch.cat([z, x], dim=-1).unsqueeze(1).expand(-1, u.shape[1], -1)
        states, _ = self.gru(torch.cat([u, zx], dim=-1), h0.unsqueeze(0))
        return states

    def forward(self, z, x, times_h, amounts_mg, infusion_h, query_h) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled log-concentration mean ``mu (n, T)`` and the mask of queries after a first event."""
        states = self.event_states(z, x, times_h, amounts_mg, infusion_h)
        last = last_event_index(times_h, query_h)
        feats = query_features(self.cfg, self.phi, query_h, last, times_h, amounts_mg, infusion_h)
        h = gather_last_event(states, last)
        zq = z.unsqueeze(1).expand(-1, query_h.shape[1], -1)
        mu = self.head(torch.cat([h, zq, feats, *clock_features(self.clock, query_h)], dim=-1)).squeeze(-1)
        return mu, last >= 0


class CTEncoder(nn.Module):
    """q(z | samples at any times, events, x): a set encoder (see module docstring)."""

    def __init__(self, cfg: CTConfig, phi: TimeFeatures, clock: ClockFeatures | None = None):
        super().__init__()
        self.cfg, self.phi, self.clock = cfg, phi, clock
        context = cfg.hidden // 2
        self.init = nn.Linear(cfg.n_covariates, context)
        self.gru = nn.GRU(2 + phi.size, context, batch_first=True)
        token = 2 + 1 + phi.size + 2 + context + (0 if clock is None else clock.size)
        self.embed = _mlp([token, cfg.hidden, cfg.hidden])
        self.out = _mlp([2 * cfg.hidden + cfg.n_covariates, cfg.hidden, 2 * cfg.latent_dim])

    def forward(self, x, times_h, amounts_mg, infusion_h, sample_h, y, blq, mask) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, log-variance)`` of z, ``(n, latent_dim)`` each; samples ``(n, S)`` with ``mask``."""
        u = event_inputs(self.cfg, self.phi, times_h, amounts_mg, infusion_h)
        g, _ = self.gru(u, torch.tanh(self.init(x)).unsqueeze(0))
        last = last_event_index(times_h, sample_h)
        feats = query_features(self.cfg, self.phi, sample_h, last, times_h, amounts_mg, infusion_h)
        feats = torch.cat([feats[..., :1 + self.phi.size], feats[..., -1:]], dim=-1)
        tokens = torch.cat([y.unsqueeze(-1), blq.float().unsqueeze(-1), feats,
                            (sample_h / self.cfg.horizon_h).unsqueeze(-1), gather_last_event(g, last),
                            *clock_features(self.clock, sample_h)], dim=-1)
        e = self.embed(tokens)
        m = mask.unsqueeze(-1).float()
        count = m.sum(1)
        mean_pool = (e * m).sum(1) / count.clamp_min(1.0)
        max_pool = torch.where(m > 0, e, torch.full_like(e, -1e4)).amax(1)
        max_pool = torch.where(count > 0, max_pool, torch.zeros_like(max_pool))
        stats = self.out(torch.cat([mean_pool, max_pool, x], dim=-1))
        mean, logvar = stats.chunk(2, dim=-1)
        return mean, logvar.clamp(-12.0, 6.0)


class CTPKVAE(nn.Module):
    """Encoder, decoder, scaling, residual error and latent population of one drug."""

    def __init__(self, cfg: CTConfig):
        super().__init__()
        self.cfg = cfg
        self.normalizer = Normalizer(cfg.n_covariates)
        self.phi = TimeFeatures(cfg.interval_h, cfg.time_scales_h, cfg.n_time_scales, cfg.log_time)
        clock = ClockFeatures(cfg.clock_period_h, cfg.n_clock_features) if cfg.n_clock_features else None
        self.encoder = CTEncoder(cfg, self.phi, clock)
        self.decoder = CTDecoder(cfg, self.phi, clock)
        self.population = LatentPopulation(cfg.latent_dim, cfg.n_covariates)
        # residual error on the linear scale: sigma_prop (fraction), sigma_add (mg/L)
        self.log_sigma_prop = nn.Parameter(torch.tensor(math.log(0.2)))
        self.log_sigma_add = nn.Parameter(torch.tensor(math.log(max(0.25 * cfg.lloq_mg_l, 1e-6))))

    # -------------------------------------------------------------- scales
    def to_y(self, conc_mg_l: torch.Tensor) -> torch.Tensor:
        norm = self.normalizer
        return (torch.log(conc_mg_l.clamp_min(0.0) + self.cfg.c0_mg_l) - norm.y_shift) / norm.y_scale

    def concentration(self, mu: torch.Tensor) -> torch.Tensor:
        """Predicted concentration (mg/L) from the scaled log mean; capped to stay finite."""
        log_c = self.normalizer.y_shift + self.normalizer.y_scale * mu
        return torch.exp(log_c.clamp(max=20.0))

    def residual_sd(self, conc: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((torch.exp(self.log_sigma_prop) * conc) ** 2 + torch.exp(self.log_sigma_add) ** 2)

    # -------------------------------------------------------------- inference
    def encode(self, batch: dict, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.normalizer.covariates(batch["cov"])
        return self.encoder(x, batch["dose_time_h"], batch["dose_mg"], batch["infusion_h"], batch["obs_time_h"],
                            self.to_y(batch["conc_obs"]), batch["blq"], mask)

    def predict(self, z: torch.Tensor, batch: dict, query_h: torch.Tensor) -> torch.Tensor:
        """Concentrations (mg/L) at ``query_h (n, T)``; exactly 0 before the first event."""
        x = self.normalizer.covariates(batch["cov"])
        mu, dosed = self.decoder(z, x, batch["dose_time_h"], batch["dose_mg"], batch["infusion_h"], query_h)
        return torch.where(dosed, self.concentration(mu), torch.zeros_like(mu))

    # -------------------------------------------------------------- losses
    def observation_nll(self, conc_hat, obs, blq, mask) -> torch.Tensor:
        """Per-patient NLL of the observations: linear-scale combined error, M3 for below-LLOQ."""
        sd = self.residual_sd(conc_hat)
        quantified = -torch.distributions.Normal(conc_hat, sd).log_prob(obs)
        censored_z = (self.cfg.lloq_mg_l - conc_hat) / sd
        censored = -torch.log(torch.special.ndtr(censored_z).clamp_min(1e-12))
        nll = torch.where(blq, censored, quantified)
        return (nll * mask).sum(1)

    def log_warmup_nll(self, mu: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample NLL of the warm-up: a Gaussian in the scaled log space whose SD is the proportional
        error (``sigma_prop / y_scale``, learned, the same parameter as the linear-scale likelihood's).

        Why not a plain squared error: that is a Gaussian with SD ``1/sqrt(2)`` in scaled log units, far
        wider than any assay, so using the latent gained the reconstruction too little to pay its KL and
        the encoder collapsed to the prior during the warm-up (carboplatin: all six latent dimensions at
        posterior SD 0.95-0.98, the decoder left with the covariates only); it did not recover afterwards.
        """
        sd = torch.exp(self.log_sigma_prop) / self.normalizer.y_scale
        return 0.5 * ((mu - y) / sd) ** 2 + torch.log(sd) + 0.5 * math.log(2.0 * math.pi)

    def loss(self, batch: dict, enc_mask: torch.Tensor, beta: float = 1.0, sample: bool = True,
             log_warmup: bool = False, free_bits_nats: float = 0.0) -> tuple[torch.Tensor, dict]:
        """Mean per-patient negative ELBO over the batch's whole observed profiles.

        ``free_bits_nats``: the batch's mean KL of each latent dimension counts as at least this much
        (free bits, Kingma et al., NeurIPS 2016), so a dimension is not pushed to the prior before the
        decoder has learnt to use it; 0 is the plain ELBO. The reported ``kl`` is the true one.
        """
        mean, logvar = self.encode(batch, enc_mask)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if sample else mean
        x = self.normalizer.covariates(batch["cov"])
        mu, dosed = self.decoder(z, x, batch["dose_time_h"], batch["dose_mg"], batch["infusion_h"],
                                 batch["obs_time_h"])
        mask = (batch["obs_mask"] & dosed).float()
        if log_warmup:
            recon = (self.log_warmup_nll(mu, self.to_y(batch["conc_obs"])) * mask).sum(1)
        else:
            recon = self.observation_nll(self.concentration(mu), batch["conc_obs"], batch["blq"], mask)
        kl_dims = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
        kl = kl_dims.sum(1)
        kl_term = kl.mean() if free_bits_nats <= 0 else kl_dims.mean(0).clamp_min(free_bits_nats).sum()
        total = recon.mean() + beta * kl_term
        return total, {"recon": float(recon.detach().mean()), "kl": float(kl.detach().mean()),
                       "sigma_prop": float(torch.exp(self.log_sigma_prop.detach())),
                       "sigma_add_mg_l": float(torch.exp(self.log_sigma_add.detach()))}

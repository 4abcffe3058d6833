"""Infer a patient's latent z from sparse monitoring samples.

Two steps, as Bayesian therapeutic drug monitoring software does:

1. the encoder's amortised posterior q(z | samples, doses, covariates), then
2. optionally, maximum a posteriori refinement on the decoder: minimise
   ``-log p(samples | z) - log p(z | covariates)`` from the encoder's mean, with the fitted
   latent population as the prior (:class:`~vae_simulator.vae.model.LatentPopulation`), with the decoder's profile
   interpolated to the exact sample times and below-LLOQ samples treated as censored
   (Beal's M3 likelihood, P(y < LLOQ)).

Samples are given per patient as padded arrays with a mask: ``times_h`` from the first dose,
``conc_mg_l``, ``blq`` (True where the assay reported below LLOQ).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from vae_simulator.vae.data import interval_position, make_tokens
from vae_simulator.vae.model import PKVAE


@dataclass(frozen=True)
class Samples:
    """Padded monitoring samples of ``n`` patients, ``(n, L)`` each; ``mask`` marks real ones."""

    times_h: np.ndarray
    conc_mg_l: np.ndarray
    blq: np.ndarray
    mask: np.ndarray

    def check(self, n_patients: int, horizon_h: float) -> None:
        shapes = {a.shape for a in (self.times_h, self.conc_mg_l, self.blq, self.mask)}
        if len(shapes) != 1 or next(iter(shapes))[0] != n_patients or len(next(iter(shapes))) != 2:
            raise ValueError(f"samples must be (n_patients={n_patients}, L) arrays of one shape, got {shapes}")
        t, c = self.times_h[self.mask], self.conc_mg_l[self.mask]
        if not np.all(np.isfinite(t)) or not np.all(np.isfinite(c)):
            raise ValueError("sample times and concentrations must be finite")
        if np.any(c < 0):
            raise ValueError(f"sample concentration {float(c[c < 0][0]):g} mg/L is negative")
        if np.any(t <= 0) or np.any(t > horizon_h):
            bad = t[(t <= 0) | (t > horizon_h)][0]
            raise ValueError(f"sample time {bad:g} h lies outside the dosing history (0, {horizon_h:g}] h")


def encode(model: PKVAE, covariates: np.ndarray, doses_mg: np.ndarray, samples: Samples) -> tuple[np.ndarray, np.ndarray]:
    """Encoder posterior mean and SD of z, ``(n, latent_dim)`` each."""
    n, k = doses_mg.shape
    samples.check(n, k * model.cfg.interval_h)
    with torch.no_grad():
        y = model.to_y(torch.as_tensor(samples.conc_mg_l, dtype=torch.float32)).numpy()
    tokens, kidx = make_tokens(y, samples.blq, samples.times_h, model.cfg.interval_h, model.cfg.max_intervals)
    with torch.no_grad():
        mu, logvar = model.encode(torch.as_tensor(tokens), torch.as_tensor(kidx), torch.as_tensor(samples.mask),
                                  torch.as_tensor(doses_mg, dtype=torch.float32),
                                  torch.as_tensor(covariates, dtype=torch.float32))
    return mu.double().numpy(), torch.exp(0.5 * logvar).double().numpy()


def decoded_at_times(model: PKVAE, z: torch.Tensor, covariates: torch.Tensor, doses_mg: torch.Tensor,
                     times_h: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder mean and log-sigma of scaled log-concentration at arbitrary ``times_h`` ``(n, L)``.

    Linear interpolation on the scaled log scale between the grid points around each time
    (the interval's start value is the previous interval's last grid value, or C = 0).
    """
    mean, log_sigma = model.decode(z, covariates, doses_mg)
    n, k, g = mean.shape
    grid = np.concatenate([[0.0], _recording_grid_h(model.cfg.drug)])
    y_zero = model.to_y(torch.zeros(()))
    start_mean = torch.cat([y_zero.expand(n, 1), mean[:, :-1, -1]], dim=1)
    start_ls = torch.cat([log_sigma[:, :1, 0], log_sigma[:, :-1, -1]], dim=1)
    full_mean = torch.cat([start_mean.unsqueeze(-1), mean], dim=2).reshape(n, -1)
    full_ls = torch.cat([start_ls.unsqueeze(-1), log_sigma], dim=2).reshape(n, -1)
    kk, frac = interval_position(times_h, model.cfg.interval_h)
    t_in = frac * model.cfg.interval_h
    j = np.clip(np.searchsorted(grid, t_in, side="right") - 1, 0, g - 1)
    w = torch.as_tensor((t_in - grid[j]) / (grid[j + 1] - grid[j]), dtype=mean.dtype)
    base = torch.as_tensor(np.minimum(kk, k - 1) * (g + 1) + j)
    lo_m, hi_m = torch.gather(full_mean, 1, base), torch.gather(full_mean, 1, base + 1)
    lo_s, hi_s = torch.gather(full_ls, 1, base), torch.gather(full_ls, 1, base + 1)
    return lo_m * (1 - w) + hi_m * w, lo_s * (1 - w) + hi_s * w


@functools.cache
def _recording_grid_h(drug: str) -> np.ndarray:
    """The drug's recording grid (h after a dose); looked up once, since MAP calls this every step."""
    from vae_simulator.groundtruth import get_model

    grid = np.asarray(get_model(drug).interval_grid_h, dtype=float)
    grid.flags.writeable = False  # shared by every caller
    return grid


def map_refine(model: PKVAE, z_init: np.ndarray, covariates: np.ndarray, doses_mg: np.ndarray, samples: Samples,
               steps: int = 60, lr: float = 0.05) -> np.ndarray:
    """MAP estimate of z on the decoder, started from ``z_init`` (see module doc)."""
    samples.check(doses_mg.shape[0], doses_mg.shape[1] * model.cfg.interval_h)
    z = torch.tensor(z_init, dtype=torch.float32, requires_grad=True)
    cov = torch.as_tensor(covariates, dtype=torch.float32)
    doses = torch.as_tensor(doses_mg, dtype=torch.float32)
    times = np.where(samples.mask, samples.times_h, model.cfg.interval_h)  # padded entries: harmless time
    conc = torch.as_tensor(samples.conc_mg_l, dtype=torch.float32)
    with torch.no_grad():
        y_obs = model.to_y(conc)
        y_lloq = model.to_y(2.0 * conc)  # a below-LLOQ result is reported as LLOQ/2
    mask = torch.as_tensor(samples.mask, dtype=torch.float32)
    blq = torch.as_tensor(samples.blq & samples.mask)
    # prior: the fitted latent population given the covariates (N(0, I) if not fitted)
    prior_mean = model.population.mean(model.normalizer.covariates(cov)).detach()
    chol = model.population.chol.detach()

    def white(z_):
        return torch.linalg.solve_triangular(chol, (z_ - prior_mean).T, upper=False).T

    opt = torch.optim.Adam([z], lr=lr)
    normal = torch.distributions.Normal(0.0, 1.0)
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            mean, log_sigma = decoded_at_times(model, z, cov, doses, times)
            resid = (y_obs - mean) / torch.exp(log_sigma)
            nll_obs = 0.5 * resid ** 2 + log_sigma
            nll_blq = -torch.log(normal.cdf((y_lloq - mean) / torch.exp(log_sigma)).clamp_min(1e-12))  # P(y < LLOQ)
            nll = (torch.where(blq, nll_blq, nll_obs) * mask).sum(dim=1) + 0.5 * (white(z) ** 2).sum(dim=1)
            opt.zero_grad()
            nll.sum().backward()
            opt.step()
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return z.detach().double().numpy()

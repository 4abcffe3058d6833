"""From population data sets to PK-VAE tensors, and observation tokens for the encoder.

The encoder must infer a patient from whatever a clinic measured: one trough, a peak
and a trough, a rich profile. Training therefore shows it random *views* of each patient
(:func:`encoder_view_masks`): the clinic's sparse samples up to a random interval, a
random handful of grid points, or the whole noisy profile; the decoder is always
scored on the whole noisy profile.
"""

from __future__ import annotations

import numpy as np
import torch

from vae_simulator.population import PopulationData

#: Probabilities of the encoder's views: clinic samples, a few grid points, the full grid.
VIEW_PROBS = (0.45, 0.35, 0.20)
MAX_RANDOM_GRID_POINTS = 8


def interval_position(times_h: np.ndarray, interval_h: float) -> tuple[np.ndarray, np.ndarray]:
    """Interval index and fraction of the interval elapsed for times in h from the first dose.

    A sample at exactly ``k * interval_h`` is the trough of interval ``k - 1`` (taken just
    before dose ``k``), the convention of the recording grids.
    """
    times_h = np.asarray(times_h, dtype=float)
    k = np.maximum(np.ceil(times_h / interval_h - 1e-9) - 1, 0)
    frac = (times_h - k * interval_h) / interval_h
    return k.astype(np.int64), frac


def make_tokens(y: np.ndarray, blq: np.ndarray, times_h: np.ndarray, interval_h: float,
                max_intervals: int) -> tuple[np.ndarray, np.ndarray]:
    """Token features ``(..., 4)`` and interval indices for scaled observations ``y``."""
    k, frac = interval_position(times_h, interval_h)
    tokens = np.stack([y, blq.astype(float), frac, k / max(max_intervals - 1, 1)], axis=-1)
    return tokens.astype(np.float32), k


class TrainingTensors:
    """All tensors of a data set for one model, with a pool of candidate encoder tokens.

    ``pool_*`` arrays hold every grid observation (``K*G``) then every clinic sample
    (``K*M``) of each patient; a view mask selects which the encoder sees.
    """

    def __init__(self, data: PopulationData, model):
        cfg = model.cfg
        n, k, g = data.conc_obs.shape
        self.n, self.k, self.g = n, k, g
        self.cov = torch.as_tensor(data.covariates, dtype=torch.float32)
        self.doses_mg = torch.as_tensor(data.doses_mg, dtype=torch.float32)
        with torch.no_grad():
            self.y = model.to_y(torch.as_tensor(data.conc_obs, dtype=torch.float32))
            # a below-LLOQ result is reported as LLOQ/2: its censoring limit is twice that
            self.y_lloq = model.to_y(2.0 * torch.as_tensor(data.conc_obs, dtype=torch.float32))
            y_samples = model.to_y(torch.as_tensor(data.sample_conc, dtype=torch.float32)).numpy()
        self.blq = torch.as_tensor(data.blq, dtype=torch.bool)
        grid_times = (cfg.interval_h * np.arange(k)[:, None] + data.grid_h[None, :]).ravel()
        grid_tokens, grid_k = make_tokens(self.y.reshape(n, -1).numpy(), data.blq.reshape(n, -1),
                                          np.broadcast_to(grid_times, (n, k * g)), cfg.interval_h, cfg.max_intervals)
        m = data.sample_conc.shape[2]
        clinic_tokens, clinic_k = make_tokens(y_samples.reshape(n, -1), data.sample_blq.reshape(n, -1),
                                              data.sample_time_h.reshape(n, -1), cfg.interval_h, cfg.max_intervals)
        self.pool_tokens = torch.as_tensor(np.concatenate([grid_tokens, clinic_tokens], axis=1))
        self.pool_interval = torch.as_tensor(np.concatenate([grid_k, clinic_k], axis=1))
        self.n_grid = k * g
        self.clinic_available = ~data.sample_missing.reshape(n, k * m)
        self.clinic_interval = clinic_k

    def view_masks(self, rng: np.random.Generator, index: np.ndarray | None = None) -> torch.Tensor:
        """Random encoder views (see :data:`VIEW_PROBS`) for the patients in ``index``."""
        index = np.arange(self.n) if index is None else index
        return torch.as_tensor(encoder_view_masks(rng, len(index), self.n_grid, self.clinic_available[index],
                                                  self.clinic_interval[index], self.k))

    def batch(self, index: np.ndarray, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(index)
        return {"tokens": self.pool_tokens[idx], "interval_index": self.pool_interval[idx], "mask": mask,
                "doses_mg": self.doses_mg[idx], "cov": self.cov[idx], "y": self.y[idx],
                "blq": self.blq[idx], "y_lloq": self.y_lloq[idx]}


def encoder_view_masks(rng: np.random.Generator, n: int, n_grid: int, clinic_available: np.ndarray,
                       clinic_interval: np.ndarray, k: int) -> np.ndarray:
    """Boolean ``(n, n_grid + n_clinic)`` masks: one random view per patient."""
    view = rng.choice(3, size=n, p=VIEW_PROBS)
    # clinic samples up to a random last interval (MIPD: what has been measured so far)
    last = rng.integers(0, k, size=(n, 1))
    clinic = clinic_available & (clinic_interval <= last)
    # a random handful of grid points
    size = rng.integers(1, MAX_RANDOM_GRID_POINTS + 1, size=(n, 1))
    ranks = np.argsort(np.argsort(rng.random((n, n_grid)), axis=1), axis=1)
    few = ranks < size
    grid_part = np.where((view == 1)[:, None], few, (view == 2)[:, None])
    clinic_part = np.where((view == 0)[:, None], clinic, False)
    mask = np.concatenate([grid_part, clinic_part], axis=1)
    # a clinic view with nothing left (all missing) falls back to one grid point
    empty = ~mask.any(axis=1)
    mask[np.flatnonzero(empty), rng.integers(0, n_grid, size=int(empty.sum()))] = True
    return mask

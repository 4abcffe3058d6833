"""Exposure metrics of concentration profiles recorded on a per-interval grid.

Profiles are ``(n, K, G)`` arrays: ``K`` dosing intervals, each recorded at the ``G``
times ``grid_h`` (h after that interval's dose, last == interval length). The value
at the start of interval ``k`` is the last value of interval ``k - 1`` (0 before the
first dose): every model here is continuous at dose times (infusions and oral depots).

AUC uses the linear-up / log-down trapezoidal rule, the standard of non-compartmental
analysis (e.g. Gabrielsson & Weiner, Pharmacokinetic and Pharmacodynamic Data Analysis,
5th ed., 2016), because profiles decay exponentially between coarse grid points.
"""

from __future__ import annotations

import numpy as np

METRICS = ("auc_interval", "auc24", "trough", "peak", "cavg", "time_above")


def with_interval_start(conc: np.ndarray, grid_h: np.ndarray,
                        first_start_mg_l: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Prepend each interval's starting concentration: ``(n, K, G+1)`` values on ``(G+1,)`` times.

    ``first_start_mg_l`` (n,) is the concentration at the start of the first interval given
    (0 by default: the first dose of a course); later intervals start at the previous end.
    """
    conc = _check_profiles(conc, grid_h)
    first = np.zeros(conc.shape[0]) if first_start_mg_l is None else np.asarray(first_start_mg_l, dtype=float)
    if first.shape != (conc.shape[0],) or not np.all(np.isfinite(first)) or np.any(first < 0):
        raise ValueError(f"first_start_mg_l must be {conc.shape[0]} finite values >= 0")
    start = np.concatenate([first[:, None], conc[:, :-1, -1]], axis=1)
    return np.concatenate([start[..., None], conc], axis=2), np.concatenate([[0.0], grid_h])


def auc_per_interval(conc: np.ndarray, grid_h: np.ndarray, first_start_mg_l: np.ndarray | None = None) -> np.ndarray:
    """AUC over each interval (mg*h/L), linear-up / log-down, shaped ``(n, K)``."""
    c, t = with_interval_start(conc, grid_h, first_start_mg_l)
    return _auc(c, np.diff(t))


def _auc(c: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Linear-up / log-down AUC of profiles ``c (..., G+1)`` that include their start, steps ``dt (G,)``."""
    c0, c1 = c[..., :-1], c[..., 1:]
    linear = 0.5 * (c0 + c1) * dt
    falling = (c1 < c0) & (c1 > 0)
    ratio = np.where(falling, c0 / np.where(falling, c1, 1.0), 2.0)
    log_down = np.where(falling, (c0 - c1) * dt / np.log(ratio), 0.0)
    return np.where(falling, log_down, linear).sum(axis=-1)


def time_above(conc: np.ndarray, grid_h: np.ndarray, threshold_mg_l: float,
               first_start_mg_l: np.ndarray | None = None) -> np.ndarray:
    """Hours per interval with concentration above ``threshold_mg_l``, ``(n, K)``.

    Crossings between grid points are located by log-linear interpolation (exact for a
    mono-exponential decline).
    """
    if not np.isfinite(threshold_mg_l) or threshold_mg_l <= 0:
        raise ValueError(f"threshold_mg_l must be a finite number > 0, got {threshold_mg_l!r}")
    c, t = with_interval_start(conc, grid_h, first_start_mg_l)
    return _time_above(c, np.diff(t), threshold_mg_l)


def _time_above(c: np.ndarray, dt: np.ndarray, threshold_mg_l: float) -> np.ndarray:
    """Hours above the threshold of profiles ``c (..., G+1)`` that include their start, steps ``dt (G,)``."""
    c0, c1 = c[..., :-1], c[..., 1:]
    above0, above1 = c0 > threshold_mg_l, c1 > threshold_mg_l
    logc0 = np.log(np.maximum(c0, 1e-30))
    logc1 = np.log(np.maximum(c1, 1e-30))
    denom = np.where(logc1 != logc0, logc1 - logc0, 1.0)
    frac = np.clip((np.log(threshold_mg_l) - logc0) / denom, 0.0, 1.0)  # crossing point within the step
    part = np.where(above0 & above1, dt,
                    np.where(above0 & ~above1, frac * dt, np.where(~above0 & above1, (1 - frac) * dt, 0.0)))
    return part.sum(axis=-1)


def interval_exposure(conc: np.ndarray, grid_h: np.ndarray, metric: str, threshold_mg_l: float | None = None,
                      first_start_mg_l: np.ndarray | None = None) -> np.ndarray:
    """One exposure metric per interval, ``(n, K)``; see :data:`METRICS` (units in ExposureTarget).

    ``first_start_mg_l``: concentration at the start of the first given interval (default 0).
    """
    grid_h = np.asarray(grid_h, dtype=float)
    if metric == "auc_interval":
        return auc_per_interval(conc, grid_h, first_start_mg_l)
    if metric == "auc24":
        return auc_per_interval(conc, grid_h, first_start_mg_l) * (24.0 / grid_h[-1])
    if metric == "cavg":
        return auc_per_interval(conc, grid_h, first_start_mg_l) / grid_h[-1]
    if metric == "trough":
        return _check_profiles(conc, grid_h)[..., -1]
    if metric == "peak":
        return _check_profiles(conc, grid_h).max(axis=-1)
    if metric == "time_above":
        if threshold_mg_l is None:
            raise ValueError("metric 'time_above' needs threshold_mg_l")
        return time_above(conc, grid_h, threshold_mg_l, first_start_mg_l)
    raise ValueError(f"unknown exposure metric {metric!r}; known: {', '.join(METRICS)}")


class IntervalExposure:
    """One exposure metric of one interval per patient on a fixed grid, checked once at construction.

    ``IntervalExposure(grid_h, metric, threshold_mg_l)(conc, start)`` equals
    ``interval_exposure(conc[:, None, :], grid_h, metric, threshold_mg_l, start)[:, 0]`` bit for bit
    (the same arithmetic) without the per-call validation of the profiles: for callers whose
    profiles are finite and >= 0 by construction, such as the environments stepping the decoder
    (where that validation was a quarter of a single environment's step).

    Args:
        grid_h: ``(G,)`` sampling times of an interval (h after the dose, strictly increasing, > 0).
        metric: one of :data:`METRICS`.
        threshold_mg_l: the threshold of ``"time_above"`` (mg/L, > 0).
    """

    def __init__(self, grid_h: np.ndarray, metric: str, threshold_mg_l: float | None = None):
        self.grid_h = np.asarray(grid_h, dtype=float)
        interval_exposure(np.zeros((1, 1, self.grid_h.size)), self.grid_h, metric, threshold_mg_l)  # validates all
        self.metric, self.threshold_mg_l = metric, threshold_mg_l
        self.dt = np.diff(np.concatenate([[0.0], self.grid_h]))
        self.auc24_scale = 24.0 / self.grid_h[-1]

    def __call__(self, conc_mg_l: np.ndarray, start_mg_l: np.ndarray) -> np.ndarray:
        """``(n,)`` exposure of profiles ``conc_mg_l (n, G)`` starting at ``start_mg_l (n,)`` (mg/L)."""
        if self.metric == "trough":
            return conc_mg_l[:, -1]
        if self.metric == "peak":
            return conc_mg_l.max(axis=-1)
        c = np.concatenate([start_mg_l[:, None], conc_mg_l], axis=1)
        if self.metric == "time_above":
            return _time_above(c, self.dt, self.threshold_mg_l)
        auc = _auc(c, self.dt)
        if self.metric == "auc24":  # the order of interval_exposure's operations, so that the bits agree
            return auc * self.auc24_scale
        return auc / self.grid_h[-1] if self.metric == "cavg" else auc


def _check_profiles(conc: np.ndarray, grid_h: np.ndarray) -> np.ndarray:
    conc = np.asarray(conc, dtype=float)
    grid_h = np.asarray(grid_h, dtype=float)
    if conc.ndim != 3 or conc.shape[-1] != grid_h.shape[0]:
        raise ValueError(f"profiles must have shape (n, K, {grid_h.shape[0]}) for a grid of "
                         f"{grid_h.shape[0]} times, got {conc.shape}")
    if grid_h[0] <= 0 or np.any(np.diff(grid_h) <= 0):
        raise ValueError("grid_h must be strictly increasing and start after 0 h")
    if not np.all(np.isfinite(conc)) or np.any(conc < 0):
        raise ValueError("concentrations must be finite and >= 0")
    return conc


def profile_exposure(conc: np.ndarray, duration_h: np.ndarray, metric: str,
                     threshold_mg_l: float | None = None) -> np.ndarray:
    """One exposure per row of intervals of different lengths, ``(n,)`` (units in ExposureTarget).

    ``conc (n, P + 1)``: each row's profile at ``P + 1`` equally spaced times from its dose (start)
    to its end, ``duration_h (n,)`` h later (the regimens' intervals, which differ per patient).
    """
    c = np.asarray(conc, dtype=float)
    duration = np.asarray(duration_h, dtype=float)
    if c.ndim != 2 or c.shape[1] < 2 or duration.shape != (c.shape[0],):
        raise ValueError(f"conc must be (n, P + 1) with P >= 1 and duration_h (n,), got {c.shape} and {duration.shape}")
    if not (np.all(np.isfinite(c)) and np.all(c >= 0) and np.all(np.isfinite(duration)) and np.all(duration > 0)):
        raise ValueError("profiles must be finite and >= 0, durations finite and > 0")
    dt = (duration / (c.shape[1] - 1))[:, None]
    if metric in ("auc_interval", "auc24", "cavg"):
        auc = _auc(c, dt)
        return {"auc_interval": auc, "auc24": auc * 24.0 / duration, "cavg": auc / duration}[metric]
    if metric == "trough":
        return c[:, -1]
    if metric == "peak":
        return c.max(axis=1)
    if metric == "time_above":
        if threshold_mg_l is None:
            raise ValueError("metric 'time_above' needs threshold_mg_l")
        return _time_above(c, dt, threshold_mg_l)
    raise ValueError(f"unknown exposure metric {metric!r}; known: {', '.join(METRICS)}")

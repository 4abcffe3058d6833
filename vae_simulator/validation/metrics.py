"""Accuracy, calibration and distribution metrics of the validation report.

All functions are plain numpy on arrays of any matching shape; concentrations in mg/L.
Fractions are returned as numbers in [0, 1] (the report prints percent).
"""

from __future__ import annotations

import numpy as np

#: Percentiles (%) of the population distribution tables.
DISTRIBUTION_PERCENTILES: tuple[float, ...] = (5.0, 25.0, 50.0, 75.0, 95.0)


def _matched(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, true = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {true.shape}")
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(true))):
        raise ValueError("predictions and truth must be finite")
    return pred, true


def quantifiable(true_mg_l: np.ndarray, lloq_mg_l: float) -> np.ndarray:
    """Mask of true concentrations above the assay's LLOQ (where relative errors are meaningful)."""
    if not np.isfinite(lloq_mg_l) or lloq_mg_l < 0:
        raise ValueError(f"lloq_mg_l must be a finite number >= 0, got {lloq_mg_l!r}")
    return np.asarray(true_mg_l, dtype=float) > lloq_mg_l


def median_ape(pred_mg_l: np.ndarray, true_mg_l: np.ndarray, lloq_mg_l: float) -> float:
    """Median absolute percentage error |pred - true| / true (a fraction) over true values > LLOQ."""
    pred, true = _matched(pred_mg_l, true_mg_l)
    keep = quantifiable(true, lloq_mg_l)
    if not keep.any():
        raise ValueError(f"no true concentration above the LLOQ ({lloq_mg_l:g} mg/L) to score")
    return float(np.median(np.abs(pred[keep] - true[keep]) / true[keep]))


def log_rmse(pred_mg_l: np.ndarray, true_mg_l: np.ndarray, lloq_mg_l: float, offset_mg_l: float) -> float:
    """Root-mean-square error of ``log(C + offset)`` over true values > LLOQ.

    ``offset_mg_l`` (half the LLOQ, as in the PK-VAE's scale) keeps a prediction of 0 finite.
    """
    pred, true = _matched(pred_mg_l, true_mg_l)
    if not np.isfinite(offset_mg_l) or offset_mg_l < 0:
        raise ValueError(f"offset_mg_l must be a finite number >= 0, got {offset_mg_l!r}")
    keep = quantifiable(true, lloq_mg_l)
    if not keep.any():
        raise ValueError(f"no true concentration above the LLOQ ({lloq_mg_l:g} mg/L) to score")
    diff = np.log(np.maximum(pred[keep], 0.0) + offset_mg_l) - np.log(true[keep] + offset_mg_l)
    return float(np.sqrt(np.mean(diff ** 2)))


def fraction_within(pred: np.ndarray, true: np.ndarray, rel_tol: float = 0.2) -> float:
    """Fraction of predictions within ``+-rel_tol`` (relative) of the truth."""
    pred, true = _matched(pred, true)
    if pred.size == 0:
        raise ValueError("nothing to score: empty arrays")
    if not np.isfinite(rel_tol) or rel_tol < 0:
        raise ValueError(f"rel_tol must be a finite number >= 0, got {rel_tol!r}")
    return float(np.mean(np.abs(pred - true) <= rel_tol * np.abs(true)))


def prediction_interval(draws: np.ndarray, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Central ``level`` interval of predictive ``draws`` (draws on axis 0)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    draws = np.asarray(draws, dtype=float)
    if draws.ndim < 1 or draws.shape[0] < 2:
        raise ValueError(f"need at least 2 predictive draws on axis 0, got shape {draws.shape}")
    tail = 50.0 * (1.0 - level)
    lower, upper = np.percentile(draws, [tail, 100.0 - tail], axis=0)
    return lower, upper


def coverage(lower: np.ndarray, upper: np.ndarray, observed: np.ndarray) -> float:
    """Fraction of ``observed`` values inside ``[lower, upper]``."""
    lower, upper, observed = (np.asarray(a, dtype=float) for a in (lower, upper, observed))
    if not lower.shape == upper.shape == observed.shape or observed.size == 0:
        raise ValueError(f"bounds and observations must share one non-empty shape, got "
                         f"{lower.shape}, {upper.shape}, {observed.shape}")
    return float(np.mean((observed >= lower) & (observed <= upper)))


def fraction_in_window(exposure: np.ndarray, low: float, high: float) -> float:
    """Fraction of exposures in the therapeutic window ``[low, high]`` (inclusive)."""
    exposure = np.asarray(exposure, dtype=float)
    if exposure.size == 0:
        raise ValueError("nothing to score: empty exposure array")
    return float(np.mean((exposure >= low) & (exposure <= high)))


def population_percentiles(values: np.ndarray, percentiles=DISTRIBUTION_PERCENTILES) -> np.ndarray:
    """Percentiles over patients (axis 0): ``(len(percentiles), ...)``."""
    values = np.asarray(values, dtype=float)
    if values.ndim < 1 or values.shape[0] == 0:
        raise ValueError("need at least one patient")
    return np.percentile(values, percentiles, axis=0)

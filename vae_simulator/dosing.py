"""Model-informed precision dosing on the PK-VAE decoder.

The next dose is ``argmin over doses d in the allowed range of |target - exposure(Decoder(z, d))|``
where ``target`` is the middle of a therapeutic window on AUC, trough, peak, average
concentration or time above a threshold. ``z`` is either inferred from the patient's
monitoring samples by the encoder (MIPD, the clinical baseline of the agents) or the
patient's true latent (the oracle).

The search is exhaustive over a dose grid (``dose_step_mg``, e.g. the 250 mg vials of
vancomycin practice): robust for the non-monotone, saturable exposure curves the decoder can
produce, and cheap, since every candidate of every patient is decoded in one batched call.
Ties go to the smaller dose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vae_simulator.exposure import METRICS, interval_exposure
from vae_simulator.groundtruth.base import ExposureTarget


@dataclass(frozen=True)
class DoseTarget:
    """A therapeutic window on one exposure metric of the next interval (units as ExposureTarget)."""

    metric: str
    low: float
    high: float
    threshold_mg_l: float | None = None
    centre: str = "arithmetic"  # the point aimed at: "arithmetic" (low + high) / 2 or "geometric" sqrt(low * high)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown exposure metric {self.metric!r}; known: {', '.join(METRICS)}")
        if not (np.isfinite(self.low) and np.isfinite(self.high) and 0 <= self.low <= self.high):
            raise ValueError(f"target window must satisfy 0 <= low <= high, got [{self.low}, {self.high}]")
        if self.centre not in ("arithmetic", "geometric"):
            raise ValueError(f"centre must be 'arithmetic' or 'geometric', got {self.centre!r}")
        if self.centre == "geometric" and self.low <= 0:
            raise ValueError(f"a geometric centre needs low > 0, got low = {self.low}")
        if self.metric == "time_above" and (self.threshold_mg_l is None or self.threshold_mg_l <= 0):
            raise ValueError("a 'time_above' target needs threshold_mg_l > 0")

    @classmethod
    def from_exposure_target(cls, target: ExposureTarget, centre: str = "arithmetic") -> DoseTarget:
        return cls(target.metric, target.low, target.high, target.threshold_mg_l, centre)

    @property
    def value(self) -> float:
        """The point aimed at: the middle of the window (arithmetic, or geometric on a log scale)."""
        if self.centre == "geometric":
            return float(np.sqrt(self.low * self.high))
        return 0.5 * (self.low + self.high)

    def contains(self, exposure: np.ndarray) -> np.ndarray:
        return (exposure >= self.low) & (exposure <= self.high)


def dose_grid(dose_range_mg: tuple[float, float], dose_step_mg: float) -> np.ndarray:
    """Candidate doses ``lo, lo + step, ..., hi`` (mg), ``hi`` always included."""
    lo, hi = dose_range_mg
    if not np.isfinite(dose_step_mg) or dose_step_mg <= 0:
        raise ValueError(f"dose_step_mg must be a finite number > 0, got {dose_step_mg!r}")
    grid = np.arange(lo, hi + 1e-9, dose_step_mg)
    return grid if np.isclose(grid[-1], hi) else np.append(grid, hi)


def choose_doses(predict_exposure: Callable[[np.ndarray], np.ndarray], candidates_mg: np.ndarray,
                 target: DoseTarget) -> tuple[np.ndarray, np.ndarray]:
    """Best candidate per patient for ``predict_exposure``: candidate doses -> ``(n, D)`` exposure.

    ``candidates_mg`` is ``(D,)`` (the same for every patient) or ``(n, D)``; ascending in each
    row, so ties go to the smaller dose. Returns ``(doses (n,), predicted exposure at those doses (n,))``.
    """
    candidates_mg = np.asarray(candidates_mg, dtype=float)
    exposure = predict_exposure(candidates_mg)
    d = candidates_mg.shape[-1]
    if exposure.ndim != 2 or exposure.shape[1] != d or (candidates_mg.ndim == 2 and exposure.shape != candidates_mg.shape):
        raise ValueError(f"predict_exposure must return (n, {d}) for candidates {candidates_mg.shape}, got {exposure.shape}")
    if not np.all(np.isfinite(exposure)):
        raise FloatingPointError("predicted exposure is not finite")
    best = np.argmin(np.abs(exposure - target.value), axis=1)  # first minimum = smallest dose
    rows = np.arange(exposure.shape[0])
    chosen = candidates_mg[rows, best] if candidates_mg.ndim == 2 else candidates_mg[best]
    return chosen, exposure[rows, best]


def optimise_next_dose(sim, patients, state: np.ndarray, start_mg_l: np.ndarray, target: DoseTarget,
                       dose_step_mg: float | None = None,
                       candidates_mg: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The next interval's dose for each patient of a :class:`~vae_simulator.simulator.PKSimulator`.

    ``state`` is the patients' decoder state after the doses so far and ``start_mg_l`` their
    current concentration. Candidates are the grid ``dose_step_mg`` apart over the decoder's dose
    range (default: 200 steps), or ``candidates_mg``: ``(D,)`` doses for everyone or ``(n, D)``
    per patient (e.g. a fine grid around each patient's coarse optimum).
    Returns ``(doses mg (n,), predicted exposure (n,))``.
    """
    from vae_simulator.simulator import Patients

    n = len(patients)
    if candidates_mg is None:
        step = dose_step_mg if dose_step_mg is not None else (sim.dose_range_mg[1] - sim.dose_range_mg[0]) / 200
        candidates_mg = dose_grid(sim.dose_range_mg, step)
    candidates = np.broadcast_to(np.asarray(candidates_mg, dtype=float), (n, np.shape(candidates_mg)[-1]))
    d = candidates.shape[1]

    def predict(c: np.ndarray) -> np.ndarray:
        rep = Patients(covariates=np.repeat(patients.covariates, d, axis=0), z=np.repeat(patients.z, d, axis=0))
        conc, _, _ = sim.step(np.repeat(state, d, axis=0), rep, c.reshape(-1))
        exposure = interval_exposure(conc[:, None, :], sim.grid_h, target.metric, target.threshold_mg_l,
                                     first_start_mg_l=np.repeat(start_mg_l, d))
        return exposure.reshape(n, d)

    return choose_doses(predict, candidates, target)

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

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown exposure metric {self.metric!r}; known: {', '.join(METRICS)}")
        if not (np.isfinite(self.low) and np.isfinite(self.high) and 0 <= self.low <= self.high):
            raise ValueError(f"target window must satisfy 0 <= low <= high, got [{self.low}, {self.high}]")
        if self.metric == "time_above" and (self.threshold_mg_l is None or self.threshold_mg_l <= 0):
            raise ValueError("a 'time_above' target needs threshold_mg_l > 0")

    @classmethod
    def from_exposure_target(cls, target: ExposureTarget) -> DoseTarget:
        return cls(target.metric, target.low, target.high, target.threshold_mg_l)

    @property
    def value(self) -> float:
        """The point aimed at: the middle of the window."""
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
    """Best candidate per patient for ``predict_exposure``: ``(n, D) doses -> (n, D) exposure``.

    Returns ``(doses (n,), predicted exposure at those doses (n,))``.
    """
    candidates_mg = np.asarray(candidates_mg, dtype=float)
    exposure = predict_exposure(candidates_mg)
    if exposure.ndim != 2 or exposure.shape[1] != candidates_mg.size:
        raise ValueError(f"predict_exposure must return (n, {candidates_mg.size}), got {exposure.shape}")
    if not np.all(np.isfinite(exposure)):
        raise FloatingPointError("predicted exposure is not finite")
    best = np.argmin(np.abs(exposure - target.value), axis=1)  # first minimum = smallest dose
    rows = np.arange(exposure.shape[0])
    return candidates_mg[best], exposure[rows, best]


def optimise_next_dose(sim, patients, state: np.ndarray, start_mg_l: np.ndarray, target: DoseTarget,
                       dose_step_mg: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The next interval's dose for each patient of a :class:`~vae_simulator.simulator.PKSimulator`.

    ``state`` is the patients' decoder state after the doses so far and ``start_mg_l`` their
    current concentration. Returns ``(doses mg (n,), predicted exposure (n,))``.
    """
    from vae_simulator.simulator import Patients

    step = dose_step_mg if dose_step_mg is not None else (sim.dose_range_mg[1] - sim.dose_range_mg[0]) / 200
    candidates = dose_grid(sim.dose_range_mg, step)
    n, d = len(patients), candidates.size

    def predict(c: np.ndarray) -> np.ndarray:
        rep = Patients(covariates=np.repeat(patients.covariates, d, axis=0), z=np.repeat(patients.z, d, axis=0))
        conc, _, _ = sim.step(np.repeat(state, d, axis=0), rep, np.tile(c, n))
        exposure = interval_exposure(conc[:, None, :], sim.grid_h, target.metric, target.threshold_mg_l,
                                     first_start_mg_l=np.repeat(start_mg_l, d))
        return exposure.reshape(n, d)

    return choose_doses(predict, candidates, target)

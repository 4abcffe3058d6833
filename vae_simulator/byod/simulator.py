"""A PK-VAE learnt from a clinic's table as the virtual patient of an environment.

:class:`TableIntervalSimulator` is the :class:`~vae_simulator.interface.PatientSimulator` the
``PKDose/Custom-v0`` environment steps: the continuous-time decoder of a model trained by
:mod:`vae_simulator.byod.train`, one dose at the start of every ``interval_h`` (as
:class:`~vae_simulator.ct_interval.CTIntervalSimulator` steps a shipped drug's).

What a shipped drug takes from its published model, a table's model takes from the user and the
table, since no published model stands behind it:

* **target** (``"auc24:400-600"``, ``"trough:10-20"``, ``"time_above@4:8-12"``; units mg*h/L,
  mg/L, h) and **toxic_above** (default: the window's top) come from the user;
* **dosing interval**, **infusion length**, **dose range** default to the table's (the decoder's
  typical interval, the median infusion length, 0 to the largest dose given); a value outside
  what the table showed is refused, never extrapolated;
* **label dose** (the "standard" dose baselines start from): the table's median dose, or the user's;
* **monitoring times**: default 1 h after the end of the infusion and the trough (end of the interval);
* **new patients**: covariate vectors resampled, with replacement, from the training records
  (``covariate_rows`` of the manifest), latents ``z = typical_latent(x) + iiv_scale * L e`` from
  the fitted latent population. Pinned covariates must lie within the training records' range.

The assay error is the decoder's learnt proportional + additive error, results below the table's
LLOQ read LLOQ/2, as for the shipped drugs' ``-v1`` simulators.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vae_simulator.byod.train import load_table_model
from vae_simulator.ct_interval import CTIntervalSimulator
from vae_simulator.ct_simulator import CTPatientSimulator
from vae_simulator.groundtruth.base import ExposureTarget
from vae_simulator.interface import Patients, check_patients
from vae_simulator.mipd import parse_target

#: unit of each exposure metric (as ExposureTarget.unit)
METRIC_UNITS = {"auc_interval": "mg*h/L", "auc24": "mg*h/L", "trough": "mg/L", "peak": "mg/L", "cavg": "mg/L",
                "time_above": "h"}
#: the interval grid's spacing (h) at most, and its number of points at least / at most
GRID_STEP_H, GRID_POINTS = 0.25, (24, 96)
_USER_SOURCE = "given by the user (a model learnt from a table has no published target)"


@dataclass(frozen=True)
class TableClinic:
    """The clinic settings of a table's model: what :class:`~vae_simulator.groundtruth.base.DrugModel`
    gives a shipped drug (``drug_model`` of the simulator). Units h, mg, mg/L."""

    name: str
    target: ExposureTarget
    interval_h: float
    interval_grid_h: np.ndarray
    dose_range_mg: tuple[float, float]
    infusion_h: float
    monitoring_times_h: tuple[float, ...]
    lloq_mg_l: float
    label_dose_mg: float
    source: str = "learnt from a clinic's table (vae_simulator.byod)"

    def standard_dose_mg(self, covariates: np.ndarray) -> np.ndarray:
        """``(n,)`` the clinic's usual dose, the same for every patient (no published dosing rule)."""
        return np.full(np.atleast_2d(covariates).shape[0], self.label_dose_mg)


def exposure_target(target: str | ExposureTarget, toxic_above: float | None = None) -> ExposureTarget:
    """``"metric[@threshold]:low-high"`` (e.g. ``"auc24:400-600"``) or an ExposureTarget, with ``toxic_above``
    (default the window's top) in the metric's unit."""
    if isinstance(target, ExposureTarget):
        return target
    if not isinstance(target, str):
        raise TypeError(f"target must be a string 'metric:low-high' (e.g. 'auc24:400-600') or an ExposureTarget, "
                         f"got {target!r}")
    window = parse_target(target, "custom")
    toxic = window.high if toxic_above is None else float(toxic_above)
    if not np.isfinite(toxic) or toxic < window.high:
        raise ValueError(f"toxic_above must be a finite number >= the window's top {window.high:g}, got {toxic_above!r}")
    return ExposureTarget(window.metric, window.low, window.high, toxic, METRIC_UNITS[window.metric], _USER_SOURCE,
                          window.threshold_mg_l)


def interval_grid_h(interval_h: float) -> np.ndarray:
    """Recording times (h) in ``(0, interval_h]``: evenly spaced, about :data:`GRID_STEP_H` apart."""
    points = int(np.clip(np.ceil(interval_h / GRID_STEP_H - 1e-9), *GRID_POINTS))
    return interval_h * np.arange(1, points + 1) / points


def _within(name: str, value: float, low: float, high: float, what: str) -> float:
    value = float(value)
    if not (np.isfinite(value) and low - 1e-9 <= value <= high + 1e-9):
        raise ValueError(f"{name} = {value!r} is outside {what} [{low:g}, {high:g}]; the model does not extrapolate")
    return value


class TableIntervalSimulator(CTIntervalSimulator):
    """A table's PK-VAE stepped one fixed interval at a time (module docstring).

    Args:
        manifest: the ``.json`` manifest written by ``pkdose vae --data ...``.
        target: the exposure window (:func:`exposure_target`).
        toxic_above: exposure above which the reward counts toxicity (default the window's top).
        interval_h: the dosing interval, h (default the table's typical one; within the longest gap seen).
        dose_range_mg: ``(0, high)`` mg, ``high`` at most the largest dose in the table.
        infusion_h: infusion length, h (default the table's median; within the lengths seen).
        monitoring_times_h: assay times after each dose, h in ``(0, interval_h]``.
        standard_dose_mg: the label dose (default the table's median dose).
    """

    def __init__(self, manifest: str | Path, target: str | ExposureTarget, *, toxic_above: float | None = None,
                 interval_h: float | None = None, dose_range_mg: tuple[float, float] | None = None,
                 infusion_h: float | None = None, monitoring_times_h=None, standard_dose_mg: float | None = None):
        model, encoder, info = load_table_model(Path(manifest))
        data = info["data"]
        if "covariate_rows" not in data:
            raise ValueError(f"{manifest}: the manifest has no training covariate rows to draw patients from "
                             "(written by an earlier pkdose); retrain with `pkdose vae --data ...`")
        rows = np.asarray(data["covariate_rows"], dtype=float).reshape(-1, len(encoder.names))
        ct = CTPatientSimulator(model, reference_covariates=rows)
        limits = ct.limits
        tau = model.cfg.interval_h if interval_h is None else _within(
            "interval_h", interval_h, 1e-3, limits.max_gap_h, "the gaps between doses the table showed (h)")
        lo, hi = limits.infusion_range_h
        infusion = float(np.clip(data["infusion_median_h"], lo, hi)) if infusion_h is None else _within(
            "infusion_h", infusion_h, lo, hi, "the infusion lengths the table showed (h)")
        if dose_range_mg is None:
            dose_range_mg = (0.0, limits.dose_max_mg)
        doses = np.asarray(dose_range_mg, dtype=float)
        if doses.shape != (2,) or doses[0] != 0:
            raise ValueError(f"dose_range_mg must be (0, high) mg (0 is a held dose), got {dose_range_mg!r}")
        high = _within("dose_range_mg[1]", doses[1], 1e-9, limits.dose_max_mg, "the doses the table showed (mg)")
        if monitoring_times_h is None:
            monitoring_times_h = (infusion + 1.0, tau) if infusion + 1.0 < tau else (tau,)
        times = np.atleast_1d(np.asarray(monitoring_times_h, dtype=float))
        if times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)) or np.any(times <= 0) \
                or np.any(times > tau + 1e-9) or np.any(np.diff(times) <= 0):
            raise ValueError(f"monitoring_times_h must be increasing times in (0, {tau:g}] h (the interval), "
                             f"got {monitoring_times_h!r}")
        label = data["dose_median_mg"] if standard_dose_mg is None else standard_dose_mg
        label = _within("standard_dose_mg", label, 1e-9, high, "the dose range (mg)")
        clinic = TableClinic(model.cfg.drug, exposure_target(target, toxic_above), float(tau), interval_grid_h(tau),
                             (0.0, high), infusion, tuple(float(t) for t in times), ct.lloq_mg_l, label)
        super().__init__(ct, drug_model=clinic)
        self.dose_range_mg = (0.0, high)  # the user's ceiling, within the trained one
        self.covariate_names = tuple(encoder.names)
        self.covariate_ranges = {name: (float(lo), float(hi))
                                 for name, lo, hi in zip(encoder.names, rows.min(axis=0), rows.max(axis=0))}
        self.covariate_rows = rows
        self.manifest = {"decoder": "continuous-time PK-VAE learnt from a table", "drug": self.drug,
                         "manifest": str(manifest), "data_sha256": data["sha256"]}

    def draw_covariates(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, C)`` training records' covariates, drawn uniformly with replacement."""
        return self.covariate_rows[rng.integers(0, self.covariate_rows.shape[0], size=n)]

    def make_patients(self, covariates: np.ndarray, z: np.ndarray, *, check_range: bool = True) -> Patients:
        """Pinned patients; covariates checked against the training records' range (:attr:`covariate_ranges`)."""
        return check_patients(self.drug, covariates, z, self.latent_bounds(), check_range=check_range,
                              covariate_ranges=self.covariate_ranges)

    def standard_dose_mg(self, covariates: np.ndarray) -> np.ndarray:
        return self.drug_model.standard_dose_mg(covariates)

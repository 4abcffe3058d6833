"""The contract every ground-truth drug model fulfils.

A :class:`DrugModel` is a published population PK model: typical parameters with
covariate effects, log-normal inter-individual variability (IIV), a combined
proportional + additive residual error, and a solver for multi-dose regimens in
which each dosing interval has its own dose (the RL setting). Subclasses implement
:meth:`DrugModel.typical_parameters` and :meth:`DrugModel._simulate`; this class
validates inputs, samples variability and observations, and lays out time grids.

Time runs in hours from the first dose; dose ``k`` (mg) is given at ``k * interval_h``
(an infusion of ``infusion_h`` hours starts then). Concentrations are in mg/L.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from vae_simulator.covariates import Covariates

Parameters = dict[str, np.ndarray]


def omega_from_cv(cv: float) -> float:
    """Log-normal SD (omega) of a parameter with coefficient of variation ``cv``: sqrt(log(cv^2 + 1))."""
    if not np.isfinite(cv) or cv < 0:
        raise ValueError(f"coefficient of variation must be a finite number >= 0, got {cv!r}")
    return float(np.sqrt(np.log(cv * cv + 1.0)))


@dataclass(frozen=True)
class ResidualError:
    """Combined error: ``obs = C * (1 + prop_cv * e1) + add_sd_mg_l * e2``, e1, e2 ~ N(0, 1)."""

    prop_cv: float
    add_sd_mg_l: float


@dataclass(frozen=True)
class ExposureTarget:
    """A drug's therapeutic window on an exposure metric, with its source.

    ``metric`` is one of ``"auc24"`` (mg*h/L over 24 h), ``"auc_interval"`` (mg*h/L over one
    dosing interval), ``"trough"`` or ``"peak"`` (mg/L), ``"cavg"`` (mg/L, mean over the
    interval), ``"time_above"`` (h above ``threshold_mg_l`` within the interval).
    ``toxic_above`` is the exposure above which toxicity is expected.
    """

    metric: str
    low: float
    high: float
    toxic_above: float
    unit: str
    source: str
    threshold_mg_l: float | None = None


class DrugModel(ABC):
    """Base class of the mechanistic ground-truth PK models.

    Class attributes a subclass sets (all documented with units):

    ``name``, ``route`` (``"iv_infusion"`` or ``"oral"``), ``interval_h`` (dosing
    interval), ``infusion_h`` (0 for oral), ``dose_range_mg`` (allowed dose per interval,
    inclusive; 0 means a held dose), ``interval_grid_h`` (times within an interval at
    which the profile is recorded, ending at ``interval_h``), ``monitoring_times_h``
    (when a clinic samples within an interval, e.g. peak and trough), ``lloq_mg_l``
    (assay lower limit of quantification), ``residual``, ``iiv_omega`` (SD of log-normal
    eta per parameter), ``target`` and ``source``.
    """

    name: str
    route: str
    interval_h: float
    infusion_h: float
    dose_range_mg: tuple[float, float]
    interval_grid_h: np.ndarray
    monitoring_times_h: tuple[float, ...]
    lloq_mg_l: float
    residual: ResidualError
    iiv_omega: dict[str, float]
    target: ExposureTarget
    molar_mass_g_mol: float | None = None
    source: str = ""

    # ------------------------------------------------------------------ parameters
    @abstractmethod
    def typical_parameters(self, cov: Covariates) -> Parameters:
        """Population-typical individual parameters (eta = 0) given covariates."""

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(self.typical_parameters(Covariates.sample(1, np.random.default_rng(0))))

    def sample_parameters(self, cov: Covariates, rng: np.random.Generator,
                          iiv_scale: float = 1.0) -> Parameters:
        """Individual parameters: typical value times ``exp(iiv_scale * omega * eta)``.

        ``iiv_scale`` scales the published variability (1 = as published, 0 = typical
        patients); it is how environments make patients more or less alike.
        """
        if not np.isfinite(iiv_scale) or iiv_scale < 0:
            raise ValueError(f"iiv_scale must be a finite number >= 0, got {iiv_scale!r}")
        params = self.typical_parameters(cov)
        n = len(cov)
        for pname in params:  # fixed order -> same draws for the same seed
            omega = self.iiv_omega.get(pname, 0.0)
            if omega > 0:
                params[pname] = params[pname] * np.exp(iiv_scale * omega * rng.standard_normal(n))
        return params

    def standard_dose_mg(self, cov: Covariates) -> np.ndarray:
        """The label / guideline dose per interval (mg), clipped to the allowed range."""
        raise NotImplementedError(f"{self.name} has no standard dose rule")

    # ------------------------------------------------------------------ simulation
    def simulate(self, params: Parameters, doses_mg: np.ndarray, times_h: np.ndarray) -> np.ndarray:
        """True concentrations (mg/L) at ``times_h`` for per-interval doses.

        Parameters
        ----------
        params: individual parameters, each an array of ``n`` values.
        doses_mg: ``(n, K)`` dose of each of ``K`` intervals in mg, within ``dose_range_mg``.
        times_h: sorted 1-D times in h from the first dose, within ``[0, K * interval_h]``.

        Returns an ``(n, len(times_h))`` array, finite and >= 0.
        """
        doses_mg = self.check_doses(doses_mg)
        n, k = doses_mg.shape
        params = self._check_params(params, n)
        times_h = np.asarray(times_h, dtype=float)
        if times_h.ndim != 1 or times_h.size == 0:
            raise ValueError(f"times_h must be a non-empty 1-D array, got shape {times_h.shape}")
        if not np.all(np.isfinite(times_h)) or np.any(np.diff(times_h) < 0):
            raise ValueError("times_h must be finite and sorted ascending")
        horizon = k * self.interval_h
        if times_h[0] < 0 or times_h[-1] > horizon + 1e-9:
            raise ValueError(f"times_h must lie in [0, {horizon:g}] h for {k} intervals of "
                             f"{self.interval_h:g} h, got [{times_h[0]:g}, {times_h[-1]:g}]")
        conc = self._simulate(params, doses_mg, times_h)
        if not np.all(np.isfinite(conc)):
            raise FloatingPointError(f"{self.name}: solver produced non-finite concentrations")
        # Solvers' round-off can dip a hair below zero; anything more is a bug.
        if conc.min(initial=0.0) < -1e-6 * max(1.0, float(np.abs(conc).max(initial=0.0))):
            raise FloatingPointError(f"{self.name}: solver produced a negative concentration {conc.min():g}")
        return np.maximum(conc, 0.0)

    @abstractmethod
    def _simulate(self, params: Parameters, doses_mg: np.ndarray, times_h: np.ndarray) -> np.ndarray:
        """Solve the model; inputs are already validated."""

    def regimen_times_h(self, n_intervals: int) -> np.ndarray:
        """The recording grid of ``n_intervals`` intervals: ``interval_grid_h`` repeated."""
        if n_intervals < 1:
            raise ValueError(f"n_intervals must be >= 1, got {n_intervals}")
        offsets = self.interval_h * np.arange(n_intervals)[:, None]
        return (offsets + np.asarray(self.interval_grid_h)[None, :]).ravel()

    def simulate_intervals(self, params: Parameters, doses_mg: np.ndarray) -> np.ndarray:
        """Profiles on the recording grid, shaped ``(n, K, len(interval_grid_h))``."""
        doses_mg = self.check_doses(doses_mg)
        n, k = doses_mg.shape
        conc = self.simulate(params, doses_mg, self.regimen_times_h(k))
        return conc.reshape(n, k, len(self.interval_grid_h))

    # ------------------------------------------------------------------ observations
    def sample_observations(self, conc_mg_l: np.ndarray, rng: np.random.Generator,
                            error_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Noisy assay results for true concentrations, and a below-LLOQ mask.

        The published combined error is applied; results below the assay's LLOQ are
        reported as LLOQ/2 and flagged (Beal's M5/M6 convention, J Pharmacokinet
        Pharmacodyn 28:481, 2001), so observations are never negative.
        """
        if not np.isfinite(error_scale) or error_scale < 0:
            raise ValueError(f"error_scale must be a finite number >= 0, got {error_scale!r}")
        conc = np.asarray(conc_mg_l, dtype=float)
        if not np.all(np.isfinite(conc)) or np.any(conc < 0):
            raise ValueError("true concentrations must be finite and >= 0")
        e_prop = rng.standard_normal(conc.shape)
        e_add = rng.standard_normal(conc.shape)
        obs = conc * (1.0 + error_scale * self.residual.prop_cv * e_prop) + \
            error_scale * self.residual.add_sd_mg_l * e_add
        blq = obs < self.lloq_mg_l
        return np.where(blq, 0.5 * self.lloq_mg_l, obs), blq

    # ------------------------------------------------------------------ validation
    def check_doses(self, doses_mg) -> np.ndarray:
        """Validate an ``(n, K)`` dose array (mg); raise ValueError naming the bad value."""
        doses = np.asarray(doses_mg, dtype=float)
        if doses.ndim != 2 or doses.shape[0] < 1 or doses.shape[1] < 1:
            raise ValueError(f"{self.name}: doses_mg must have shape (n_patients, n_intervals), "
                             f"got {doses.shape}")
        bad = ~np.isfinite(doses)
        if bad.any():
            raise ValueError(f"{self.name}: dose {float(doses[bad][0])} mg is not finite "
                             f"(allowed range {self.dose_range_mg[0]:g}-{self.dose_range_mg[1]:g} mg)")
        lo, hi = self.dose_range_mg
        out = (doses < lo) | (doses > hi)
        if out.any():
            i, j = np.argwhere(out)[0]
            raise ValueError(f"{self.name}: dose {doses[i, j]:g} mg (patient {i}, interval {j}) is outside "
                             f"the allowed range [{lo:g}, {hi:g}] mg")
        return doses

    def _check_params(self, params: Parameters, n: int) -> Parameters:
        checked = {}
        expected = self.parameter_names
        missing = [p for p in expected if p not in params]
        if missing:
            raise ValueError(f"{self.name}: parameters {missing} missing; expected {list(expected)}")
        for pname in expected:
            value = np.broadcast_to(np.asarray(params[pname], dtype=float), (n,))
            if not np.all(np.isfinite(value)) or np.any(value < 0):
                raise ValueError(f"{self.name}: parameter {pname} must be finite and >= 0")
            checked[pname] = value
        return checked

"""The contract every ground-truth drug model fulfils.

A :class:`DrugModel` is a published population PK model: typical parameters with
covariate effects, log-normal inter-individual variability (IIV), a combined
proportional + additive residual error, and a solver for multi-dose regimens in
which each dosing interval has its own dose (the RL setting). Subclasses implement
:meth:`DrugModel.typical_parameters` and :meth:`DrugModel._simulate`; this class
validates inputs, samples variability and observations, and lays out time grids.

Time runs in hours from the first dose. :meth:`DrugModel.simulate` is the regular regimen:
dose ``k`` (mg) at ``k * interval_h``, each infused over ``infusion_h`` hours.
:meth:`DrugModel.simulate_regimen` is any regimen: doses at any sorted times, each with its
own infusion length within ``infusion_range_h`` (loading doses, held doses, q8h/q24h,
jittered times). Concentrations are in mg/L.
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
    interval), ``infusion_h`` (0 for oral), ``infusion_range_h`` (infusion lengths
    :meth:`simulate_regimen` accepts, h, inclusive; ``(0, 0)`` for oral), ``dose_range_mg`` (allowed dose per interval,
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
    infusion_range_h: tuple[float, float] = (0.0, 0.0)
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
        return self._solve(params, doses_mg, times_h, self.interval_h * np.arange(k, dtype=float),
                           np.full(k, float(self.infusion_h)))

    def simulate_regimen(self, params: Parameters, doses_mg: np.ndarray, dose_times_h: np.ndarray,
                         times_h: np.ndarray, infusion_h: np.ndarray | None = None) -> np.ndarray:
        """True concentrations (mg/L) at ``times_h`` after doses at any times.

        Parameters
        ----------
        params: individual parameters, each an array of ``n`` values.
        doses_mg: ``(n, K)`` dose amounts in mg, within ``dose_range_mg`` (0 = a held dose).
        dose_times_h: ``(K,)`` dose times in h, finite, >= 0 and sorted (shared by the ``n``
            patients; simulate groups of patients to give each group its own schedule).
        times_h: sorted 1-D sample times in h, >= 0; before the first dose the
            concentration is exactly 0, and a sample at a dose time is pre-dose.
        infusion_h: ``(K,)`` infusion length of each dose in h, within ``infusion_range_h``;
            ``None`` means the drug's usual ``infusion_h`` for every dose.

        Returns an ``(n, len(times_h))`` array, finite and >= 0.
        """
        doses_mg = self.check_doses(doses_mg)
        n, k = doses_mg.shape
        params = self._check_params(params, n)
        dose_times = np.asarray(dose_times_h, dtype=float)
        if dose_times.shape != (k,):
            raise ValueError(f"{self.name}: dose_times_h must hold one time per dose column, shape ({k},), "
                             f"got {dose_times.shape}")
        if not np.all(np.isfinite(dose_times)) or np.any(dose_times < 0) or np.any(np.diff(dose_times) < 0):
            raise ValueError(f"{self.name}: dose_times_h must be finite, >= 0 and sorted ascending, "
                             f"got {dose_times.tolist()}")
        infusion = np.full(k, float(self.infusion_h)) if infusion_h is None else np.asarray(infusion_h, dtype=float)
        if infusion.shape != (k,):
            raise ValueError(f"{self.name}: infusion_h must hold one length per dose, shape ({k},), "
                             f"got {infusion.shape}")
        lo, hi = self.infusion_range_h
        bad = ~np.isfinite(infusion) | (infusion < lo - 1e-12) | (infusion > hi + 1e-12)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{self.name}: infusion length {float(infusion[j])!r} h of dose {j} is outside the "
                             f"allowed range [{lo:g}, {hi:g}] h")
        times_h = np.asarray(times_h, dtype=float)
        if times_h.ndim != 1 or times_h.size == 0:
            raise ValueError(f"times_h must be a non-empty 1-D array, got shape {times_h.shape}")
        if not np.all(np.isfinite(times_h)) or np.any(np.diff(times_h) < 0) or times_h[0] < 0:
            raise ValueError("times_h must be finite, >= 0 and sorted ascending")
        return self._solve(params, doses_mg, times_h, dose_times, infusion)

    def _solve(self, params: Parameters, doses_mg: np.ndarray, times_h: np.ndarray, dose_times_h: np.ndarray,
               infusion_h: np.ndarray) -> np.ndarray:
        conc = self._simulate(params, doses_mg, times_h, dose_times_h, infusion_h)
        if not np.all(np.isfinite(conc)):
            raise FloatingPointError(f"{self.name}: solver produced non-finite concentrations")
        # Solvers' round-off can dip a hair below zero; anything more is a bug.
        if conc.min(initial=0.0) < -1e-6 * max(1.0, float(np.abs(conc).max(initial=0.0))):
            raise FloatingPointError(f"{self.name}: solver produced a negative concentration {conc.min():g}")
        return np.maximum(conc, 0.0)

    @abstractmethod
    def _simulate(self, params: Parameters, doses_mg: np.ndarray, times_h: np.ndarray, dose_times_h: np.ndarray,
                  infusion_h: np.ndarray) -> np.ndarray:
        """Solve the model for doses ``(n, K)`` at ``dose_times_h (K,)`` infused over ``infusion_h (K,)``
        (zeros for oral drugs); inputs are already validated."""

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

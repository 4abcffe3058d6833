"""The contract between ``vae_simulator`` (virtual patients) and ``pk_envs`` (environments).

An environment may call on a patient simulator exactly what :class:`PatientSimulator` lists, and
nothing else; anything that implements it (the PK-VAE :class:`~vae_simulator.simulator.PKSimulator`,
the mechanistic :class:`~vae_simulator.groundtruth_simulator.GroundTruthCycleSimulator`) can run
an environment. ``isinstance(sim, PatientSimulator)`` checks that the members exist (not their
signatures; the tests in ``tests/vae_simulator/test_interface.py`` check those and the shapes).

A simulator steps a batch of ``n`` patients one dosing interval at a time. Every patient carries
a state array; within an interval the simulator gives concentrations on a fixed grid::

    patients = sim.sample_patients(n, rng)                     # or sim.make_patients(covariates, z)
    state = sim.initial_state(patients)                        # (n, sim.state_size), before any dose
    conc, log_sigma, state = sim.step(state, patients, doses)  # doses (n,) mg -> (n, G) mg/L on sim.grid_h
    samples = sim.concentration_at(conc, start, times_h)       # (n, T) mg/L at times within the interval
    observed = sim.observe(samples, log_sigma_at_samples, rng) # noisy assay results, mg/L

For speed the environments step a :class:`PatientStepper` (``sim.stepper(...)``): the same
interval step with each patient's fixed inputs (``constants``) computed once per episode, and a
patient's numbers independent of the batch it is stepped in.

Units: doses mg, concentrations mg/L, times h (``grid_h`` and ``times_h`` from the start of the
interval, ``0 < grid_h[0] < ... < grid_h[-1] == interval_h``); covariates in
:data:`~vae_simulator.covariates.COVARIATE_NAMES` order with their units. The latent ``z`` of a
patient is dimensionless (``latent_dim`` numbers).

Bad input is refused with a ValueError naming the value and the allowed range, never
extrapolated: doses outside ``dose_range_mg``, times outside ``[0, interval_h]``, and pinned
latents (:meth:`PatientSimulator.make_patients`) of the wrong shape, not finite, or outside
:meth:`PatientSimulator.latent_bounds` (the fitted population's mean +- :data:`LATENT_RANGE_SD`
SDs in each dimension).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from vae_simulator.covariates import COVARIATE_NAMES, PHYSIOLOGICAL_RANGES, Covariates
from vae_simulator.groundtruth.base import DrugModel, ExposureTarget

#: Pinned latents farther than this many population SDs from the population mean (in any
#: dimension) are refused: the simulators were fitted on patients within about 4 SDs.
LATENT_RANGE_SD = 6.0


@dataclass(frozen=True)
class Patients:
    """A batch of virtual patients: covariates ``(n, C)`` in :data:`COVARIATE_NAMES` order, latent ``(n, d)``."""

    covariates: np.ndarray
    z: np.ndarray

    def __len__(self) -> int:
        return int(self.z.shape[0])


class NormalSource(Protocol):
    """Where ``observe`` takes its noise: a ``numpy.random.Generator`` or pre-drawn normals."""

    def standard_normal(self, size) -> np.ndarray:
        """Standard normals of shape ``size``."""
        ...


@runtime_checkable
class PatientStepper(Protocol):
    """A simulator's interval step as the environments run it (``PatientSimulator.stepper``)."""

    #: dtype of the ``constants`` array (the arithmetic precision of a network; float64 otherwise)
    dtype: np.dtype

    @property
    def constants_size(self) -> int:
        """Width ``K`` of a patient's ``constants`` row."""
        ...

    def start(self, covariates: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Covariates ``(n, C)`` and latents ``(n, d)`` (already validated by ``make_patients``) ->
        the state before the first dose ``(n, state_size)`` float64 and the constants ``(n, K)``."""
        ...

    def step(self, state: np.ndarray, constants: np.ndarray,
             doses_mg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One interval with doses ``(n,)`` mg: concentrations ``(n, G)`` mg/L on ``grid_h``, log-sigma
        ``(n, S)`` on the grid points ``sigma_index`` chose, the new state ``(n, state_size)``."""
        ...


@runtime_checkable
class PatientSimulator(Protocol):
    """What an environment may call on a patient simulator (module docstring: shapes and units)."""

    #: drug name, as registered in :mod:`vae_simulator.groundtruth`
    drug: str
    #: the drug's published model: monitoring times (h), label dose (mg), residual error
    drug_model: DrugModel
    #: the therapeutic window of the drug's exposure metric
    target: ExposureTarget
    #: covariate order of ``Patients.covariates``
    covariate_names: tuple[str, ...]
    #: name -> ``(low, high)`` values of each covariate ``make_patients`` accepts (its units)
    covariate_ranges: dict[str, tuple[float, float]]
    #: length of one dosing interval (h)
    interval_h: float
    #: ``(G,)`` times (h) after the interval's dose at which ``step`` gives concentrations
    grid_h: np.ndarray
    #: ``(low, high)`` doses (mg) a step accepts
    dose_range_mg: tuple[float, float]
    #: number ``d`` of latent dimensions of a patient
    latent_dim: int
    #: ``(d, d)`` lower Cholesky factor of the latent population's covariance given covariates
    latent_chol: np.ndarray
    #: consecutive held doses (0 mg) after a dose the simulator can step (``None``: any number);
    #: one more raises a ValueError in ``step``
    max_held_intervals: int | None

    @property
    def max_intervals(self) -> int:
        """Intervals a patient may be stepped (a decoder's training horizon)."""
        ...

    @property
    def state_size(self) -> int:
        """Width of a patient's state array."""
        ...

    def typical_latent(self, covariates: np.ndarray) -> np.ndarray:
        """``(n, d)`` population-typical latents of patients with covariates ``(n, C)``;
        a new patient is ``typical_latent(x) + iiv_scale * latent_chol @ e``, ``e ~ N(0, I)``."""
        ...

    def latent_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(d,)`` lowest and ``(d,)`` highest latent ``make_patients`` accepts (per dimension)."""
        ...

    def sample_patients(self, n: int, rng: np.random.Generator, iiv_scale: float = 1.0) -> Patients:
        """``n`` new patients: adult covariates and latents from the fitted population (spread x ``iiv_scale``)."""
        ...

    def make_patients(self, covariates: np.ndarray, z: np.ndarray, *, check_range: bool = True) -> Patients:
        """Pinned patients: covariates ``(C,)`` with z ``(d,)`` (one patient) or ``(n, C)`` with ``(n, d)``.

        ValueError for covariates outside their physiological ranges, a z of another shape or not
        finite, or (``check_range``) outside :meth:`latent_bounds`.
        """
        ...

    def initial_state(self, patients: Patients) -> np.ndarray:
        """``(n, state_size)`` states before the first dose (start of an episode)."""
        ...

    def standard_dose_mg(self, covariates: np.ndarray) -> np.ndarray:
        """``(n,)`` label dose (mg per interval) of patients with covariates ``(n, C)``."""
        ...

    def step(self, state: np.ndarray, patients: Patients,
             doses_mg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance one interval with doses ``(n,)`` mg (0 = held) given at its start: concentrations
        ``(n, G)`` mg/L on ``grid_h``, log of the residual SD ``(n, G)`` (log scale), new state."""
        ...

    def concentration_at(self, profile_mg_l: np.ndarray, start_mg_l: np.ndarray, times_h) -> np.ndarray:
        """``(n, T)`` mg/L at ``times_h`` (``(T,)`` h in ``[0, interval_h]``) from an interval's
        ``(n, G)`` profile and the ``(n,)`` concentrations at its start."""
        ...

    def observe(self, conc_mg_l: np.ndarray, log_sigma: np.ndarray, rng: NormalSource,
                noise_scale: float = 1.0) -> np.ndarray:
        """Noisy assay results (mg/L, >= 0, same shape) of true concentrations, log-sigma of the same
        shape; the noise is ``noise_scale`` x ``rng.standard_normal(shape)`` (0: no noise)."""
        ...

    def stepper(self, sigma_index=None, dtype=np.float64) -> PatientStepper:
        """The environments' fast, batch-invariant :class:`PatientStepper` of :meth:`step`;
        ``sigma_index`` the grid indices whose log-sigma it returns (all by default)."""
        ...


class AdultCovariates:
    """The covariate members of a :class:`PatientSimulator` of the shipped drugs: the adults of
    :mod:`vae_simulator.covariates` and the drug's published label dose (``self.drug_model``)."""

    covariate_names: tuple[str, ...] = COVARIATE_NAMES
    covariate_ranges: dict[str, tuple[float, float]] = PHYSIOLOGICAL_RANGES

    def standard_dose_mg(self, covariates: np.ndarray) -> np.ndarray:
        return self.drug_model.standard_dose_mg(Covariates.from_array(np.atleast_2d(covariates)))


def format_bounds(low: np.ndarray, high: np.ndarray) -> str:
    """``[l0, h0] x [l1, h1] x ...``: a per-dimension range as a message shows it."""
    return " x ".join(f"[{lo:.3g}, {hi:.3g}]" for lo, hi in zip(low, high))


def check_covariate_ranges(covariates: np.ndarray, ranges: dict[str, tuple[float, float]]) -> None:
    """ValueError for ``(n, C)`` covariates not in ``ranges`` (name -> (low, high), in column order)."""
    names = tuple(ranges)
    if covariates.shape[1] != len(names):
        raise ValueError(f"covariate array must have shape (n, {len(names)}) for {list(names)}, "
                         f"got {covariates.shape}")
    low = np.array([ranges[c][0] for c in names])
    high = np.array([ranges[c][1] for c in names])
    bad = ~np.isfinite(covariates) | (covariates < low) | (covariates > high)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        raise ValueError(f"covariate {names[j]} = {covariates[i, j]:g} (patient {i}) is outside its allowed "
                         f"range [{low[j]:g}, {high[j]:g}]")


def check_patients(drug: str, covariates, z, bounds: tuple[np.ndarray, np.ndarray], *,
                   check_range: bool = True, covariate_ranges: dict[str, tuple[float, float]] | None = None
                   ) -> Patients:
    """Validated :class:`Patients` (the checks of :meth:`PatientSimulator.make_patients`).

    ``covariates`` ``(C,)`` is one patient, whose z must then be exactly ``(d,)``; ``(n, C)`` is
    ``n`` patients with z ``(n, d)``. ``bounds``: ``(d,)`` lowest and highest allowed latent.
    ``covariate_ranges``: the simulator's (name -> range, column order); default the adults of
    :mod:`vae_simulator.covariates`.
    """
    covariates = np.asarray(covariates, dtype=float)
    z = np.asarray(z, dtype=float)
    low, high = (np.asarray(b, dtype=float) for b in bounds)
    d, allowed = low.size, format_bounds(low, high)
    if covariates.ndim not in (1, 2):
        raise ValueError(f"covariates must have shape (C,) or (n, C), got {covariates.shape}")
    one = covariates.ndim == 1
    covariates = np.atleast_2d(covariates)
    if covariate_ranges is None:
        Covariates.from_array(covariates)  # validates ranges, names the bad value
    else:
        check_covariate_ranges(covariates, covariate_ranges)
    expected = (d,) if one else (covariates.shape[0], d)
    if z.shape != expected:
        layout = "one patient" if one else f"{covariates.shape[0]} patients"
        raise ValueError(f"{drug}: latent z must have shape {expected} ({layout}), got {z.shape}; "
                         f"allowed values {allowed}")
    z = np.atleast_2d(z)
    bad = ~np.isfinite(z)
    if check_range:
        bad |= (z < low) | (z > high)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        where = f"z[{j}]" if one else f"z[{i}, {j}]"
        what = "is not finite" if not np.isfinite(z[i, j]) else "is outside the fitted latent population"
        raise ValueError(f"{drug}: latent {where} = {z[i, j]:g} {what}; allowed {where} in "
                         f"[{low[j]:.3g}, {high[j]:.3g}] (all: {allowed}, the population mean +- "
                         f"{LATENT_RANGE_SD:g} SD); the simulator does not extrapolate")
    return Patients(covariates=covariates, z=z)

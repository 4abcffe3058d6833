"""Pieces every pkdose environment shares (rewards live in :mod:`pk_envs.rewards`): dose actions,
observation scaling, argument checks and an exactly batch-invariant view of a simulator.

Units: concentrations mg/L, doses mg, exposures in the unit of the drug's
:class:`~vae_simulator.groundtruth.base.ExposureTarget` (mg*h/L for AUCs, mg/L otherwise).
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from gymnasium import logger, spaces

from vae_simulator.covariates import COVARIATE_NAMES, PHYSIOLOGICAL_RANGES
from vae_simulator.interface import PatientSimulator, PatientStepper

# ---------------------------------------------------------------------------- argument checks


def check_finite_at_least(name: str, value, low: float = 0.0) -> float:
    """``value`` as a float, or a ValueError naming it and the allowed range ``[low, inf)``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number >= {low:g}, got {value!r}") from None
    if not np.isfinite(number) or number < low:
        raise ValueError(f"{name} must be a finite number >= {low:g}, got {value!r}")
    return number


def check_reward_weights(reward_weights, objectives: tuple[str, str]) -> np.ndarray:
    """``(2,)`` float weights of the scalar reward ``w . objectives``: finite, >= 0, not both 0."""
    try:
        weights = np.asarray(reward_weights, dtype=float)
    except (TypeError, ValueError):
        weights = np.full(1, np.nan)
    if weights.shape != (2,) or not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() == 0:
        raise ValueError(f"reward_weights must be 2 finite numbers >= 0, not both 0 ({objectives[0]}, "
                         f"{objectives[1]}), got {reward_weights!r}")
    return weights


def check_render_mode(render_mode: str | None, modes: list[str]) -> str | None:
    """``render_mode`` if it is None or one of ``modes``; else a ValueError listing them."""
    if render_mode is not None and render_mode not in modes:
        raise ValueError(f"render_mode must be None or one of {modes}, got {render_mode!r}")
    return render_mode


def check_probability(name: str, value) -> float:
    """A probability in ``[0, 1)`` (1 would remove every sample, which is no task)."""
    number = check_finite_at_least(name, value)
    if number >= 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
    return number


def check_int_in(name: str, value, low: int, high: int | None = None) -> int:
    """An integer in ``[low, high]`` (booleans refused), or a ValueError naming the range."""
    allowed = f"[{low}, {high}]" if high is not None else f">= {low}"
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low or \
            (high is not None and value > high):
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------- actions


class DoseActions:
    """The action space of one drug and its mapping to a dose in mg.

    Continuous: ``Box(-1, 1, (1,), float32)``, dose = ``(a + 1) / 2 * dose_max_mg`` (linear;
    -1 = hold the dose, 1 = the maximum). Actions outside [-1, 1] are clipped (counted, one
    warning per instance); NaN/inf and wrong shapes raise ValueError.
    Discrete: ``Discrete(len(levels_mg))``, dose = ``levels_mg[a]``; anything but an integer
    index in range raises ValueError.
    """

    def __init__(self, dose_max_mg: float, levels_mg: np.ndarray | None = None):
        self.dose_max_mg = check_finite_at_least("dose_max_mg", dose_max_mg, 1e-9)
        self.levels_mg = None if levels_mg is None else np.asarray(levels_mg, dtype=float)
        if self.levels_mg is None:
            self.space: spaces.Space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        else:
            self.space = spaces.Discrete(self.levels_mg.size)
        self._warned = False

    @property
    def discrete(self) -> bool:
        return self.levels_mg is not None

    def to_doses(self, actions, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` actions (any shape holding exactly ``n`` values) -> ``(doses mg (n,), clipped (n,))``."""
        if self.discrete:
            return self._discrete_to_doses(actions, n)
        try:
            values = np.asarray(actions, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"action must be numeric, in the space {self.space}, got {actions!r}") from None
        expected = "a (1,) array" if n == 1 else f"an ({n}, 1) or ({n},) array"
        if values.size != n or (values.ndim > 0 and values.shape[0] != n and n > 1):
            raise ValueError(f"action must be {expected} (space {self.space}), got shape {values.shape}")
        values = values.reshape(n)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"action {float(values[~np.isfinite(values)][0])} is not finite; "
                             f"actions must lie in [-1, 1]")
        clipped = (values < -1.0) | (values > 1.0)
        if clipped.any() and not self._warned:
            self._warned = True
            logger.warn(f"action {float(values[clipped][0]):g} outside [-1, 1] was clipped (counted in "
                        f"info['clip_count']; warned once)")
        return (np.clip(values, -1.0, 1.0) + 1.0) * 0.5 * self.dose_max_mg, clipped

    def _discrete_to_doses(self, actions, n: int) -> tuple[np.ndarray, np.ndarray]:
        values = check_discrete_actions(actions, n, self.levels_mg.size, self.space, "dose level")
        return self.levels_mg[values], np.zeros(n, dtype=bool)

    def from_doses(self, dose_mg: float) -> np.ndarray | int:
        """The action closest to ``dose_mg`` (for baselines such as the label dose)."""
        dose = float(np.clip(check_finite_at_least("dose_mg", dose_mg), 0.0, self.dose_max_mg))
        if self.discrete:
            return int(np.argmin(np.abs(self.levels_mg - dose)))
        return np.array([2.0 * dose / self.dose_max_mg - 1.0], dtype=np.float32)


# ---------------------------------------------------------------------------- observations

#: Divisors that bring each covariate to order 1 in observations (units of COVARIATE_UNITS).
COVARIATE_SCALES: dict[str, float] = {"AGE": 100.0, "SEX": 1.0, "WT": 100.0, "HT": 200.0, "BSA": 2.0,
                                      "SCR": 1.0, "CRCL": 100.0}


def covariate_divisors(names: tuple[str, ...] = COVARIATE_NAMES,
                       ranges: dict[str, tuple[float, float]] = PHYSIOLOGICAL_RANGES) -> np.ndarray:
    """``(C,)`` divisors that bring each covariate to order 1 in an observation:
    :data:`COVARIATE_SCALES` for the adults' covariates, else the largest magnitude of its range
    (a user's covariate, e.g. APGAR 1-10 -> /10; a one-hot column -> /1)."""
    return np.array([COVARIATE_SCALES.get(c, max(abs(ranges[c][0]), abs(ranges[c][1])) or 1.0) for c in names])


def covariate_bounds(names: tuple[str, ...] = COVARIATE_NAMES,
                     ranges: dict[str, tuple[float, float]] = PHYSIOLOGICAL_RANGES) -> tuple[np.ndarray, np.ndarray]:
    """Observation bounds of the scaled covariates: the allowed ranges over :func:`covariate_divisors`."""
    divisors = covariate_divisors(names, ranges)
    return (np.array([ranges[c][0] for c in names]) / divisors, np.array([ranges[c][1] for c in names]) / divisors)


_COVARIATE_DIVISORS = covariate_divisors()


def scaled_covariates(covariates: np.ndarray, divisors: np.ndarray = _COVARIATE_DIVISORS) -> np.ndarray:
    """``(n, C)`` covariates (COVARIATE_NAMES order by default) divided by their ``divisors``."""
    return covariates / divisors


def concentration_scale_mg_l(target, interval_h: float) -> float:
    """A concentration of order of the target (mg/L) used to scale observed concentrations.

    The window's upper end for concentration metrics; the average concentration it implies for AUC
    metrics (``high / 24`` for AUC24, ``high / interval`` for AUC over the interval); the threshold
    for time above a threshold.
    """
    if target.metric == "auc24":
        return target.high / 24.0
    if target.metric == "auc_interval":
        return target.high / interval_h
    if target.metric == "time_above":
        return float(target.threshold_mg_l)
    return float(target.high)


# ---------------------------------------------------------------------------- info dicts


def first_row(info: dict[str, np.ndarray]) -> dict:
    """Row 0 of batched info arrays (a single environment's info): scalars as Python numbers."""
    return {key: value[0].copy() if value.ndim > 1 else value.item() for key, value in info.items()}


def scatter_rows(info: dict[str, np.ndarray], rows: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Arrays over ``rows`` placed into arrays over all ``n`` sub-environments (zeros elsewhere)."""
    out = {}
    for key, value in info.items():
        full = np.zeros((n,) + value.shape[1:], dtype=value.dtype)
        full[rows] = value
        out[key] = full
    return out


def with_masks(info: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    """Vector-env info: each key with its ``_key`` mask of the sub-environments that report it."""
    out = {}
    for key, value in info.items():
        out[key], out[f"_{key}"] = value, mask.copy()
    return out


def batched_options(options: dict, n: int) -> bool:
    """Whether pinned reset values are given per sub-environment (2-D, leading axis ``n``) or once for all."""
    values = [np.asarray(v, dtype=float) for v in options.values() if v is not None]
    return bool(values) and all(v.ndim == 2 and v.shape[0] == n for v in values)


# ---------------------------------------------------------------------------- exact batching


#: Precision of the decoders' network arithmetic in the environments: float32, the precision the
#: PK-VAEs were trained in, is 3x faster than float64 in large batches (tanh/exp and matrix
#: products); concentrations stay float64 (see :class:`vae_simulator.simulator.DecoderStepper`).
DECODER_DTYPE = np.float32


def batch_invariant(sim: PatientSimulator, sigma_index=None) -> PatientStepper:
    """``sim`` as the environments step it (its ``stepper``): per-patient results bit-identical in any batch.

    The vector environments step N patients in one call and promise exactly the trajectories of N
    single environments; that needs this (decoders; the ground-truth ODE solver batches patients,
    see :mod:`vae_simulator.groundtruth_simulator`). ``sigma_index``: the grid points whose
    log-sigma a step returns (all by default). ``sim`` is left untouched.
    """
    return sim.stepper(sigma_index=sigma_index, dtype=DECODER_DTYPE)


class ReplayNormals:
    """Stands in for a Generator in a simulator's ``observe``: hands out normals drawn at reset.

    ``ReplayNormals(a)`` answers every ``standard_normal(size)`` with ``a``; ``ReplayNormals(a, b)``
    answers the first call with ``a``, the second with ``b`` (an observation model drawing a
    proportional and an additive error), and refuses a third.
    """

    def __init__(self, *normals: np.ndarray):
        if not normals:
            raise ValueError("ReplayNormals needs at least one array of normals")
        self.normals, self._calls = normals, 0

    def standard_normal(self, size) -> np.ndarray:
        if len(self.normals) == 1:
            out = self.normals[0]
        elif self._calls < len(self.normals):
            out = self.normals[self._calls]
        else:
            raise ValueError(f"only {len(self.normals)} arrays of normals were drawn at reset")
        self._calls += 1
        if tuple(np.atleast_1d(size)) != out.shape:
            raise ValueError(f"pre-drawn normals have shape {out.shape}, asked for {size}")
        return out


def check_discrete_actions(actions, n: int, n_choices: int, space, what: str) -> np.ndarray:
    """``n`` discrete actions as an ``(n,)`` int array; ValueError naming the bad value otherwise."""
    values = np.asarray(actions)
    if values.size != n or values.dtype == np.bool_ or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"action must be {n} integer index(es) in [0, {n_choices - 1}] "
                         f"(space {space}), got {actions!r}")
    values = values.reshape(n)
    bad = (values < 0) | (values >= n_choices)
    if bad.any():
        raise ValueError(f"action {int(values[bad][0])} is not a {what} index in [0, {n_choices - 1}]")
    return values

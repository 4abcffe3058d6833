"""Event-driven virtual patients: the continuous-time PK-VAE and the ground truth behind one Protocol.

An environment in which the agent chooses *when* to dose (and whether to draw a level) needs a
simulator that advances to any time with doses at any times. :class:`EventSimulator` is that
contract; :class:`CTPatientSimulator` (the continuous-time PK-VAE) and
:class:`GroundTruthEventSimulator` (the published model, exact) implement it::

    patients = sim.sample_patients(n, rng)             # or sim.make_patients(covariates, z)
    state = sim.start(patients)                         # nobody dosed yet
    state = sim.give_doses(state, time_h, amount_mg, infusion_h)   # (n,) each; 0 mg = no dose
    conc = sim.concentrations(state, times_h)           # (n, T) mg/L, after the last dose
    obs, blq = sim.observe(conc, rng)                   # assay results mg/L (LLOQ/2 where blq)

Times are h from the start of the episode; a patient's doses must come in time order, within the
trained horizon and gap (:class:`~vae_simulator.events.EventLimits`), amounts within
``[0, dose_max_mg]``, infusion lengths within ``infusion_range_h``; concentrations are asked for
strictly after the patient's last dose (the decoder's state is that after it). Anything else is a
ValueError naming the value and the allowed range.

The PK-VAE state is the decoder's GRU state after the last dose, advanced one event at a time
(the same arithmetic as the decoder over the whole history, :class:`~vae_simulator.vae.ct_model.CTDecoder`),
so a step costs one GRU step and one head evaluation whatever the history's length.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from vae_simulator.covariates import COVARIATE_NAMES, Covariates
from vae_simulator.ct_stepper import CTStepper
from vae_simulator.events import DosingEvents, EventLimits
from vae_simulator.groundtruth import get_model
from vae_simulator.interface import LATENT_RANGE_SD
from vae_simulator.irregular import regimen_limits
from vae_simulator.simulator import REFERENCE_PATIENTS, REFERENCE_SEED
from vae_simulator.vae.ct_model import CTPKVAE


@dataclass(frozen=True)
class EventPatients:
    """Covariates ``(n, C)`` (:data:`COVARIATE_NAMES` order) and the hidden individuality: a latent
    ``z (n, d)`` (PK-VAE) or the individual parameters ``params (n, P)`` (ground truth)."""

    covariates: np.ndarray
    hidden: np.ndarray

    def __len__(self) -> int:
        return int(self.covariates.shape[0])


@runtime_checkable
class EventSimulator(Protocol):
    """What an event-driven environment may call (module docstring: shapes and units)."""

    drug: str
    limits: EventLimits
    lloq_mg_l: float

    def sample_patients(self, n: int, rng: np.random.Generator) -> EventPatients:
        """``n`` new adult patients of the population."""
        ...

    def make_patients(self, covariates: np.ndarray, hidden: np.ndarray) -> EventPatients:
        """Pinned patients: covariates ``(n, C)`` and their hidden individuality (validated)."""
        ...

    def start(self, patients: EventPatients):
        """The state of ``patients`` before any dose."""
        ...

    def give_doses(self, state, time_h: np.ndarray, amount_mg: np.ndarray, infusion_h: np.ndarray):
        """The state after each patient's dose ``amount_mg (n,)`` at ``time_h (n,)`` (0 mg: none given)."""
        ...

    def concentrations(self, state, times_h: np.ndarray) -> np.ndarray:
        """True concentrations (mg/L, ``(n, T)``, finite, >= 0) at ``times_h (n, T)``."""
        ...

    def observe(self, conc_mg_l: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Assay results (mg/L; LLOQ/2 where below the LLOQ) and the below-LLOQ mask."""
        ...


@dataclass(frozen=True)
class EventState:
    """Per-patient history: last dose time / amount / length (h, mg, h; ``nan`` time: none yet),
    first dose time, and the simulator's own carry (an array with one row per patient: the decoder's
    GRU state and constants, or each patient's dose list).

    Rows can be taken out (:meth:`take`) and written back (:meth:`put`), so a vector environment
    keeps one state for all its patients and advances any subset of them.
    """

    patients: EventPatients
    first_h: np.ndarray
    last_h: np.ndarray
    last_mg: np.ndarray
    last_infusion_h: np.ndarray
    carry: np.ndarray

    def __len__(self) -> int:
        return len(self.patients)

    def take(self, rows) -> EventState:
        """The state of ``rows`` only (copies)."""
        rows = np.asarray(rows)
        return EventState(EventPatients(self.patients.covariates[rows], self.patients.hidden[rows]),
                          self.first_h[rows], self.last_h[rows], self.last_mg[rows], self.last_infusion_h[rows],
                          self.carry[rows])

    def put(self, rows, part: EventState) -> None:
        """Write ``part`` (a state of ``len(rows)`` patients) into ``rows``, in place."""
        rows = np.asarray(rows)
        self.patients.covariates[rows], self.patients.hidden[rows] = part.patients.covariates, part.patients.hidden
        for name in ("first_h", "last_h", "last_mg", "last_infusion_h", "carry"):
            getattr(self, name)[rows] = getattr(part, name)


def _check_doses(state: EventState, limits: EventLimits, time_h, amount_mg, infusion_h):
    n = len(state.patients)
    arrays = [np.asarray(a, dtype=float) for a in (time_h, amount_mg, infusion_h)]
    for name, a in zip(("time_h", "amount_mg", "infusion_h"), arrays):
        if a.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            raise ValueError(f"{name} must be finite and >= 0, got {a[~(np.isfinite(a) & (a >= 0))][0]!r}")
    t, amount, infusion = arrays
    given = amount > 0
    lo, hi = limits.infusion_range_h
    checks = [(amount > limits.dose_max_mg, lambda i: f"dose {amount[i]:g} mg is outside [0, {limits.dose_max_mg:g}] mg"),
              (given & ((infusion < lo) | (infusion > hi)),
               lambda i: f"infusion length {infusion[i]:g} h is outside [{lo:g}, {hi:g}] h"),
              (given & (t < state.last_h), lambda i: f"dose at {t[i]:g} h is before the last dose at {state.last_h[i]:g} h"),
              (given & (t - state.first_h > limits.horizon_h),
               lambda i: f"dose at {t[i]:g} h is beyond the trained horizon of {limits.horizon_h:g} h after the first"),
              (given & (t - state.last_h > limits.max_gap_h),
               lambda i: f"dose at {t[i]:g} h comes {t[i] - state.last_h[i]:g} h after the last one, more than the "
                         f"longest gap trained on ({limits.max_gap_h:g} h)")]
    for bad, message in checks:
        bad = np.asarray(bad)  # comparisons with a NaN (no dose yet) are False: nothing to check
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"patient {i}: {message(i)}")
    return t, amount, infusion, given


def _check_times(state: EventState, limits: EventLimits, times_h) -> np.ndarray:
    q = np.asarray(times_h, dtype=float)
    n = len(state.patients)
    if q.ndim != 2 or q.shape[0] != n:
        raise ValueError(f"times_h must have shape ({n}, T), got {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError("times_h must be finite")
    dosed = ~np.isnan(state.last_h)[:, None]
    # at the dose time itself the state already holds the dose: a pre-dose level is asked before giving it
    checks = [(dosed & (q <= state.last_h[:, None]),
               "is at or before the patient's last dose (ask for a pre-dose level before giving the dose)"),
              (dosed & (q - state.first_h[:, None] > limits.horizon_h + 1e-9),
               f"is beyond the trained horizon of {limits.horizon_h:g} h after the first dose"),
              (dosed & (q - state.last_h[:, None] > limits.max_gap_h + 1e-9),
               f"is more than the longest trained gap ({limits.max_gap_h:g} h) after the last dose")]
    for bad, why in checks:
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(f"patient {i}: time {q[i, j]:g} h {why}")
    return q


def _after_doses(state: EventState, t, amount, infusion, given, carry) -> EventState:
    return replace(state, first_h=np.where(given & np.isnan(state.first_h), t, state.first_h),
                   last_h=np.where(given, t, state.last_h), last_mg=np.where(given, amount, state.last_mg),
                   last_infusion_h=np.where(given, infusion, state.last_infusion_h), carry=carry)


def _fresh(patients: EventPatients, carry: np.ndarray) -> EventState:
    n = len(patients)
    patients = EventPatients(np.array(patients.covariates, dtype=float), np.array(patients.hidden, dtype=float))
    return EventState(patients, np.full(n, np.nan), np.full(n, np.nan), np.zeros(n), np.zeros(n), carry)


def _observe(conc, rng, prop_cv, add_sd, lloq):
    conc = np.asarray(conc, dtype=float)
    obs = conc * (1.0 + prop_cv * rng.standard_normal(conc.shape)) + add_sd * rng.standard_normal(conc.shape)
    blq = obs < lloq
    return np.where(blq, 0.5 * lloq, obs), blq


class CTPatientSimulator:
    """The continuous-time PK-VAE as an :class:`EventSimulator` (latent z hidden)."""

    def __init__(self, model: CTPKVAE, reference_covariates: np.ndarray | None = None):
        """``reference_covariates``: ``(n, C)`` patients the latent range is measured over (default
        a fixed adult cohort; a model learnt from a table passes its training records')."""
        self.model = model.eval()
        cfg = model.cfg
        self.drug, self.lloq_mg_l = cfg.drug, float(cfg.lloq_mg_l)
        self.limits = EventLimits(cfg.dose_max_mg, tuple(cfg.infusion_range_h), cfg.horizon_h, cfg.max_gap_h)
        pop = model.population
        self._pop_weight, self._pop_bias = pop.weight.numpy().astype(float), pop.bias.numpy().astype(float)
        self.latent_chol = pop.chol.numpy().astype(float)  # (d, d) lower Cholesky factor of the residual
        self.stepper = CTStepper(model)
        #: the shipped release (:meth:`pretrained`); None for a model given by the caller
        self.release: int | None = None
        # marginal SD of z over a fixed adult cohort, as PKSimulator.latent_bounds: the covariate
        # regression is ill-conditioned (BSA is a function of WT and HT), so its coefficients
        # alone would give bounds orders of magnitude wider than any patient
        if reference_covariates is None:
            reference_covariates = Covariates.sample(REFERENCE_PATIENTS, np.random.default_rng(REFERENCE_SEED)).as_array()
        typical = self.typical_latent(np.asarray(reference_covariates, dtype=float))
        sd = np.sqrt(typical.var(axis=0) + np.sum(self.latent_chol ** 2, axis=1))
        self.latent_low = typical.mean(axis=0) - LATENT_RANGE_SD * sd
        self.latent_high = typical.mean(axis=0) + LATENT_RANGE_SD * sd

    @classmethod
    def pretrained(cls, drug: str, release: int | None = None) -> CTPatientSimulator:
        """The shipped continuous-time PK-VAE of ``drug``, release ``release`` (None: the latest;
        :func:`~vae_simulator.vae.io.ct_weights_path`)."""
        from vae_simulator.vae.io import CT_MANIFEST_FORMAT, ct_release, ct_weights_path, load_model

        path = ct_weights_path(drug, release)
        if not path.is_file():
            raise FileNotFoundError(f"no shipped continuous-time PK-VAE for {drug!r} ({path} missing); train one "
                                    f"with `python -m vae_simulator.vae.ct_train --drug {drug} --export`")
        sim = cls(load_model(path, drug, CT_MANIFEST_FORMAT)[0])
        sim.release = ct_release(drug, release)
        return sim

    def sample_patients(self, n: int, rng: np.random.Generator) -> EventPatients:
        cov = Covariates.sample(n, rng).as_array()
        mean = self.typical_latent(cov)
        z = mean + rng.standard_normal(mean.shape) @ self.latent_chol.T
        return EventPatients(cov, np.clip(z, self.latent_low, self.latent_high))

    def typical_latent(self, covariates: np.ndarray) -> np.ndarray:
        """The fitted latent population's mean ``z (n, d)`` given covariates ``(n, C)`` (a-priori patients)."""
        return self.stepper.scale_covariates(covariates) @ self._pop_weight.T + self._pop_bias

    def make_patients(self, covariates: np.ndarray, z: np.ndarray) -> EventPatients:
        """Pinned patients ``(n, C)`` / ``(n, d)``; z of another shape, not finite or outside the range refused."""
        cov = np.asarray(covariates, dtype=float)
        z = np.asarray(z, dtype=float)
        d = self.model.cfg.latent_dim
        if cov.ndim != 2 or z.shape != (cov.shape[0], d):
            raise ValueError(f"covariates must be (n, {len(COVARIATE_NAMES)}) and z (n, {d}); got {cov.shape} and "
                             f"{z.shape}")
        Covariates.from_array(cov)
        bad = ~np.isfinite(z) | (z < self.latent_low) | (z > self.latent_high)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(f"{self.drug}: latent z[{i}, {j}] = {z[i, j]!r} is outside the fitted population's "
                             f"range [{self.latent_low[j]:.3g}, {self.latent_high[j]:.3g}] "
                             f"(mean +- {LATENT_RANGE_SD:g} SDs)")
        return EventPatients(cov, z)

    def start(self, patients: EventPatients) -> EventState:
        return _fresh(patients, self.stepper.start(patients.covariates, patients.hidden))

    def give_doses(self, state: EventState, time_h, amount_mg, infusion_h) -> EventState:
        t, amount, infusion, given = _check_doses(state, self.limits, time_h, amount_mg, infusion_h)
        gap = np.where(np.isnan(state.last_h), 0.0, t - np.nan_to_num(state.last_h))
        carry = self.stepper.give(state.carry, gap, amount, infusion, given)
        return _after_doses(state, t, amount, infusion, given, carry)

    def concentrations(self, state: EventState, times_h) -> np.ndarray:
        q = _check_times(state, self.limits, times_h)
        last = np.nan_to_num(state.last_h)
        conc = self.stepper.concentrations(state.carry, q - last[:, None], state.last_mg, state.last_infusion_h,
                                           clock_h=q)
        dosed = ~np.isnan(state.last_h)[:, None] & (q > last[:, None])
        return np.where(dosed, conc, 0.0)

    @property
    def residual_error(self) -> tuple[float, float]:
        """The learned residual error: proportional CV and additive SD (mg/L), linear scale."""
        return (float(torch.exp(self.model.log_sigma_prop.detach())),
                float(torch.exp(self.model.log_sigma_add.detach())))

    def observe(self, conc_mg_l, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Learned residual error (proportional + additive, linear scale) and the assay's LLOQ."""
        return _observe(conc_mg_l, rng, *self.residual_error, self.lloq_mg_l)


class GroundTruthEventSimulator:
    """The published model of ``drug`` as an :class:`EventSimulator` (individual parameters hidden).

    Exact: every call re-solves each patient's whole history with
    :meth:`~vae_simulator.groundtruth.base.DrugModel.simulate_regimen`, patients with identical
    schedules together; the limits are those of the continuous-time PK-VAE's training data, so the
    two simulators accept the same histories.
    """

    def __init__(self, drug: str):
        self.truth = get_model(drug)
        self.drug, self.lloq_mg_l = drug, float(self.truth.lloq_mg_l)
        self.limits = regimen_limits(drug)

    def sample_patients(self, n: int, rng: np.random.Generator) -> EventPatients:
        cov = Covariates.sample(n, rng)
        params = self.truth.sample_parameters(cov, rng)
        return EventPatients(cov.as_array(), np.stack([params[p] for p in self.truth.parameter_names], axis=1))

    def make_patients(self, covariates: np.ndarray, params: np.ndarray) -> EventPatients:
        """Pinned patients ``(n, C)`` with individual parameters ``(n, P)`` (``truth.parameter_names`` order)."""
        cov, params = np.asarray(covariates, dtype=float), np.asarray(params, dtype=float)
        names = self.truth.parameter_names
        if cov.ndim != 2 or params.shape != (cov.shape[0], len(names)):
            raise ValueError(f"covariates must be (n, {len(COVARIATE_NAMES)}) and params (n, {len(names)}) "
                             f"({', '.join(names)}); got {cov.shape} and {params.shape}")
        Covariates.from_array(cov)
        bad = ~np.isfinite(params) | (params <= 0)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(f"{self.drug}: parameter {names[j]} of patient {i} is {params[i, j]!r}; "
                             f"must be finite and > 0")
        return EventPatients(cov, params)

    def start(self, patients: EventPatients) -> EventState:
        carry = np.empty(len(patients), dtype=object)  # each patient's (times h, amounts mg, lengths h)
        for i in range(len(patients)):
            carry[i] = ((), (), ())
        return _fresh(patients, carry)

    def give_doses(self, state: EventState, time_h, amount_mg, infusion_h) -> EventState:
        t, amount, infusion, given = _check_doses(state, self.limits, time_h, amount_mg, infusion_h)
        carry = state.carry.copy()
        for i in np.flatnonzero(given):
            times, amounts, lengths = carry[i]
            carry[i] = (times + (t[i],), amounts + (amount[i],), lengths + (infusion[i],))
        return _after_doses(state, t, amount, infusion, given, carry)

    @staticmethod
    def events(state: EventState) -> DosingEvents:
        """Every patient's doses so far."""
        return DosingEvents.from_lists(*zip(*state.carry)) if len(state) else DosingEvents.from_lists([], [])

    def concentrations(self, state: EventState, times_h) -> np.ndarray:
        q = _check_times(state, self.limits, times_h)
        ev = self.events(state)
        out = np.zeros(q.shape)
        names = self.truth.parameter_names
        keys = [(ev.times_h[i, ev.mask[i]].tobytes(), ev.infusion_h[i, ev.mask[i]].tobytes(), q[i].tobytes())
                for i in range(len(ev))]
        for key in dict.fromkeys(keys):
            rows = np.array([i for i, k in enumerate(keys) if k == key])
            m = ev.mask[rows[0]]
            if not m.any():
                continue
            order = np.argsort(q[rows[0]], kind="stable")
            params = {p: state.patients.hidden[rows, j] for j, p in enumerate(names)}
            conc = self.truth.simulate_regimen(params, ev.amounts_mg[rows][:, m], ev.times_h[rows[0], m],
                                               q[rows[0], order], ev.infusion_h[rows[0], m])
            out[np.ix_(rows, order)] = conc
        return out

    def observe(self, conc_mg_l, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The published residual error (:meth:`DrugModel.sample_observations`)."""
        return self.truth.sample_observations(np.asarray(conc_mg_l, dtype=float), rng)

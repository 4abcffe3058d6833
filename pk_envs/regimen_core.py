"""The batched dynamics behind :class:`~pk_envs.regimen.RegimenEnv` and its vector twin.

The agent chooses, at each dose, the amount, the time to the next dose and whether to draw a
trough level before it. :class:`RegimenTask` holds what is fixed for an environment;
:class:`RegimenCohort` the arrays of ``N`` running episodes. The patient is an
:class:`~vae_simulator.ct_simulator.EventSimulator` (default: the drug's continuous-time PK-VAE);
every random number of an episode is drawn at reset (:meth:`RegimenTask.draw_episode`), and the
simulator's per-patient results do not depend on the batch, so the vector environment equals N
single ones bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium import logger, spaces

from pk_envs._common import (
    ReplayNormals,
    check_discrete_actions,
    check_finite_at_least,
    check_int_in,
    check_reward_weights,
    concentration_scale_mg_l,
    covariate_bounds,
    scaled_covariates,
)
from pk_envs.rewards import interval_objectives
from pk_envs.single_drug_core import OBS_CAP, SPECS
from pk_envs.task import StepResult
from vae_simulator.covariates import Covariates
from vae_simulator.ct_simulator import CTPatientSimulator, EventSimulator, EventState
from vae_simulator.exposure import profile_exposure
from vae_simulator.groundtruth import get_model
from vae_simulator.irregular import HORIZON_H, INTERVAL_OPTIONS_H

#: Points per interval on which exposure (AUC, peak) is integrated: 10 min at q8h, 1 h at q48h.
EXPOSURE_POINTS = 48
#: Time (h) after a dose of an interval's first point (a query at the dose time would be pre-dose).
FIRST_POINT_H = 1e-6
#: Vancomycin infusion rate, mg/h: "no more than 10 mg/min or over at least 60 minutes, whichever is
#: longer" (vancomycin injection label, Hospira); lengths are held within the trained range.
VANCOMYCIN_RATE_MG_H = 600.0
#: Default cost of one drawn level, in reward units (our choice: about 2.4 h of on-target efficacy;
#: no published value exists).
LEVEL_COST = 0.1
#: Levels observed (most recent first).
LEVEL_HISTORY = 2


@dataclass(frozen=True)
class RegimenSpec:
    """Settings of one drug's regimen environment (doses mg, times h)."""

    drug: str
    intervals_h: tuple[float, ...]
    course_h: float
    dose_max_mg: float
    dose_step_mg: float
    standard_interval_h: float
    infusion_rate_mg_h: float | None = None


def regimen_spec(drug: str) -> RegimenSpec:
    """The regimen settings of ``drug``: the interval-grid env's dose range, the clinic's intervals."""
    if drug not in SPECS or len(INTERVAL_OPTIONS_H.get(drug, ())) < 2:
        allowed = [d for d in SPECS if len(INTERVAL_OPTIONS_H.get(d, ())) >= 2]
        raise ValueError(f"no regimen environment for {drug!r}; drugs with a choice of intervals: {allowed}")
    truth = get_model(drug)
    return RegimenSpec(drug, INTERVAL_OPTIONS_H[drug], HORIZON_H[drug], SPECS[drug].dose_max_mg,
                       SPECS[drug].dose_step_mg, float(truth.interval_h),
                       VANCOMYCIN_RATE_MG_H if drug == "vancomycin" else None)


class RegimenActions:
    """Action space and its mapping to ``(dose mg, interval h, draw a level)``.

    Continuous: ``Box(-1, 1, (3,))``: dose ``(a0 + 1) / 2 * dose_max``; interval option
    ``floor((a1 + 1) / 2 * n)`` (equal bins); a level if ``a2 > 0``. Values outside [-1, 1] are
    clipped and counted. Discrete: ``MultiDiscrete([levels, intervals, 2])``.
    """

    def __init__(self, dose_max_mg: float, intervals_h: tuple[float, ...], dose_step_mg: float, discrete: bool):
        self.dose_max_mg, self.intervals_h = float(dose_max_mg), np.asarray(intervals_h, dtype=float)
        self.levels_mg = np.arange(0.0, dose_max_mg + 1e-9, dose_step_mg) if discrete else None
        n = self.intervals_h.size
        self.space = (spaces.MultiDiscrete([self.levels_mg.size, n, 2]) if discrete
                      else spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32))
        self._warned = False

    @property
    def discrete(self) -> bool:
        return self.levels_mg is not None

    def to_doses(self, actions, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` actions -> ``([dose mg, interval h, draw] (n, 3), clipped (n,))``."""
        if self.discrete:
            sizes = self.space.nvec
            values = np.asarray(actions)
            if values.shape not in ((n, 3),) + (((3,),) if n == 1 else ()):
                raise ValueError(f"action must have shape {(3,) if n == 1 else (n, 3)} (space {self.space}), "
                                 f"got {values.shape}")
            values = values.reshape(n, 3)
            parts = [check_discrete_actions(values[:, j], n, int(sizes[j]), self.space, what)
                     for j, what in enumerate(("dose level", "interval", "draw-a-level"))]
            decoded = np.stack([self.levels_mg[parts[0]], self.intervals_h[parts[1]], parts[2].astype(float)], 1)
            return decoded, np.zeros(n, dtype=bool)
        try:
            values = np.asarray(actions, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"action must be numeric, in the space {self.space}, got {actions!r}") from None
        if values.shape not in ((n, 3),) + (((3,),) if n == 1 else ()):
            raise ValueError(f"action must have shape {(3,) if n == 1 else (n, 3)} (space {self.space}), "
                             f"got {values.shape}")
        values = values.reshape(n, 3)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"action {values[~np.isfinite(values)][0]} is not finite; actions must lie in [-1, 1]")
        clipped = ((values < -1.0) | (values > 1.0)).any(axis=1)
        if clipped.any() and not self._warned:
            self._warned = True
            logger.warn("an action outside [-1, 1] was clipped (counted in info['clip_count']; warned once)")
        values = np.clip(values, -1.0, 1.0)
        bins = np.minimum(((values[:, 1] + 1.0) * 0.5 * self.intervals_h.size).astype(int), self.intervals_h.size - 1)
        decoded = np.stack([(values[:, 0] + 1.0) * 0.5 * self.dose_max_mg, self.intervals_h[bins],
                            (values[:, 2] > 0).astype(float)], axis=1)
        return decoded, clipped

    def from_doses(self, dose_mg: float, interval_h: float, draw: bool = False):
        """The action giving ``dose_mg`` (nearest possible), ``interval_h`` (one of the options) and ``draw``."""
        dose = float(np.clip(check_finite_at_least("dose_mg", dose_mg), 0.0, self.dose_max_mg))
        matches = np.flatnonzero(np.isclose(self.intervals_h, float(interval_h)))
        if matches.size == 0:
            raise ValueError(f"interval {interval_h!r} h is not an option; options: {self.intervals_h.tolist()} h")
        j = int(matches[0])
        if self.discrete:
            return np.array([int(np.argmin(np.abs(self.levels_mg - dose))), j, int(bool(draw))])
        n = self.intervals_h.size
        return np.array([2.0 * dose / self.dose_max_mg - 1.0, 2.0 * (j + 0.5) / n - 1.0, 0.5 if draw else -0.5],
                        dtype=np.float32)


@dataclass
class RegimenCohort:
    """``N`` running episodes (row = patient); per-step histories ``(N, K)`` over at most ``K`` doses."""

    state: EventState          # the simulator's patients and dosing state
    time_h: np.ndarray         # (N,) now: the next dose time, h from the start
    given: np.ndarray          # (N,) steps taken
    doses_mg: np.ndarray       # (N, K)
    intervals_h: np.ndarray    # (N, K) effective interval of each step
    exposure: np.ndarray       # (N, K) true exposure of each interval (target metric)
    level_mg_l: np.ndarray     # (N, K) measured trough at the end of step k (0 where none)
    level_drawn: np.ndarray    # (N, K) bool
    profile_mg_l: np.ndarray   # (N, K, P + 1) float32 true profile on each interval's fraction grid
    event: np.ndarray          # (N,) a serious toxicity event ended the episode
    clip_count: np.ndarray     # (N,)
    normals: np.ndarray        # (N, K, 2) assay normals (proportional, additive) drawn at reset
    event_u: np.ndarray        # (N, K) uniforms: event if < hazard
    standard_dose_mg: np.ndarray  # (N,)


class RegimenTask:
    """Fixed parts of a regimen environment; see RegimenEnv for the arguments."""

    PATIENT_KEYS = ("covariates", "z", "time_h", "doses_given", "levels_drawn", "standard_dose_mg",
                    "standard_interval_h", "clip_count")

    def __init__(self, drug: str | None = None, *, simulator: EventSimulator | None = None, discrete: bool = False,
                 vector_reward: bool = False, reward_weights=(1.0, 1.0), level_cost: float = LEVEL_COST,
                 dose_history: int = 4):
        if simulator is None:
            simulator = load_event_simulator(drug or "vancomycin")
        elif not isinstance(simulator, EventSimulator):
            raise ValueError(f"simulator must be an EventSimulator (vae_simulator.ct_simulator), "
                             f"got {type(simulator).__name__}")
        elif drug is not None and drug != simulator.drug:
            raise ValueError(f"drug {drug!r} does not match the simulator's drug {simulator.drug!r}")
        self.sim, self.drug = simulator, simulator.drug
        self.spec, self.truth = regimen_spec(self.drug), get_model(self.drug)
        self.event_spec, self.target = SPECS[self.drug], self.truth.target
        weights = check_reward_weights(reward_weights, ("efficacy", "toxicity"))
        self.reward_weights, self.vector_reward = weights, bool(vector_reward)
        self.level_cost = check_finite_at_least("level_cost", level_cost)
        self.dose_history = check_int_in("dose_history", dose_history, 1, 64)
        limits = self.sim.limits
        if self.spec.course_h > limits.horizon_h or max(self.spec.intervals_h) > limits.max_gap_h:
            raise ValueError(f"{self.drug}: the simulator's trained range (horizon {limits.horizon_h:g} h, gap "
                             f"{limits.max_gap_h:g} h) does not cover the course ({self.spec.course_h:g} h) and "
                             f"intervals {self.spec.intervals_h} h")
        self.dose_max_mg = min(self.spec.dose_max_mg, limits.dose_max_mg)
        self.actions = RegimenActions(self.dose_max_mg, self.spec.intervals_h, self.spec.dose_step_mg, discrete)
        self.horizon = int(np.ceil(self.spec.course_h / min(self.spec.intervals_h) - 1e-9))  # most doses a course holds
        self.fractions = np.arange(EXPOSURE_POINTS + 1) / EXPOSURE_POINTS
        self.conc_scale_mg_l = concentration_scale_mg_l(self.target, self.spec.standard_interval_h)
        self.max_interval_h = float(max(self.spec.intervals_h))
        self.observation_space = self._observation_space()
        n_obj = 3 if self.vector_reward else 2
        self.reward_space = spaces.Box(np.array([0.0, -3.0, -1.0][:n_obj], np.float32),
                                       np.zeros(n_obj, np.float32) + np.array([2.0, 0.0, 0.0][:n_obj], np.float32),
                                       dtype=np.float32)

    # ------------------------------------------------------------------ dosing rules
    def infusion_h(self, doses_mg: np.ndarray) -> np.ndarray:
        """Infusion length (h) of each dose: the drug's rate rule within the trained range (0: oral)."""
        lo, hi = self.sim.limits.infusion_range_h
        doses = np.asarray(doses_mg, dtype=float)
        if self.spec.infusion_rate_mg_h is None:
            return np.full(doses.shape, float(np.clip(self.truth.infusion_h, lo, hi)))
        return np.clip(np.maximum(self.truth.infusion_h, doses / self.spec.infusion_rate_mg_h), lo, hi)

    # ------------------------------------------------------------------ observations
    def _observation_space(self) -> spaces.Box:
        cov_low, cov_high = covariate_bounds()
        n = 2 * self.dose_history + 3 * LEVEL_HISTORY + 1
        high = np.concatenate([cov_high, np.ones(2 * self.dose_history),
                               np.tile([OBS_CAP, 1.0, 1.0], LEVEL_HISTORY), [1.0]])
        return spaces.Box(np.concatenate([cov_low, np.zeros(n)]).astype(np.float32), high.astype(np.float32),
                          dtype=np.float32)

    def observations(self, c: RegimenCohort) -> np.ndarray:
        """``(N, D)`` float32 observations (layout in the RegimenEnv docstring)."""
        n = c.given.shape[0]
        rows = np.arange(n)[:, None]
        back = c.given[:, None] - 1 - np.arange(self.dose_history)[None, :]
        seen = back >= 0
        doses = np.where(seen, c.doses_mg[rows, np.maximum(back, 0)], 0.0) / self.dose_max_mg
        intervals = np.where(seen, c.intervals_h[rows, np.maximum(back, 0)], 0.0) / self.max_interval_h
        # the most recent levels: rank drawn steps from the latest
        order = np.where(c.level_drawn, np.arange(c.level_drawn.shape[1])[None, :], -1)
        latest = -np.sort(-order, axis=1)[:, :LEVEL_HISTORY]
        have = latest >= 0
        idx = np.maximum(latest, 0)
        level_t = np.cumsum(c.intervals_h, axis=1)[rows, idx]  # a level is drawn at its interval's end
        value = np.where(have, np.minimum(c.level_mg_l[rows, idx] / self.conc_scale_mg_l, OBS_CAP), 0.0)
        age = np.where(have, (c.time_h[:, None] - level_t) / self.spec.course_h, 1.0)
        levels = np.stack([value, age, ~have], axis=2).reshape(n, -1)
        parts = [scaled_covariates(c.state.patients.covariates), doses, intervals, levels,
                 (c.time_h / self.spec.course_h)[:, None]]
        return np.concatenate(parts, axis=1, dtype=np.float32)

    # ------------------------------------------------------------------ episodes
    def draw_episode(self, rng: np.random.Generator, options: dict | None = None) -> dict[str, np.ndarray]:
        """All random numbers of one episode, in a fixed order: patient, assay normals, event uniforms.
        Pinned covariates / z (``options``) replace the drawn ones and leave the noise unchanged."""
        options = {} if options is None else dict(options)
        unknown = sorted(set(options) - {"covariates", "z"})
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; allowed: 'covariates', 'z'")
        patient = self.sim.sample_patients(1, rng)
        draws = {"covariates": patient.covariates[0], "z": patient.hidden[0],
                 "normals": rng.standard_normal((self.horizon, 2)), "event_u": rng.random(self.horizon)}
        pinned = {key: options[key] for key in ("covariates", "z") if options.get(key) is not None}
        if pinned:
            cov = np.asarray(pinned.get("covariates", draws["covariates"]), dtype=float).reshape(1, -1)
            z = np.asarray(pinned.get("z", draws["z"]), dtype=float)
            if z.ndim != 1:
                raise ValueError(f"a pinned z must have shape ({draws['z'].size},), got {z.shape}")
            patient = self.sim.make_patients(cov, z[None, :])  # validates shape, finiteness and range
            draws["covariates"], draws["z"] = patient.covariates[0], patient.hidden[0]
        return draws

    def new_cohort(self, n: int) -> RegimenCohort:
        k, z = self.horizon, np.zeros
        probe = self.sim.sample_patients(1, np.random.default_rng(0))
        patients = type(probe)(np.repeat(probe.covariates, n, axis=0), np.repeat(probe.hidden, n, axis=0))
        return RegimenCohort(state=self.sim.start(patients), time_h=z(n), given=z(n, dtype=np.int64),
                             doses_mg=z((n, k)), intervals_h=z((n, k)), exposure=z((n, k)), level_mg_l=z((n, k)),
                             level_drawn=z((n, k), bool), profile_mg_l=z((n, k, EXPOSURE_POINTS + 1), np.float32),
                             event=z(n, bool), clip_count=z(n, dtype=np.int64), normals=z((n, k, 2)),
                             event_u=z((n, k)), standard_dose_mg=z(n))

    def start(self, c: RegimenCohort, rows: np.ndarray, draws: list[dict[str, np.ndarray]]) -> None:
        """Begin new episodes in ``rows`` from their draws."""
        cov, z = np.stack([d["covariates"] for d in draws]), np.stack([d["z"] for d in draws])
        c.state.put(rows, self.sim.start(type(c.state.patients)(cov, z)))
        c.normals[rows], c.event_u[rows] = np.stack([d["normals"] for d in draws]), np.stack([d["event_u"] for d in draws])
        c.standard_dose_mg[rows] = self.truth.standard_dose_mg(Covariates.from_array(cov))
        for key in ("time_h", "given", "doses_mg", "intervals_h", "exposure", "level_mg_l", "profile_mg_l",
                    "clip_count"):
            getattr(c, key)[rows] = 0
        c.level_drawn[rows], c.event[rows] = False, False

    def advance(self, c: RegimenCohort, rows: np.ndarray, decoded: np.ndarray, clipped: np.ndarray) -> StepResult:
        """Give ``rows`` their dose now, run to the next dose time, draw the level if asked."""
        k = c.given[rows]
        if np.any(k >= self.horizon) or np.any(c.event[rows]) or np.any(c.time_h[rows] >= self.spec.course_h):
            raise RuntimeError("the episode has ended (course complete or toxicity event); call reset()")
        dose, tau, draw = decoded[:, 0], decoded[:, 1], decoded[:, 2] > 0
        now = c.time_h[rows]
        infusion = self.infusion_h(dose)
        state = self.sim.give_doses(c.state.take(rows), now, dose, infusion)
        end = np.minimum(now + tau, self.spec.course_h)
        # a hold may not run past the simulator's longest trained gap: the interval stops there
        gap_end = state.last_h + self.sim.limits.max_gap_h
        beyond_gap = ~np.isnan(state.last_h) & (end >= gap_end)
        end = np.where(beyond_gap, gap_end, end)
        duration = end - now
        # the interval's first point just after the dose (the state holds it): continuous profiles
        times = now[:, None] + np.maximum(duration[:, None] * self.fractions[None, :], FIRST_POINT_H)
        conc = self.sim.concentrations(state, times)
        exposure = profile_exposure(conc, duration, self.target.metric, self.target.threshold_mg_l)
        peak = conc.max(axis=1)
        # per 24 h of the interval; an event risk compounds with the interval's length
        efficacy, toxicity, hazard, event = interval_objectives(
            exposure, peak, self.target, self.event_spec.event_risk, self.event_spec.event_peak_mg_l, duration,
            c.event_u[rows, k], per_day=True)
        normals = c.normals[rows, k]
        measured, blq = self.sim.observe(conc[:, -1:], ReplayNormals(normals[:, :1], normals[:, 1:]))
        drawn = draw & ~event
        c.state.put(rows, state)
        c.doses_mg[rows, k], c.intervals_h[rows, k], c.exposure[rows, k] = dose, duration, exposure
        c.level_mg_l[rows, k], c.level_drawn[rows, k] = np.where(drawn, measured[:, 0], 0.0), drawn
        c.profile_mg_l[rows, k] = conc
        c.time_h[rows], c.given[rows], c.event[rows] = end, k + 1, event
        c.clip_count[rows] += clipped | (beyond_gap & (now + tau > end))
        levels = drawn.astype(float)
        if self.vector_reward:
            objectives = np.stack([efficacy, -toxicity, -levels], axis=1)
        else:
            objectives = np.stack([efficacy, -toxicity, -self.level_cost * levels], axis=1)
        truncated = (end >= self.spec.course_h - 1e-9) | beyond_gap | (k + 1 >= self.horizon)
        return StepResult(objectives, event, truncated & ~event,
                          {"dose_mg": dose, "interval_h": duration, "infusion_h": infusion, "level_drawn": drawn,
                           "level_mg_l": np.where(drawn, measured[:, 0], 0.0), "level_blq": drawn & blq[:, 0],
                           "exposure": exposure,
                           "efficacy": efficacy, "toxicity": toxicity, "objectives": objectives, "event": event,
                           "event_risk": hazard, "peak_mg_l": peak, "trough_mg_l": conc[:, -1], "clipped": clipped,
                           "beyond_trained_gap": beyond_gap, **self.patient_info(c, rows)})

    def rewards(self, objectives: np.ndarray) -> np.ndarray:
        """``(n, 3)`` float32 vectors, or ``(n,)`` ``w0 * efficacy - w1 * toxicity - level_cost * levels``."""
        if self.vector_reward:
            return objectives.astype(np.float32)
        return objectives[:, 0] * self.reward_weights[0] + objectives[:, 1] * self.reward_weights[1] + objectives[:, 2]

    def patient_info(self, c: RegimenCohort, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Ground truth reported at reset and every step."""
        n = len(rows)
        return {"covariates": c.state.patients.covariates[rows], "z": c.state.patients.hidden[rows],
                "time_h": c.time_h[rows], "doses_given": c.given[rows],
                "levels_drawn": c.level_drawn[rows].sum(axis=1), "standard_dose_mg": c.standard_dose_mg[rows],
                "standard_interval_h": np.full(n, self.spec.standard_interval_h), "clip_count": c.clip_count[rows]}

    def render(self, c: RegimenCohort, row: int) -> np.ndarray:
        """The course of ``row`` so far as a ``uint8 (H, W, 3)`` image (:mod:`pk_envs.regimen_render`)."""
        from pk_envs.regimen_render import render_course  # matplotlib only when rendering

        return render_course(self, c, row)


#: the shipped continuous-time decoder release the regimen ids (v0) simulate
REGIMEN_DECODER_RELEASE = 1


def load_event_simulator(drug: str) -> CTPatientSimulator:
    """The shipped continuous-time PK-VAE of ``drug``, release :data:`REGIMEN_DECODER_RELEASE` (cached per process)."""
    if drug not in _LOADED:
        regimen_spec(drug)  # a clear error for drugs without a regimen environment
        _LOADED[drug] = CTPatientSimulator.pretrained(drug, REGIMEN_DECODER_RELEASE)
    return _LOADED[drug]


_LOADED: dict[str, CTPatientSimulator] = {}

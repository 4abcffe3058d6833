"""The batched dynamics behind :class:`~pk_envs.single_drug.SingleDrugEnv` and its vector twin.

:class:`SingleDrugTask` holds everything fixed for an environment (simulator, spaces, reward
rules); :class:`Cohort` the arrays of ``N`` running episodes, one row per patient. Both
environments call the same functions, the single one with ``N = 1``; all randomness of an
episode is drawn at reset (:meth:`SingleDrugTask.draw_episode`), so stepping is a pure
function of the actions and N patients step in one decoder call
(:class:`~vae_simulator.simulator.DecoderStepper`, the environments' fast path of
:meth:`PKSimulator.step`) with bit-identical results per row (see
:func:`pk_envs._common.batch_invariant`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache

import numpy as np
from gymnasium import spaces

from pk_envs._common import (
    DoseActions,
    ReplayNormals,
    batch_invariant,
    check_finite_at_least,
    check_int_in,
    check_probability,
    check_reward_weights,
    concentration_scale_mg_l,
    covariate_bounds,
    covariate_divisors,
    scaled_covariates,
)
from pk_envs.rewards import LogisticRisk, interval_objectives
from pk_envs.task import StepResult
from vae_simulator.exposure import IntervalExposure
from vae_simulator.groundtruth import SINGLE_DRUGS
from vae_simulator.interface import PatientSimulator
from vae_simulator.simulator import PKSimulator

#: Vancomycin-associated acute kidney injury over a 10-day course vs AUC24 (mg*h/L): our own
#: logistic curve through 11.2 % at 450 and 40 % at 700 mg*h/L (see SingleDrugEnv docstring).
VANCOMYCIN_AKI = LogisticRisk.through((450.0, 0.112), (700.0, 0.40), course_h=240.0)

#: Observed concentrations and true exposures are reported up to this many times their scale.
OBS_CAP = 10.0
#: Bound (and clip) of the latent z in the fully observed variant.
Z_CAP = 8.0


@dataclass(frozen=True)
class DrugSpec:
    """Clinical settings of one drug in the environments.

    ``dose_max_mg`` / ``dose_step_mg``: the action range [0, max] and the discrete levels;
    ``course_intervals``: the treatment course (never beyond the decoder's training horizon);
    ``event_peak_mg_l``: a serious toxicity event when the interval's peak exceeds it;
    ``event_risk``: a stochastic event (and the toxicity objective) from a risk curve.
    """

    name: str
    dose_max_mg: float
    dose_step_mg: float
    course_intervals: int
    event: str = "none"
    event_peak_mg_l: float | None = None
    event_risk: LogisticRisk | None = None


SPECS: dict[str, DrugSpec] = {
    "vancomycin": DrugSpec("Vancomycin", 3000.0, 250.0, 20, "acute kidney injury", event_risk=VANCOMYCIN_AKI),
    "phenytoin": DrugSpec("Phenytoin", 800.0, 50.0, 14, "concentration > 40 mg/L (lethargy, coma)",
                          event_peak_mg_l=40.0),
    "mycophenolate": DrugSpec("Mycophenolate", 2000.0, 250.0, 14),
    "theophylline": DrugSpec("Theophylline", 800.0, 100.0, 14, "concentration > 40 mg/L (seizures)",
                             event_peak_mg_l=40.0),
    "pembrolizumab": DrugSpec("Pembrolizumab", 400.0, 100.0, 8),
}


def spec_for(sim: PatientSimulator, dose_step_mg: float | None = None) -> DrugSpec:
    """The drug's settings; a drug without an entry gets the simulator's range, 9 levels (or steps of
    ``dose_step_mg``), its whole horizon, no event."""
    if sim.drug in SPECS:
        spec = SPECS[sim.drug]
    else:
        hi = sim.dose_range_mg[1]
        spec = DrugSpec(sim.drug.title(), hi, hi / 8.0, int(sim.max_intervals))
    if dose_step_mg is None:
        return spec
    step = check_finite_at_least("dose_step_mg", dose_step_mg)
    if not 0 < step <= spec.dose_max_mg:
        raise ValueError(f"dose_step_mg must be in (0, {spec.dose_max_mg:g}] mg (the dose range), got {dose_step_mg!r}")
    return replace(spec, dose_step_mg=step)


#: ``decoder`` argument -> the PK-VAE a single-drug environment's patients come from: the
#: interval-grid decoders (v0 ids), release 1 of the continuous-time ones (v1 ids), release 2 (v2 ids)
DECODERS = ("interval", "continuous", "continuous-2")
#: continuous-time ``decoder`` -> release of the shipped weights (:func:`vae_simulator.vae.io.ct_weights_path`)
CT_DECODER_RELEASES = {"continuous": 1, "continuous-2": 2}


@cache
def load_simulator(drug: str, decoder: str = "interval") -> PatientSimulator:
    """The shipped PK-VAE of ``drug`` (loaded once per process; FileNotFoundError if not trained yet).

    ``decoder``: ``"interval"`` the interval-grid decoder (``-v0`` ids), ``"continuous"`` the
    continuous-time decoder stepped on the same schedule (``-v1`` ids,
    :class:`~vae_simulator.ct_interval.CTIntervalSimulator`), ``"continuous-2"`` its release 2
    (``-v2`` ids; drugs with one release only have none).
    """
    if drug not in SINGLE_DRUGS:
        raise ValueError(f"unknown single drug {drug!r}; single-drug environments exist for "
                         f"{', '.join(SINGLE_DRUGS)}")
    if decoder in CT_DECODER_RELEASES:
        from vae_simulator.ct_interval import CTIntervalSimulator

        return CTIntervalSimulator(drug=drug, release=CT_DECODER_RELEASES[decoder])
    if decoder != "interval":
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    return PKSimulator.from_pretrained(drug)


def decoder_of(sim: PatientSimulator) -> str:
    """``"interval"`` (a PKSimulator), ``"continuous"`` / ``"continuous-2"`` (a shipped drug's
    CTIntervalSimulator, by release), ``"table"`` (a PK-VAE learnt from a user's table,
    TableIntervalSimulator) or ``"custom"``."""
    from vae_simulator.byod.simulator import TableIntervalSimulator
    from vae_simulator.ct_interval import CTIntervalSimulator

    if isinstance(sim, TableIntervalSimulator):
        return "table"
    if isinstance(sim, CTIntervalSimulator):
        return "continuous" if sim.release in (None, 1) else f"continuous-{sim.release}"
    return "interval" if isinstance(sim, PKSimulator) else "custom"


def has_shipped_weights(drug: str) -> bool:
    """Whether the package holds a trained PK-VAE for ``drug``."""
    from vae_simulator.vae.io import shipped_weights_dir

    return (shipped_weights_dir() / f"{drug}.json").is_file()


@dataclass
class Cohort:
    """``N`` running episodes (row = patient). Histories are ``(N, K, ...)`` over the course."""

    covariates: np.ndarray     # (N, C) in COVARIATE_NAMES order
    z: np.ndarray              # (N, d) latent
    state: np.ndarray          # (N, H) decoder state
    decoder_constants: np.ndarray  # (N, 4 hidden) the decoder's per-patient inputs (DecoderStepper.start)
    given: np.ndarray          # (N,) intervals given so far
    doses_mg: np.ndarray       # (N, K)
    conc_mg_l: np.ndarray      # (N, K, G) true profiles
    start_mg_l: np.ndarray     # (N,) concentration at the start of the next interval
    exposure: np.ndarray       # (N, K) true exposure (target metric)
    samples_mg_l: np.ndarray   # (N, K, M) noisy monitoring samples (0 where missing)
    missing: np.ndarray        # (N, K, M) bool
    event: np.ndarray          # (N,) a serious toxicity event ended the episode
    clip_count: np.ndarray     # (N,) actions clipped this episode
    held: np.ndarray           # (N,) doses held in a row since the last dose given (0 before any)
    normals: np.ndarray        # (N, K, M) assay-noise normals drawn at reset
    missing_u: np.ndarray      # (N, K, M) uniforms: sample missing if < missing_prob
    event_u: np.ndarray        # (N, K) uniforms: event if < hazard
    standard_dose_mg: np.ndarray  # (N,) label dose of each patient


class SingleDrugTask:
    """Fixed parts of a single-drug environment; see SingleDrugEnv for the arguments."""

    #: info keys about the patient, reported at reset and every step
    PATIENT_KEYS = ("covariates", "z", "interval", "standard_dose_mg", "clip_count")

    def __init__(self, drug: str | None = None, *, simulator: PatientSimulator | None = None,
                 decoder: str = "interval", discrete: bool = False,
                 vector_reward: bool = False, reward_weights=(1.0, 1.0), full_observation: bool = False,
                 noise_scale: float = 1.0, missing_prob: float = 0.0, iiv_scale: float = 1.0,
                 n_intervals: int | None = None, dose_history: int = 4, dose_step_mg: float | None = None):
        if simulator is None:
            if drug is None:
                raise ValueError(f"give a drug (one of {', '.join(SINGLE_DRUGS)}) or a simulator")
            simulator = load_simulator(drug, decoder)
        elif not isinstance(simulator, PatientSimulator):
            raise ValueError(f"simulator must be a PKSimulator or another PatientSimulator "
                             f"(vae_simulator.interface), got {type(simulator).__name__}")
        elif drug is not None and drug != simulator.drug:
            raise ValueError(f"drug {drug!r} does not match the simulator's drug {simulator.drug!r}")
        self.sim = simulator
        self.decoder = decoder_of(simulator)
        self.max_held_intervals = simulator.max_held_intervals
        self.drug, self.spec, self.target = self.sim.drug, spec_for(self.sim, dose_step_mg), self.sim.target
        names, ranges = tuple(self.sim.covariate_names), self.sim.covariate_ranges
        self.covariate_divisors, self.covariate_bounds = covariate_divisors(names, ranges), covariate_bounds(names, ranges)
        self.noise_scale = check_finite_at_least("noise_scale", noise_scale)
        self.missing_prob = check_probability("missing_prob", missing_prob)
        self.iiv_scale = check_finite_at_least("iiv_scale", iiv_scale)
        self.dose_history = check_int_in("dose_history", dose_history, 1, 64)
        self.full_observation, self.vector_reward = bool(full_observation), bool(vector_reward)
        weights = check_reward_weights(reward_weights, ("efficacy", "toxicity"))
        self.reward_weights = weights
        trained = int(self.sim.max_intervals)
        default = min(self.spec.course_intervals, trained)
        self.horizon = default if n_intervals is None else check_int_in("n_intervals", n_intervals, 1, trained)

        self.interval_h, self.grid_h = self.sim.interval_h, self.sim.grid_h
        self.exposure = IntervalExposure(self.grid_h, self.target.metric, self.target.threshold_mg_l)
        self.monitor_h = np.asarray(self.sim.drug_model.monitoring_times_h, dtype=float)
        # the decoder's noise is given on the grid; samples take it from the nearest grid time
        self.monitor_grid_index = np.abs(self.grid_h[None, :] - self.monitor_h[:, None]).argmin(axis=1)
        self.stepper = batch_invariant(self.sim, sigma_index=self.monitor_grid_index)
        self.conc_scale_mg_l = concentration_scale_mg_l(self.target, self.interval_h)
        dose_max = min(self.spec.dose_max_mg, self.sim.dose_range_mg[1])
        levels = np.arange(0.0, dose_max + 1e-9, self.spec.dose_step_mg) if discrete else None
        self.actions = DoseActions(dose_max, levels)
        self.observation_space = self._observation_space()
        self._history_back = 1 + np.arange(self.dose_history)[None, :]  # intervals back of the observed doses
        self.hidden_size = self.sim.state_size  # the patient's simulator state
        self.reward_space = spaces.Box(np.array([0.0, -2.0], np.float32), np.array([1.0, 0.0], np.float32),
                                       dtype=np.float32)

    # ------------------------------------------------------------------ observations
    def _observation_space(self) -> spaces.Box:
        m, (cov_low, cov_high) = self.monitor_h.size, self.covariate_bounds
        low = [cov_low, np.zeros(self.dose_history + 1 + 2 * m + 1)]
        high = [cov_high, np.ones(self.dose_history + 1), np.full(m, OBS_CAP), np.ones(m + 1)]
        if self.full_observation:
            low += [np.zeros(1), np.full(self.sim.latent_dim, -Z_CAP)]
            high += [np.full(1, OBS_CAP), np.full(self.sim.latent_dim, Z_CAP)]
        return spaces.Box(np.concatenate(low).astype(np.float32), np.concatenate(high).astype(np.float32),
                          dtype=np.float32)

    @property
    def observation_names(self) -> tuple[str, ...]:
        """What each entry of :meth:`observations` is, in order (units in the SingleDrugEnv docstring)."""
        monitor = [f"{t:g}h" for t in self.monitor_h]
        names = [f"covariate_{name}" for name in self.sim.covariate_names]
        names += [f"dose_{j}_back_rel" for j in range(1, self.dose_history + 1)] + ["cumulative_dose_rel"]
        names += [f"sample_{t}_rel" for t in monitor] + [f"sample_{t}_missing" for t in monitor] + ["course_fraction"]
        if self.full_observation:
            names += ["exposure_rel"] + [f"z_{i}" for i in range(self.sim.latent_dim)]
        return tuple(names)

    def observations(self, c: Cohort) -> np.ndarray:
        """``(N, D)`` float32 observations of every row (layout in the SingleDrugEnv docstring)."""
        n, k = c.given.shape[0], self.horizon
        rows = np.arange(n)
        back = c.given[:, None] - self._history_back
        dose_max = self.actions.dose_max_mg
        recent = np.where(back >= 0, c.doses_mg[rows[:, None], np.maximum(back, 0)], 0.0) / dose_max
        cumulative = c.doses_mg.sum(axis=1) / (dose_max * k)
        last = np.maximum(c.given - 1, 0)
        started = (c.given > 0)[:, None]
        missing = np.where(started, c.missing[rows, last], True)
        samples = np.where(missing, 0.0, np.minimum(c.samples_mg_l[rows, last] / self.conc_scale_mg_l, OBS_CAP))
        parts = [scaled_covariates(c.covariates, self.covariate_divisors), recent, cumulative[:, None], samples, missing,
                 (c.given / k)[:, None]]
        if self.full_observation:
            exposure = np.where(started[:, 0], c.exposure[rows, last], 0.0) / self.target.high
            parts += [np.minimum(exposure, OBS_CAP)[:, None], np.clip(c.z, -Z_CAP, Z_CAP)]
        return np.concatenate(parts, axis=1, dtype=np.float32)  # each part rounded to float32 once

    # ------------------------------------------------------------------ episodes
    def draw_episode(self, rng: np.random.Generator, options: dict | None = None) -> dict[str, np.ndarray]:
        """All random numbers of one episode, in a fixed order: patient, assay normals, missing-sample
        uniforms, event uniforms. Pinned covariates / z (``options``) replace the drawn ones, so
        pinning does not change the noise."""
        options = {} if options is None else dict(options)
        unknown = sorted(set(options) - {"covariates", "z"})
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; allowed: 'covariates', 'z'")
        patient = self.sim.sample_patients(1, rng, self.iiv_scale)
        m = self.monitor_h.size
        draws = {"covariates": patient.covariates[0], "z": patient.z[0],
                 "normals": rng.standard_normal((self.horizon, m)), "missing_u": rng.random((self.horizon, m)),
                 "event_u": rng.random(self.horizon)}
        pinned = [key for key in ("covariates", "z") if options.get(key) is not None]
        if "covariates" in pinned:
            draws["covariates"] = np.asarray(options["covariates"], dtype=float).reshape(-1)
        if "z" in pinned:
            draws["z"] = np.asarray(options["z"], dtype=float)  # exactly (latent_dim,): checked below
        if pinned:  # validates covariates, z's shape and finiteness and a pinned z's range (latent_bounds)
            patient = self.sim.make_patients(draws["covariates"], draws["z"], check_range="z" in pinned)
            draws["covariates"], draws["z"] = patient.covariates[0], patient.z[0]
        return draws

    def new_cohort(self, n: int) -> Cohort:
        k, g, m = self.horizon, self.grid_h.size, self.monitor_h.size
        z = np.zeros
        return Cohort(covariates=z((n, len(self.sim.covariate_names))), z=z((n, self.sim.latent_dim)),
                      state=z((n, self.hidden_size)),
                      decoder_constants=z((n, self.stepper.constants_size), self.stepper.dtype),
                      given=z(n, dtype=np.int64), doses_mg=z((n, k)),
                      conc_mg_l=z((n, k, g)),
                      start_mg_l=z(n), exposure=z((n, k)), samples_mg_l=z((n, k, m)), missing=z((n, k, m), bool),
                      event=z(n, bool), clip_count=z(n, dtype=np.int64),
                      held=z(n, dtype=np.int64), normals=z((n, k, m)),
                      missing_u=z((n, k, m)), event_u=z((n, k)), standard_dose_mg=z(n))

    def start(self, c: Cohort, rows: np.ndarray, draws: list[dict[str, np.ndarray]]) -> None:
        """Begin new episodes in ``rows`` from their draws."""
        for key in ("covariates", "z", "normals", "missing_u", "event_u"):
            getattr(c, key)[rows] = np.stack([d[key] for d in draws])
        c.standard_dose_mg[rows] = self.sim.standard_dose_mg(c.covariates[rows])
        c.state[rows], c.decoder_constants[rows] = self.stepper.start(c.covariates[rows], c.z[rows])  # validated
        for key in ("given", "doses_mg", "conc_mg_l", "start_mg_l", "exposure", "samples_mg_l", "clip_count", "held"):
            getattr(c, key)[rows] = 0
        c.missing[rows], c.event[rows] = False, False

    def advance(self, c: Cohort, rows: np.ndarray, doses_mg: np.ndarray, clipped: np.ndarray) -> StepResult:
        """Give ``rows`` their next dose; returns the step's arrays for those rows (objectives, flags, info)."""
        sim, k = self.sim, c.given[rows]
        if np.any(k >= self.horizon) or np.any(c.event[rows]):
            raise RuntimeError("the episode has ended (course complete or toxicity event); call reset()")
        held = doses_mg <= 0
        beyond = np.zeros(len(rows), bool)
        if self.max_held_intervals is not None:  # the simulator cannot run this hold: truncate before it
            beyond = held & (c.doses_mg[rows].max(axis=1) > 0) & (c.held[rows] >= self.max_held_intervals)
        if beyond.any():
            return self._beyond_trained_gap(c, rows, doses_mg, clipped, beyond)
        conc, log_sigma, c.state[rows] = self.stepper.step(c.state[rows], c.decoder_constants[rows], doses_mg)
        c.held[rows] = np.where(held, c.held[rows] + 1, 0)
        start = c.start_mg_l[rows]
        exposure = self.exposure(conc, start)
        true_samples = sim.concentration_at(conc, start, self.monitor_h)
        noisy = sim.observe(true_samples, log_sigma, ReplayNormals(c.normals[rows, k]), self.noise_scale)
        missing = c.missing_u[rows, k] < self.missing_prob
        peak = np.maximum(conc.max(axis=1), start)
        efficacy, toxicity, hazard, event = interval_objectives(
            exposure, peak, self.target, self.spec.event_risk, self.spec.event_peak_mg_l, self.interval_h,
            c.event_u[rows, k])

        c.doses_mg[rows, k], c.conc_mg_l[rows, k], c.exposure[rows, k] = doses_mg, conc, exposure
        c.samples_mg_l[rows, k], c.missing[rows, k] = np.where(missing, 0.0, noisy), missing
        c.start_mg_l[rows], c.given[rows], c.event[rows] = conc[:, -1], k + 1, event
        c.clip_count[rows] += clipped
        objectives = np.stack([efficacy, -toxicity], axis=1)
        return StepResult(objectives, event, k + 1 >= self.horizon,
                          {"dose_mg": doses_mg, "exposure": exposure, "efficacy": efficacy, "toxicity": toxicity,
                           "objectives": objectives, "event": event, "event_risk": hazard, "peak_mg_l": peak,
                           "conc_mg_l": conc, "samples_mg_l": c.samples_mg_l[rows, k], "sample_missing": missing,
                           "clipped": clipped, "beyond_trained_gap": np.zeros(len(rows), bool),
                         **self.patient_info(c, rows)})

    def _beyond_trained_gap(self, c: Cohort, rows: np.ndarray, doses_mg: np.ndarray, clipped: np.ndarray,
                            beyond: np.ndarray) -> StepResult:
        """Step ``rows``, of which ``beyond`` hold a dose the simulator was not trained to hold: those
        are not simulated; their episode is truncated with zero objectives and nothing observed."""
        out = self.advance(c, rows[~beyond], doses_mg[~beyond], clipped[~beyond]) if (~beyond).any() else None
        c.clip_count[rows[beyond]] += clipped[beyond]
        n, g, m = len(rows), self.grid_h.size, self.monitor_h.size
        result = StepResult(np.zeros((n, 2)), np.zeros(n, bool), beyond.copy(),
                            {"dose_mg": doses_mg.copy(), "exposure": np.zeros(n), "efficacy": np.zeros(n),
                           "toxicity": np.zeros(n), "objectives": np.zeros((n, 2)), "event": np.zeros(n, bool),
                           "event_risk": np.zeros(n), "peak_mg_l": np.zeros(n), "conc_mg_l": np.zeros((n, g)),
                           "samples_mg_l": np.zeros((n, m)), "sample_missing": np.ones((n, m), bool),
                           "clipped": clipped.copy(), "beyond_trained_gap": beyond.copy(), **self.patient_info(c, rows)})
        if out is not None:  # the simulated rows' results in their places
            ok = ~beyond
            for mine, theirs in zip(result[:3], out[:3]):
                mine[ok] = theirs
            for key, value in out.info.items():
                result.info[key][ok] = value
        return result

    def rewards(self, objectives: np.ndarray) -> np.ndarray:
        """``(n, 2)`` float32 vectors, or ``(n,)`` float64 weighted sums ``w . [efficacy, -toxicity]``."""
        if self.vector_reward:
            return objectives.astype(np.float32)
        return objectives[:, 0] * self.reward_weights[0] + objectives[:, 1] * self.reward_weights[1]

    def patient_info(self, c: Cohort, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Ground truth reported at reset and every step."""
        return {"covariates": c.covariates[rows], "z": c.z[rows], "interval": c.given[rows],
                "standard_dose_mg": c.standard_dose_mg[rows], "clip_count": c.clip_count[rows]}

    def render(self, c: Cohort, row: int) -> np.ndarray:
        """The course of ``row`` so far as a ``uint8 (H, W, 3)`` image."""
        from pk_envs.rendering import figure_to_rgb, new_figure, plot_doses_and_exposure, plot_profile

        k, tau, t = int(c.given[row]), self.interval_h, self.target
        starts = tau * np.arange(k)
        times = np.concatenate([[0.0], (starts[:, None] + self.grid_h[None, :]).ravel()])
        conc = np.concatenate([[0.0], c.conc_mg_l[row, :k].ravel()])
        seen = ~c.missing[row, :k]
        sample_t = (starts[:, None] + self.monitor_h[None, :])[seen]
        fig, (top, bottom) = new_figure(2)
        window = (t.low, t.high) if t.metric in ("trough", "peak", "cavg") else None
        plot_profile(top, times, conc, label=self.drug, sample_times_h=sample_t,
                     samples_mg_l=c.samples_mg_l[row, :k][seen], window=window)
        plot_doses_and_exposure(bottom, starts, c.doses_mg[row, :k], tau, dose_max_mg=self.actions.dose_max_mg,
                                exposure=c.exposure[row, :k], window=(t.low, t.high),
                                exposure_label=f"{t.metric} ({t.unit})")
        bottom.set_xlim(0, tau * self.horizon)
        top.set_title(f"{self.spec.name}: interval {k}/{self.horizon}"
                      + (", serious toxicity event" if c.event[row] else ""))
        return figure_to_rgb(fig)

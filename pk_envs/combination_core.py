"""The batched dynamics behind :class:`~pk_envs.combination.PaclitaxelCarboplatinEnv` and its vector twin.

:class:`CombinationTask` holds what is fixed for an environment (the two PK simulators, the
spaces, the reward rule); :class:`Cohort` the arrays of ``N`` running episodes, one row per
patient. Both environments call the same functions, the single one with ``N = 1``. Every
random number of an episode is drawn at reset (:meth:`CombinationTask.draw_episode`), so a
step is a pure function of the actions, and N patients step with one decoder call per drug
and one vectorised PD integration (both PD models in one RK4 loop,
:func:`~vae_simulator.groundtruth.pd.simulate_both`), bit-identical per row to N single environments
(:func:`pk_envs._common.batch_invariant`). Units and the layout of observations and rewards
are documented in :mod:`pk_envs.combination`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from numbers import Real

import numpy as np
from gymnasium import logger, spaces

from pk_envs._common import (
    ReplayNormals,
    batch_invariant,
    check_discrete_actions,
    check_finite_at_least,
    check_int_in,
    check_reward_weights,
    covariate_bounds,
    scaled_covariates,
)
from pk_envs.rewards import (
    DEFAULT_REWARD_WEIGHTS,
    GRADE4_DAY_COST,
    GRADE_COST,
    PROGRESSION_PENALTY,
    RESPONSE_CAP,
    combination_objectives,
)
from pk_envs.task import StepResult
from vae_simulator.covariates import COVARIATE_NAMES, Covariates, draw_covariate_row
from vae_simulator.exposure import IntervalExposure
from vae_simulator.groundtruth.carboplatin import (
    CARBOPLATIN_MOLAR_MASS_G_MOL,
    MG_MIN_PER_ML_TO_MG_H_PER_L,
    calvert_dose_mg,
)
from vae_simulator.groundtruth.paclitaxel import MOLAR_MASS_G_MOL as PACLITAXEL_MOLAR_MASS_G_MOL
from vae_simulator.groundtruth.paclitaxel import TC_THRESHOLD_MG_L
from vae_simulator.groundtruth.pd import (
    BACKENDS as PD_BACKENDS,
)
from vae_simulator.groundtruth.pd import (
    FribergParameters,
    Recist,
    TumourParameters,
    friberg,
    integrate_cycle,
    refine_grid,
    simulate_both,
    tumour,
)
from vae_simulator.groundtruth.pd.grading import ANC_GRADE_THRESHOLDS_E9_L, neutropenia_grade, recist_status
from vae_simulator.groundtruth_simulator import GroundTruthCycleSimulator
from vae_simulator.interface import PatientSimulator
from vae_simulator.simulator import PKSimulator

CYCLE_H = 504.0
DRUGS = ("paclitaxel", "carboplatin")
#: Action ranges: paclitaxel mg/m2 (225 = the highest dose used with carboplatin in NSCLC trials) and
#: carboplatin Calvert target AUC (mg*min/mL).
PACLITAXEL_MAX_MG_M2, CARBOPLATIN_MAX_AUC = 225.0, 7.5
PACLITAXEL_STANDARD_MG_M2, CARBOPLATIN_STANDARD_AUC = 175.0, 6.0
#: Discrete dose levels per drug, as fractions of the standard dose: hold, -40%, -20%, standard, +20%.
DOSE_LEVELS = (0.0, 0.6, 0.8, 1.0, 1.2)
#: The clinical rule: after grade 4 neutropenia the next cycles are reduced by one 20% level, at most twice.
REDUCTION_STEP, LOWEST_CONVENTIONAL_LEVEL = 0.2, 0.6

REWARD_LOW = np.array([-RESPONSE_CAP - PROGRESSION_PENALTY, -(GRADE_COST[4] + GRADE4_DAY_COST * CYCLE_H / 24.0)])
REWARD_HIGH = np.array([RESPONSE_CAP, 0.0])
#: CTCAE v5 ANC thresholds of grades 3 and 4 (1e9/L), from the grading module
GRADE3_E9_L, GRADE4_E9_L = ANC_GRADE_THRESHOLDS_E9_L[1:]
#: Floor of carried-over neutrophil states (1e9/L) and tumour size (mm) between cycles.
STATE_FLOOR = 1e-30

# ---------------------------------------------------------------------------- observation
ANC_CAP_E9_L, SLD_CAP_CM, SIZE_RATIO_CAP = 50.0, 100.0, 10.0
OBS_NAMES = tuple(f"covariate_{c}" for c in COVARIATE_NAMES) + (
    "anc_baseline", "anc_nadir_last_cycle", "anc_day21_last_cycle", "sld_baseline_cm", "sld_last_assessed_rel",
    "sld_smallest_assessed_rel", "assessed_this_cycle", "paclitaxel_last_rel", "carboplatin_last_rel",
    "cycle_fraction")
OBS = {name: i for i, name in enumerate(OBS_NAMES)}
NOT_ASSESSED = -1  # info["recist"] before the first assessment
#: column of the baseline SLD in a cohort's ``tumour_params`` rows (TumourParameters field order)
TUMOUR_BASELINE = [f.name for f in fields(TumourParameters)].index("baseline_mm")


# ---------------------------------------------------------------------------- actions
class CombinationActions:
    """Action space and its mapping to (paclitaxel mg/m2, carboplatin target AUC mg*min/mL).

    Continuous ``Box(-1, 1, (2,))``: dose = (a + 1) / 2 * maximum, linear (225 mg/m2, AUC 7.5);
    outside [-1, 1] is clipped (counted in ``info["clip_count"]``, one warning per instance);
    NaN/inf and wrong shapes raise ValueError. Discrete ``Discrete(25)``: index = 5 * i + j with
    i, j the paclitaxel and carboplatin levels of :data:`DOSE_LEVELS` x the standard dose.
    """

    def __init__(self, discrete: bool):
        self.discrete = bool(discrete)
        self.maximum = np.array([PACLITAXEL_MAX_MG_M2, CARBOPLATIN_MAX_AUC])
        self.standard = np.array([PACLITAXEL_STANDARD_MG_M2, CARBOPLATIN_STANDARD_AUC])
        self.levels = np.asarray(DOSE_LEVELS)
        self.space: spaces.Space = spaces.Discrete(len(DOSE_LEVELS) ** 2) if self.discrete else \
            spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._warned = False

    def to_doses(self, actions, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` actions -> ``(doses (n, 2) [mg/m2, AUC], clipped (n,) bool)``."""
        if self.discrete:
            values = check_discrete_actions(actions, n, self.space.n, self.space, "dose-combination")
            k = len(DOSE_LEVELS)
            fractions = np.stack([self.levels[values // k], self.levels[values % k]], axis=1)
            return fractions * self.standard, np.zeros(n, dtype=bool)
        try:
            values = np.asarray(actions, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"action must be numeric, in the space {self.space}, got {actions!r}") from None
        expected = (2,) if n == 1 else (n, 2)
        if values.shape != expected and not (n == 1 and values.shape == (1, 2)):
            raise ValueError(f"action must have shape {expected} (paclitaxel, carboplatin; space "
                             f"{self.space}), got shape {values.shape}")
        values = values.reshape(n, 2)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"action {float(values[~np.isfinite(values)][0])} is not finite; actions must "
                             f"lie in [-1, 1]")
        clipped = np.any((values < -1.0) | (values > 1.0), axis=1)
        if clipped.any() and not self._warned:
            self._warned = True
            logger.warn(f"action {values[clipped][0]} outside [-1, 1] was clipped (counted in "
                        f"info['clip_count']; warned once)")
        return (np.clip(values, -1.0, 1.0) + 1.0) * 0.5 * self.maximum, clipped

    def from_doses(self, paclitaxel_mg_m2, carboplatin_auc) -> np.ndarray:
        """Actions for ``(n,)`` doses: continuous ``(n, 2)`` float32, discrete ``(n,)`` nearest levels."""
        doses = np.stack(np.broadcast_arrays(np.asarray(paclitaxel_mg_m2, float), np.asarray(carboplatin_auc, float)),
                         axis=-1).reshape(-1, 2)
        doses = np.clip(doses, 0.0, self.maximum)
        if self.discrete:
            index = np.abs(doses[:, :, None] / self.standard[None, :, None] - self.levels).argmin(axis=2)
            return index[:, 0] * len(DOSE_LEVELS) + index[:, 1]
        return (2.0 * doses / self.maximum - 1.0).astype(np.float32)


def conventional_doses(observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The conventional regimen as a policy of the observation: ``(paclitaxel mg/m2, carboplatin AUC)``.

    175 mg/m2 + AUC 6 in cycle 1; afterwards the last cycle's dose level, reduced by 20% of the
    standard dose (at most to 60%) when the last cycle's observed ANC nadir was grade 4
    (< 0.5e9/L), the clinical 20-25% reduction. Works on ``(D,)`` or ``(n, D)`` observations.
    """
    obs = np.atleast_2d(np.asarray(observations, dtype=float))
    last_level = obs[:, OBS["paclitaxel_last_rel"]] * PACLITAXEL_MAX_MG_M2 / PACLITAXEL_STANDARD_MG_M2
    level = np.clip(np.round(last_level, 6), LOWEST_CONVENTIONAL_LEVEL, 1.0)
    grade4 = obs[:, OBS["anc_nadir_last_cycle"]] < GRADE4_E9_L
    level = np.where(grade4, np.maximum(level - REDUCTION_STEP, LOWEST_CONVENTIONAL_LEVEL), level)
    level = np.where(obs[:, OBS["cycle_fraction"]] <= 0, 1.0, level)
    return level * PACLITAXEL_STANDARD_MG_M2, level * CARBOPLATIN_STANDARD_AUC


# ---------------------------------------------------------------------------- simulators
@cache
def load_simulator(drug: str) -> PKSimulator:
    """The shipped PK-VAE of ``drug`` (once per process; FileNotFoundError while not trained)."""
    return PKSimulator.from_pretrained(drug)


def resolve_simulators(simulators) -> tuple[PatientSimulator, PatientSimulator]:
    """``None`` (shipped PK-VAEs), ``"groundtruth"`` or a pair ``(paclitaxel, carboplatin)`` of simulators."""
    if simulators is None:
        return load_simulator("paclitaxel"), load_simulator("carboplatin")
    if isinstance(simulators, str):
        if simulators != "groundtruth":
            raise ValueError(f"simulators must be None (shipped PK-VAEs), 'groundtruth' or a pair of "
                             f"PatientSimulators (paclitaxel, carboplatin), got {simulators!r}")
        return GroundTruthCycleSimulator("paclitaxel"), GroundTruthCycleSimulator("carboplatin")
    pair = tuple(simulators) if isinstance(simulators, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(s, PatientSimulator) for s in pair):
        raise ValueError(f"simulators must be a pair (paclitaxel, carboplatin) of PatientSimulators "
                         f"(vae_simulator.interface), got {simulators!r}")
    for drug, sim in zip(DRUGS, pair):
        if abs(sim.interval_h - CYCLE_H) > 1e-9:
            raise ValueError(f"the {drug} simulator ({sim.drug}) steps {sim.interval_h:g}-h intervals; the "
                             f"combination cycle is {CYCLE_H:g} h (21 days)")
    return pair[0], pair[1]


# ---------------------------------------------------------------------------- episodes
@dataclass
class Cohort:
    """``N`` running episodes (row = patient); ``(N, K, ...)`` histories over the ``K`` cycles."""

    covariates: np.ndarray      # (N, C) in COVARIATE_NAMES order
    z_paclitaxel: np.ndarray    # (N, dp) latent of the paclitaxel decoder
    z_carboplatin: np.ndarray   # (N, dc)
    anc_params: np.ndarray      # (N, 5) FribergParameters fields
    tumour_params: np.ndarray   # (N, 7) TumourParameters fields
    anc_normals: np.ndarray     # (N, 1 + 2K) ANC assay normals: baseline, then (nadir, day 21) per cycle
    state_paclitaxel: np.ndarray  # (N, Hp) decoder states
    state_carboplatin: np.ndarray
    start_mg_l: np.ndarray      # (N, 2) concentrations at the start of the next cycle
    anc_state: np.ndarray       # (N, 5) Friberg state (1e9/L)
    tumour_state: np.ndarray    # (N, 4) tumour state
    given: np.ndarray           # (N,) cycles given
    doses: np.ndarray           # (N, K, 2) paclitaxel mg/m2, carboplatin target AUC
    doses_mg: np.ndarray        # (N, K, 2) mg given
    anc_obs: np.ndarray         # (N, 3) observed ANC: baseline, last nadir, last day 21 (1e9/L)
    nadir_obs_course: np.ndarray  # (N, K) observed nadir of each cycle (1e9/L)
    sld_assessed: np.ndarray    # (N, 2) last and smallest assessed SLD (mm)
    assessed: np.ndarray        # (N,) bool, this cycle had a RECIST assessment
    recist: np.ndarray          # (N,) last RECIST code (NOT_ASSESSED before the first)
    best_response: np.ndarray   # (N,)
    grade4_events: np.ndarray   # (N,) cycles with grade 4 neutropenia
    progressed: np.ndarray      # (N,) bool
    clip_count: np.ndarray      # (N,)
    anc_course: np.ndarray      # (N, K, T) true ANC on the PD grid (for render)
    sld_course: np.ndarray      # (N, K, T) true SLD (mm)
    decoder_constants: tuple    # per drug: each patient's fixed PK inputs (PatientStepper.start)
    mg_per_unit: np.ndarray     # (N, 2) mg per unit of action dose: BSA (m2) and Calvert mg per AUC unit


class CombinationTask:
    """Fixed parts of the combination environment; arguments in the PaclitaxelCarboplatinEnv docstring."""

    def __init__(self, *, simulators=None, discrete: bool = False, vector_reward: bool = False,
                 reward_weights=DEFAULT_REWARD_WEIGHTS, n_cycles: int = 6, assessment_every: int = 2,
                 noise_scale: float = 1.0, iiv_scale: float = 1.0, interaction: float | None = None,
                 pd_backend: str = "compiled"):
        if pd_backend not in PD_BACKENDS:
            raise ValueError(f"pd_backend must be one of {PD_BACKENDS}, got {pd_backend!r}")
        self.pd_backend = pd_backend
        pac, carbo = resolve_simulators(simulators)
        self.sims = (pac, carbo)
        # every simulator steps through its fast path (log-sigma not needed)
        self.steppers = tuple(batch_invariant(s, sigma_index=[]) for s in self.sims)
        self.vector_reward = bool(vector_reward)
        self.reward_weights = check_reward_weights(reward_weights, ("response", "toxicity"))
        trained = min(int(s.max_intervals) for s in self.sims)
        self.n_cycles = check_int_in("n_cycles", n_cycles, 1, trained)
        self.assessment_every = check_int_in("assessment_every", assessment_every, 1, self.n_cycles)
        self.noise_scale = check_finite_at_least("noise_scale", noise_scale)
        self.iiv_scale = check_finite_at_least("iiv_scale", iiv_scale)
        if interaction is not None and not (isinstance(interaction, Real) and np.isfinite(interaction)):
            raise ValueError(f"interaction must be None or a finite number (L^2/(umol^2 h)), got {interaction!r}")
        self.interaction = None if interaction is None else float(interaction)
        self.actions = CombinationActions(discrete)
        self.molar_mass = np.array([PACLITAXEL_MOLAR_MASS_G_MOL, CARBOPLATIN_MOLAR_MASS_G_MOL])
        # per-cycle AUC of each drug and paclitaxel's time above 0.05 umol/L, the grids checked once
        self.auc = tuple(IntervalExposure(sim.grid_h, "auc_interval") for sim in self.sims)
        self.dose_ranges_mg = np.array([sim.dose_range_mg for sim in self.sims])
        self.paclitaxel_time_above = IntervalExposure(self.sims[0].grid_h, "time_above", TC_THRESHOLD_MG_L)
        union = np.union1d([0.0], np.union1d(*(s.grid_h for s in self.sims)))
        self.pk_times_h = union
        self.pd_times_h = refine_grid(union, np.zeros((1, union.size)), max_gap_h=6.0)[0]
        self.pd_dt_h = np.diff(self.pd_times_h)
        self.hidden = [int(s.state_size) for s in self.sims]
        cov_low, cov_high = covariate_bounds()
        extra_high = [ANC_CAP_E9_L] * 3 + [SLD_CAP_CM, SIZE_RATIO_CAP, 1.0, 1.0, 1.0, 1.0, 1.0]
        self.observation_space = spaces.Box(np.concatenate([cov_low, np.zeros(len(extra_high))]).astype(np.float32),
                                            np.concatenate([cov_high, extra_high]).astype(np.float32),
                                            dtype=np.float32)
        self.reward_space = spaces.Box(REWARD_LOW.astype(np.float32), REWARD_HIGH.astype(np.float32),
                                       dtype=np.float32)

    # ------------------------------------------------------------------ reset
    def draw_episode(self, rng: np.random.Generator, options: dict | None = None) -> dict[str, np.ndarray]:
        """All random numbers of one patient's episode, in a fixed order: covariates, z (paclitaxel,
        carboplatin), neutrophil and tumour PD parameters, ANC assay normals. Pinned ``options``
        (covariates, z_paclitaxel, z_carboplatin) replace drawn values without changing the rest."""
        options = {} if options is None else dict(options)
        unknown = sorted(set(options) - {"covariates", "z_paclitaxel", "z_carboplatin"})
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; allowed: 'covariates', 'z_paclitaxel', "
                             f"'z_carboplatin'")
        pac, carbo = self.sims
        draws = {"covariates": draw_covariate_row(rng),  # = Covariates.sample(1, rng).as_array()[0], faster
                 "z_paclitaxel": rng.standard_normal(pac.latent_dim),  # N(0, I) now, placed below
                 "z_carboplatin": rng.standard_normal(carbo.latent_dim)}
        # the normals of FribergParameters.sample(1, rng) then TumourParameters.sample(1, rng), in their
        # order; the parameters are computed for all restarting patients at once in start()
        draws["pd_normals"] = rng.standard_normal(friberg.N_RANDOM_EFFECTS + tumour.N_RANDOM_EFFECTS)
        draws["anc_normals"] = rng.standard_normal(1 + 2 * self.n_cycles)
        return self.place_latents(draws, options)

    def place_latents(self, draws: dict[str, np.ndarray], options: dict) -> dict[str, np.ndarray]:
        """Pinned covariates and latents replace the drawn ones; drawn latents (N(0, I) normals) are placed
        in the decoders' latent population given the covariates; anything pinned is checked."""
        pinned = [key for key in ("covariates", "z_paclitaxel", "z_carboplatin") if options.get(key) is not None]
        if "covariates" in pinned:
            draws["covariates"] = np.asarray(options["covariates"], dtype=float).reshape(-1)
        for key, sim in zip(("z_paclitaxel", "z_carboplatin"), self.sims):
            if key in pinned:
                draws[key] = np.asarray(options[key], dtype=float)  # exactly (latent_dim,): checked below
            else:  # the decoder's latent population given this patient's covariates
                draws[key] = population_latent(sim, draws["covariates"], draws[key], self.iiv_scale)
        if pinned:
            for key, sim in zip(("z_paclitaxel", "z_carboplatin"), self.sims):
                # shapes, covariate ranges; a pinned z also within the fitted population (latent_bounds)
                draws[key] = sim.make_patients(draws["covariates"], draws[key], check_range=key in pinned).z[0]
        return draws

    def new_cohort(self, n: int) -> Cohort:
        k, t, z = self.n_cycles, self.pd_times_h.size, np.zeros
        pac, carbo = self.sims
        return Cohort(z((n, len(COVARIATE_NAMES))), z((n, pac.latent_dim)), z((n, carbo.latent_dim)), z((n, 5)),
                      z((n, 7)), z((n, 1 + 2 * k)), z((n, self.hidden[0])), z((n, self.hidden[1])), z((n, 2)),
                      z((n, 5)), z((n, 4)), z(n, np.int64), z((n, k, 2)), z((n, k, 2)), z((n, 3)), z((n, k)), z((n, 2)),
                      z(n, bool), z(n, np.int64), z(n, np.int64), z(n, np.int64), z(n, bool), z(n, np.int64),
                      z((n, k, t)), z((n, k, t)),
                      tuple(z((n, s.constants_size), s.dtype) for s in self.steppers), z((n, 2)))

    def start(self, c: Cohort, rows: np.ndarray, draws: list[dict[str, np.ndarray]]) -> None:
        """Begin new episodes in ``rows`` from their draws."""
        for key in ("covariates", "z_paclitaxel", "z_carboplatin", "anc_normals"):
            getattr(c, key)[rows] = np.stack([d[key] for d in draws])
        eta = np.stack([d["pd_normals"] for d in draws]).T
        anc = FribergParameters.from_normals(eta[:friberg.N_RANDOM_EFFECTS], self.iiv_scale)
        tum = self.tumour_parameters(eta[friberg.N_RANDOM_EFFECTS:friberg.N_RANDOM_EFFECTS + tumour.N_RANDOM_EFFECTS],
                                     draws)
        c.anc_params[rows] = np.stack([getattr(anc, f.name) for f in fields(FribergParameters)], axis=1)
        c.tumour_params[rows] = np.stack([getattr(tum, f.name) for f in fields(TumourParameters)], axis=1)
        for stepper, z, state, constants in zip(self.steppers, (c.z_paclitaxel, c.z_carboplatin),
                                                (c.state_paclitaxel, c.state_carboplatin), c.decoder_constants):
            state[rows], constants[rows] = stepper.start(c.covariates[rows], z[rows])  # validated when drawn
        cov = Covariates.from_array(c.covariates[rows])  # one check for all rows (validated when drawn)
        c.mg_per_unit[rows] = np.stack([cov.BSA, calvert_dose_mg(cov, 1.0)], axis=1)
        anc_params, tum_params = anc, tum
        c.anc_state[rows], c.tumour_state[rows] = friberg.steady_state(anc_params), tumour.initial_state(tum_params)
        baseline_obs = friberg.observe_anc(anc_params.circ0_e9_l, ReplayNormals(c.anc_normals[rows, 0]),
                                           error_scale=self.noise_scale)
        c.anc_obs[rows] = baseline_obs[:, None]
        c.sld_assessed[rows] = tum_params.baseline_mm[:, None]
        for key in ("start_mg_l", "given", "doses", "doses_mg", "nadir_obs_course", "assessed", "grade4_events",
                    "progressed", "clip_count", "anc_course", "sld_course"):
            getattr(c, key)[rows] = 0
        c.recist[rows], c.best_response[rows] = NOT_ASSESSED, NOT_ASSESSED

    def tumour_parameters(self, eta: np.ndarray, draws: list[dict[str, np.ndarray]]) -> TumourParameters:
        """The restarting patients' tumour parameters from their standard normals ``eta (3, n)``."""
        return TumourParameters.from_normals(eta, self.iiv_scale, interaction_l2_umol2_h=self.interaction)

    # ------------------------------------------------------------------ step
    def advance(self, c: Cohort, rows: np.ndarray, doses: np.ndarray, clipped: np.ndarray) -> StepResult:
        """Give ``rows`` their next cycle (doses ``(n, 2)`` mg/m2 and AUC); returns objectives, flags and info."""
        self.check_running(c, rows)
        k = c.given[rows]
        pk = self.pk_cycle(c, rows, doses)
        anc_params, tum_params = c.anc_params[rows], c.tumour_params[rows]
        if self.pd_backend == "compiled":  # parameters validated at reset, concentrations >= 0 by construction
            anc, sld = integrate_cycle(c.anc_state[rows], c.tumour_state[rows], self.pd_times_h, *pk["conc_umol"],
                                       anc_params, tum_params)
        else:
            anc, sld = simulate_both(c.anc_state[rows], c.tumour_state[rows], self.pd_times_h, *pk["conc_umol"],
                                     FribergParameters(*anc_params.T), TumourParameters(*tum_params.T),
                                     backend="numpy")
        out = self.cycle_outcome(c, rows, k, anc, sld, doses, pk["dose_mg"], clipped)
        objectives = combination_objectives(out["log_size_ratio"], out["grade"], out["grade4_days"],
                                            out["progressed"])
        info = {**self.cycle_info(pk, out, objectives), **self.patient_info(c, rows)}
        return StepResult(objectives, out["progressed"], k + 1 >= self.n_cycles, info)

    def check_running(self, c: Cohort, rows: np.ndarray) -> None:
        if np.any(c.given[rows] >= self.n_cycles) or np.any(c.progressed[rows]):
            raise RuntimeError("the episode has ended (course complete or progression); call reset()")

    def pk_cycle(self, c: Cohort, rows: np.ndarray, doses: np.ndarray) -> dict:
        """One cycle of both decoders for ``rows``: doses (mg) given, each drug's concentrations on the PD
        grid (umol/L), per-cycle AUCs (mg*h/L) and paclitaxel's time above 0.05 umol/L (h)."""
        wanted_mg = doses * c.mg_per_unit[rows]
        dose_mg = np.clip(wanted_mg, self.dose_ranges_mg[:, 0], self.dose_ranges_mg[:, 1])
        conc_umol, auc_mg_h_l, tc_h = [], [], None
        for j, (sim, stepper, state, constants) in enumerate(zip(
                self.sims, self.steppers, (c.state_paclitaxel, c.state_carboplatin), c.decoder_constants)):
            conc, _, state[rows] = stepper.step(state[rows], constants[rows], dose_mg[:, j])
            start = c.start_mg_l[rows, j]
            auc_mg_h_l.append(self.auc[j](conc, start))
            if j == 0:
                tc_h = self.paclitaxel_time_above(conc, start)
            on_grid = sim.concentration_at(conc, start, self.pk_times_h)
            conc_umol.append(refine_grid(self.pk_times_h, on_grid, max_gap_h=6.0)[1] / self.molar_mass[j] * 1000.0)
            c.start_mg_l[rows, j] = conc[:, -1]
        return {"wanted_mg": wanted_mg, "dose_mg": dose_mg, "conc_umol": conc_umol, "auc_mg_h_l": auc_mg_h_l,
                "tc_h": tc_h}

    def cycle_outcome(self, c: Cohort, rows: np.ndarray, k: np.ndarray, anc: np.ndarray, sld: np.ndarray,
                      doses: np.ndarray, dose_mg: np.ndarray, clipped: np.ndarray) -> dict:
        """Neutropenia, its observation and the RECIST assessment of one integrated cycle; updates the cohort."""
        size_before = c.tumour_state[rows, tumour.SIZE]
        # numerical floors (no effect on any physiological value): an ablated marrow or an eradicated
        # tumour must not underflow to the exact 0 the models refuse as a state
        anc[:, :, -1], sld[:, tumour.SIZE, -1] = np.maximum(anc[:, :, -1], STATE_FLOOR), \
            np.maximum(sld[:, tumour.SIZE, -1], STATE_FLOOR)
        c.anc_state[rows], c.tumour_state[rows] = anc[:, :, -1], sld[:, :, -1]
        anc_course, sld_course = anc[:, friberg.CIRC], sld[:, tumour.SIZE]
        nadir = anc_course.min(axis=1)
        grade = neutropenia_grade(nadir)
        grade4_days = self.days_below(anc_course, GRADE4_E9_L)
        normals = c.anc_normals[rows[:, None], 1 + 2 * k[:, None] + np.arange(2)]  # (n, 2): nadir, day 21
        observed = friberg.observe_anc(np.stack([nadir, anc_course[:, -1]], axis=1), ReplayNormals(normals),
                                       error_scale=self.noise_scale).T
        c.anc_obs[rows, 1], c.anc_obs[rows, 2] = observed
        c.nadir_obs_course[rows, k] = observed[0]

        size_now = sld_course[:, -1]
        assessed = ((k + 1) % self.assessment_every == 0) | (k + 1 == self.n_cycles)
        status = recist_status(c.tumour_params[rows, TUMOUR_BASELINE], c.sld_assessed[rows, 1], size_now)
        progressed = assessed & (status == Recist.PD)
        c.recist[rows] = np.where(assessed, status, c.recist[rows])
        c.best_response[rows] = np.where(assessed & ((c.best_response[rows] == NOT_ASSESSED) |
                                                     (status < c.best_response[rows])), status, c.best_response[rows])
        c.sld_assessed[rows, 0] = np.where(assessed, size_now, c.sld_assessed[rows, 0])
        c.sld_assessed[rows, 1] = np.where(assessed, np.minimum(c.sld_assessed[rows, 1], size_now),
                                           c.sld_assessed[rows, 1])
        c.assessed[rows], c.progressed[rows] = assessed, progressed
        c.doses[rows, k], c.doses_mg[rows, k] = doses, dose_mg
        c.anc_course[rows, k], c.sld_course[rows, k] = anc_course, sld_course
        c.grade4_events[rows] += grade == 4
        c.clip_count[rows] += clipped
        c.given[rows] = k + 1
        return {"log_size_ratio": np.log(size_before / size_now), "grade": grade, "grade4_days": grade4_days,
                "nadir": nadir, "nadir_observed": observed[0], "size_now": size_now, "assessed": assessed,
                "progressed": progressed, "doses": doses, "clipped": clipped}

    def days_below(self, course: np.ndarray, threshold: float) -> np.ndarray:
        """Days (trapezoid on the PD grid) each ``(n, T)`` course spends below ``threshold``."""
        below = (course < threshold).astype(float)
        return np.sum(0.5 * (below[:, 1:] + below[:, :-1]) * self.pd_dt_h, axis=1) / 24.0

    def cycle_info(self, pk: dict, out: dict, objectives: np.ndarray) -> dict:
        """The ``info`` of one cycle (keys in the env docstring), without the patient's ground truth."""
        doses, dose_mg = out["doses"], pk["dose_mg"]
        auc_mg_h_l = pk["auc_mg_h_l"]
        auc_umol = [a / m * 1000.0 for a, m in zip(auc_mg_h_l, self.molar_mass)]
        return {"paclitaxel_mg_m2": doses[:, 0], "carboplatin_auc": doses[:, 1], "paclitaxel_mg": dose_mg[:, 0],
                "carboplatin_mg": dose_mg[:, 1], "dose_limited": np.any(dose_mg != pk["wanted_mg"], axis=1),
                "auc_paclitaxel_umol_h_l": auc_umol[0], "auc_carboplatin_umol_h_l": auc_umol[1],
                "auc_carboplatin_mg_min_ml": auc_mg_h_l[1] / MG_MIN_PER_ML_TO_MG_H_PER_L,
                "paclitaxel_time_above_0_05_umol_l_h": pk["tc_h"], "anc_nadir": out["nadir"],
                "anc_nadir_observed": out["nadir_observed"], "neutropenia_grade": out["grade"],
                "grade4": out["grade"] == 4, "grade4_days": out["grade4_days"], "tumour_size_mm": out["size_now"],
                "tumour_assessed": out["assessed"], "objectives": objectives, "response": objectives[:, 0],
                "toxicity": -objectives[:, 1], "clipped": out["clipped"]}

    def rewards(self, objectives: np.ndarray) -> np.ndarray:
        """``(n, 2)`` float32 vectors, or ``(n,)`` float64 weighted sums ``w . [response, -toxicity]``."""
        if self.vector_reward:
            return objectives.astype(np.float32)
        return objectives @ self.reward_weights

    def observations(self, c: Cohort) -> np.ndarray:
        """``(N, D)`` float32 observations (layout :data:`OBS_NAMES`, units in the env docstring)."""
        baseline = c.tumour_params[:, 0]
        last = np.maximum(c.given - 1, 0)
        last_doses = np.where((c.given > 0)[:, None], c.doses[np.arange(len(c.given)), last], 0.0)
        parts = [scaled_covariates(c.covariates), np.minimum(c.anc_obs, ANC_CAP_E9_L),
                 np.minimum(baseline / 10.0, SLD_CAP_CM)[:, None],
                 np.minimum(c.sld_assessed / baseline[:, None], SIZE_RATIO_CAP), c.assessed[:, None].astype(float),
                 last_doses / self.actions.maximum, (c.given / self.n_cycles)[:, None]]
        return np.concatenate(parts, axis=1).astype(np.float32)

    PATIENT_KEYS = ("covariates", "z_paclitaxel", "z_carboplatin", "cycle", "recist", "best_response",
                    "grade4_events", "anc_baseline", "tumour_baseline_mm", "clip_count")

    def patient_info(self, c: Cohort, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Ground truth reported at reset and every step."""
        return {"covariates": c.covariates[rows], "z_paclitaxel": c.z_paclitaxel[rows],
                "z_carboplatin": c.z_carboplatin[rows], "cycle": c.given[rows], "recist": c.recist[rows],
                "best_response": c.best_response[rows], "grade4_events": c.grade4_events[rows],
                "anc_baseline": c.anc_params[rows, 0], "tumour_baseline_mm": c.tumour_params[rows, 0],
                "clip_count": c.clip_count[rows]}

    def render(self, c: Cohort, row: int) -> np.ndarray:
        """The course of ``row`` so far as a ``uint8 (H, W, 3)`` image (:mod:`pk_envs.combination_render`)."""
        from pk_envs.combination_render import render_course  # matplotlib only when rendering

        return render_course(self, c, row)


def population_latent(sim: PatientSimulator, covariates: np.ndarray, normals: np.ndarray, iiv_scale: float) -> np.ndarray:
    """A patient's latent from standard normals: the simulator's latent population given the
    covariates, as :meth:`PatientSimulator.sample_patients` draws it."""
    return sim.typical_latent(covariates[None, :])[0] + iiv_scale * sim.latent_chol @ normals

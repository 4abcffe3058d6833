"""The batched dynamics of ``PKDose/PaclitaxelCarboplatin-v1``: the v0 task with a multimodal patient.

:class:`MultimodalCombinationTask` extends :class:`~pk_envs.combination_core.CombinationTask` (same
PK-VAE decoders, actions and RECIST bookkeeping) with what the ground truth of
:mod:`vae_simulator.groundtruth.pd` adds for v1: three tumour types, platelets (carboplatin's
dose-limiting toxicity), paclitaxel neuropathy, febrile neutropenia, pharmacogenomic and nuisance
features with missingness, and clinic-style cycle delays. Units, layout and sources are documented
in :mod:`pk_envs.combination_v1`. Every random number is drawn at reset, so the single and vector
environments share this code and agree bit for bit, as in v0.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from gymnasium import spaces

from pk_envs._common import ReplayNormals
from pk_envs.combination_core import (
    CARBOPLATIN_MAX_AUC,
    CARBOPLATIN_STANDARD_AUC,
    DOSE_LEVELS,
    GRADE4_E9_L,
    LOWEST_CONVENTIONAL_LEVEL,
    OBS,
    OBS_NAMES,
    PACLITAXEL_MAX_MG_M2,
    PACLITAXEL_STANDARD_MG_M2,
    REDUCTION_STEP,
    REWARD_HIGH,
    REWARD_LOW,
    STATE_FLOOR,
    Cohort,
    CombinationTask,
)
from pk_envs.rewards import (
    ENDPOINT_REWARD_HIGH,
    ENDPOINT_REWARD_LOW,
    FEBRILE_COST,
    NEUROPATHY_GRADE_COST,
    OBJECTIVE_RESPONSES,
    PLATELET_GRADE_COST,
    RESPONSE_BONUS,
    endpoint_objectives,
    multimodal_objectives,
)
from pk_envs.task import StepResult
from vae_simulator.covariates import draw_covariate_row
from vae_simulator.groundtruth.pd import (
    FribergParameters,
    TumourParameters,
    adverse_events,
    friberg,
    integrate_chains,
    platelets,
    tumour,
    tumour_types,
)
from vae_simulator.groundtruth.pd.grading import thrombocytopenia_grade
from vae_simulator.groundtruth.pd.patient_features import FEATURE_NAMES, check_features, draw_features

#: Clinic rule (Taxol and Paraplatin US prescribing information): a cycle is given only when
#: neutrophils >= 1.5e9/L and platelets >= 100e9/L; otherwise it waits a week, at most twice.
RETREAT_ANC_E9_L, RETREAT_PLATELETS_E9_L = 1.5, 100.0
DELAY_H, MAX_DELAY_WEEKS = 168.0, 2
#: Platelets are observed in units of 1e11/L (100e9/L), so that they share the scale of the other inputs.
PLATELET_OBS_UNIT_E9_L, PLATELET_CAP_1E11_L = 100.0, 10.0
#: A dose-level step of the clinical rules: 20 % of the standard dose (v0's reduction step).
LEVEL_STEP = REDUCTION_STEP

V1_EXTRA_NAMES = ("platelets_baseline", "platelets_nadir_last_cycle", "platelets_day21_last_cycle",
                  "neuropathy_grade", "febrile_neutropenia_last_cycle", "delay_weeks_last_cycle") + tuple(
    f"tumour_{name}" for name in tumour_types.TUMOUR_TYPES) + FEATURE_NAMES
#: v0's 17 observations first (same meaning, so v0 rules read v1 observations), then the v1 additions.
OBS_NAMES_V1 = OBS_NAMES + V1_EXTRA_NAMES
OBS_V1 = {name: i for i, name in enumerate(OBS_NAMES_V1)}
REWARD_LOW_V1 = REWARD_LOW - np.array([0.0, PLATELET_GRADE_COST[4] + FEBRILE_COST + NEUROPATHY_GRADE_COST[3]])
REWARD_HIGH_V1 = REWARD_HIGH + np.array([RESPONSE_BONUS, 0.0])
#: ``reward_objectives``: the shaped clinical objectives (default) or the study's binary endpoints.
REWARD_OBJECTIVES = ("shaped", "endpoints")
RESET_OPTIONS = ("covariates", "z_paclitaxel", "z_carboplatin", "tumour_type", "features")


@dataclass
class MultimodalCohort(Cohort):
    """:class:`Cohort` plus the v1 patient (row = patient)."""

    tumour_type: np.ndarray        # (N,) index in tumour_types.TUMOUR_TYPES
    features: np.ndarray           # (N, 6) patient_features.FEATURE_NAMES
    platelet_params: np.ndarray    # (N, 5) FribergParameters fields
    platelet_state: np.ndarray     # (N, 5) Friberg state (1e9/L)
    platelet_normals: np.ndarray   # (N, 1 + 2K) assay normals: baseline, then (nadir, day 21) per cycle
    delay_normals: np.ndarray      # (N, K, MAX_DELAY_WEEKS, 2) assay normals of the re-checks (ANC, platelets)
    platelet_obs: np.ndarray       # (N, 3) observed: baseline, last nadir, last day 21 (1e9/L)
    neuropathy_sensitivity: np.ndarray  # (N,) per h of Tc>0.05
    neuropathy_damage: np.ndarray  # (N,)
    neuropathy_grade: np.ndarray   # (N,) 0-3
    febrile_uniforms: np.ndarray   # (N, K)
    febrile_last: np.ndarray       # (N,) bool
    delay_weeks_last: np.ndarray   # (N,)
    sae_cycles: np.ndarray         # (N,) cycles with any serious adverse event
    platelet_course: np.ndarray    # (N, K, T) true platelets on the PD grid (for render)


class MultimodalCombinationTask(CombinationTask):
    """Fixed parts of ``PaclitaxelCarboplatin-v1``; arguments as :class:`CombinationTask`, plus
    ``tumour_types``: the types drawn (a subset of :data:`tumour_types.TUMOUR_TYPES`, in their
    published proportions renormalised), ``cycle_delays`` (the clinic's retreatment rule) and
    ``reward_objectives`` (one of :data:`REWARD_OBJECTIVES`)."""

    def __init__(self, *, tumour_types_drawn=tumour_types.TUMOUR_TYPES, cycle_delays: bool = True,
                 reward_objectives: str = "shaped", **kwargs):
        if reward_objectives not in REWARD_OBJECTIVES:
            raise ValueError(f"reward_objectives must be one of {list(REWARD_OBJECTIVES)}, got {reward_objectives!r}")
        super().__init__(**kwargs)
        self.reward_objectives = reward_objectives
        if self.pd_backend != "compiled":
            raise ValueError(f"PaclitaxelCarboplatin-v1 runs the compiled PD only (pd_backend='compiled'), got "
                             f"{self.pd_backend!r}")
        names = (tumour_types_drawn,) if isinstance(tumour_types_drawn, str) else tuple(tumour_types_drawn)
        codes = sorted({tumour_types.tumour_type_code(str(name)) for name in names})
        if not codes:
            raise ValueError(f"tumour_types_drawn must name at least one of {list(tumour_types.TUMOUR_TYPES)}")
        weights = np.zeros(len(tumour_types.TUMOUR_TYPES))
        weights[codes] = np.asarray(tumour_types.TUMOUR_TYPE_PROPORTIONS)[codes]
        self.type_cdf = np.cumsum(weights / weights.sum())
        self.cycle_delays = bool(cycle_delays)
        low = np.concatenate([self.observation_space.low, np.zeros(len(V1_EXTRA_NAMES))])
        high = np.concatenate([self.observation_space.high,
                               [PLATELET_CAP_1E11_L] * 3 + [3.0, 1.0, float(MAX_DELAY_WEEKS)] +
                               [1.0] * (len(tumour_types.TUMOUR_TYPES) + 3) + [2.0, 5.0, 5.0]])
        low[OBS_V1["nuisance_1"]], low[OBS_V1["nuisance_2"]] = -5.0, -5.0
        self.observation_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        reward_low, reward_high = ((REWARD_LOW_V1, REWARD_HIGH_V1) if reward_objectives == "shaped"
                                   else (ENDPOINT_REWARD_LOW, ENDPOINT_REWARD_HIGH))
        self.reward_space = spaces.Box(reward_low.astype(np.float32), reward_high.astype(np.float32),
                                       dtype=np.float32)
        self.delay_times_h = np.arange(0.0, DELAY_H + 1e-9, 6.0)

    # ------------------------------------------------------------------ reset
    def draw_episode(self, rng: np.random.Generator, options: dict | None = None) -> dict[str, np.ndarray]:
        """All random numbers of one episode, in a fixed order: tumour type, covariates (female for the
        gynaecological types), z normals, PD normals (neutrophils, tumour, platelets), assay normals
        (ANC, platelets, re-checks), neuropathy normal, febrile-neutropenia uniforms, features.
        Pinned ``options`` replace drawn values without changing the rest of the stream."""
        options = {} if options is None else dict(options)
        unknown = sorted(set(options) - set(RESET_OPTIONS))
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; allowed: {list(RESET_OPTIONS)}")
        k = self.n_cycles
        drawn_type = int(np.searchsorted(self.type_cdf, rng.random(), side="right"))
        code = drawn_type if options.get("tumour_type") is None else \
            tumour_types.tumour_type_code(str(options["tumour_type"]))
        female = tumour_types.TUMOUR_TYPES[code] in tumour_types.FEMALE_ONLY
        draws = {"tumour_type": np.array(code), "covariates": draw_covariate_row(rng, sex=0.0 if female else None),
                 "z_paclitaxel": rng.standard_normal(self.sims[0].latent_dim),
                 "z_carboplatin": rng.standard_normal(self.sims[1].latent_dim),
                 "pd_normals": rng.standard_normal(friberg.N_RANDOM_EFFECTS * 2 + tumour.N_RANDOM_EFFECTS),
                 "anc_normals": rng.standard_normal(1 + 2 * k), "platelet_normals": rng.standard_normal(1 + 2 * k),
                 "delay_normals": rng.standard_normal((k, MAX_DELAY_WEEKS, 2)),
                 "neuropathy_normal": rng.standard_normal(1), "febrile_uniforms": rng.random(k),
                 "features": draw_features(rng)}
        if options.get("features") is not None:
            draws["features"] = check_features(options["features"])
        draws = self.place_latents(draws, options)
        if female and draws["covariates"][1] != 0.0:
            raise ValueError(f"a {tumour_types.TUMOUR_TYPES[code]} patient must be female (covariate SEX 0), got "
                             f"SEX {draws['covariates'][1]!r}")
        return draws

    def new_cohort(self, n: int) -> MultimodalCohort:
        base = super().new_cohort(n)
        k, t, z = self.n_cycles, self.pd_times_h.size, np.zeros
        return MultimodalCohort(**{f.name: getattr(base, f.name) for f in fields(Cohort)},
                                tumour_type=z(n, np.int64), features=z((n, len(FEATURE_NAMES))),
                                platelet_params=z((n, 5)), platelet_state=z((n, 5)), platelet_normals=z((n, 1 + 2 * k)),
                                delay_normals=z((n, k, MAX_DELAY_WEEKS, 2)), platelet_obs=z((n, 3)),
                                neuropathy_sensitivity=z(n), neuropathy_damage=z(n), neuropathy_grade=z(n, np.int64),
                                febrile_uniforms=z((n, k)), febrile_last=z(n, bool), delay_weeks_last=z(n, np.int64),
                                sae_cycles=z(n, np.int64), platelet_course=z((n, k, t)))

    def tumour_parameters(self, eta: np.ndarray, draws: list[dict[str, np.ndarray]]) -> TumourParameters:
        """Each patient's tumour from its type's population (:mod:`tumour_types`)."""
        codes = np.array([int(d["tumour_type"]) for d in draws])
        columns = np.empty((len(fields(TumourParameters)), len(draws)))
        for code in np.unique(codes):
            mine = codes == code
            params = TumourParameters.from_normals(eta[:, mine], self.iiv_scale, tumour_types.POPULATIONS[code],
                                                   interaction_l2_umol2_h=self.interaction)
            columns[:, mine] = [getattr(params, f.name) for f in fields(TumourParameters)]
        return TumourParameters(*columns)

    def start(self, c: MultimodalCohort, rows: np.ndarray, draws: list[dict[str, np.ndarray]]) -> None:
        super().start(c, rows, draws)
        for key in ("tumour_type", "features", "platelet_normals", "delay_normals", "febrile_uniforms"):
            getattr(c, key)[rows] = np.stack([d[key] for d in draws])
        eta = np.stack([d["pd_normals"] for d in draws]).T[friberg.N_RANDOM_EFFECTS + tumour.N_RANDOM_EFFECTS:]
        plt = FribergParameters.from_normals(eta, self.iiv_scale, platelets.CARBOPLATIN_PLATELETS)
        c.platelet_params[rows] = np.stack([getattr(plt, f.name) for f in fields(FribergParameters)], axis=1)
        c.platelet_state[rows] = friberg.steady_state(plt)
        c.platelet_obs[rows] = platelets.observe_platelets(plt.circ0_e9_l, ReplayNormals(c.platelet_normals[rows, 0]),
                                                           self.noise_scale)[:, None]
        carrier = c.features[rows, FEATURE_NAMES.index("cyp2c8_star3_carrier")]
        c.neuropathy_sensitivity[rows] = adverse_events.neuropathy_sensitivity(
            np.concatenate([d["neuropathy_normal"] for d in draws]), carrier, iiv_scale=self.iiv_scale)
        for key in ("neuropathy_damage", "neuropathy_grade", "febrile_last", "delay_weeks_last", "sae_cycles",
                    "platelet_course"):
            getattr(c, key)[rows] = 0

    # ------------------------------------------------------------------ step
    def advance(self, c: MultimodalCohort, rows: np.ndarray, doses: np.ndarray, clipped: np.ndarray) -> StepResult:
        self.check_running(c, rows)
        k = c.given[rows]
        delay_weeks = self.delay_until_recovered(c, rows, k) if self.cycle_delays else np.zeros(rows.size, np.int64)
        pk = self.pk_cycle(c, rows, doses)
        responded_before = np.isin(c.best_response[rows], OBJECTIVE_RESPONSES)
        chains, sld = self.integrate(c, rows, self.pd_times_h, *pk["conc_umol"])
        plt_course = chains[:, 1, friberg.CIRC]
        c.platelet_state[rows] = np.maximum(chains[:, 1, :, -1], STATE_FLOOR)
        out = self.cycle_outcome(c, rows, k, chains[:, 0], sld, doses, pk["dose_mg"], clipped)

        plt_nadir = plt_course.min(axis=1)
        plt_grade = thrombocytopenia_grade(plt_nadir)
        normals = c.platelet_normals[rows[:, None], 1 + 2 * k[:, None] + np.arange(2)]
        c.platelet_obs[rows, 1], c.platelet_obs[rows, 2] = platelets.observe_platelets(
            np.stack([plt_nadir, plt_course[:, -1]], axis=1), ReplayNormals(normals), self.noise_scale).T
        febrile = c.febrile_uniforms[rows, k] < adverse_events.febrile_probability(out["grade4_days"])
        neuropathy_before = c.neuropathy_grade[rows]
        c.neuropathy_damage[rows] = adverse_events.neuropathy_damage(c.neuropathy_damage[rows],
                                                                     c.neuropathy_sensitivity[rows], pk["tc_h"])
        neuropathy_after = adverse_events.neuropathy_grade(c.neuropathy_damage[rows])
        c.neuropathy_grade[rows] = neuropathy_after
        severe_neuropathy = (neuropathy_after >= adverse_events.SEVERE_NEUROPATHY_GRADE) & \
            (neuropathy_before < adverse_events.SEVERE_NEUROPATHY_GRADE)
        serious = (out["grade"] == 4) | febrile | (plt_grade == 4) | severe_neuropathy
        c.febrile_last[rows], c.delay_weeks_last[rows] = febrile, delay_weeks
        first_serious = serious & (c.sae_cycles[rows] == 0)
        c.sae_cycles[rows] += serious
        c.platelet_course[rows, k] = plt_course

        first_response = np.isin(c.best_response[rows], OBJECTIVE_RESPONSES) & ~responded_before
        if self.reward_objectives == "endpoints":
            objectives = endpoint_objectives(first_response, first_serious)
        else:
            objectives = multimodal_objectives(out["log_size_ratio"], out["grade"], out["grade4_days"],
                                               out["progressed"], plt_grade, febrile, neuropathy_before,
                                               neuropathy_after, first_response)
        info = {**self.cycle_info(pk, out, objectives), "platelet_nadir": plt_nadir,
                "platelet_nadir_observed": c.platelet_obs[rows, 1], "thrombocytopenia_grade": plt_grade,
                "grade4_thrombocytopenia": plt_grade == 4, "febrile_neutropenia": febrile,
                "neuropathy_grade": neuropathy_after, "severe_neuropathy": severe_neuropathy,
                "serious_adverse_event": serious, "first_objective_response": first_response,
                "delay_weeks": delay_weeks, **self.patient_info(c, rows)}
        return StepResult(objectives, out["progressed"], k + 1 >= self.n_cycles, info)

    @staticmethod
    def integrate(c: MultimodalCohort, rows: np.ndarray, times_h: np.ndarray, conc_a_umol_l: np.ndarray,
                  conc_b_umol_l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Neutrophils, platelets (the two Friberg chains) and tumour of ``rows`` over ``times_h``."""
        return integrate_chains(np.stack([c.anc_state[rows], c.platelet_state[rows]], axis=1), c.tumour_state[rows],
                                times_h, conc_a_umol_l, conc_b_umol_l,
                                np.stack([c.anc_params[rows], c.platelet_params[rows]], axis=1), c.tumour_params[rows])

    def delay_until_recovered(self, c: MultimodalCohort, rows: np.ndarray, k: np.ndarray) -> np.ndarray:
        """The clinic's retreatment rule before cycles 2+: drug-free weeks (PD integrated, counts re-checked
        with assay error) until the observed counts recover, at most :data:`MAX_DELAY_WEEKS`.

        The decoders' states are not advanced: both drugs are below 1e-4 umol/L on day 21 (see
        ``calibration``), so the residual concentration a delay would wash out is negligible.
        """
        weeks = np.zeros(rows.size, np.int64)
        anc_now, plt_now = c.anc_obs[rows, 2].copy(), c.platelet_obs[rows, 2].copy()
        for week in range(MAX_DELAY_WEEKS):
            waiting = (k > 0) & ((anc_now < RETREAT_ANC_E9_L) | (plt_now < RETREAT_PLATELETS_E9_L))
            if not waiting.any():
                break
            w = rows[waiting]
            zero = np.zeros((w.size, self.delay_times_h.size))
            chains, sld = self.integrate(c, w, self.delay_times_h, zero, zero)
            c.anc_state[w] = np.maximum(chains[:, 0, :, -1], STATE_FLOOR)
            c.platelet_state[w] = np.maximum(chains[:, 1, :, -1], STATE_FLOOR)
            c.tumour_state[w] = sld[:, :, -1]
            normals = c.delay_normals[w, k[waiting], week]
            anc_now[waiting] = friberg.observe_anc(chains[:, 0, friberg.CIRC, -1], ReplayNormals(normals[:, 0]),
                                                   error_scale=self.noise_scale)
            plt_now[waiting] = platelets.observe_platelets(chains[:, 1, friberg.CIRC, -1], ReplayNormals(normals[:, 1]),
                                                           self.noise_scale)
            weeks += waiting
        return weeks

    def observations(self, c: MultimodalCohort) -> np.ndarray:
        base = super().observations(c)
        one_hot = np.eye(len(tumour_types.TUMOUR_TYPES))[c.tumour_type]
        features = c.features.copy()
        genotyped = features[:, FEATURE_NAMES.index("genotyped")] > 0
        for name in ("cyp2c8_star3_carrier", "abcb1_3435_tt"):  # untested genotypes are unknown: 0
            features[:, FEATURE_NAMES.index(name)] *= genotyped
        nuisance = [FEATURE_NAMES.index("nuisance_1"), FEATURE_NAMES.index("nuisance_2")]
        features[:, nuisance] = np.clip(features[:, nuisance], -5.0, 5.0)
        extra = [np.minimum(c.platelet_obs / PLATELET_OBS_UNIT_E9_L, PLATELET_CAP_1E11_L), c.neuropathy_grade[:, None],
                 c.febrile_last[:, None], c.delay_weeks_last[:, None], one_hot, features]
        return np.concatenate([base, *(np.asarray(e, dtype=float) for e in extra)], axis=1).astype(np.float32)

    PATIENT_KEYS = (*CombinationTask.PATIENT_KEYS, "tumour_type", "features", "platelet_baseline",
                    "neuropathy_sensitivity", "serious_adverse_events", "any_serious_adverse_event")

    def patient_info(self, c: MultimodalCohort, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {**super().patient_info(c, rows), "tumour_type": c.tumour_type[rows], "features": c.features[rows],
                "platelet_baseline": c.platelet_params[rows, 0],
                "neuropathy_sensitivity": c.neuropathy_sensitivity[rows],
                "serious_adverse_events": c.sae_cycles[rows], "any_serious_adverse_event": c.sae_cycles[rows] > 0}


def conventional_doses_v1(observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Conventional dosing with the label's reductions, as a policy of v1 observations.

    175 mg/m2 + AUC 6, then each drug's last level (fraction of the standard dose, at least 0.6),
    reduced by 0.2 for both drugs after an observed ANC nadir < 0.5e9/L or febrile neutropenia, for
    carboplatin after a platelet nadir < 50e9/L and for paclitaxel after severe (grade 3) neuropathy
    (the 20 % reductions of the Taxol and Paraplatin US prescribing information). Never escalates.
    """
    return _clinical_rule(observations, adaptive=False)


def adaptive_doses(observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The toxicity-adaptive clinical rule as a policy of v1 observations: ``(paclitaxel mg/m2, carboplatin AUC)``.

    Each drug keeps its own dose level (fraction of 175 mg/m2 / AUC 6, within 0.6-1.2):

    * cycle 1: 1.0, or 0.8 for both when the baseline ANC is below 2.0e9/L or the baseline platelets
      below 150e9/L (the lower limits of normal);
    * paclitaxel: -0.2 after an observed ANC nadir < 0.5e9/L, febrile neutropenia or neuropathy grade
      >= 2 (one grade earlier than the label's reduction after severe neuropathy); +0.2 when the
      nadir was >= 1.0e9/L, no fever and neuropathy <= grade 1;
    * carboplatin: -0.2 after a platelet nadir < 50e9/L, an ANC nadir < 0.5e9/L or febrile
      neutropenia; +0.2 when platelets stayed >= 100e9/L and the ANC nadir >= 1.0e9/L.

    The escalation steps are ours (the rule the combination issue tried by hand, in the spirit of
    toxicity-adjusted dosing; the PK-guided algorithm of Joerger 2016 needs a paclitaxel sample
    this environment does not offer). Works on ``(D,)`` or ``(n, D)`` observations.
    """
    return _clinical_rule(observations, adaptive=True)


def _clinical_rule(observations: np.ndarray, adaptive: bool) -> tuple[np.ndarray, np.ndarray]:
    obs = np.atleast_2d(np.asarray(observations, dtype=float))
    first = obs[:, OBS["cycle_fraction"]] <= 0
    pac = np.round(obs[:, OBS["paclitaxel_last_rel"]] * PACLITAXEL_MAX_MG_M2 / PACLITAXEL_STANDARD_MG_M2, 6)
    carbo = np.round(obs[:, OBS["carboplatin_last_rel"]] * CARBOPLATIN_MAX_AUC / CARBOPLATIN_STANDARD_AUC, 6)
    anc_nadir = obs[:, OBS["anc_nadir_last_cycle"]]
    plt_nadir = obs[:, OBS_V1["platelets_nadir_last_cycle"]] * PLATELET_OBS_UNIT_E9_L
    febrile = obs[:, OBS_V1["febrile_neutropenia_last_cycle"]] > 0
    neuropathy = obs[:, OBS_V1["neuropathy_grade"]]
    neutropenic = (anc_nadir < GRADE4_E9_L) | febrile
    pac = pac - LEVEL_STEP * (neutropenic | (neuropathy >= (2 if adaptive else adverse_events.SEVERE_NEUROPATHY_GRADE)))
    carbo = carbo - LEVEL_STEP * (neutropenic | (plt_nadir < 50.0))
    if adaptive:
        pac = pac + LEVEL_STEP * ((anc_nadir >= 1.0) & ~febrile & (neuropathy <= 1))
        carbo = carbo + LEVEL_STEP * ((plt_nadir >= RETREAT_PLATELETS_E9_L) & (anc_nadir >= 1.0) & ~febrile)
        low_counts = (obs[:, OBS["anc_baseline"]] < 2.0) | (obs[:, OBS_V1["platelets_baseline"]] * PLATELET_OBS_UNIT_E9_L < 150.0)
        start = np.where(low_counts, 1.0 - LEVEL_STEP, 1.0)
    else:
        start = np.ones(len(obs))
    highest = max(DOSE_LEVELS) if adaptive else 1.0
    pac = np.where(first, start, np.clip(pac, LOWEST_CONVENTIONAL_LEVEL, highest))
    carbo = np.where(first, start, np.clip(carbo, LOWEST_CONVENTIONAL_LEVEL, highest))
    return pac * PACLITAXEL_STANDARD_MG_M2, carbo * CARBOPLATIN_STANDARD_AUC

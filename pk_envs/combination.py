"""Paclitaxel + carboplatin combination chemotherapy every 3 weeks (:class:`PaclitaxelCarboplatinEnv`)."""

from __future__ import annotations

import numpy as np

from pk_envs.combination_core import CYCLE_H, OBS_NAMES, CombinationTask, conventional_doses
from pk_envs.task_env import TaskEnv


class PaclitaxelCarboplatinEnv(TaskEnv):
    """
    ## Description

    Dose paclitaxel and carboplatin for one virtual patient with non-small-cell lung cancer
    (NSCLC), one 21-day cycle per step, balancing tumour response against neutropenia, the
    dose-limiting toxicity of the pair. The conventional regimen is paclitaxel 175 mg/m2 (3-h
    infusion) by body-surface area plus carboplatin by the Calvert formula for a target AUC of
    6 mg*min/mL, with a 20-25 % reduction after grade 4 neutropenia; agents try to do better by
    individualising both doses.

    The patient: two PK-VAE decoders (:class:`vae_simulator.simulator.PKSimulator`, trained on
    the published models of Crombag 2019 for paclitaxel and Zandvliet 2008 for carboplatin) give
    each drug's plasma profile over the cycle, from the patient's covariates (shared by both)
    and two latents ``z`` drawn from each decoder's fitted latent population given the covariates
    (spread scaled by ``iiv_scale``; one per drug, unknown to the agent). The
    profiles (converted to umol/L with the molar masses 853.9 and 371.25 g/mol) drive the
    pharmacodynamic ground truth of :mod:`vae_simulator.groundtruth.pd`: neutrophils by the
    Friberg 2002 myelosuppression model with additive drug effects, and the tumour's sum of
    longest diameters (SLD) by a Claret 2009 growth-inhibition model, both with
    inter-individual variability and calibrated to published grade 3-4 neutropenia and
    response rates (see those modules). `simulators="groundtruth"` runs the mechanistic PK
    models instead of the decoders (:mod:`vae_simulator.groundtruth_simulator`; both implement
    :class:`vae_simulator.interface.PatientSimulator`).

    ## Action Space

    Continuous (default): `Box(-1, 1, (2,), float32)`, `a = (paclitaxel, carboplatin)`:
    paclitaxel `(a0 + 1) / 2 * 225` mg/m2 (x BSA = mg; 175 mg/m2 is `a0 = 0.556`) and
    carboplatin target AUC `(a1 + 1) / 2 * 7.5` mg*min/mL (AUC 6 is `a1 = 0.6`), dosed by
    Calvert: `mg = AUC x (GFR + 25)`, GFR = Cockcroft-Gault CrCL capped at 125 mL/min. -1 holds
    a drug. Doses in mg are limited to the decoders' trained ranges (`PKSimulator.dose_range_mg`,
    paclitaxel 0-600 mg, carboplatin 0-1500 mg; `info["dose_limited"]`). Actions outside [-1, 1]
    are clipped and counted in `info["clip_count"]` (one warning per environment); NaN/inf or a
    shape other than `(2,)` raise ValueError.

    Discrete (`discrete=True`): `Discrete(25)`, action `5 * i + j`: paclitaxel level `i` and
    carboplatin level `j` of (hold, -40 %, -20 %, standard, +20 %) of 175 mg/m2 and AUC 6, i.e.
    0/105/140/175/210 mg/m2 and AUC 0/3.6/4.8/6/7.2; the conventional start is action 18.
    One flat index (rather than MultiDiscrete) so that DQN works too. `doses_to_action(...)` and
    `conventional_action(obs)` give actions for given doses and for the conventional regimen.

    ## Observation Space

    `Box(float32, (17,))`: what the oncology clinic knows. ANC values carry the published
    proportional assay error (38 %, `friberg.observe_anc`, scaled by `noise_scale`); tumour
    size is known only at RECIST assessments (every `assessment_every` cycles and after the last).

    | Num | Observation | Unit | Min | Max |
    |---|---|---|---|---|
    | 0-6 | covariates AGE/100, SEX (1 male), WT/100, HT/200, BSA/2, SCR, CRCL/100 | y, -, kg, cm, m2, mg/dL, mL/min | physiological range / scale | same |
    | 7 | ANC at baseline (screening) | 1e9/L | 0 | 50 |
    | 8 | ANC nadir of the last cycle (baseline before cycle 1) | 1e9/L | 0 | 50 |
    | 9 | ANC on day 21 of the last cycle, the pre-treatment count (baseline before cycle 1) | 1e9/L | 0 | 50 |
    | 10 | SLD at baseline | cm | 0 | 100 |
    | 11 | last assessed SLD / baseline (1 before the first assessment) | - | 0 | 10 |
    | 12 | smallest assessed SLD / baseline, the RECIST nadir (baseline included) | - | 0 | 10 |
    | 13 | 1 if the last cycle ended with an assessment | - | 0 | 1 |
    | 14 | last paclitaxel dose / 225 mg/m2 (0 before cycle 1) | - | 0 | 1 |
    | 15 | last carboplatin target AUC / 7.5 mg*min/mL | - | 0 | 1 |
    | 16 | cycles given / `n_cycles` | - | 0 | 1 |

    Values beyond a bound saturate at it.

    ## Rewards

    Each step returns the objectives of the cycle just given, from the true (simulated) patient
    (:func:`pk_envs.rewards.combination_objectives`):

    - response = `clip(10 * ln(SLD_start / SLD_end), -5, 5) - 3 * [RECIST PD at this cycle]`:
      10 per unit log-shrinkage of the tumour over the cycle (a 10 % shrinkage gives +1.05, a
      RECIST partial response, -30 %, +3.6 in total), minus 3 when an assessment finds
      progressive disease (which also ends the episode);
    - toxicity = `c[grade] + days4 / 7`: `c = (0, 0, 0, 0.25, 1)` by the cycle's worst CTCAE v5
      neutropenia grade (grade 4, ANC < 0.5e9/L, the serious adverse event, costs 1; grade 3
      0.25; grades 1-2 nothing) plus 1/7 per day with ANC < 0.5e9/L (febrile-neutropenia risk
      rises with the duration of grade 4; a grade 4 lasting 7 days, the usual dose-limiting
      definition, doubles the cost).

    `vector_reward=True` (the `-MO` id) returns `np.array([response, -toxicity], float32)` in
    `reward_space = Box([-8, -4], [5, 0])`, `reward_dim = 2` (MO-Gymnasium); the scalar ids
    return `w[0] * response - w[1] * toxicity`, `reward_weights = w`, default `(1, 1)`: one grade
    4 cycle of a few days weighs about as much as a 15 % tumour shrinkage.

    Design check (our choice of scales and weights; ground-truth PK, `simulators="groundtruth"`,
    200 patients, 6 cycles, mean scalar return, paired difference to conventional +- its
    standard error): conventional dosing -2.6; no drug -5.1 (-2.5 +- 0.3; RECIST PD in 88 %);
    maximal doses 225 mg/m2 + AUC 7.5 -5.5 (-2.9 +- 0.3; grade 4 in 67 % of patients, 3.4
    grade-4 cycles each); the standard doses without the reduction rule -4.0 (-1.4 +- 0.2); fixed
    120 %, 80 % and 60 % of them -5.0, -3.0, -3.0 (-2.5, -0.4, -0.4, +- 0.1-0.3). Holding and
    maximal dosing lose against conventional dosing, and no fixed regimen beats it, so gains
    must come from individualising. On the shipped PK-VAEs (200 patients, seeds 0-199):
    conventional -2.5, no drug -4.7 (-2.3 +- 0.3), maximal -5.6 (-3.1 +- 0.3), fixed 80 % -2.8
    (-0.3 +- 0.1), standard without reductions -3.6 (-1.1 +- 0.2); first-cycle median AUCs
    under conventional dosing 16.0 (paclitaxel) and 319 (carboplatin) umol*h/L against 15.8
    and 316 on the ground truth. `tests/pk_envs/test_combination_env.py` checks the ordering on 50
    seeded patients (ground truth, and the shipped PK-VAEs when present).

    ## Starting State

    Reset draws, from `self.np_random` in this fixed order: the covariates (adult population),
    `z_paclitaxel`, `z_carboplatin` (scaled by `iiv_scale`), the neutrophil-model parameters
    (baseline ANC, transit time, drug sensitivity), the tumour parameters (baseline SLD, growth
    rate, chemosensitivity) and the normals of every ANC measurement of the episode; a step
    draws nothing, so a seed fixes the whole episode for any actions. `reset(options=...)` pins
    `covariates` (COVARIATE_NAMES order, validated), `z_paclitaxel` and/or `z_carboplatin`
    without changing the other draws; a pinned latent must have shape `(d,)` of its simulator,
    be finite and lie within its fitted population (`latent_bounds()`, mean +- 6 SD per
    dimension), else reset raises a ValueError giving the value and the allowed range. The patient starts untreated: neutrophils at their
    steady state, the tumour at its baseline size.

    ## Episode End

    1. Termination: RECIST 1.1 progressive disease (SLD >= 1.2 x the smallest assessed SLD and
       >= 5 mm above it) at an assessment. No death-like event is modelled: we found no
       published model linking febrile-neutropenia death to the simulated ANC course, so
       neutropenia enters through the toxicity objective only.
    2. Truncation: `n_cycles` cycles given (registered `max_episode_steps = 6`, also enforced by
       the environment; never beyond the decoders' training horizon).

    `info` (reset and every step): `covariates` (raw units), `z_paclitaxel`, `z_carboplatin`,
    `cycle`, `recist` (last RECIST code: 0 CR, 1 PR, 2 SD, 3 PD, -1 not assessed yet),
    `best_response`, `grade4_events` (cycles with grade 4 so far), `anc_baseline` (true, 1e9/L),
    `tumour_baseline_mm`, `clip_count`. After a step also: `paclitaxel_mg_m2`, `carboplatin_auc`,
    `paclitaxel_mg`, `carboplatin_mg`, `dose_limited`, the true exposures
    `auc_paclitaxel_umol_h_l`, `auc_carboplatin_umol_h_l`, `auc_carboplatin_mg_min_ml`,
    `paclitaxel_time_above_0_05_umol_l_h`, `anc_nadir` (true) and `anc_nadir_observed` (1e9/L),
    `neutropenia_grade`, `grade4`, `grade4_days`, `tumour_size_mm` (true SLD at the cycle's
    end), `tumour_assessed`, `objectives`, `response`, `toxicity`, `clipped`.

    ## Arguments

    ```python
    >>> import gymnasium as gym, pk_envs
    >>> env = gym.make("PKDose/PaclitaxelCarboplatin-v0", render_mode="rgb_array")
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(env.unwrapped.conventional_action(obs))
    >>> obs.shape, int(info["cycle"]), env.render().shape
    ((17,), 1, (640, 720, 3))

    ```

    | Parameter | Type | Default | Description |
    |---|---|---|---|
    | `simulators` | **None, "groundtruth" or (PatientSimulator, PatientSimulator)** | `None` | `None`: the shipped PK-VAEs of paclitaxel and carboplatin; `"groundtruth"`: the mechanistic PK models; or a pair (paclitaxel, carboplatin) of simulators (`vae_simulator.interface.PatientSimulator`) stepping 504-h cycles |
    | `discrete` | **bool** | `False` | 25 dose-level combinations instead of continuous doses |
    | `vector_reward` | **bool** | `False` | return `[response, -toxicity]` (MO-Gymnasium) |
    | `reward_weights` | **(float, float)** | `(1, 1)` | weights of response and toxicity in the scalar reward (>= 0, not both 0) |
    | `n_cycles` | **int >= 1** | `6` | course length, at most the decoders' training horizon |
    | `assessment_every` | **int in [1, n_cycles]** | `2` | cycles between RECIST assessments (2 = every 6 weeks) |
    | `noise_scale` | **float >= 0** | `1.0` | multiplies the ANC assay error (0 = exact counts) |
    | `iiv_scale` | **float >= 0** | `1.0` | scales all inter-individual variability (z and PD parameters; 0 = typical patients) |
    | `interaction` | **float or None** | `None` | Greco-type drug interaction on tumour kill, L^2/(umol^2 h) (None: additive, the calibrated model) |
    | `pd_backend` | **str** | `"compiled"` | PD integrator: `"compiled"` (numba RK4) or `"numpy"` (the reference RK4, equal within 1e-9 relative, ~100x slower for one patient) |
    | `render_mode` | **str** | `None` | `"rgb_array"`: the course so far as `uint8 (H, W, 3)` |

    Bad values raise ValueError naming the value and what is allowed.

    ## Vectorized environment

    ```python
    >>> envs = gym.make_vec("PKDose/PaclitaxelCarboplatin-v0", num_envs=64)
    >>> type(envs).__name__
    'PaclitaxelCarboplatinVectorEnv'

    ```

    gives :class:`pk_envs.combination_vector.PaclitaxelCarboplatinVectorEnv`: one decoder call
    per drug and one PD integration per step for all patients, trajectories identical to
    `SyncVectorEnv` of this class (sub-environment `i` seeded `seed + i`), autoreset `NEXT_STEP`.

    ## Version History

    * v0: Initial version.
    * v0, 2026-12-07 (same id): the PK-VAE's step is compiled (:mod:`vae_simulator.decoder_kernels`):
      trajectories differ from earlier releases within float32 rounding; the cohort figures re-run
      reproduce to their digits (docs/speed.md lists them).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}  # noqa: RUF012 (Gymnasium convention)
    example_id = "PKDose/PaclitaxelCarboplatin-v0"
    #: what each observation entry is (the table above), for agents that explain their decisions
    observation_names: tuple[str, ...] = OBS_NAMES

    def __init__(self, simulators=None, *, discrete: bool = False, vector_reward: bool = False,
                 reward_weights=(1.0, 1.0), n_cycles: int = 6, assessment_every: int = 2,
                 noise_scale: float = 1.0, iiv_scale: float = 1.0, interaction: float | None = None,
                 pd_backend: str = "compiled", render_mode: str | None = None):
        self._setup(CombinationTask(simulators=simulators, discrete=discrete, vector_reward=vector_reward,
                                    reward_weights=reward_weights, n_cycles=n_cycles,
                                    assessment_every=assessment_every, noise_scale=noise_scale,
                                    iiv_scale=iiv_scale, interaction=interaction, pd_backend=pd_backend),
                    render_mode)

    @property
    def cycle_h(self) -> float:
        """Length of a cycle, h (504: 21 days); a step gives one cycle."""
        return float(CYCLE_H)

    @property
    def n_cycles(self) -> int:
        """Cycles in a course (the episode length)."""
        return int(self.task.n_cycles)

    @property
    def dose_maximum(self) -> np.ndarray:
        """Doses at action 1: ``[paclitaxel mg/m2, carboplatin AUC mg*min/mL]`` (225, 7.5)."""
        return self.task.actions.maximum.copy()

    @property
    def standard_doses(self) -> np.ndarray:
        """The conventional doses ``[175 mg/m2, AUC 6]``."""
        return self.task.actions.standard.copy()

    @property
    def dose_levels(self) -> np.ndarray:
        """Dose levels of the discrete ids, as fractions of the standard doses (hold, -40 %, -20 %, 100 %, +20 %)."""
        return self.task.actions.levels.copy()

    def doses_to_action(self, paclitaxel_mg_m2: float, carboplatin_auc: float):
        """The action nearest these doses (mg/m2, mg*min/mL)."""
        action = self.task.actions.from_doses(paclitaxel_mg_m2, carboplatin_auc)[0]
        return int(action) if self.task.actions.discrete else action

    def conventional_action(self, observation: np.ndarray):
        """The conventional regimen's action for this observation (175 mg/m2 + AUC 6, -20 % after grade 4)."""
        return self.doses_to_action(*(d[0] for d in conventional_doses(observation)))


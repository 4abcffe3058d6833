"""Paclitaxel + carboplatin for a multimodal patient (:class:`PaclitaxelCarboplatinV1Env`, the ``-v1`` ids)."""

from __future__ import annotations

import numpy as np

from pk_envs.combination import PaclitaxelCarboplatinEnv
from pk_envs.combination_v1_core import (
    OBS_NAMES_V1,
    MultimodalCombinationTask,
    adaptive_doses,
    conventional_doses_v1,
)


class PaclitaxelCarboplatinV1Env(PaclitaxelCarboplatinEnv):
    """
    ## Description

    Dose paclitaxel and carboplatin every 3 weeks for one virtual patient with non-small-cell lung,
    ovarian or endometrial cancer, balancing tumour response against four serious adverse events:
    grade 4 neutropenia, febrile neutropenia, grade 4 thrombocytopenia (carboplatin's
    dose-limiting toxicity) and severe (grade 3) paclitaxel neuropathy. The patient is
    multimodal, as in the published deep-RL study this project answers (clinical, genomic and
    PK-related features): covariates, tumour type, CYP2C8*3 and ABCB1 genotypes (half of the
    patients genotyped), ECOG performance status, baseline blood counts and two nuisance
    features. Counts that have not recovered on day 21 postpone the next cycle by a week (at most
    twice), as clinics do.

    Everything of :class:`~pk_envs.combination.PaclitaxelCarboplatinEnv` (v0) holds unless said
    here: the same PK-VAE decoders, actions, RECIST assessments and response objective. The
    added ground truth and its sources (each published value cited, each unpublished one said to
    be ours or calibrated, in the module docstrings): tumour types
    (:mod:`vae_simulator.groundtruth.pd.tumour_types`: NSCLC as v0, ovarian from Zecchin 2016,
    endometrial calibrated to Sovak 2007), platelets (:mod:`~vae_simulator.groundtruth.pd.platelets`,
    a carboplatin-driven Friberg chain), neuropathy and febrile neutropenia
    (:mod:`~vae_simulator.groundtruth.pd.adverse_events`), features
    (:mod:`~vae_simulator.groundtruth.pd.patient_features`); the unpublished constants are
    calibrated to the carboplatin-paclitaxel arm of GOG0209 (Miller 2020: grade >= 3
    thrombocytopenia 12 %, grade > 2 neuropathy 20 %, febrile neutropenia 6 %) by
    :mod:`~vae_simulator.groundtruth.pd.calibration_v1`.

    ## Action Space

    As v0: `Box(-1, 1, (2,))` (paclitaxel up to 225 mg/m2, carboplatin target AUC up to 7.5), or
    `Discrete(25)` with `discrete=True`. `conventional_action(obs)` gives conventional dosing with
    the label's reductions (:func:`~pk_envs.combination_v1_core.conventional_doses_v1`) and
    `adaptive_action(obs)` the toxicity-adaptive clinical rule
    (:func:`~pk_envs.combination_v1_core.adaptive_doses`).

    ## Observation Space

    `Box(float32, (32,))`: v0's 17 values (same order and meaning; the ANC values carry the
    assay error) followed by:

    | Num | Observation | Unit | Min | Max |
    |---|---|---|---|---|
    | 0-16 | as v0 (covariates, ANC, SLD, last doses, cycle fraction) | | | |
    | 17 | platelets at baseline (observed, 20 % assay error) | 1e11/L (100e9/L) | 0 | 10 |
    | 18 | platelet nadir of the last cycle (baseline before cycle 1) | 1e11/L | 0 | 10 |
    | 19 | platelets on day 21 of the last cycle | 1e11/L | 0 | 10 |
    | 20 | neuropathy grade assessed by the clinician (0-3) | - | 0 | 3 |
    | 21 | 1 if the last cycle had febrile neutropenia | - | 0 | 1 |
    | 22 | weeks the last cycle was delayed (0-2) | weeks | 0 | 2 |
    | 23-25 | tumour type one-hot (NSCLC, ovarian, endometrial) | - | 0 | 1 |
    | 26 | 1 if the patient was genotyped | - | 0 | 1 |
    | 27 | CYP2C8*3 carrier (0 when not genotyped) | - | 0 | 1 |
    | 28 | ABCB1 3435 TT (0 when not genotyped; no causal effect) | - | 0 | 1 |
    | 29 | ECOG performance status (0-2; no causal effect) | - | 0 | 2 |
    | 30-31 | nuisance features (standard normal, clipped at +-5; no causal effect) | - | -5 | 5 |

    ## Rewards

    `[response, -toxicity]` (:func:`pk_envs.rewards.multimodal_objectives`): response as v0 plus 3 at the assessment that finds the first objective
    response (RECIST CR or PR; the mirror of v0's -3 on progression, as the published endpoints are
    response and progression); toxicity = v0's neutropenia cost + `(0, 0, 0, 0.25, 1)`
    by the cycle's worst CTCAE platelet grade + 1 per febrile neutropenia + 0.25 on reaching
    neuropathy grade 2 and 0.75 more on reaching grade 3 (neuropathy is charged once, when it
    worsens). `vector_reward=True` (the `-MO-v1` id) returns the vector in
    `reward_space = Box([-8, -7], [8, 0])` (the lower toxicity bound is that of one cycle with
    every event); scalar ids return `w . [response, -toxicity]`, `reward_weights = w`.

    `reward_objectives="endpoints"` replaces both objectives by the study's endpoints
    (:func:`pk_envs.rewards.endpoint_objectives`): response 1 at the assessment finding the first
    CR/PR, toxicity 1 at the cycle of the first serious adverse event, so an episode returns
    `[responded, -had an SAE]` exactly and `w . return` is the study's trade-off
    `response - (w_tox / w_resp) x SAE` per patient; `reward_space = Box([0, -1], [1, 0])`. It
    rewards what the study counts and nothing else: an agent trained on it may cut doses once a
    response has been recorded (the study's table reports the doses given, per cycle).

    ## Starting State

    Reset draws, in this fixed order: the tumour type (50 % NSCLC, 30 % ovarian, 20 % endometrial,
    renormalised over `tumour_types_drawn`), the covariates (female for the gynaecological types),
    `z_paclitaxel`, `z_carboplatin`, the neutrophil, tumour and platelet parameters, every ANC,
    platelet and re-check assay normal of the episode, the neuropathy sensitivity, one uniform per
    cycle for febrile neutropenia and the features; a step draws nothing. `reset(options=...)` pins
    `covariates`, `z_paclitaxel`, `z_carboplatin`, `tumour_type` (a name in
    `vae_simulator.groundtruth.pd.tumour_types.TUMOUR_TYPES`, anything else refused with the list)
    and/or `features` (the 6 values of `patient_features.FEATURE_NAMES`, checked).

    ## Episode End

    As v0: RECIST progressive disease terminates; `n_cycles` cycles truncate. Delays do not count
    as cycles.

    `info` adds, at reset and every step: `tumour_type` (code), `features`, `platelet_baseline`,
    `neuropathy_sensitivity`, `serious_adverse_events` (cycles with any serious adverse event so
    far), `any_serious_adverse_event`; after a step also `platelet_nadir` (true) and
    `platelet_nadir_observed` (1e9/L), `thrombocytopenia_grade`, `grade4_thrombocytopenia`,
    `febrile_neutropenia`, `neuropathy_grade`, `severe_neuropathy` (reached this cycle),
    `serious_adverse_event` (this cycle), `first_objective_response` (the assessment found the first CR/PR) and
    `delay_weeks`.

    ## Arguments

    ```python
    >>> import gymnasium as gym, pk_envs
    >>> env = gym.make("PKDose/PaclitaxelCarboplatin-v1", simulators="groundtruth")
    >>> obs, info = env.reset(seed=0, options={"tumour_type": "ovarian"})
    >>> obs.shape, int(info["tumour_type"])
    ((32,), 1)
    >>> obs, reward, terminated, truncated, info = env.step(env.unwrapped.adaptive_action(obs))
    >>> sorted(k for k in ("febrile_neutropenia", "severe_neuropathy", "delay_weeks") if k in info)
    ['delay_weeks', 'febrile_neutropenia', 'severe_neuropathy']

    ```

    All v0 arguments (`simulators`, `discrete`, `vector_reward`, `reward_weights`, `n_cycles`,
    `assessment_every`, `noise_scale` (also scales the platelet assay error), `iiv_scale`,
    `interaction`, `render_mode`; `pd_backend` must be `"compiled"`), plus:

    | Parameter | Type | Default | Description |
    |---|---|---|---|
    | `tumour_types_drawn` | **str or sequence of str** | all three | the tumour types patients are drawn from |
    | `cycle_delays` | **bool** | `True` | postpone a cycle a week (at most twice) while observed ANC < 1.5e9/L or platelets < 100e9/L |
    | `reward_objectives` | **str** | `"shaped"` | `"shaped"` (above) or `"endpoints"` (first response, first serious adverse event) |

    ## Vectorized environment

    `gym.make_vec("PKDose/PaclitaxelCarboplatin-v1", num_envs=N)` gives
    :class:`pk_envs.combination_v1_vector.PaclitaxelCarboplatinV1VectorEnv`, identical to
    `SyncVectorEnv` of this class (sub-environment `i` seeded `seed + i`).

    ## Version History

    * v1: multimodal patient (three tumour types, genotypes, performance status, nuisance
      features with missingness), platelets, febrile neutropenia, neuropathy, cycle delays; 32
      observations.
    * v0: neutrophils and NSCLC only (:class:`~pk_envs.combination.PaclitaxelCarboplatinEnv`).
    * v1, 2026-12-07 (same id): the PK-VAE's step is compiled (:mod:`vae_simulator.decoder_kernels`):
      trajectories differ from earlier releases within float32 rounding; the cohort figures re-run
      reproduce to their digits (docs/speed.md lists them).
    * v1, 2026-12-08 (same id): the `reward_objectives` argument; its default keeps the reward unchanged.
    """

    example_id = "PKDose/PaclitaxelCarboplatin-v1"
    observation_names: tuple[str, ...] = OBS_NAMES_V1

    def __init__(self, simulators=None, *, tumour_types_drawn=("nsclc", "ovarian", "endometrial"),
                 cycle_delays: bool = True, render_mode: str | None = None, **v0_arguments):
        self._setup(MultimodalCombinationTask(simulators=simulators, tumour_types_drawn=tumour_types_drawn,
                                              cycle_delays=cycle_delays, **v0_arguments), render_mode)

    def conventional_action(self, observation: np.ndarray):
        """Conventional dosing with the label's reductions (:func:`conventional_doses_v1`) for this observation."""
        return self.doses_to_action(*(d[0] for d in conventional_doses_v1(observation)))

    def adaptive_action(self, observation: np.ndarray):
        """The toxicity-adaptive clinical rule's action (:func:`adaptive_doses`) for this observation."""
        return self.doses_to_action(*(d[0] for d in adaptive_doses(observation)))

"""Single-drug precision dosing on a PK-VAE virtual patient (:class:`SingleDrugEnv`)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from pk_envs.single_drug_core import SingleDrugTask
from pk_envs.task_env import TaskEnv
from vae_simulator.interface import PatientSimulator


class SingleDrugEnv(TaskEnv):
    """
    ## Description

    Dose one drug for one virtual patient over a treatment course, one dosing interval per step,
    as in model-informed precision dosing (MIPD). The patient is a PK-VAE decoder
    (:class:`vae_simulator.simulator.PKSimulator`) trained on a published population PK model:
    covariates from an adult population and a latent ``z`` from the decoder's fitted latent
    population given those covariates (``PKSimulator.sample_patients``; spread scaled by ``iiv_scale``) that holds the
    patient's individual pharmacokinetics, unknown to the agent. After each interval the clinic
    gets sparse, noisy drug assays (e.g. peak and trough) and decides the next dose.

    | drug | interval | course (steps) | target (metric) | dose range (discrete step) | serious event (terminates) |
    |---|---|---|---|---|---|
    | vancomycin | 12 h | 20 (10 d) | AUC24 400-600 mg*h/L | 0-3000 mg (250) | AKI, drawn from a risk curve |
    | phenytoin | 24 h | 14 | trough 10-20 mg/L | 0-800 mg (50) | peak > 40 mg/L |
    | mycophenolate | 12 h | 14 | AUC0-12 30-60 mg*h/L | 0-2000 mg (250) | none |
    | theophylline | 12 h | 14 | Cavg 10-20 mg/L | 0-800 mg (100) | peak > 40 mg/L |
    | pembrolizumab | 504 h | 8 | trough 4.8-113 mg/L | 0-400 mg (100) | none |

    Targets and sources: the drug's ``ExposureTarget`` in ``vae_simulator.groundtruth``. Courses
    never exceed the decoder's training horizon (``sim.max_intervals``), beyond which it is
    not trusted.

    ## Action Space

    Continuous (default): `Box(-1, 1, (1,), float32)`, the next interval's dose
    `dose_mg = (a + 1) / 2 * dose_max_mg`, linear from 0 (held dose) to the maximum of the
    table above (within the decoder's trained range). Actions outside [-1, 1] are clipped, as
    `gymnasium.wrappers.ClipAction` would; each clip is counted in `info["clip_count"]` (one
    warning per environment). NaN/inf actions or a shape other than `(1,)` / `()` raise ValueError.

    Discrete (`discrete=True`): `Discrete(n)`, action `i` gives `levels_mg[i] = i * step`
    (e.g. vancomycin 0, 250, ..., 3000 mg: 13 levels). Indices out of range raise ValueError.
    `env.unwrapped.doses_to_action(mg)` gives the action nearest a dose (e.g. the label dose).

    ## Observation Space

    A `float32` `Box` of what a clinic knows. `M` = number of monitoring samples per interval
    (vancomycin 2: 2 h and 12 h; phenytoin 1: 24 h; mycophenolate 3: 0.5, 2, 12 h; theophylline
    2: 2 h, 12 h; pembrolizumab 2: 1 h, 504 h), `L = dose_history` (default 4), `d` latent size.

    | Num | Observation | Min | Max |
    |---|---|---|---|
    | 0-6 | covariates AGE/100 y, SEX (1 male), WT/100 kg, HT/200 cm, BSA/2 m2, SCR/(1 mg/dL), CRCL/100 mL/min | physiological range / scale | same |
    | 7 ... 6+L | doses of the last L intervals / dose_max, most recent first (0 before the course) | 0 | 1 |
    | 7+L | cumulative dose / (dose_max * course intervals) | 0 | 1 |
    | 8+L ... 7+L+M | last interval's assays / conc_scale (0 if missing or no interval yet) | 0 | 10 |
    | 8+L+M ... 7+L+2M | sample missing flag (1 = no result) | 0 | 1 |
    | 8+L+2M | time in treatment: intervals given / course intervals | 0 | 1 |
    | 9+L+2M | full observation only: true exposure of the last interval / target high | 0 | 10 |
    | 10+L+2M ... | full observation only: true latent z (clipped) | -8 | 8 |

    `conc_scale` (mg/L) is the window's upper end for concentration targets and the average
    concentration it implies for AUC targets (vancomycin 25, phenytoin 20, mycophenolate 5,
    theophylline 20, pembrolizumab 113). Assays are the decoder's profile at the sampling times
    with its learned assay error (`PKSimulator.observe`, scaled by `noise_scale`); each sample is
    missing with probability `missing_prob`. Values saturate at 10 x the scale.

    ## Rewards

    Each step gives the objectives of the interval just dosed, from its true exposure `E`
    (the target metric):

    - efficacy `exp(-ln2 * x^2)`, `x = (ln E - ln sqrt(low * high)) / (ln(high / low) / 2)`: 1 at
      the window's log-centre, 0.5 at its edges, about 0 well outside it and for no drug.
    - toxicity: vancomycin the interval's probability of acute kidney injury (AKI) from the
      risk curve below; other drugs `min(1, max(0, E / toxic_above - 1))`, 0 up to the toxic
      threshold and 1 at twice it; plus 1 on a serious event (which also ends the episode).

    The vector-reward ids (`-MO`) return `np.array([efficacy, -toxicity], float32)` in
    `reward_space = Box([0, -2], [1, 0])` (`reward_dim = 2`); the scalar ids return
    `w[0] * efficacy - w[1] * toxicity` with `reward_weights=w` (default `(1, 1)`). Holding the
    drug (0 mg) scores about 0 per step, the maximum dose overshoots into toxicity; the label dose
    (`info["standard_dose_mg"]`) does better than both, and individualised dosing better still.

    Vancomycin risk curve (our own derived model): `P_AKI = 1 / (1 + exp(-(a + b * AUC24)))`
    through 11.2 % at 450 and 40 % at 700 mg*h/L (a = -5.07, b = 0.00666 per mg*h/L). AKI was
    40 % with AUC24 > 563 vs 11.2 % below (Zasowski et al., AAC 2017;61:e02535-16); we place these
    group rates at exposures we chose as typical of each group (450 and 700). The curve then gives
    a 3.3-fold risk at 677 vs 450 mg*h/L, in line with the 3-4-fold risk above AUC24 677
    (Neely et al., AAC 2018;62:e01684-17). `P_AKI` is read as the risk of a 10-day course at
    that exposure; an interval's AKI probability is the constant hazard that compounds to it:
    `1 - (1 - P_AKI)^(12 h / 240 h)` (0.8 % at AUC24 500, 2.5 % at 700, 6 % at 900 mg*h/L).

    ## Starting State

    Reset draws a new patient (`PKSimulator.sample_patients`, with `iiv_scale`) and, in a fixed
    order, every random number of the episode: assay normals, missing-sample uniforms and event
    uniforms. `reset(options={"covariates": c, "z": z})` pins the patient (either or both;
    covariates in `COVARIATE_NAMES` order, validated); pinning leaves the noise draws unchanged.
    A pinned `z` must have shape `(d,)` (`(num_envs, d)` in the vector env, one row each), be
    finite and lie within the fitted latent population (`sim.latent_bounds()`: mean +- 6 SD per
    dimension); otherwise reset raises a ValueError giving the value and the allowed range.
    No dose has been given: dose and assay entries are 0, missing flags 1.

    ## Episode End

    1. Termination: a serious toxicity event: vancomycin AKI drawn from the risk curve with the
       episode's uniforms; phenytoin peak above 40 mg/L (lethargy, then coma above 50; Craig,
       Neurocrit Care 2005, via secondary sources); theophylline peak above 40 mg/L (seizures at
       40-60 mg/L in chronic overdose, Theo-24 label). Mycophenolate and pembrolizumab: none.
    2. Truncation: the course is complete (registered `max_episode_steps`, also enforced by the
       environment itself: it never simulates beyond the decoder's training horizon); or (v1) a
       held dose would leave the patient longer without a dose than the continuous-time decoder
       was trained on (`sim.max_held_intervals` holds in a row after a dose: vancomycin 7,
       mycophenolate 1, phenytoin 1, theophylline 3, pembrolizumab 3): that interval is not
       simulated (zero objectives, nothing observed) and `info["beyond_trained_gap"]` is True.

    `info` carries the ground truth: `covariates` (raw units), `z`, `standard_dose_mg`,
    `interval`, `clip_count` (at reset and every step), and after a step `dose_mg`, `exposure`,
    `efficacy`, `toxicity`, `objectives`, `event`, `event_risk` (the interval's event
    probability), `peak_mg_l`, `conc_mg_l` (true profile on `sim.grid_h`), `samples_mg_l`,
    `sample_missing`, `clipped`, `beyond_trained_gap`.

    ## Arguments

    ```python
    >>> import gymnasium as gym, pk_envs
    >>> env = gym.make("PKDose/Vancomycin-v0", render_mode="rgb_array")
    >>> obs, info = env.reset(seed=0, options={"z": [0, 0, 0, 0, 0, 0]})  # the typical patient
    >>> obs.shape, env.action_space
    ((17,), Box(-1.0, 1.0, (1,), float32))
    >>> env.render().shape
    (540, 720, 3)

    ```

    | Parameter | Type | Default | Description |
    |---|---|---|---|
    | `drug` | **str** | `"vancomycin"` | one of `SINGLE_DRUGS`, its shipped PK-VAE is loaded (default: the simulator's) |
    | `decoder` | **str** | `"interval"` | the shipped PK-VAE: `"interval"` (v0 ids), `"continuous"` (v1 ids) or `"continuous-2"` (v2 ids, mycophenolate) |
    | `simulator` | **PatientSimulator** | `None` | use this simulator (`vae_simulator.interface.PatientSimulator`, e.g. a `PKSimulator`) instead of the shipped one |
    | `discrete` | **bool** | `False` | discrete dose levels instead of a continuous dose |
    | `vector_reward` | **bool** | `False` | return `[efficacy, -toxicity]` (MO-Gymnasium) |
    | `reward_weights` | **(float, float)** | `(1, 1)` | weights of efficacy and toxicity in the scalar reward |
    | `full_observation` | **bool** | `False` | append the true exposure and latent z (debugging) |
    | `noise_scale` | **float >= 0** | `1.0` | multiplies the decoder's assay error |
    | `missing_prob` | **float in [0, 1)** | `0.0` | probability that a sample is missing |
    | `iiv_scale` | **float >= 0** | `1.0` | SD of z: 0 = typical patients, 1 = the population |
    | `n_intervals` | **int** | course | course length, at most the decoder's training horizon |
    | `dose_history` | **int >= 1** | `4` | number of past doses observed |
    | `dose_step_mg` | **float > 0** | the drug's | spacing of the discrete dose levels (vial or tablet size) |
    | `render_mode` | **str** | `None` | `"rgb_array"`: course plot as `uint8 (H, W, 3)` |

    Bad values raise ValueError naming the value and what is allowed.

    ## Vectorized environment

    ```python
    >>> envs = gym.make_vec("PKDose/Vancomycin-v0", num_envs=64, vectorization_mode="vector_entry_point")
    >>> type(envs).__name__, envs.observation_space.shape
    ('SingleDrugVectorEnv', (64, 17))

    ```

    gives :class:`pk_envs.single_drug_vector.SingleDrugVectorEnv`, which steps all patients in one
    decoder call and reproduces `SyncVectorEnv` of this class exactly (same seeds, same trajectories).

    ## Version History

    * v0: Initial version: patients from the interval-grid PK-VAE (`decoder="interval"`).
    * v1: patients from the continuous-time PK-VAE stepped on the same schedule
      (`decoder="continuous"`, :class:`vae_simulator.ct_interval.CTIntervalSimulator`): the same
      spaces and rewards; assays with the decoder's linear-scale proportional + additive error,
      results below the LLOQ read LLOQ/2; a hold beyond the longest gap the decoder was trained
      on truncates the episode (`info["beyond_trained_gap"]`).
    * v0 and v1, 2026-12-07 (same ids): the PK-VAE's step is compiled (:mod:`vae_simulator.decoder_kernels`):
      trajectories differ from earlier releases within float32 rounding; the cohort figures re-run
      reproduce to their digits (docs/speed.md lists them).
    * v2 (mycophenolate only, the one drug whose decoder changed): release 2 of the continuous-time
      PK-VAE (`decoder="continuous-2"`), whose decoder reads the time of day
      (:class:`vae_simulator.vae.ct_model.ClockFeatures`) and so draws the meal-timed second peaks
      (docs/pk_vae.md); everything else as v1. The other drugs' latest ids stay at v1.
    """

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, drug: str | None = None, *, simulator: PatientSimulator | None = None,
                 decoder: str = "interval", discrete: bool = False, vector_reward: bool = False, reward_weights=(1.0, 1.0),
                 full_observation: bool = False, noise_scale: float = 1.0, missing_prob: float = 0.0,
                 iiv_scale: float = 1.0, n_intervals: int | None = None, dose_history: int = 4,
                 dose_step_mg: float | None = None, render_mode: str | None = None):
        if simulator is None and drug is None:
            drug = "vancomycin"
        self._setup(SingleDrugTask(drug, simulator=simulator, decoder=decoder, discrete=discrete, vector_reward=vector_reward,
                                   reward_weights=reward_weights, full_observation=full_observation,
                                   noise_scale=noise_scale, missing_prob=missing_prob, iiv_scale=iiv_scale,
                                   n_intervals=n_intervals, dose_history=dose_history,
                                   dose_step_mg=dose_step_mg), render_mode)

    @property
    def drug(self) -> str:
        return self.task.drug

    @property
    def decoder(self) -> str:
        """Which PK-VAE the patients come from: ``"interval"``, ``"continuous"`` (release 1 of the
        continuous-time decoders), ``"continuous-2"`` (release 2), ``"table"`` (learnt from a user's
        table, ``PKDose/Custom-v0``) or ``"custom"`` (a given simulator)."""
        return self.task.decoder

    @property
    def decoder_release(self) -> int | None:
        """The shipped continuous-time decoder release the patients come from (1: ``-v1``, 2: ``-v2``);
        None for the interval-grid decoder and for a given simulator."""
        return getattr(self.task.sim, "release", None)

    @property
    def target(self):
        """The drug's therapeutic window (:class:`~vae_simulator.groundtruth.base.ExposureTarget`)."""
        return self.task.target

    @property
    def interval_h(self) -> float:
        """Dosing interval, h (a step)."""
        return float(self.task.interval_h)

    @property
    def monitoring_times_h(self) -> np.ndarray:
        """Sampling times of the assays within each interval, h after the dose (observation order)."""
        return self.task.monitor_h.copy()

    @property
    def dose_levels_mg(self) -> np.ndarray:
        """Doses an action can give, mg: the discrete levels, or ``[0, dose_max_mg]`` if continuous."""
        actions = self.task.actions
        return actions.levels_mg.copy() if actions.discrete else np.array([0.0, actions.dose_max_mg])

    @property
    def observation_names(self) -> tuple[str, ...]:
        """What each observation entry is (the Observation Space table), e.g. ``"sample_1h_rel"``."""
        return self.task.observation_names

    @property
    def concentration_scale_mg_l(self) -> float:
        """The divisor of the observed concentrations (mg/L): an observed sample is mg/L / this."""
        return float(self.task.conc_scale_mg_l)

    @property
    def course_intervals(self) -> int:
        """Dosing intervals in a course (the episode length)."""
        return int(self.task.horizon)

    @property
    def dose_step_mg(self) -> float:
        """The drug's practical dose step (vial or tablet), mg: the spacing of the discrete levels."""
        return float(self.task.spec.dose_step_mg)

    def doses_to_action(self, dose_mg: float):
        """The action nearest ``dose_mg`` (mg), e.g. for the label dose in ``info["standard_dose_mg"]``
        (the name every family uses: the combination's ``doses_to_action(mg/m2, AUC)``)."""
        return self.task.actions.from_doses(dose_mg)

    #: the single-drug name of :meth:`doses_to_action`, kept for code written against it
    dose_to_action = doses_to_action

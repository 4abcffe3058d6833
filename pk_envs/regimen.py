"""Dose, dosing interval and drug monitoring chosen together (:class:`RegimenEnv`)."""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np

from pk_envs.regimen_core import RegimenTask
from pk_envs.task_env import TaskEnv
from vae_simulator.ct_simulator import EventSimulator


class RegimenEnv(TaskEnv):
    """
    ## Description

    Run one patient's treatment course as a clinic does: at each dose choose the amount, the time
    to the next dose, and whether to draw a trough level before it. Levels cost something (a
    venepuncture, an assay, a nurse's time) and are the only window on the patient's
    pharmacokinetics: no level, no observation. One step is one dose. The patient is the drug's
    continuous-time PK-VAE (:class:`vae_simulator.ct_simulator.CTPatientSimulator`), which answers
    for doses at any times; the published model (``GroundTruthEventSimulator``) can stand in.

    | drug | interval options | course | target (metric) | dose range (discrete step) | serious event (terminates) |
    |---|---|---|---|---|---|
    | vancomycin | 8, 12, 24, 48 h | 240 h (10 d) | AUC24 400-600 mg*h/L | 0-3000 mg (250) | AKI, from the risk curve |
    | phenytoin | 8, 12, 24 h | 336 h (14 d) | trough 10-20 mg/L | 0-800 mg (50) | peak > 40 mg/L |

    Intervals: the clinic's options (``vae_simulator.irregular.INTERVAL_OPTIONS_H``: vancomycin
    q8-48h by renal function, Rybak et al. 2020; phenytoin t.i.d. to once daily, label). Risk
    curve, thresholds and targets as in :class:`~pk_envs.single_drug.SingleDrugEnv`. Vancomycin is
    infused at 600 mg/h (label: no faster than 10 mg/min, at least 60 min), at most 4 h (the
    trained range); phenytoin is oral.

    ## Action Space

    Continuous (default): `Box(-1, 1, (3,), float32)`:
    `a[0]` the dose `(a[0] + 1) / 2 * dose_max_mg` (-1 holds it), `a[1]` the interval, in equal
    bins over the options (vancomycin: [-1, -0.5) 8 h, [-0.5, 0) 12 h, [0, 0.5) 24 h, [0.5, 1] 48 h),
    `a[2] > 0` draws a trough level at the end of the interval, just before the next dose.
    Values outside [-1, 1] are clipped (counted in `info["clip_count"]`); NaN/inf or another shape
    raise ValueError.

    Discrete (`discrete=True`): `MultiDiscrete([levels, options, 2])`: dose level `i * step` mg,
    interval option, draw (1) or not (0). `env.unwrapped.doses_to_action(mg, h, draw)` gives the
    action for a dose, an interval and a draw decision in either space.

    ## Observation Space

    A `float32` `Box` of what the clinic knows; `L = dose_history` (default 4).

    | Num | Observation | Min | Max |
    |---|---|---|---|
    | 0-6 | covariates AGE/100 y, SEX, WT/100 kg, HT/200 cm, BSA/2 m2, SCR/(1 mg/dL), CRCL/100 mL/min | physiological range / scale | same |
    | 7 ... 6+L | last L doses / dose_max, most recent first (0 before any) | 0 | 1 |
    | 7+L ... 6+2L | their intervals / longest option | 0 | 1 |
    | 7+2L, 8+2L, 9+2L | latest level / conc_scale, its age / course, 1 if no level yet | 0 | 10, 1, 1 |
    | 10+2L, 11+2L, 12+2L | the level before it, the same three | 0 | 10, 1, 1 |
    | 13+2L | time in treatment / course | 0 | 1 |

    `conc_scale` mg/L: vancomycin 25 (AUC24 600 / 24 h), phenytoin 20. Levels are the
    simulator's assay (its residual error and LLOQ: below-LLOQ results read LLOQ/2).

    ## Rewards

    A step covers the interval from this dose to the next, of `tau` h, with true exposure `E`:

    - efficacy `window_efficacy(E) * tau / 24` (efficacy-days: the same per day whatever the
      interval, so frequent dosing earns nothing by itself);
    - toxicity: vancomycin the interval's AKI probability (the risk curve's hazard compounded over
      `tau`); phenytoin `min(1, max(0, E / 20 - 1)) * tau / 24`; plus 1 on a serious event;
    - a level costs `level_cost` (default 0.1: our choice, no published figure exists).

    Scalar ids: `w[0] * efficacy - w[1] * toxicity - level_cost * levels` (`reward_weights = w`).
    `-MO` ids: `np.array([efficacy, -toxicity, -levels], float32)` (`reward_dim = 3`).

    ## Starting State

    A new patient from the simulator's population (covariates, and a latent from the fitted latent
    population); every random number of the episode (assay normals, event uniforms) is drawn at
    reset. `reset(options={"covariates": c, "z": z})` pins the patient, as in SingleDrugEnv
    (a z outside the fitted population's mean +- 6 SD is refused). Time 0, no dose, no level.

    ## Episode End

    1. Termination: a serious toxicity event (as in SingleDrugEnv).
    2. Truncation: the course is over (the last interval is cut at the course's end); or a held
       dose would leave the patient longer without drug than the simulator was trained on
       (vancomycin 100 h, phenytoin 52 h): the interval stops there and the episode is truncated
       (`info["beyond_trained_gap"]`), as nothing trustworthy can be simulated after it.

    `info`: `covariates`, `z`, `time_h`, `doses_given`, `levels_drawn`, `standard_dose_mg`,
    `standard_interval_h`, `clip_count` at reset and every step; after a step `dose_mg`,
    `interval_h`, `infusion_h`, `level_drawn`, `level_mg_l`, `level_blq` (below the LLOQ), `exposure`, `efficacy`, `toxicity`,
    `objectives`, `event`, `event_risk`, `peak_mg_l`, `trough_mg_l`, `clipped`, `beyond_trained_gap`.

    ## Arguments

    ```python
    >>> import gymnasium as gym, pk_envs
    >>> env = gym.make("PKDose/Vancomycin-Regimen-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, info["time_h"]
    ((22,), 0.0)
    >>> action = env.unwrapped.doses_to_action(1000.0, 12.0, draw=True)
    >>> obs, reward, terminated, truncated, info = env.step(action)
    >>> info["interval_h"], bool(info["level_drawn"]), info["time_h"]
    (12.0, True, 12.0)

    ```

    | Parameter | Type | Default | Description |
    |---|---|---|---|
    | `drug` | **str** | `"vancomycin"` | `"vancomycin"` or `"phenytoin"` |
    | `simulator` | **EventSimulator** | `None` | the patient model (default: the shipped continuous-time PK-VAE) |
    | `discrete` | **bool** | `False` | MultiDiscrete actions |
    | `vector_reward` | **bool** | `False` | `[efficacy, -toxicity, -levels]` |
    | `reward_weights` | **(float, float)** | `(1, 1)` | weights of efficacy and toxicity |
    | `level_cost` | **float >= 0** | `0.1` | reward cost of one level |
    | `dose_history` | **int >= 1** | `4` | past doses observed |
    | `render_mode` | **str** | `None` | `"rgb_array"`: the course so far as `uint8 (H, W, 3)` |

    ## Vectorized environment

    ```python
    >>> envs = gym.make_vec("PKDose/Vancomycin-Regimen-v0", num_envs=8, vectorization_mode="vector_entry_point")
    >>> envs.reset(seed=0)[0].shape
    (8, 22)

    ```

    gives :class:`pk_envs.regimen_vector.RegimenVectorEnv`, which steps all patients together and
    reproduces `SyncVectorEnv` of this class bit for bit.

    ## Version History

    * v0: Initial version.
    * v0, 2026-12-07 (same id): the PK-VAE's step is compiled (:mod:`vae_simulator.decoder_kernels`):
      trajectories differ from earlier releases within float32 rounding; the cohort figures re-run
      reproduce to their digits (docs/speed.md lists them).
    """

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 4}
    example_id = "PKDose/Vancomycin-Regimen-v0"

    def __init__(self, drug: str | None = None, *, simulator: EventSimulator | None = None, discrete: bool = False,
                 vector_reward: bool = False, reward_weights=(1.0, 1.0), level_cost: float = 0.1,
                 dose_history: int = 4, render_mode: str | None = None):
        self._setup(RegimenTask(drug, simulator=simulator, discrete=discrete, vector_reward=vector_reward,
                                reward_weights=reward_weights, level_cost=level_cost, dose_history=dose_history),
                    render_mode)

    @property
    def drug(self) -> str:
        return self.task.drug

    @property
    def decoder_release(self) -> int | None:
        """The shipped continuous-time decoder release the patients come from (None: a given simulator)."""
        return getattr(self.task.sim, "release", None)

    @property
    def target(self):
        """The drug's therapeutic window (:class:`~vae_simulator.groundtruth.base.ExposureTarget`)."""
        return self.task.target

    @property
    def interval_options_h(self) -> np.ndarray:
        """The intervals an action can choose, h."""
        return self.task.actions.intervals_h.copy()

    @property
    def course_h(self) -> float:
        """Length of the treatment course, h."""
        return float(self.task.spec.course_h)

    @property
    def dose_max_mg(self) -> float:
        return float(self.task.dose_max_mg)

    @property
    def dose_step_mg(self) -> float:
        """The drug's practical dose step (vial or tablet), mg."""
        return float(self.task.spec.dose_step_mg)

    @property
    def level_cost(self) -> float:
        return float(self.task.level_cost)

    def infusion_h(self, dose_mg) -> np.ndarray:
        """Infusion length (h) the environment gives each dose (0 for oral drugs)."""
        return self.task.infusion_h(dose_mg)

    def doses_to_action(self, dose_mg: float, interval_h: float, draw: bool = False):
        """The action for ``dose_mg`` (nearest possible), ``interval_h`` (one of :attr:`interval_options_h`)
        and a level drawn or not (the name every family uses)."""
        return self.task.actions.from_doses(dose_mg, interval_h, draw)

    def regimen_to_action(self, dose_mg: float, interval_h: float, draw: bool = False):
        """Deprecated name of :meth:`doses_to_action` (kept for code written against it)."""
        warnings.warn("RegimenEnv.regimen_to_action is deprecated; use doses_to_action", DeprecationWarning,
                      stacklevel=2)
        return self.doses_to_action(dose_mg, interval_h, draw)

"""Single-drug precision dosing on a PK-VAE learnt from your own table (:class:`CustomDrugEnv`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from pk_envs.single_drug import SingleDrugEnv
from vae_simulator.byod.simulator import TableIntervalSimulator

_USAGE = ('e.g. gym.make("PKDose/Custom-v0", weights="runs/byod/mydrug/best/mydrug.json", '
          'target="auc24:400-600"); train the weights with `pkdose vae --data TABLE.csv --covariates ...`')


def _one_interval(intervals_h) -> float | None:
    if intervals_h is None:
        return None
    values = np.atleast_1d(np.asarray(intervals_h, dtype=float))
    if values.ndim != 1 or values.size != 1:
        raise ValueError(f"intervals_h must be one dosing interval (h), e.g. (12,), got {intervals_h!r}: the "
                         "single-drug environment doses on a fixed interval (a choice of intervals is the "
                         "regimen environment's, not yet available on a table's model)")
    return float(values[0])


def custom_simulator(weights, target, *, toxic_above=None, intervals_h=None, dose_range_mg=None, infusion_h=None,
                     monitoring_times_h=None, standard_dose_mg=None) -> TableIntervalSimulator:
    """The :class:`~vae_simulator.byod.simulator.TableIntervalSimulator` of ``weights`` (a manifest),
    loaded once per process for the same file (path and modification time) and settings."""
    if weights is None or target is None:
        raise ValueError(f"PKDose/Custom-v0 needs weights= (a manifest of a PK-VAE learnt from a table) and "
                         f"target= ('metric:low-high'); {_USAGE}")
    path = Path(weights).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"weights {weights!s}: no such manifest; {_USAGE}")

    def frozen(value):
        return None if value is None else tuple(np.atleast_1d(np.asarray(value, dtype=float)).tolist())

    return _cached(str(path), path.stat().st_mtime_ns, target, toxic_above, _one_interval(intervals_h),
                   frozen(dose_range_mg), infusion_h, frozen(monitoring_times_h), standard_dose_mg)


@lru_cache(maxsize=16)
def _cached(path, _mtime, target, toxic_above, interval_h, dose_range_mg, infusion_h, monitoring_times_h,
            standard_dose_mg) -> TableIntervalSimulator:
    return TableIntervalSimulator(path, target, toxic_above=toxic_above, interval_h=interval_h,
                                  dose_range_mg=dose_range_mg, infusion_h=infusion_h,
                                  monitoring_times_h=monitoring_times_h, standard_dose_mg=standard_dose_mg)


#: constructor arguments of the simulator (the rest go to SingleDrugEnv)
SIMULATOR_ARGUMENTS = ("toxic_above", "intervals_h", "dose_range_mg", "infusion_h", "monitoring_times_h",
                       "standard_dose_mg")


class TableModelAttributes:
    """Public attributes of the environments on a table's model (single and vector)."""

    task: object

    @property
    def simulator(self) -> TableIntervalSimulator:
        """The patients' simulator (a PatientSimulator): what a model-based baseline doses with."""
        return self.task.sim

    @property
    def covariate_names(self) -> tuple[str, ...]:
        """The encoded covariate columns of the observation's first entries (e.g. ``WT``, ``SEX=M``)."""
        return tuple(self.task.sim.covariate_names)


class CustomDrugEnv(TableModelAttributes, SingleDrugEnv):
    """
    ## Description

    :class:`~pk_envs.single_drug.SingleDrugEnv` (same spaces layout, rewards, episode rules,
    seeding and native vector env) on a PK-VAE **learnt from your own monitoring table** by
    ``pkdose vae --data TABLE.csv --covariates ...`` (:mod:`vae_simulator.byod`), for a
    drug no published model stands behind. The patient is
    :class:`~vae_simulator.byod.simulator.TableIntervalSimulator`: covariate vectors resampled from
    the table's training records, latent ``z`` from the fitted latent population given them,
    one dose every ``intervals_h`` h, assays at ``monitoring_times_h`` with the decoder's learnt
    proportional + additive error (below the table's LLOQ: LLOQ/2).

    ```python
    >>> import gymnasium as gym, pk_envs
    >>> env = gym.make("PKDose/Custom-v0", weights="runs/byod/mydrug/best/mydrug.json",
    ...                target="auc24:400-600", dose_range_mg=(0, 3000), intervals_h=(12,))  # doctest: +SKIP
    ```

    ## Action Space

    As SingleDrugEnv: `Box(-1, 1, (1,))`, `dose_mg = (a + 1) / 2 * dose_range_mg[1]`; with
    `discrete=True` levels every `dose_step_mg` (default an eighth of the range).

    ## Observation Space

    As SingleDrugEnv, with the table's covariates in place of the adult ones: entries
    `0 ... C-1` are the model's encoded covariates (numeric as themselves, categorical one-hot,
    `env.unwrapped.covariate_names`) divided by the largest magnitude of their training range
    (so in about [0, 1]); bounds are the training range over that divisor. `conc_scale` is
    derived from `target` as for the shipped drugs.

    | Num | Observation | Min | Max |
    |---|---|---|---|
    | 0 ... C-1 | encoded covariates / max abs of training range | training min / divisor | training max / divisor |
    | C ... | doses, cumulative dose, assays, missing flags, time in treatment: as SingleDrugEnv | | |

    ## Rewards

    Efficacy `exp(-ln2 x^2)` on the target window, as SingleDrugEnv; toxicity
    `min(1, max(0, E / toxic_above - 1))` (default `toxic_above` the window's top). No serious
    event: no published toxicity model stands behind a table's drug.

    ## Starting State

    A training record's covariates (uniform, with replacement) and `z` from the latent
    population; `reset(options={"covariates": c, "z": z})` pins them (covariates within the
    training range, encoded order).

    ## Episode End

    Truncation after `n_intervals` (default: the table's horizon over the interval), or when a
    held dose would leave a gap longer than any the table showed (`info["beyond_trained_gap"]`).

    ## Arguments

    | Parameter | Type | Default | Description |
    |---|---|---|---|
    | `weights` | **path** | required | manifest `.json` of a PK-VAE learnt from a table |
    | `target` | **str** | required | `"metric[@threshold]:low-high"`, e.g. `"auc24:400-600"`, `"trough:10-20"` |
    | `toxic_above` | **float** | window top | exposure above which toxicity is counted (target's unit) |
    | `intervals_h` | **(float,)** | the table's typical | the dosing interval, h, within the longest gap the table showed |
    | `dose_range_mg` | **(0, float)** | `(0, largest dose seen)` | action range; above the table's largest dose is refused |
    | `infusion_h` | **float** | table median | infusion length, h, within the lengths seen |
    | `monitoring_times_h` | **tuple** | `(infusion + 1, interval)` | assay times after each dose, h |
    | `standard_dose_mg` | **float** | table median dose | label dose (`info["standard_dose_mg"]`) |
    | others | | | as SingleDrugEnv: `discrete`, `vector_reward`, `reward_weights`, `noise_scale`, `missing_prob`, `iiv_scale`, `n_intervals`, `dose_history`, `dose_step_mg`, `full_observation`, `render_mode` |

    Values outside what the table showed raise ValueError naming the value and the allowed range.

    ## Vectorized environment

    `gym.make_vec("PKDose/Custom-v0", num_envs=N, vectorization_mode="vector_entry_point", weights=..., target=...)`
    gives :class:`pk_envs.custom_vector.CustomDrugVectorEnv`, equal to `SyncVectorEnv` of this class.

    ## Version History

    * v0: Initial version.
    * v0, 2026-12-07 (same id): the PK-VAE's step is compiled (:mod:`vae_simulator.decoder_kernels`):
      trajectories differ from earlier releases within float32 rounding; the cohort figures re-run
      reproduce to their digits (docs/speed.md lists them).
    """

    example_id = "PKDose/Custom-v0"

    def __init__(self, weights: str | Path | None = None, target: str | None = None, **kwargs):
        settings = {key: kwargs.pop(key) for key in SIMULATOR_ARGUMENTS if key in kwargs}
        super().__init__(simulator=custom_simulator(weights, target, **settings), **kwargs)

"""Virtual patient populations and randomised multi-dose regimens from the ground truth.

:func:`simulate_dataset` draws ``n`` patients of one drug (covariates, individual
parameters), gives each a randomised regimen of per-interval doses, and returns

* the true profile on the drug's recording grid and its noisy assay results, and
* the sparse samples a clinic would take (the drug's monitoring times, with the
  timing scatter of real wards and missing samples), with their exact times.

Work is done in chunks of :data:`CHUNK_PATIENTS` patients, each with its own random
stream spawned from the seed, so a data set depends only on ``(drug, n, K, seed)``.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from vae_simulator.covariates import COVARIATE_NAMES, Covariates
from vae_simulator.groundtruth import DrugModel, get_model

CHUNK_PATIENTS = 500
#: Offsets (h) of a real sample from its scheduled time; one is drawn per sample.
SAMPLE_TIME_OFFSETS_H = np.array([-0.5, -0.25, 0.0, 0.25, 0.5])
#: Interval-by-interval regimens: each dose near the standard dose, anywhere in the range, or held.
P_UNIFORM_DOSE, P_HELD_DOSE, STANDARD_DOSE_LOG_SD = 0.3, 0.1, 0.4
#: Treatment courses: a steady dose level (near standard, or anywhere in the range), adjusted now
#: and then, occasionally held, as clinicians and dosing policies give it; a few patients never dosed.
P_COURSE, P_COURSE_UNIFORM_LEVEL, COURSE_LEVEL_LOG_SD = 0.5, 0.3, 0.5
P_ADJUST, ADJUST_LOG_SD, P_COURSE_HOLD, P_NEVER_DOSED = 0.15, 0.3, 0.05, 0.03


@dataclass(frozen=True)
class PopulationData:
    """Simulated patients of one drug; arrays are indexed by patient first.

    Shapes: ``covariates (n, C)``, ``params (n, P)``, ``doses_mg (n, K)``, ``conc_true`` /
    ``conc_obs`` / ``blq`` ``(n, K, G)`` on ``grid_h`` (h after each dose), and the sparse clinic
    samples ``sample_time_h`` (h from first dose) / ``sample_conc`` / ``sample_blq`` /
    ``sample_missing`` ``(n, K, M)`` (a missing sample holds 0 and is flagged). Concentrations in mg/L.
    """

    drug: str
    seed: int
    grid_h: np.ndarray
    interval_h: float
    covariate_names: tuple[str, ...]
    covariates: np.ndarray
    param_names: tuple[str, ...]
    params: np.ndarray
    doses_mg: np.ndarray
    conc_true: np.ndarray
    conc_obs: np.ndarray
    blq: np.ndarray
    sample_time_h: np.ndarray
    sample_conc: np.ndarray
    sample_blq: np.ndarray
    sample_missing: np.ndarray

    def to_npz(self, path) -> None:
        """Write to a compressed ``.npz`` (float32 arrays; no pickled objects)."""
        arrays = {k: getattr(self, k) for k in self.__dataclass_fields__}
        arrays["covariate_names"] = np.array(self.covariate_names, dtype=str)
        arrays["param_names"] = np.array(self.param_names, dtype=str)
        for k in ("covariates", "params", "doses_mg", "conc_true", "conc_obs", "sample_time_h", "sample_conc"):
            arrays[k] = arrays[k].astype(np.float32)
        np.savez_compressed(path, **arrays)

    @classmethod
    def from_npz(cls, path) -> PopulationData:
        """Read a file written by :meth:`to_npz`, refusing anything else."""
        data = read_npz_arrays(path, "population")
        missing = [k for k in cls.__dataclass_fields__ if k not in data]
        if missing:
            raise ValueError(f"{path}: not a pkdose population file, missing arrays {missing}")
        data["drug"] = str(data["drug"])
        data["seed"] = int(data["seed"])
        data["interval_h"] = float(data["interval_h"])
        data["covariate_names"] = tuple(str(s) for s in data["covariate_names"])
        data["param_names"] = tuple(str(s) for s in data["param_names"])
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def read_npz_arrays(path, kind: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (never unpickling); ValueError naming the file and ``kind`` otherwise."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path}: not a readable pkdose {kind} file ({exc})") from exc


def random_regimens(model: DrugModel, cov: Covariates, n_intervals: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Per-interval doses (mg), ``(n, n_intervals)``, covering the whole allowed range.

    Half of the patients get interval-by-interval doses drawn independently (the standard dose
    scaled log-normally, a uniform dose in the range, or a held dose: what an exploring agent
    does); the other half get treatment courses, a steady level adjusted now and then and held
    occasionally (what clinicians and converged policies do, and what exposes accumulation and
    saturation). A few patients are never dosed.
    """
    n = len(cov)
    lo, hi = model.dose_range_mg
    standard = model.standard_dose_mg(cov)[:, None]
    near_standard = standard * np.exp(STANDARD_DOSE_LOG_SD * rng.standard_normal((n, n_intervals)))
    uniform = rng.uniform(lo, hi, (n, n_intervals))
    kind = rng.random((n, n_intervals))
    independent = np.where(kind < P_HELD_DOSE, 0.0,
                           np.where(kind < P_HELD_DOSE + P_UNIFORM_DOSE, uniform, near_standard))

    level = np.where(rng.random((n, 1)) < P_COURSE_UNIFORM_LEVEL, rng.uniform(lo, hi, (n, 1)),
                     standard * np.exp(COURSE_LEVEL_LOG_SD * rng.standard_normal((n, 1))))
    adjust = np.where(rng.random((n, n_intervals)) < P_ADJUST,
                      ADJUST_LOG_SD * rng.standard_normal((n, n_intervals)), 0.0)
    adjust[:, 0] = 0.0
    course = level * np.exp(np.cumsum(adjust, axis=1))
    course = np.where(rng.random((n, n_intervals)) < P_COURSE_HOLD, 0.0, course)

    pattern = rng.random((n, 1))
    doses = np.where(pattern < P_COURSE, course, independent)
    doses = np.where(rng.random((n, 1)) < P_NEVER_DOSED, 0.0, doses)
    return np.clip(doses, max(lo, 0.0), hi)


def simulate_dataset(drug: str, n_patients: int, n_intervals: int, seed: int, iiv_scale: float = 1.0,
                     missing_prob: float = 0.2, progress: bool = True) -> PopulationData:
    """Simulate ``n_patients`` of ``drug`` over ``n_intervals`` dosing intervals (see module doc)."""
    model = get_model(drug)
    if not isinstance(n_patients, (int, np.integer)) or n_patients < 1:
        raise ValueError(f"n_patients must be a positive integer, got {n_patients!r}")
    if not isinstance(n_intervals, (int, np.integer)) or n_intervals < 1:
        raise ValueError(f"n_intervals must be a positive integer, got {n_intervals!r}")
    if not 0.0 <= missing_prob < 1.0:
        raise ValueError(f"missing_prob must be in [0, 1), got {missing_prob!r}")
    n_chunks = -(-n_patients // CHUNK_PATIENTS)
    streams = np.random.SeedSequence(seed).spawn(n_chunks)
    parts = []
    for c in tqdm(range(n_chunks), desc=f"{drug}: {n_patients} patients", unit="chunk", disable=not progress):
        size = min(CHUNK_PATIENTS, n_patients - c * CHUNK_PATIENTS)
        parts.append(_simulate_chunk(model, size, n_intervals, np.random.default_rng(streams[c]),
                                     iiv_scale, missing_prob))
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return PopulationData(drug=drug, seed=seed, grid_h=np.asarray(model.interval_grid_h, dtype=float),
                          interval_h=float(model.interval_h), covariate_names=COVARIATE_NAMES,
                          param_names=model.parameter_names, **merged)


def _simulate_chunk(model: DrugModel, n: int, n_intervals: int, rng: np.random.Generator, iiv_scale: float,
                    missing_prob: float) -> dict[str, np.ndarray]:
    cov = Covariates.sample(n, rng)
    params = model.sample_parameters(cov, rng, iiv_scale=iiv_scale)
    doses = random_regimens(model, cov, n_intervals, rng)

    grid = np.asarray(model.interval_grid_h, dtype=float)
    sample_rel = _candidate_sample_times(model)  # (M, O) h after a dose
    m, n_off = sample_rel.shape
    offsets = model.interval_h * np.arange(n_intervals)
    grid_times = (offsets[:, None] + grid[None, :]).ravel()
    cand_times = (offsets[:, None, None] + sample_rel[None]).ravel()
    all_times, inverse = np.unique(np.concatenate([grid_times, cand_times]), return_inverse=True)
    conc_all = model.simulate(params, doses, all_times)

    conc_true = conc_all[:, inverse[:grid_times.size]].reshape(n, n_intervals, grid.size)
    cand_conc = conc_all[:, inverse[grid_times.size:]].reshape(n, n_intervals, m, n_off)
    choice = rng.integers(0, n_off, (n, n_intervals, m))
    sample_conc_true = np.take_along_axis(cand_conc, choice[..., None], axis=-1)[..., 0]
    sample_time = offsets[None, :, None] + sample_rel[np.arange(m)[None, None, :], choice]

    conc_obs, blq = model.sample_observations(conc_true, rng)
    sample_conc, sample_blq = model.sample_observations(sample_conc_true, rng)
    missing = rng.random((n, n_intervals, m)) < missing_prob
    return dict(covariates=cov.as_array(), params=np.stack([params[p] for p in model.parameter_names], axis=1),
                doses_mg=doses, conc_true=conc_true, conc_obs=conc_obs, blq=blq, sample_time_h=sample_time,
                sample_conc=np.where(missing, 0.0, sample_conc), sample_blq=sample_blq & ~missing,
                sample_missing=missing)


def _candidate_sample_times(model: DrugModel) -> np.ndarray:
    """Scheduled monitoring times plus ward timing scatter, kept inside ``(0, interval]`` h."""
    scheduled = np.asarray(model.monitoring_times_h, dtype=float)[:, None]
    return np.clip(scheduled + SAMPLE_TIME_OFFSETS_H[None, :], 1e-3, model.interval_h)

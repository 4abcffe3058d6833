"""Virtual patients on realistic, irregular regimens: training data of the continuous-time PK-VAE.

Real dosing histories are not one fixed schedule. :func:`simulate_regimen_dataset` gives each
group of :data:`GROUP_PATIENTS` patients one dosing schedule (times and infusion lengths,
shared so the ground truth solves the group at once) and each patient its own amounts:

* **regular** (a fraction ``1 - irregular_fraction``): today's schedule, dose ``k`` at
  ``k * interval_h`` with the drug's usual infusion, amounts from
  :func:`~vae_simulator.population.random_regimens` (exploring, course-like, held doses);
* **irregular**: an interval drawn from the drug's clinical options (:data:`INTERVAL_OPTIONS_H`,
  e.g. vancomycin q8h/q12h/q24h/q48h), changed once mid-course with probability
  :data:`P_SCHEDULE_CHANGE`; every dose time jittered (+-2 h for hourly schedules; chemotherapy
  cycles delayed by 0-7 days, as toxicity delays them); missed doses (no event) and an extra
  dose between two others; a loading dose (first amount x1.5-2.5) with probability
  :data:`P_LOADING_DOSE`; infusion lengths drawn within the drug's ``infusion_range_h``.

Observation times are dense and per group: after every dose the drug's recording grid scaled
to the gap to the next dose, the end of the infusion, and one uniform random time per gap
(the encoder's sparse views are subsets of these). Everything depends only on
``(drug, n, seed)``: group ``g`` uses its own stream spawned from the seed.

The interval options are clinical schedules from the drugs' labels and guidelines (cited on
:data:`INTERVAL_OPTIONS_H`); jitter, miss and loading probabilities are not published
frequencies but design choices that cover the histories a clinic table holds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from tqdm.auto import tqdm

from vae_simulator.covariates import COVARIATE_NAMES, Covariates
from vae_simulator.events import DosingEvents, EventLimits
from vae_simulator.groundtruth import DrugModel, get_model
from vae_simulator.population import random_regimens, read_npz_arrays

GROUP_PATIENTS = 100
#: Dosing intervals (h) a clinic uses. Vancomycin: q8-48h by renal function (Rybak 2020);
#: phenytoin and theophylline: divided t.i.d./b.i.d. or once daily (labels); mycophenolate: b.i.d.
#: (CellCept label); pembrolizumab: 200 mg q3w or 400 mg q6w (KEYTRUDA label); paclitaxel and
#: carboplatin: weekly or 3-weekly (TAXOL, PARAPLATIN labels; weekly carboplatin AUC 2).
INTERVAL_OPTIONS_H: dict[str, tuple[float, ...]] = {
    "vancomycin": (8.0, 12.0, 24.0, 48.0),
    "phenytoin": (8.0, 12.0, 24.0),
    "mycophenolate": (12.0,),
    "theophylline": (8.0, 12.0, 24.0),
    "pembrolizumab": (504.0, 1008.0),
    "paclitaxel": (168.0, 504.0),
    "carboplatin": (168.0, 504.0),
}
#: Treatment course covered by the data (h after the first dose), as in the grid decoder's training.
HORIZON_H: dict[str, float] = {"vancomycin": 240.0, "phenytoin": 336.0, "mycophenolate": 168.0,
                               "theophylline": 168.0, "pembrolizumab": 4032.0, "paclitaxel": 3024.0,
                               "carboplatin": 3024.0}
HOURLY_JITTER_H = 2.0            # +- jitter of a dose time on hourly schedules
CYCLE_DELAY_MAX_H = 168.0        # chemotherapy: a cycle delayed by up to one week
P_SCHEDULE_CHANGE, P_MISSED_DOSE, P_EXTRA_DOSE, P_LOADING_DOSE = 0.4, 0.08, 0.3, 0.3
LOADING_FACTOR = (1.5, 2.5)
MIN_GAP_FRACTION = 0.25          # no two doses closer than this fraction of the shortest interval
#: At most this many recording-grid points per dose (mycophenolate's 15-min grid is thinned to 30 min).
MAX_GRID_PER_DOSE = 24


def regimen_limits(drug: str) -> EventLimits:
    """What the data of ``drug`` cover: dose ceiling, infusion lengths, horizon, longest gap (h)."""
    model = get_model(drug)
    longest = max(INTERVAL_OPTIONS_H[drug])
    delay = CYCLE_DELAY_MAX_H if longest >= 168.0 else HOURLY_JITTER_H
    # one missed dose on the longest interval, each end jittered
    return EventLimits(dose_max_mg=float(model.dose_range_mg[1]), infusion_range_h=tuple(model.infusion_range_h),
                       horizon_h=HORIZON_H[drug], max_gap_h=2.0 * longest + 2.0 * delay)


@dataclass(frozen=True)
class RegimenData:
    """Patients of one drug on any regimens. Events ``(n, E)`` (see :class:`DosingEvents`);
    observations ``obs_time_h`` / ``conc_true`` / ``conc_obs`` / ``blq`` / ``obs_mask`` ``(n, T)``
    (h from the first dose, mg/L; padding has mask False); ``irregular (n,)``; ``covariates (n, C)``;
    the true individual parameters ``params (n, P)`` (for reference estimates and oracles)."""

    drug: str
    seed: int
    covariate_names: tuple[str, ...]
    covariates: np.ndarray
    param_names: tuple[str, ...]
    params: np.ndarray
    dose_time_h: np.ndarray
    dose_mg: np.ndarray
    infusion_h: np.ndarray
    dose_mask: np.ndarray
    obs_time_h: np.ndarray
    conc_true: np.ndarray
    conc_obs: np.ndarray
    blq: np.ndarray
    obs_mask: np.ndarray
    irregular: np.ndarray

    def __len__(self) -> int:
        return int(self.covariates.shape[0])

    @property
    def events(self) -> DosingEvents:
        return DosingEvents(self.dose_time_h, self.dose_mg, self.infusion_h, self.dose_mask)

    def take(self, index) -> RegimenData:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in values.items():
            if isinstance(value, np.ndarray):
                values[name] = value[index]
        return RegimenData(**values)

    def to_npz(self, path) -> None:
        """Write to a compressed ``.npz`` (no pickled objects)."""
        arrays = {f.name: getattr(self, f.name) for f in fields(self)}
        arrays["covariate_names"] = np.array(self.covariate_names, dtype=str)
        arrays["param_names"] = np.array(self.param_names, dtype=str)
        np.savez_compressed(path, format="pkdose-regimens/1", **arrays)

    @classmethod
    def from_npz(cls, path) -> RegimenData:
        """Read a file written by :meth:`to_npz`, refusing anything else."""
        data = read_npz_arrays(path, "regimen")
        if str(data.get("format", "")) != "pkdose-regimens/1":
            raise ValueError(f"{path}: not a pkdose regimen file (format {data.get('format')!r}, "
                             "expected 'pkdose-regimens/1')")
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing:
            raise ValueError(f"{path}: pkdose regimen file lacks arrays {missing} (written by an older version; "
                             "delete it to regenerate)")
        data.update(drug=str(data["drug"]), seed=int(data["seed"]),
                    covariate_names=tuple(str(s) for s in data["covariate_names"]),
                    param_names=tuple(str(s) for s in data["param_names"]))
        return cls(**{f.name: data[f.name] for f in fields(cls)})


def irregular_schedule(drug: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Dose times (h, from 0) and infusion lengths (h) of one irregular course (module docstring)."""
    model, limits = get_model(drug), regimen_limits(drug)
    options = INTERVAL_OPTIONS_H[drug]
    chemo = max(options) >= 168.0
    horizon = limits.horizon_h
    min_gap = MIN_GAP_FRACTION * min(options)
    interval = float(rng.choice(options))
    change_at = rng.uniform(0.3, 0.7) * horizon if rng.random() < P_SCHEDULE_CHANGE else np.inf
    times = [0.0]
    while True:
        if times[-1] >= change_at:
            interval, change_at = float(rng.choice(options)), np.inf
        shift = rng.uniform(0.0, CYCLE_DELAY_MAX_H) if chemo else rng.uniform(-HOURLY_JITTER_H, HOURLY_JITTER_H)
        nxt = times[-1] + max(interval + shift, min_gap)
        if nxt >= horizon - min_gap:
            break
        times.append(nxt)
    t = np.array(times)
    # missed doses: never the first, never leaving a gap beyond the limit
    for j in range(len(t) - 1, 0, -1):
        after = t[j + 1] if j + 1 < len(t) else horizon
        if rng.random() < P_MISSED_DOSE and after - t[j - 1] <= limits.max_gap_h:
            t = np.delete(t, j)
    if rng.random() < P_EXTRA_DOSE and len(t) > 1:
        j = int(rng.integers(0, len(t) - 1))
        if t[j + 1] - t[j] >= 2.0 * min_gap:
            t = np.insert(t, j + 1, 0.5 * (t[j] + t[j + 1]))
    lo, hi = model.infusion_range_h
    return t, rng.uniform(lo, hi, t.size) if hi > 0 else np.zeros(t.size)


def observation_times(model: DrugModel, dose_times_h: np.ndarray, infusion_h: np.ndarray, horizon_h: float,
                      rng: np.random.Generator) -> np.ndarray:
    """Dense sample times (h) of a schedule: per dose the recording grid scaled to the gap, the
    infusion end and one random time; sorted, unique, within ``(first dose, horizon]``."""
    ends = np.append(dose_times_h[1:], horizon_h)
    gaps = ends - dose_times_h
    grid = np.asarray(model.interval_grid_h)
    grid = grid[::-1][::-(-grid.size // MAX_GRID_PER_DOSE)][::-1]  # every k-th point, keeping the last
    scaled = dose_times_h[:, None] + gaps[:, None] * (grid / model.interval_h)[None, :]
    extra = np.stack([dose_times_h + np.minimum(infusion_h, gaps), dose_times_h + rng.uniform(0, gaps)], axis=1)
    t = np.unique(np.round(np.concatenate([scaled.ravel(), extra.ravel()]), 6))
    return t[(t > dose_times_h[0]) & (t <= horizon_h)]


def simulate_regimen_dataset(drug: str, n_patients: int, seed: int, irregular_fraction: float = 0.6,
                             progress: bool = True) -> RegimenData:
    """``n_patients`` of ``drug`` on regular and irregular regimens (module docstring)."""
    model, limits = get_model(drug), regimen_limits(drug)
    if not isinstance(n_patients, (int, np.integer)) or n_patients < 1:
        raise ValueError(f"n_patients must be a positive integer, got {n_patients!r}")
    if not 0.0 <= irregular_fraction <= 1.0:
        raise ValueError(f"irregular_fraction must be in [0, 1], got {irregular_fraction!r}")
    n_groups = -(-n_patients // GROUP_PATIENTS)
    streams = np.random.SeedSequence([seed, 31337]).spawn(n_groups)
    groups = []
    for g in tqdm(range(n_groups), desc=f"{drug}: {n_patients} patients, any regimen", unit="group",
                  disable=not progress):
        rng = np.random.default_rng(streams[g])
        size = min(GROUP_PATIENTS, n_patients - g * GROUP_PATIENTS)
        groups.append(_simulate_group(model, limits, size, rng, rng.random() < irregular_fraction))
    e_max = max(grp["dose_time_h"].shape[1] for grp in groups)
    t_max = max(grp["obs_time_h"].shape[1] for grp in groups)
    pads = {"dose_time_h": (e_max, np.inf), "dose_mg": (e_max, 0.0), "infusion_h": (e_max, 0.0),
            "dose_mask": (e_max, False), "obs_time_h": (t_max, limits.horizon_h), "conc_true": (t_max, 0.0),
            "conc_obs": (t_max, 0.0), "blq": (t_max, False), "obs_mask": (t_max, False)}
    merged = {k: np.concatenate([_pad(grp[k], width, fill) for grp in groups]) for k, (width, fill) in pads.items()}
    for key in ("covariates", "params"):
        merged[key] = np.concatenate([grp[key] for grp in groups])
    merged["irregular"] = np.concatenate([grp["irregular"] for grp in groups])
    return RegimenData(drug=drug, seed=seed, covariate_names=COVARIATE_NAMES, param_names=model.parameter_names,
                       **merged)


def _pad(a: np.ndarray, width: int, fill) -> np.ndarray:
    out = np.full((a.shape[0], width), fill, dtype=a.dtype)
    out[:, :a.shape[1]] = a
    return out


def _simulate_group(model: DrugModel, limits: EventLimits, n: int, rng: np.random.Generator,
                    irregular: bool) -> dict[str, np.ndarray]:
    cov = Covariates.sample(n, rng)
    params = model.sample_parameters(cov, rng)
    if irregular:
        dose_times, infusion = irregular_schedule(model.name, rng)
    else:
        k = int(np.ceil(limits.horizon_h / model.interval_h - 1e-9))
        dose_times, infusion = model.interval_h * np.arange(k, dtype=float), np.full(k, float(model.infusion_h))
    doses = random_regimens(model, cov, dose_times.size, rng)
    if irregular:
        loading = rng.random(n) < P_LOADING_DOSE
        doses[:, 0] = np.where(loading, doses[:, 0] * rng.uniform(*LOADING_FACTOR, n), doses[:, 0])
        doses = np.clip(doses, 0.0, model.dose_range_mg[1])
    times = observation_times(model, dose_times, infusion, limits.horizon_h, rng)
    conc = model.simulate_regimen(params, doses, dose_times, times, infusion)
    obs, blq = model.sample_observations(conc, rng)
    k, t = dose_times.size, times.size
    return {"covariates": cov.as_array(), "params": np.stack([params[p] for p in model.parameter_names], axis=1),
            "dose_time_h": np.broadcast_to(dose_times, (n, k)).copy(),
            "dose_mg": doses, "infusion_h": np.broadcast_to(infusion, (n, k)).copy(),
            "dose_mask": np.ones((n, k), dtype=bool), "obs_time_h": np.broadcast_to(times, (n, t)).copy(),
            "conc_true": conc, "conc_obs": obs, "blq": blq, "obs_mask": np.ones((n, t), dtype=bool),
            "irregular": np.full(n, irregular)}

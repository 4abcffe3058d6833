"""MIPD on the continuous-time PK-VAE: any dosing history in, dose AND interval out.

    python -m vae_simulator.ct_mipd --drug vancomycin --data tdm.csv --intervals 8,12,24 \\
        --target auc24:400-600 --forecast-hours 0,2,6,12,24 --out advice.csv

The table is read by :func:`vae_simulator.nonmem_events.read_dosing_events` (doses at any times,
II/ADDL expanded, SS written out as prior doses, RATE/DUR infusions) and its covariates by
:func:`vae_simulator.nonmem.read_covariates`. For every patient, all in one batch:

1. **Infer** the latent ``z``: the encoder's posterior ``N(mu, sd^2)`` from the samples, the
   dosing events and the covariates (below-LLOQ samples enter flagged, as in training).
   ``--draws`` latent draws from it give the 90 % intervals. (The grid PK-VAE's MIPD refines ``z``
   by MAP on the decoder; here the encoder alone is used, and the validation command measures
   its forecasts and calibration: :mod:`vae_simulator.validation.ct`.)
2. **Plan**: for each interval ``tau`` of ``--intervals`` the same dose every ``tau`` h from the
   next dose time (default: the last dose plus the last gap between doses; ``--next-dose-at``
   sets it on the table's clock), ``--plan-doses`` doses. The dose (a grid of ``--dose-step`` mg)
   whose target exposure over the last planned interval (``auc24`` scaled to 24 h) is closest to the
   middle of the window is recommended for that interval. Two more regimens are forecast:
   ``current`` (the last non-zero dose repeated at the last gap) and ``hold`` (no further dose).
3. **Forecast** at ``--forecast-hours`` (h after the patient's last record, "now"), under every
   regimen: the rest of the current interval, a held dose, q8h instead of q12h.

Nothing is extrapolated: a plan reaching beyond the model's trained horizon or gap, a dose
above the trained range or an infusion length outside it is refused, naming the value and the range.
Output CSV columns: :data:`OUTPUT_COLUMNS` (concentrations mg/L, times h, exposure in the
target's unit, ``p_target`` the fraction of draws in the window).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vae_simulator import mipd
from vae_simulator.dosing import DoseTarget, dose_grid
from vae_simulator.events import DosingEvents, EventLimits, check_query_times
from vae_simulator.exposure import interval_exposure
from vae_simulator.mipd import parse_target
from vae_simulator.nonmem import read_covariates
from vae_simulator.nonmem_events import TableEvents, read_dosing_events
from vae_simulator.vae.ct_model import CTPKVAE

OUTPUT_COLUMNS = ("ID", "regimen", "interval_h", "dose_mg", "next_dose_time_h", "time_h", "hours_from_now",
                  "conc_mg_l", "conc_ci90_low", "conc_ci90_high", "metric", "target_low", "target_high", "exposure",
                  "exposure_ci90_low", "exposure_ci90_high", "p_target", "n_doses", "n_samples")
EXPOSURE_POINTS = 48  # points per planned interval for the exposure integral


def model_limits(model: CTPKVAE) -> EventLimits:
    cfg = model.cfg
    return EventLimits(dose_max_mg=cfg.dose_max_mg, infusion_range_h=cfg.infusion_range_h,
                       horizon_h=cfg.horizon_h, max_gap_h=cfg.max_gap_h)


@dataclass(frozen=True)
class Cohort:
    """Patients of a table as tensors the CT PK-VAE takes, plus their latent posterior."""

    table: TableEvents
    covariates: np.ndarray
    now_h: np.ndarray          # each patient's last record (h on its event clock)
    z_mean: np.ndarray
    z_sd: np.ndarray


def sample_arrays(table: TableEvents) -> tuple[np.ndarray, ...]:
    """``(times h, conc mg/L, below-LLOQ flags, mask)`` ``(n, S)`` of a table's samples, padded."""
    m = max([len(o.times_h) for o in table.observations] + [1])
    n = len(table)
    times, conc, blq, mask = np.zeros((n, m)), np.zeros((n, m)), np.zeros((n, m), bool), np.zeros((n, m), bool)
    for i, obs in enumerate(table.observations):
        k = len(obs.times_h)
        times[i, :k], conc[i, :k], blq[i, :k], mask[i, :k] = obs.times_h, obs.dv_mg_l, obs.blq, True
        times[i, k:] = obs.times_h[-1] if k else 1.0  # padding: masked out, any valid time
    return times, conc, blq, mask


def _batch(covariates, events: DosingEvents, query_h=None, samples=None) -> dict[str, torch.Tensor]:
    f32 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))
    out = {"cov": f32(covariates), "dose_time_h": f32(events.times_h), "dose_mg": f32(events.amounts_mg),
           "infusion_h": f32(events.infusion_h)}
    if samples is not None:
        times, conc, blq, mask = samples
        out.update(obs_time_h=f32(times), conc_obs=f32(conc), blq=torch.as_tensor(blq), obs_mask=torch.as_tensor(mask))
    return out


@torch.no_grad()
def posterior(model: CTPKVAE, covariates: np.ndarray, events: DosingEvents, samples: tuple[np.ndarray, ...]
              ) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's posterior mean and SD of z, ``(n, d)`` each, from ``samples = (times h, conc mg/L,
    below-LLOQ flags, mask)``, each ``(n, S)`` (masked entries: any valid time), and the dosing events."""
    mean, logvar = model.encode(_batch(covariates, events, samples=samples), torch.as_tensor(samples[3]))
    return mean.numpy().astype(float), np.exp(0.5 * logvar.numpy()).astype(float)


def map_objective(model: CTPKVAE, z: torch.Tensor, batch: dict, prior_mean: torch.Tensor) -> torch.Tensor:
    """Per-patient negative log posterior of ``z`` ``(n, d)``: the samples' NLL under the model's
    residual error (linear scale, M3 for below-LLOQ results) plus the latent population prior."""
    conc = model.predict(z, batch, batch["obs_time_h"])
    white = torch.linalg.solve_triangular(model.population.chol.detach(), (z - prior_mean).T, upper=False).T
    nll = model.observation_nll(conc, batch["conc_obs"], batch["blq"], batch["obs_mask"].float())
    return nll + 0.5 * (white ** 2).sum(1)


def map_refine(model: CTPKVAE, z_init: np.ndarray, covariates: np.ndarray, events: DosingEvents,
               samples: tuple[np.ndarray, ...], steps: int = 60, lr: float = 0.05) -> np.ndarray:
    """MAP estimate of z ``(n, d)`` on the decoder, started from ``z_init`` (e.g. the encoder's mean).

    Minimises :func:`map_objective` with Adam (``steps``, ``lr``): what Bayesian TDM software
    does on its compartmental model, here on the PK-VAE decoder. Each patient keeps the best
    iterate seen, so the result is never worse than ``z_init`` on the objective.
    """
    batch = _batch(covariates, events, samples=samples)
    z = torch.tensor(np.asarray(z_init, dtype=np.float32), requires_grad=True)
    with torch.no_grad():
        prior_mean = model.population.mean(model.normalizer.covariates(batch["cov"]))
    best_z, best = z.detach().clone(), torch.full((z.shape[0],), float("inf"))
    opt = torch.optim.Adam([z], lr=lr)
    model.requires_grad_(False)
    try:
        for _ in range(steps + 1):
            objective = map_objective(model, z, batch, prior_mean)
            better = objective.detach() < best
            best = torch.where(better, objective.detach(), best)
            best_z[better] = z.detach()[better]
            opt.zero_grad()
            objective.sum().backward()
            opt.step()
    finally:
        model.requires_grad_(True)
    return best_z.double().numpy()


def infer(model: CTPKVAE, table: TableEvents, covariates: np.ndarray) -> Cohort:
    """Encoder posterior of every patient of ``table`` (covariates ``(n, C)``, table order)."""
    samples = sample_arrays(table)
    z_mean, z_sd = posterior(model, covariates, table.events, samples)
    last_dose = np.where(table.events.mask, table.events.times_h, -np.inf).max(1)
    last_sample = np.where(samples[3], samples[0], -np.inf).max(1)
    return Cohort(table, covariates, np.maximum(last_dose, last_sample), z_mean, z_sd)


def extend(events: DosingEvents, start_h: np.ndarray, interval_h: float, amounts_mg: np.ndarray, n_doses: int,
           infusion_h: np.ndarray) -> DosingEvents:
    """``events`` plus ``n_doses`` of ``amounts_mg (n,)`` every ``interval_h`` from ``start_h (n,)``."""
    lists = ([], [], [])
    planned = start_h[:, None] + interval_h * np.arange(n_doses)[None, :]
    for i in range(len(events)):
        m = events.mask[i]
        lists[0].append(np.concatenate([events.times_h[i, m], planned[i]]))
        lists[1].append(np.concatenate([events.amounts_mg[i, m], np.full(n_doses, amounts_mg[i])]))
        lists[2].append(np.concatenate([events.infusion_h[i, m], np.full(n_doses, infusion_h[i])]))
    return DosingEvents.from_lists(*lists)


@torch.no_grad()
def concentrations(model: CTPKVAE, covariates: np.ndarray, events: DosingEvents, z: np.ndarray,
                   query_h: np.ndarray) -> np.ndarray:
    """Decoder concentrations (mg/L) at ``query_h (n, T)`` for ``z (n, d)``, checked against the trained range."""
    limits = model_limits(model)
    events.check(limits)
    check_query_times(events, query_h, limits)
    conc = model.predict(torch.as_tensor(z, dtype=torch.float32), _batch(covariates, events),
                         torch.as_tensor(query_h, dtype=torch.float32))
    return conc.numpy().astype(float)


@dataclass(frozen=True)
class Regimen:
    """What happens from the next dose on: ``n_doses`` of ``dose_mg`` every ``interval_h`` (0 doses: held)."""

    name: str
    interval_h: float
    dose_mg: float
    n_doses: int


def window_exposure(model: CTPKVAE, covariates, events: DosingEvents, z, last_dose_h: np.ndarray, interval_h: float,
                    target: DoseTarget) -> np.ndarray:
    """Target exposure ``(n,)`` over ``[last_dose_h, last_dose_h + interval_h]`` (``auc24`` scaled to 24 h)."""
    grid = interval_h * np.arange(1, EXPOSURE_POINTS + 1) / EXPOSURE_POINTS
    # the trough convention: the start of the window is just before the last planned dose, the
    # concentration the interval starts from is the one right after it (equal, continuous profiles)
    query = last_dose_h[:, None] + np.concatenate([[1e-6], grid])[None, :]
    conc = concentrations(model, covariates, events, z, query)
    return interval_exposure(conc[:, None, 1:], grid, target.metric, target.threshold_mg_l, conc[:, 0])[:, 0]


def recommend_doses(model: CTPKVAE, cohort: Cohort, interval_h: float, target: DoseTarget, start_h: np.ndarray,
                    n_doses: int, infusion_h: np.ndarray, dose_step_mg: float) -> np.ndarray:
    """Per patient the grid dose (mg, > 0) whose exposure at the posterior mean is nearest the target's middle."""
    n = len(cohort.table)
    last = start_h + (n_doses - 1) * interval_h
    candidates = dose_grid((0.0, model.cfg.dose_max_mg), dose_step_mg)[1:]
    exposure = np.stack([window_exposure(model, cohort.covariates,
                                         extend(cohort.table.events, start_h, interval_h, np.full(n, dose), n_doses,
                                                infusion_h), cohort.z_mean, last, interval_h, target)
                         for dose in candidates], axis=1)
    return candidates[np.argmin(np.abs(exposure - target.value), axis=1)]


def last_dose_and_gap(events: DosingEvents, default_gap_h: float) -> tuple[np.ndarray, np.ndarray]:
    """Each patient's last event time (h) and the gap (h) before it; ``default_gap_h`` with one event."""
    count = events.mask.sum(1)
    times = np.where(events.mask, events.times_h, 0.0)
    rows = np.arange(len(events))
    last = times[rows, count - 1]
    return last, np.where(count > 1, last - times[rows, np.maximum(count - 2, 0)], default_gap_h)


def advise(model: CTPKVAE, cohort: Cohort, intervals_h: list[float], target: DoseTarget, next_dose_h: np.ndarray,
           n_doses: int, dose_step_mg: float, hours: np.ndarray, n_draws: int, seed: int) -> list[dict]:
    """Rows of the advice (module docstring): every patient, every regimen, every forecast time."""
    ev, n = cohort.table.events, len(cohort.table)
    rows_n = np.arange(n)
    given = ev.mask & (ev.amounts_mg > 0)
    last_given = np.where(given, np.arange(ev.max_events)[None, :], -1).max(1)
    current_dose = np.where(last_given >= 0, ev.amounts_mg[rows_n, np.maximum(last_given, 0)], 0.0)
    infusion = np.where(last_given >= 0, ev.infusion_h[rows_n, np.maximum(last_given, 0)],
                        model.cfg.infusion_range_h[0])
    _, last_gap = last_dose_and_gap(ev, model.cfg.interval_h)
    advised = {tau: recommend_doses(model, cohort, tau, target, next_dose_h, n_doses, infusion, dose_step_mg)
               for tau in intervals_h}
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        regimens = [Regimen("current", float(last_gap[i]), float(current_dose[i]), n_doses),
                    *[Regimen(f"q{tau:g}h", tau, float(advised[tau][i]), n_doses) for tau in intervals_h],
                    Regimen("hold", float("nan"), 0.0, 0)]
        draws = cohort.z_mean[i] + cohort.z_sd[i] * rng.standard_normal((n_draws, cohort.z_mean.shape[1]))
        rows += _patient_rows(model, cohort, i, regimens, target, float(next_dose_h[i]), float(infusion[i]),
                              draws, hours)
    return rows


def _patient_rows(model, cohort: Cohort, i: int, regimens: list[Regimen], target: DoseTarget, start_h: float,
                  infusion_h: float, draws: np.ndarray, hours: np.ndarray) -> list[dict]:
    table = cohort.table
    origin, d = float(table.time_origin_h[i]), len(draws)
    query = cohort.now_h[i] + np.maximum(np.asarray(hours, dtype=float), 1e-6)
    rows = []
    for reg in regimens:
        def events(repeat: int, reg=reg) -> DosingEvents:
            base = table.events.take(np.full(repeat, i))
            if reg.n_doses == 0:
                return base
            return extend(base, np.full(repeat, start_h), reg.interval_h, np.full(repeat, reg.dose_mg), reg.n_doses,
                          np.full(repeat, infusion_h))

        cov1, covd = cohort.covariates[i:i + 1], np.repeat(cohort.covariates[i:i + 1], d, 0)
        point = concentrations(model, cov1, events(1), cohort.z_mean[i:i + 1], query[None, :])[0]
        spread = concentrations(model, covd, events(d), draws, np.repeat(query[None, :], d, 0))
        lo, hi = np.percentile(spread, [5.0, 95.0], axis=0)
        exposure = {"exposure": float("nan"), "exposure_ci90_low": float("nan"),
                    "exposure_ci90_high": float("nan"), "p_target": float("nan")}
        if reg.n_doses:
            last = start_h + (reg.n_doses - 1) * reg.interval_h
            exposure["exposure"] = float(window_exposure(model, cov1, events(1), cohort.z_mean[i:i + 1],
                                                         np.array([last]), reg.interval_h, target)[0])
            ex = window_exposure(model, covd, events(d), draws, np.full(d, last), reg.interval_h, target)
            exposure["exposure_ci90_low"], exposure["exposure_ci90_high"] = (float(v) for v in
                                                                              np.percentile(ex, [5.0, 95.0]))
            exposure["p_target"] = float(target.contains(ex).mean())
        for j, h in enumerate(hours):
            rows.append({"ID": table.ids[i], "regimen": reg.name, "interval_h": reg.interval_h,
                         "dose_mg": reg.dose_mg, "next_dose_time_h": start_h + origin, "time_h": float(query[j]) + origin,
                         "hours_from_now": float(h), "conc_mg_l": float(point[j]), "conc_ci90_low": float(lo[j]),
                         "conc_ci90_high": float(hi[j]), "metric": target.metric, "target_low": target.low,
                         "target_high": target.high, **exposure, "n_doses": reg.n_doses,
                         "n_samples": len(table.observations[i].times_h)})
    return rows


def parse_list(text: str, name: str, positive: bool) -> np.ndarray:
    """Comma-separated finite numbers (> 0 where ``positive``, else >= 0)."""
    try:
        values = np.array([float(v) for v in text.split(",") if v.strip()], dtype=float)
    except ValueError:
        raise ValueError(f"{name} must be comma-separated numbers, got {text!r}") from None
    bad = ~np.isfinite(values) | ((values <= 0) if positive else (values < 0))
    if values.size == 0 or bad.any():
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be one or more finite numbers {bound}, got {text!r}")
    return values


def write_csv(rows: list[dict], path: str | Path) -> None:
    """Write :func:`advise`'s rows (the grid MIPD's format, with :data:`OUTPUT_COLUMNS`)."""
    mipd.write_csv(rows, path, OUTPUT_COLUMNS)


def summary_table(rows: list[dict]) -> str:
    """One line per patient and regimen: dose, exposure [90 % interval], P(target)."""
    seen: dict[tuple, dict] = {}
    for row in rows:
        seen.setdefault((row["ID"], row["regimen"]), row)
    metric = rows[0]["metric"]
    lines = [f"{'ID':>8} {'regimen':>8} {'every h':>8} {'dose mg':>8} {metric + ' [90% interval]':>30} {'P(target)':>9}"]
    for (pid, name), r in seen.items():
        if name == "hold":
            continue
        band = f"{r['exposure']:.4g} [{r['exposure_ci90_low']:.4g}, {r['exposure_ci90_high']:.4g}]"
        lines.append(f"{pid:>8} {name:>8} {r['interval_h']:>8.3g} {r['dose_mg']:>8.0f} {band:>30} {r['p_target']:>9.2f}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pkdose mipd-ct", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--drug", default=None, help="drug of the table (its shipped continuous-time PK-VAE is used)")
    p.add_argument("--data", type=Path, required=True, help="NONMEM-style table (CSV): doses, samples, covariates")
    p.add_argument("--intervals", default=None,
                   help="dosing intervals (h) to recommend a dose for, e.g. 8,12,24 (default: the drug's usual one)")
    p.add_argument("--target", default=None, help="window 'metric:low-high', e.g. auc24:400-600 (default: the "
                   "drug's published target)")
    p.add_argument("--next-dose-at", type=float, default=None,
                   help="table-clock time (h) of the next dose for every patient (default: last dose + last gap)")
    p.add_argument("--plan-doses", type=int, default=3,
                   help="doses planned; the exposure is scored over the last one's interval (default 3)")
    p.add_argument("--forecast-hours", default="0,2,6,12,24",
                   help="h after each patient's last record to forecast at (default 0,2,6,12,24)")
    p.add_argument("--dose-step", type=float, default=None, help="dose grid step, mg (default 1/200 of the range)")
    p.add_argument("--draws", type=int, default=200, help="latent draws for the 90%% intervals (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent draws (default 0)")
    p.add_argument("--weights", type=Path, default=None,
                   help="manifest of a CT PK-VAE instead of the shipped one: a retrained drug's (with --drug), or "
                        "one learnt from your table (vae_simulator.byod; then --target is required)")
    p.add_argument("--ignore-columns", default="", help="table columns to skip (with a PK-VAE learnt from a table)")
    p.add_argument("--out", type=Path, required=True, help="CSV to write")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from argparse import Namespace

    from vae_simulator.forecast import load_history
    from vae_simulator.groundtruth import get_model
    from vae_simulator.vae.io import CT_MANIFEST_FORMAT, load_model, read_manifest

    try:
        if args.drug is None and args.weights is None:
            raise ValueError("give --drug (a shipped drug) or --weights (a PK-VAE learnt from your table)")
        table_model = args.weights is not None and "data" in read_manifest(args.weights, CT_MANIFEST_FORMAT)
        if table_model:
            if args.target is None:
                raise ValueError("--target is required with a PK-VAE learnt from a table (it has no published "
                                 "target), e.g. --target trough:15-25")
            if args.drug is not None:
                raise ValueError("--drug names a shipped drug; a PK-VAE learnt from a table is given by --weights only")
            model, covariates, table, _ = load_history(Namespace(weights=args.weights, drug=None, data=args.data,
                                                                 ignore_columns=args.ignore_columns))
            default_interval, dose_max = model.cfg.interval_h, model.cfg.dose_max_mg
        else:
            drug = get_model(args.drug)
            if args.weights is None:
                model, covariates, table, _ = load_history(Namespace(weights=None, drug=args.drug, data=args.data,
                                                                     ignore_columns=args.ignore_columns))
            else:  # another CT PK-VAE of a shipped drug (e.g. retrained)
                model, _ = load_model(args.weights, args.drug, CT_MANIFEST_FORMAT)
                table = read_dosing_events(args.data, lloq_mg_l=drug.lloq_mg_l, limits=model_limits(model))
                cov = read_covariates(args.data)
                covariates = np.stack([cov[pid] for pid in table.ids])
            default_interval, dose_max = drug.interval_h, drug.dose_range_mg[1]
        target = parse_target(args.target, args.drug)
        intervals = parse_list(args.intervals, "--intervals", True) if args.intervals else np.array([default_interval])
        hours = parse_list(args.forecast_hours, "--forecast-hours", False)
        if args.plan_doses < 1 or args.draws < 2:
            raise ValueError(f"--plan-doses must be >= 1 and --draws >= 2, got {args.plan_doses} and {args.draws}")
        cohort = infer(model, table, covariates)
        if args.next_dose_at is None:
            last, gap = last_dose_and_gap(table.events, model.cfg.interval_h)
            next_dose = last + gap
        else:
            next_dose = args.next_dose_at - table.time_origin_h
        late = next_dose < cohort.now_h
        if late.any():
            k = int(np.flatnonzero(late)[0])
            raise ValueError(f"ID {table.ids[k]}: next dose at {next_dose[k] + table.time_origin_h[k]:g} h (table "
                             f"clock) is before the patient's last record at "
                             f"{cohort.now_h[k] + table.time_origin_h[k]:g} h; give --next-dose-at")
        step = args.dose_step or dose_max / 200.0
        rows = advise(model, cohort, [float(t) for t in intervals], target, next_dose, args.plan_doses, step, hours,
                      args.draws, args.seed)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise SystemExit(f"error: {exc}") from None
    write_csv(rows, args.out)
    print(summary_table(rows))
    print(f"{len(table)} patients, {len(rows)} rows -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

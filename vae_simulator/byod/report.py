"""Validation of a PK-VAE learnt from a table, on subjects it never saw, beside a 1-cmt reference.

For every held-out record with at least two samples, the **last sample is forecast from the
earlier ones** (and the doses up to it), the way a TDM service uses a model:

* PK-VAE: the encoder's posterior of ``z`` from the earlier samples, refined by MAP on the decoder
  (:func:`vae_simulator.ct_mipd.map_refine`); the prediction is the decoder at the MAP ``z``, the
  90 % credible interval (CI) comes from latents (:func:`vae_simulator.forecast.forecast_intervals`) around it with the encoder's
  posterior SD, the 90 % prediction interval (PI) of a measured sample adds the learnt residual
  error;
* reference: a one-compartment population model fitted on the *training* records by the package
  itself (:mod:`vae_simulator.byod.reference`, weight on CL and V allometrically when a ``WT``
  covariate is declared) and its MAP-Bayes forecast from the same earlier samples. It is a
  baseline, not the product.

Metrics (Sheiner & Beal 1981 J Pharmacokinet Biopharm 9:503 for bias and precision): MPE (bias),
MAPE and RMSE (precision), P20 / P30 (fraction within +-20 / 30 %), and the coverage of the 90 %
PI. A visual predictive check (VPC) of the held-out records, simulated from the learnt latent
population with their own doses and covariates, is written as ``vpc.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from vae_simulator.byod.prior import record_weights_kg
from vae_simulator.byod.reference import fit_population_1cmt, forecast_1cmt
from vae_simulator.ct_mipd import concentrations, sample_arrays
from vae_simulator.events import DosingEvents
from vae_simulator.forecast import forecast_intervals, tile_events
from vae_simulator.validation.ct import population_draws

VPC_REPLICATES = 200
VPC_BINS = 6


def within_trained_range(model, events: DosingEvents, times: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``mask`` without the samples the model may not be asked about: records with an event outside
    the trained range (dose, infusion length, gap), samples past the trained horizon or gap."""
    from vae_simulator.ct_mipd import model_limits
    from vae_simulator.events import check_query_times

    limits, keep = model_limits(model), mask.copy()
    for i in range(len(events)):
        one = events.take([i])
        try:
            one.check(limits)
        except ValueError:
            keep[i] = False
            continue
        for j in np.flatnonzero(mask[i]):
            try:
                check_query_times(one, times[i:i + 1, j:j + 1], limits)
            except ValueError:
                keep[i, j] = False
    return keep


def forecast_split(times: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Records with >= 2 samples; for them the mask of earlier samples and the last sample's column."""
    count = mask.sum(1)
    usable = np.flatnonzero(count >= 2)
    last = np.where(mask, times, -np.inf).argmax(1)
    earlier = mask.copy()
    earlier[np.arange(len(mask)), last] = False
    return usable, earlier[usable], last[usable]


def forecast_metrics(pred: np.ndarray, obs: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> dict[str, float]:
    """MPE, MAPE (%), RMSE (mg/L), P20, P30 (%) and 90 % PI coverage (%) of forecasts of quantified samples."""
    pe = (pred - obs) / obs
    return {"n": int(obs.size), "mpe_pct": 100 * float(pe.mean()), "mape_pct": 100 * float(np.abs(pe).mean()),
            "rmse_mg_l": float(np.sqrt(((pred - obs) ** 2).mean())),
            "p20_pct": 100 * float((np.abs(pe) <= 0.2).mean()), "p30_pct": 100 * float((np.abs(pe) <= 0.3).mean()),
            "pi90_coverage_pct": 100 * float(((obs >= lo) & (obs <= hi)).mean())}


def _weight(run, covariates: np.ndarray, index: np.ndarray) -> np.ndarray | None:
    """Body weight (kg) of records ``index``, ``None`` without a WT covariate."""
    weights = record_weights_kg(run.table, run.encoder.names, covariates)
    return None if weights is None else weights[index]


def read_truth(path: Path) -> dict[tuple[str, float], float]:
    """True concentrations ``{(ID, TIME h): mg/L}`` of a virtual table's ``.truth.csv``."""
    import csv

    with Path(path).open(newline="") as f:
        return {(r["ID"].strip(), round(float(r["TIME"]), 6)): float(r["CTRUE"]) for r in csv.DictReader(f)}


def _scores(f: dict, obs: np.ndarray, true: np.ndarray | None) -> dict:
    """Metrics against the observed samples, and (virtual tables) against the true concentrations,
    where the coverage is the 90 % credible interval's (of the concentration, not of a sample)."""
    out = forecast_metrics(f["pred"], obs, f["pi_lo"], f["pi_hi"])
    if true is not None:
        pos = true > 0  # a relative error needs a true concentration above 0
        vs = forecast_metrics(f["pred"][pos], true[pos], f["ci_lo"][pos], f["ci_hi"][pos])
        out["vs_truth"] = {k.replace("pi90", "ci90"): v for k, v in vs.items()}
    return out


def compare_forecasts(run, index: np.ndarray, route: str = "iv", seed: int = 0,
                      truth: dict[tuple[str, float], float] | None = None) -> dict:
    """Forecast of each record's last sample in ``index`` by the PK-VAE and by the 1-cmt reference;
    with ``truth`` (:func:`read_truth`), also scored against the true concentrations."""
    table = run.table
    cov = run.encoder.transform(table, warn=False)
    times, conc, blq, all_samples = sample_arrays(table)
    mask = all_samples.copy()
    mask[index] = within_trained_range(run.model, table.events.take(index), times[index], all_samples[index])
    usable, earlier, last = forecast_split(times[index], mask[index])
    rec = index[usable]
    keep = ~blq[rec, last]  # a censored last sample has no value to score against
    rec, earlier, last = rec[keep], earlier[keep], last[keep]
    if not rec.size:
        raise ValueError("no held-out record has two or more samples with a quantified last one: nothing to forecast")
    obs = conc[rec, last]
    query = times[rec, last][:, None]
    before = (times[rec], conc[rec], blq[rec], earlier)
    events = table.events.take(rec)
    vae = forecast_intervals(run.model, cov[rec], events, before, query, seed)
    train = run.train_index
    pop = fit_population_1cmt(table.events.take(train), times[train], conc[train], blq[train], mask[train],
                              route=route, weight_kg=_weight(run, cov, train), lloq_mg_l=table.lloq_mg_l)
    ref = forecast_1cmt(pop, events, *before, query, weight_kg=_weight(run, cov, rec), seed=seed)
    true = None
    if truth is not None:
        keys = [(table.subject_ids[i], round(float(table.time_origin_h[i] + query[k, 0]), 6)) for k, i in enumerate(rec)]
        missing = [key for key in keys if key not in truth]
        if missing:
            raise ValueError(f"the truth file has no concentration for ID {missing[0][0]} at TIME {missing[0][1]:g} h")
        true = np.array([truth[key] for key in keys])
    out = {"records": [table.ids[i] for i in rec], "observed_mg_l": obs.tolist(), "reference_population": pop.to_dict(),
           "samples_outside_trained_range": int(all_samples[index].sum() - mask[index].sum())}
    if true is not None:
        out["true_mg_l"] = true.tolist()
    for name, f in (("pkvae", vae), ("one_compartment", ref)):
        f = {k: v[:, 0] for k, v in f.items()}
        out[name] = {**_scores(f, obs, true), **{f"{k}_mg_l": v.tolist() for k, v in f.items()}}
    return out


def vpc(run, index: np.ndarray, path: Path, seed: int = 0, label: str = "held-out records") -> Path:
    """VPC figure of records ``index``: observed 10/50/90th percentiles per time bin against the 90 %
    intervals of the same percentiles in :data:`VPC_REPLICATES` simulated replicates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table, model = run.table, run.model
    cov = run.encoder.transform(table, warn=False)[index]
    times, conc, _, mask = (a[index] for a in sample_arrays(table))
    events = table.events.take(index)
    mask = within_trained_range(model, events, times, mask)
    inside = mask.any(1)
    index, times, conc, mask, cov = index[inside], times[inside], conc[inside], mask[inside], cov[inside]
    events = events.take(np.flatnonzero(inside))
    times = np.where(mask, times, times[mask].min())  # masked-out samples: any time the model accepts
    rng = np.random.default_rng([seed, 777])
    reps = VPC_REPLICATES
    z = population_draws(model, np.tile(cov, (reps, 1)), rng)
    sim = concentrations(model, np.tile(cov, (reps, 1)), tile_events(events, reps), z, np.tile(times, (reps, 1)))
    with torch.no_grad():
        res = model.residual_sd(torch.as_tensor(sim, dtype=torch.float32)).numpy()
    sim = np.clip(sim + res * rng.standard_normal(sim.shape), 0.0, None).reshape(reps, *times.shape)
    t_obs = times[mask]
    edges = np.unique(np.quantile(t_obs, np.linspace(0, 1, VPC_BINS + 1)))
    bins = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, len(edges) - 2)
    centres, observed, simulated = [], [], []
    for b in range(len(edges) - 1):
        sel = mask & (bins == b)
        if sel.sum() < 3:
            continue
        centres.append(float(np.median(times[sel])))
        observed.append(np.percentile(conc[sel], [10, 50, 90]))
        per_rep = np.percentile(sim[:, sel], [10, 50, 90], axis=1)  # (3, reps)
        simulated.append(np.percentile(per_rep, [5, 95], axis=1))  # (2, 3)
    observed, simulated = np.array(observed), np.array(simulated)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = ("tab:blue", "tab:red", "tab:blue")
    for k, pct in enumerate(("10th", "50th", "90th")):
        ax.fill_between(centres, simulated[:, 0, k], simulated[:, 1, k], color=colours[k], alpha=0.2,
                        label=f"simulated {pct} percentile, 90% interval")
        ax.plot(centres, observed[:, k], "o-", color=colours[k], label=f"observed {pct} percentile")
    ax.scatter(t_obs, conc[mask], s=8, color="0.4", alpha=0.5, label="observed samples")
    ax.set_xlabel("time after the record's first dose (h)")
    ax.set_ylabel("concentration (mg/L)")
    ax.set_title(f"VPC, {model.cfg.drug}: {len(index)} {label}")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def markdown(report: dict) -> str:
    rows = ["| model | n | MPE % | MAPE % | RMSE mg/L | P20 % | P30 % | 90% PI coverage % |", "|---|---|---|---|---|---|---|---|"]
    for name, label in (("pkvae", "PK-VAE"), ("one_compartment", "1-cmt population MAP-Bayes (reference)")):
        m = report["forecast"][name]
        rows.append(f"| {label} | {m['n']} | {m['mpe_pct']:+.1f} | {m['mape_pct']:.1f} | {m['rmse_mg_l']:.3g} | "
                    f"{m['p20_pct']:.0f} | {m['p30_pct']:.0f} | {m['pi90_coverage_pct']:.0f} |")
        if "vs_truth" in m:
            t = m["vs_truth"]
            rows.append(f"| {label}, against the true concentration | {t['n']} | {t['mpe_pct']:+.1f} | "
                        f"{t['mape_pct']:.1f} | {t['rmse_mg_l']:.3g} | {t['p20_pct']:.0f} | {t['p30_pct']:.0f} | "
                        f"{t['ci90_coverage_pct']:.0f} (90% CI) |")
    return "\n".join(rows) + "\n"


def _summary(forecast: dict) -> dict:
    vae, ref = forecast["pkvae"], forecast["one_compartment"]
    return {"records_forecast": vae["n"], "pkvae_mape_pct": vae["mape_pct"], "reference_mape_pct": ref["mape_pct"],
            "mape_ratio": vae["mape_pct"] / ref["mape_pct"], "pkvae_pi90_coverage_pct": vae["pi90_coverage_pct"],
            "reference_pi90_coverage_pct": ref["pi90_coverage_pct"],
            **({"pkvae_mape_vs_truth_pct": vae["vs_truth"]["mape_pct"],
                "reference_mape_vs_truth_pct": ref["vs_truth"]["mape_pct"]} if "vs_truth" in vae else {})}


def cross_validate(path: Path, covariates, folds: int, out_dir: Path, route: str = "iv", seed: int = 0,
                   truth: dict[tuple[str, float], float] | None = None, **train_options) -> dict:
    """Patient-level K-fold cross-validation: each fold's subjects forecast by models trained on the
    others; metrics pooled over every fold. Writes ``<out_dir>/cv/fold<k>/`` runs and ``report.{json,md}``."""
    from vae_simulator.byod.table import parse_covariate_specs, read_clinic_table
    from vae_simulator.byod.train import subject_folds, train_on_table

    out_dir = Path(out_dir)
    specs = parse_covariate_specs(covariates) if isinstance(covariates, str) else tuple(covariates)
    table = read_clinic_table(path, specs, lloq_mg_l=train_options.get("lloq_mg_l"),
                              ignore_columns=train_options.get("ignore_columns", ()))
    pooled: dict = {"records": [], "observed_mg_l": [], "true_mg_l": [], "samples_outside_trained_range": 0}
    for k, held in enumerate(subject_folds(table, folds, seed)):
        run = train_on_table(path, specs, out_dir=out_dir / "cv" / f"fold{k}", held_out=held, seed=seed,
                             route=route, **train_options)
        part = compare_forecasts(run, run.holdout_index, route, seed, truth)
        for key in ("records", "observed_mg_l", "true_mg_l"):
            pooled[key] += part.get(key, [])
        pooled["samples_outside_trained_range"] += part["samples_outside_trained_range"]
        for name in ("pkvae", "one_compartment"):
            slot = pooled.setdefault(name, {})
            for key, value in part[name].items():
                if key.endswith("_mg_l") and isinstance(value, list):
                    slot[key] = slot.get(key, []) + value
    obs = np.array(pooled["observed_mg_l"])
    true = np.array(pooled["true_mg_l"]) if truth is not None else None
    for name in ("pkvae", "one_compartment"):
        f = {k[:-5]: np.array(v) for k, v in pooled[name].items()}
        pooled[name].update(_scores(f, obs, true))
    report = {"model": Path(path).stem, "table_sha256": table.sha256, "folds": folds, "summary": _summary(pooled),
              "forecast": pooled}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(markdown(report))
    return report


def validation_report(run, out_dir: Path, route: str = "iv", seed: int = 0,
                      truth: dict[tuple[str, float], float] | None = None) -> dict:
    """Forecast comparison and VPC on the held-out records; writes ``report.json``, ``report.md``, ``vpc.png``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    forecast = compare_forecasts(run, run.holdout_index, route, seed, truth)
    figure = vpc(run, run.holdout_index, out_dir / "vpc.png", seed)
    report = {"model": run.model.cfg.drug, "table_sha256": run.table.sha256, "summary": _summary(forecast),
              "forecast": forecast, "vpc": figure.name}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(markdown(report))
    return report

"""Assemble ``report.md``: one summary table against the goals, then a section per check."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vae_simulator.groundtruth import get_model
from vae_simulator.validation.common import monitoring_indices
from vae_simulator.validation.mipd_study import STRATEGIES
from vae_simulator.validation.reference_map import reference_reason
from vae_simulator.validation.run import DrugValidation, ValidationSettings
from vae_simulator.validation.sparse import PREDICTORS, REFERENCE

#: Goals of the summary table.
GOAL_MAX_RECONSTRUCTION_APE = 0.10
GOAL_MIN_SPARSE_WITHIN = 0.80
GOAL_COVERAGE = (0.85, 0.95)
GOAL_VANCOMYCIN_MIPD_GAIN = 0.25
#: Our own yardstick for population samples (bioequivalence bounds), informative only.
LATENT_RATIO_BOUNDS = (0.8, 1.25)
PREDICTOR_LABELS = {"typical": "population-typical (no samples)", "encoder": "encoder mean",
                    "map": "encoder + MAP", REFERENCE: "reference: true model + MAP"}
STRATEGY_HEADERS = {"standard": "standard", "vae_mipd": "VAE-MIPD", "true_model_map": "true-model MAP (ref.)",
                    "oracle": "oracle"}

RECONSTRUCTION_TEXT = (
    "The encoder sees the whole noisy multi-dose profile (random regimens, held doses included); the "
    "decoder's median profile at the posterior mean is compared with the TRUE profile on concentrations "
    "above the LLOQ. The one-compartment model (IV infusion, or oral first-order absorption without lag; "
    "CL, V (and KA) per patient by least squares on log(C + LLOQ/2), BLQ results left out) is fitted to "
    "the same noisy profiles of the first patients; the 'same' columns score the PK-VAE on exactly those.")
SPARSE_TEXT = (
    "Samples: the clinic's peak and trough of interval j (the drug's first and last monitoring time, from "
    "the data set's clinic samples; a missing one is replaced by the nearest noisy grid point), with the "
    "covariates and the dosing history. Predicted: the exposure of interval j+1 under its known dose, "
    "scored as the fraction of patients within +-20% of the truth (patients with a held dose in j+1 left "
    "out; trough and peak only where the truth is above the LLOQ). The reference is the exact "
    "ground-truth model's MAP estimate from the same samples (true structural, covariate, IIV and "
    "residual model): what a perfect structural model makes of these samples. Goal: >= 80% for the "
    "target metric with encoder + MAP.")
CALIBRATION_TEXT = (
    "90% posterior-predictive interval (z drawn from the encoder posterior given the samples of interval "
    "j, plus the decoder's learned noise) for every noisy grid observation of interval j+1 above the LLOQ. "
    "Goal: coverage 85-95%.")
VPC_TEXT = (
    "Held-out patients on the standard dose every interval: ground truth + published residual error "
    "(observed) against the PK-VAE with z drawn from its latent population given the same covariates, "
    "the same doses and its learned noise (simulated); both report results below the LLOQ as LLOQ/2. "
    "About 10% of the observations should fall outside the simulated 5-95% band.")
LATENT_TEXT = (
    "z drawn from the PK-VAE's latent population given the held-out covariates, standard dosing: "
    "percentiles (5, 25, 50, 75, 95) over patients of each interval's AUC (mg*h/L) and Cmax (mg/L) of "
    "the decoder's median profile vs the true profiles, and their ratios (PK-VAE / truth; our "
    "yardstick {lo}-{hi}, informative only). Intervals 1, 2 and the last are shown.")
MIPD_TEXT = (
    "New held-out patients get the standard dose in intervals 0..j; the peak and trough of interval j are "
    "sampled (scheduled times, published residual error); the dose of interval j+1 is then (a) the "
    "standard dose, (b) VAE-MIPD (encoder + MAP on the samples, dose grid search on the decoder), "
    "(c) as a reference, classical Bayesian dosing with the exact ground-truth model (MAP parameters from "
    "the same samples), or (d) the oracle (the dose that puts the true exposure at the middle of the "
    "window on the patient's true model). Scored: the TRUE exposure of interval j+1 from the "
    "ground-truth model. Goal (vancomycin): VAE-MIPD >= standard + 25 points.")


def _pct(x: float | None) -> str:
    return "n/a" if x is None or np.isnan(x) else f"{100 * x:.1f}%"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows] + [""]


def _section(title: str, text: str, header: list[str], rows: list[list[str]]) -> list[str]:
    return [f"## {title}", "", text, ""] + _table(header, rows)


def summary_rows(results: list[DrugValidation]) -> list[list[str]]:
    """One row per validated drug: each metric with its goal verdict."""
    rows = []
    for r in results:
        if r.skipped:
            continue
        t = get_model(r.drug).target
        rec, one = r.reconstruction, r.one_compartment
        within = r.sparse.within[t.metric]
        cov = r.calibration.coverage
        gain = r.mipd.in_window["vae_mipd"] - r.mipd.in_window["standard"]
        mipd = " / ".join(_pct(r.mipd.in_window.get(s)) for s in STRATEGIES)
        if r.drug == "vancomycin":
            mipd += f" ({100 * gain:+.0f} pts, {_verdict(gain >= GOAL_VANCOMYCIN_MIPD_GAIN)})"
        rows.append([
            r.drug,
            f"{_pct(rec.median_ape)} {_verdict(rec.median_ape <= GOAL_MAX_RECONSTRUCTION_APE)}",
            _pct(one.median_ape),
            f"{r.reconstruction_subset.log_rmse:.3f} / {one.log_rmse:.3f}",
            (f"{t.metric}: {_pct(within['map'])} {_verdict(within['map'] >= GOAL_MIN_SPARSE_WITHIN)} "
             f"(ref. {_pct(within.get(REFERENCE))})"),
            _pct(within["typical"]),
            f"{_pct(cov)} {_verdict(GOAL_COVERAGE[0] <= cov <= GOAL_COVERAGE[1])}",
            mipd,
            f"{float(r.cohort.ratio('auc_interval')[2, -1]):.2f}",
            f"{r.seconds:.0f} s",
        ])
    return rows


def _reconstruction_section(results: list[DrugValidation]) -> list[str]:
    rows = []
    for r in results:
        vae, same, one = r.reconstruction, r.reconstruction_subset, r.one_compartment
        rows.append([r.drug, str(vae.n_patients), _pct(vae.median_ape), f"{vae.log_rmse:.3f}",
                     str(one.n_patients), _pct(same.median_ape), _pct(one.median_ape),
                     f"{same.log_rmse:.3f}", f"{one.log_rmse:.3f}",
                     "PK-VAE" if same.log_rmse < one.log_rmse else "1-compartment",
                     f"[png]({r.figures['reconstruction']})" if "reconstruction" in r.figures else "-"])
    header = ["drug", "patients", "VAE median APE", "VAE log-RMSE", "fitted patients", "VAE APE (same)",
              "1-cmt APE", "VAE log-RMSE (same)", "1-cmt log-RMSE", "better (log-RMSE)", "examples"]
    return _section("1-2. Reconstruction of full profiles: PK-VAE vs one-compartment fit",
                    RECONSTRUCTION_TEXT, header, rows)


def _sparse_section(results: list[DrugValidation]) -> list[str]:
    rows = []
    for r in results:
        truth = get_model(r.drug)
        times = ", ".join(f"{truth.monitoring_times_h[i]:g} h" for i in monitoring_indices(truth))
        for metric, scores in r.sparse.within.items():
            rows.append([r.drug, f"{r.sparse.n_samples} ({times})", str(r.sparse.n_patients), metric]
                        + [_pct(scores.get(p)) for p in (*PREDICTORS, REFERENCE)])
    predictors = (*PREDICTORS, REFERENCE)
    header = ["drug", "samples", "patients", "metric"] + [PREDICTOR_LABELS[p] for p in predictors]
    notes = [f"Reference not computed for {r.drug}: {reference_reason(r.drug)}." for r in results
             if reference_reason(r.drug)]
    return _section("3. Sparse-data prediction (MIPD case)", SPARSE_TEXT, header, rows) \
        + ([" ".join(notes), ""] if notes else [])


def _calibration_section(results: list[DrugValidation]) -> list[str]:
    rows = [[r.drug, str(r.calibration.n_observations), str(r.calibration.n_draws),
             _pct(r.calibration.coverage),
             _verdict(GOAL_COVERAGE[0] <= r.calibration.coverage <= GOAL_COVERAGE[1])] for r in results]
    return _section("4. Calibration", CALIBRATION_TEXT,
                    ["drug", "observations", "draws per patient", "coverage", "goal"], rows)


def _vpc_section(results: list[DrugValidation]) -> list[str]:
    rows = [[r.drug, _pct(r.cohort.outside_band), f"![vpc {r.drug}]({r.figures['vpc']})"] for r in results]
    return _section("5. Visual predictive checks", VPC_TEXT,
                    ["drug", "observations outside simulated 5-95%", "figure"], rows)


def _latent_section(results: list[DrugValidation]) -> list[str]:
    lo, hi = LATENT_RATIO_BOUNDS
    lines = ["## 6. Latent space: population samples vs the ground-truth population", "",
             LATENT_TEXT.format(lo=lo, hi=hi), ""]
    header = ["metric", "interval", "truth p5 / p25 / p50 / p75 / p95", "ratio p5 / p25 / p50 / p75 / p95",
              f"all within {lo}-{hi}"]
    for r in results:
        rows = []
        for metric, label in (("auc_interval", "AUC"), ("peak", "Cmax")):
            ratio = r.cohort.ratio(metric)
            for i in sorted({0, 1, r.n_intervals - 1}):
                inside = np.all((ratio[:, i] >= lo) & (ratio[:, i] <= hi))
                true = r.cohort.true_pct[metric][:, i]
                rows.append([label, str(i + 1), " / ".join(f"{v:.3g}" for v in true),
                             " / ".join(f"{v:.2f}" for v in ratio[:, i]), "yes" if inside else "no"])
        lines += [f"### {r.drug}", ""] + _table(header, rows)
    return lines


def _mipd_section(results: list[DrugValidation]) -> list[str]:
    rows = []
    for r in results:
        t, s = get_model(r.drug).target, r.mipd
        doses = [f"{np.median(s.doses_mg[k]):.0f}" if k in s.doses_mg else "n/a" for k in STRATEGIES]
        rows.append([r.drug, f"{t.metric} {t.low:g}-{t.high:g} {t.unit}", str(s.exposure["standard"].size)]
                    + [_pct(s.in_window.get(k)) for k in STRATEGIES]
                    + [" / ".join(_pct(s.toxic.get(k)) for k in STRATEGIES), " / ".join(doses),
                       f"[png]({r.figures['mipd']})"])
    header = (["drug", "target", "patients"] + [STRATEGY_HEADERS[k] for k in STRATEGIES]
              + ["above toxic (same order)", "median dose mg (same order)", "figure"])
    return _section("MIPD study: one dosing decision", MIPD_TEXT, header, rows)


def _runtime_section(results: list[DrugValidation]) -> list[str]:
    steps = list(results[0].step_seconds)
    rows = [[r.drug] + [f"{r.step_seconds.get(s, 0.0):.1f}" for s in steps] + [f"{r.seconds:.0f}"]
            for r in results]
    return ["## Runtime (s, this machine)", ""] + _table(["drug"] + steps + ["total"], rows)


def _introduction(results: list[DrugValidation], settings: ValidationSettings, command: str) -> list[str]:
    j = settings.interval
    lines = ["# PK-VAE validation report", "", f"Produced by: `{command}`", "",
             (f"Held-out virtual patients: `simulate_dataset(drug, {settings.n_patients}, K, "
              f"seed={settings.seed})` (K = the intervals the PK-VAE was trained on), never seen in "
              f"training; the standard-dose and MIPD cohorts are drawn from seeds derived from "
              f"{settings.seed}. Sample interval j = {j} counted from 0: samples from dosing interval "
              f"{j + 1}, interval {j + 2} predicted and dosed."), ""]
    skipped = [r for r in results if r.skipped]
    if skipped:
        lines += ["Not validated:", ""] + [f"- {r.drug}: skipped, {r.skipped}" for r in skipped] + [""]
    return lines


def render_report(results: list[DrugValidation], settings: ValidationSettings, command: str) -> str:
    """The whole report as markdown."""
    lines = _introduction(results, settings, command)
    done = [r for r in results if not r.skipped]
    if not done:
        return "\n".join(lines + ["No drug had a trained PK-VAE; nothing was validated.", ""])
    lines += ["Training data of each model (from its manifest): "
              + "; ".join(f"{r.drug} seed {r.training.get('data_seed', '?')}, "
                          f"{r.training.get('n_patients', '?')} patients x {r.n_intervals} intervals, "
                          f"latent population {r.latent}" for r in done) + ".", ""]
    goals = (f"Goals: reconstruction median APE <= {_pct(GOAL_MAX_RECONSTRUCTION_APE)}; next-interval "
             f"target metric within +-20% for >= {_pct(GOAL_MIN_SPARSE_WITHIN)} of patients; 90% PI "
             f"coverage {_pct(GOAL_COVERAGE[0])}-{_pct(GOAL_COVERAGE[1])}; vancomycin MIPD >= standard + "
             f"{100 * GOAL_VANCOMYCIN_MIPD_GAIN:.0f} points.")
    header = ["drug", "reconstruction APE (VAE)", "APE (1-cmt)", "log-RMSE VAE / 1-cmt",
              "next interval within +-20% (VAE, samples)", "same, population-typical", "90% PI coverage",
              "in window: standard / VAE-MIPD / true-model MAP / oracle",
              "population median AUC ratio (last)",
              "runtime"]
    lines += _section("Summary", goals, header, summary_rows(done))
    for section in (_reconstruction_section, _sparse_section, _calibration_section, _vpc_section,
                    _latent_section, _mipd_section, _runtime_section):
        lines += section(done)
    return "\n".join(lines)


def write_report(results: list[DrugValidation], settings: ValidationSettings, command: str,
                 out_dir: Path) -> Path:
    """Write ``<out_dir>/report.md`` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.md"
    path.write_text(render_report(results, settings, command) + "\n")
    return path

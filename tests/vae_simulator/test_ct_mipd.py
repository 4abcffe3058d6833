"""CT-MIPD: any dosing history in, dose and interval out (shipped continuous-time vancomycin PK-VAE)."""

import csv

import numpy as np
import pytest

from vae_simulator import ct_mipd

# a loading dose, a dose 8 h later, one 12 h after that; levels at irregular times; and a q12h patient
TABLE = """ID,TIME,AMT,DV,EVID,MDV,BLQ,AGE,SEX,WT,HT,SCR,RATE
1,0,2000,.,1,1,0,60,1,80,178,1.0,1000
1,8,1000,.,1,1,0,60,1,80,178,1.0,1000
1,20,1000,.,1,1,0,60,1,80,178,1.0,1000
1,22,.,30.1,0,0,0,60,1,80,178,1.0,.
1,31.5,.,14.2,0,0,0,60,1,80,178,1.0,.
2,0,1000,.,1,1,0,45,0,60,165,0.7,1000
2,12,1000,.,1,1,0,45,0,60,165,0.7,1000
2,23.9,.,8.1,0,0,0,45,0,60,165,0.7,.
"""


def _run(tmp_path, table=TABLE, *extra):
    path = tmp_path / "tdm.csv"
    path.write_text(table)
    out = tmp_path / "advice.csv"
    ct_mipd.main(["--drug", "vancomycin", "--data", str(path), "--out", str(out), "--draws", "50", "--dose-step", "100", *extra])
    with out.open() as f:
        return list(csv.DictReader(f))


def test_recommends_a_dose_per_interval_that_hits_the_target(tmp_path):
    rows = _run(tmp_path, TABLE, "--intervals", "8,12,24", "--target", "auc24:400-600")
    first = {(r["ID"], r["regimen"]): r for r in rows if r["hours_from_now"] == "0"}
    assert {name for _, name in first} == {"current", "q8h", "q12h", "q24h", "hold"}
    for pid in ("1", "2"):
        doses = [float(first[(pid, f"q{tau}h")]["dose_mg"]) for tau in (8, 12, 24)]
        assert doses[0] < doses[1] < doses[2]  # the same daily exposure needs larger, rarer doses
        for tau in (8, 12, 24):
            assert 400 <= float(first[(pid, f"q{tau}h")]["exposure"]) <= 600
    assert first[("1", "hold")]["exposure"] == ""


def test_held_dose_forecast_decays_below_the_continued_regimen(tmp_path):
    rows = _run(tmp_path, TABLE, "--forecast-hours", "0,6,24")
    by = {(r["ID"], r["regimen"], r["hours_from_now"]): float(r["conc_mg_l"]) for r in rows}
    for pid in ("1", "2"):
        assert by[(pid, "hold", "24")] < by[(pid, "hold", "6")] < by[(pid, "hold", "0")] + 1e-9
        assert by[(pid, "hold", "24")] < by[(pid, "current", "24")]
        # at "now" no planned dose has been given yet: every regimen agrees
        assert by[(pid, "hold", "0")] == pytest.approx(by[(pid, "current", "0")])


def test_intervals_are_deterministic_for_a_seed(tmp_path):
    a = _run(tmp_path, TABLE, "--seed", "3")
    b = _run(tmp_path, TABLE, "--seed", "3")
    assert a == b
    low, high = float(a[0]["conc_ci90_low"]), float(a[0]["conc_ci90_high"])
    assert low <= float(a[0]["conc_mg_l"]) <= high and np.isfinite(low)


@pytest.mark.parametrize(("table", "extra", "message"), [
    (TABLE, ("--intervals", "8,-12"), "--intervals must be one or more finite numbers > 0"),
    (TABLE, ("--next-dose-at", "10"), "before the patient's last record"),
    (TABLE.replace("1,8,1000", "1,8,6000"), (), r"6000 mg .*\[0, 4000\] mg"),
    (TABLE, ("--plan-doses", "30"), "beyond the model's trained horizon"),
])
def test_bad_requests_are_refused(tmp_path, table, extra, message):
    with pytest.raises(SystemExit, match=message):
        _run(tmp_path, table, *extra)


def test_map_refinement_lowers_the_posterior_objective_from_the_encoder_mean():
    import torch

    from vae_simulator.ct_mipd import _batch, concentrations, map_objective, map_refine, posterior
    from vae_simulator.ct_simulator import CTPatientSimulator
    from vae_simulator.events import DosingEvents

    sim = CTPatientSimulator.pretrained("vancomycin")
    patients = sim.sample_patients(20, np.random.default_rng(3))
    events = DosingEvents.regular(np.full((20, 4), 1500.0), 12.0, infusion_h=1.0)
    times = np.tile([13.0, 47.9], (20, 1))
    truth = concentrations(sim.model, patients.covariates, events, patients.hidden, times)
    samples = (times, truth, np.zeros(truth.shape, bool), np.ones(truth.shape, bool))
    z_enc, _ = posterior(sim.model, patients.covariates, events, samples)
    z_map = map_refine(sim.model, z_enc, patients.covariates, events, samples, steps=60)
    batch = _batch(patients.covariates, events, samples=samples)
    with torch.no_grad():
        prior = sim.model.population.mean(sim.model.normalizer.covariates(batch["cov"]))
        objective = [map_objective(sim.model, torch.tensor(z, dtype=torch.float32), batch, prior).numpy()
                     for z in (z_enc, z_map)]
    assert np.all(objective[1] <= objective[0])          # never worse, patient by patient
    assert objective[1].mean() < objective[0].mean() - 0.1  # and better on average
    assert all(p.requires_grad for p in sim.model.parameters())  # the model is left trainable

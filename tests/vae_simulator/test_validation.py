"""Validation report: metrics with known answers, the one-compartment comparator, the MIPD oracle,
and the report command end to end on the toy model (a briefly trained PK-VAE)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from vae_simulator.validation.metrics import (
    coverage,
    fraction_in_window,
    fraction_within,
    log_rmse,
    median_ape,
    prediction_interval,
)
from vae_simulator.validation.mipd_study import secant_root
from vae_simulator.validation.one_compartment import (
    OneCompartmentDesign,
    fit_one_compartment,
    fit_population,
    one_compartment_profile,
)


# ---------------------------------------------------------------------------------------------- metrics
def test_accuracy_metrics_have_their_known_values():
    true = np.array([[0.1, 2.0, 5.0, 10.0]])  # the first value is below the LLOQ (0.5) and not scored
    assert median_ape(true, true, 0.5) == 0.0
    assert log_rmse(true, true, 0.5, 0.25) == 0.0
    off_below_lloq = true.copy()
    off_below_lloq[0, 0] = 100.0
    assert median_ape(off_below_lloq, true, 0.5) == 0.0
    assert median_ape(1.1 * true, true, 0.5) == pytest.approx(0.1)
    assert median_ape(true * np.array([[1, 1.0, 0.7, 1.5]]), true, 0.5) == pytest.approx(0.3)
    assert log_rmse(true * np.exp(0.1), true, 0.5, 0.0) == pytest.approx(0.1)
    assert fraction_within(np.array([1.0, 1.19, 1.21, 0.79, 0.5]), np.ones(5), 0.2) == pytest.approx(0.4)
    assert fraction_in_window(np.array([399.0, 400.0, 500.0, 600.0, 601.0]), 400, 600) == pytest.approx(0.6)
    with pytest.raises(ValueError, match=r"prediction shape \(3,\) differs from truth shape \(4,\)"):
        median_ape(np.ones(3), np.ones(4), 0.5)
    with pytest.raises(ValueError, match="no true concentration above the LLOQ"):
        median_ape(np.ones(3), np.ones(3), 5.0)


def test_coverage_of_a_known_gaussian_interval_is_its_level():
    rng = np.random.default_rng(0)
    observed = rng.standard_normal(20000)
    draws = rng.standard_normal((2000, 1)) * np.ones((1, observed.size))  # the right predictive distribution
    lower, upper = prediction_interval(draws[:, :1], 0.9)
    assert lower[0] == pytest.approx(-1.645, abs=0.08) and upper[0] == pytest.approx(1.645, abs=0.08)
    assert coverage(np.full(observed.shape, lower[0]), np.full(observed.shape, upper[0]), observed) == \
        pytest.approx(0.90, abs=0.015)
    # an overconfident predictive (SD 0.5) covers P(|x| < 0.82) = 59% only
    narrow = 0.5 * 1.645
    assert coverage(np.full(observed.shape, -narrow), np.full(observed.shape, narrow), observed) == \
        pytest.approx(0.59, abs=0.02)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        prediction_interval(draws, 1.2)


# ------------------------------------------------------------------------------- one-compartment model
def test_one_compartment_fit_recovers_the_toy_models_parameters_exactly(toy_model, cohort):
    """The toy model IS a 1-cmt infusion model: noise-free profiles must give back CL and V (< 1 %)."""
    rng = np.random.default_rng(4)
    n, k = 12, 4
    cov = cohort.subset(slice(0, n))
    params = toy_model.sample_parameters(cov, rng)
    doses = rng.uniform(100, 2000, (n, k))
    doses[:, 1] = 0.0  # a held dose
    conc = toy_model.simulate_intervals(params, doses).reshape(n, -1)
    times = toy_model.regimen_times_h(k)
    design = OneCompartmentDesign("iv_infusion", toy_model.interval_h, toy_model.infusion_h,
                                  toy_model.lloq_mg_l)
    true_log_params = np.log(np.stack([params["CL"], params["V"]], 1))
    np.testing.assert_allclose(one_compartment_profile(design, true_log_params, doses, times), conc,
                               rtol=1e-10, atol=1e-12)
    log_params, fitted = fit_population(design, doses, times, conc, conc < toy_model.lloq_mg_l)
    assert fitted.all()
    np.testing.assert_allclose(np.exp(log_params[:, 0]), params["CL"], rtol=0.01)
    np.testing.assert_allclose(np.exp(log_params[:, 1]), params["V"], rtol=0.01)


def test_oral_superposition_matches_an_ode_solution_and_is_recovered():
    """Oral 1-cmt with first-order absorption against scipy's ODE solution of the same model."""
    cl, v, ka, tau = 3.0, 40.0, 1.2, 12.0
    doses = np.array([500.0, 0.0, 300.0, 800.0])
    times = np.linspace(0.25, 48.0, 120)
    design = OneCompartmentDesign("oral", tau, 0.0, 0.1)
    analytic = one_compartment_profile(design, np.log([[cl, v, ka]]), doses, times)[0]
    state, ode = np.zeros(2), []
    for j, dose in enumerate(doses):
        state[0] += dose
        sol = solve_ivp(lambda t, y: [-ka * y[0], ka * y[0] - cl / v * y[1]], (j * tau, (j + 1) * tau), state,
                        dense_output=True, rtol=1e-10, atol=1e-12)
        inside = (times > j * tau) & (times <= (j + 1) * tau)
        ode.append(sol.sol(times[inside])[1] / v)
        state = sol.y[:, -1].copy()
    np.testing.assert_allclose(analytic, np.concatenate(ode), rtol=1e-6, atol=1e-9)
    fitted = np.exp(fit_one_compartment(design, doses, times, analytic, analytic < 0.1))
    np.testing.assert_allclose(fitted, [cl, v, ka], rtol=0.01)
    with pytest.raises(ValueError, match="only 1 observations above the LLOQ"):
        fit_one_compartment(design, doses, times[:3], analytic[:3], np.array([True, True, False]))


def test_secant_search_finds_known_roots_and_clips_at_the_dose_limits():
    slopes = np.array([1.0, 2.0, 0.1, 100.0])  # exposure = offset + slope * dose^1.5 (monotone)
    offsets = np.array([0.0, 10.0, 0.0, 600.0])

    def exposure(doses, index):
        return offsets[index] + slopes[index] * doses ** 1.5

    dose = secant_root(exposure, 0.0, 100.0, 500.0, 4, rel_tol=1e-6)
    np.testing.assert_allclose(dose[:2], [500.0 ** (2 / 3), (490.0 / 2.0) ** (2 / 3)], rtol=1e-5)
    assert dose[2] == 100.0  # even the top dose stays below the goal
    assert dose[3] == 0.0    # already above the goal with no dose


def test_true_model_map_recovers_parameters_from_rich_data_and_beats_typical_from_sparse(toy_model, cohort):
    """MAP with the exact model: near-exact from 24 noise-free samples (the IIV prior shrinks the
    estimates a little, hence 5 %), and far better than the typical patient from 2 noisy samples."""
    from vae_simulator.inference import Samples
    from vae_simulator.validation.common import true_last_interval_exposure
    from vae_simulator.validation.metrics import fraction_within
    from vae_simulator.validation.reference_map import true_model_map

    rng = np.random.default_rng(7)
    cov = cohort.subset(slice(0, 40))
    params = toy_model.sample_parameters(cov, rng)
    rich_doses = np.tile([1000.0, 1500.0, 0.0, 800.0], (40, 1))
    rich = toy_model.regimen_times_h(4)
    conc = toy_model.simulate(params, rich_doses, rich)
    dense = Samples(times_h=np.tile(rich, (40, 1)), conc_mg_l=conc, blq=np.zeros(conc.shape, bool),
                    mask=np.ones(conc.shape, bool))
    fitted = true_model_map(toy_model, cov.as_array(), rich_doses, dense)
    for name in ("CL", "V"):
        error = np.abs(fitted[name] / params[name] - 1)
        assert error.max() < 0.05 and np.median(error) < 0.01, (name, error.max(), np.median(error))

    doses = np.tile([1000.0, 1500.0, 1200.0], (40, 1))
    times = np.array([14.0, 23.5])  # peak and trough of the second interval, with assay error
    obs, blq = toy_model.sample_observations(toy_model.simulate(params, doses[:, :2], times), rng)
    sparse = Samples(times_h=np.tile(times, (40, 1)), conc_mg_l=obs, blq=blq, mask=np.ones(obs.shape, bool))
    truth_auc = true_last_interval_exposure(toy_model, params, doses)
    estimated = true_model_map(toy_model, cov.as_array(), doses[:, :2], sparse)
    map_auc = true_last_interval_exposure(toy_model, estimated, doses)
    typical_auc = true_last_interval_exposure(toy_model, toy_model.typical_parameters(cov), doses)
    assert fraction_within(map_auc, truth_auc, 0.1) > fraction_within(typical_auc, truth_auc, 0.1) + 0.2


# -------------------------------------------------------------------------------- the report end to end
@pytest.fixture
def toy_weights(toy_registered, tmp_path):
    """A briefly trained toy PK-VAE saved with its manifest (training data seed 1)."""
    from vae_simulator.population import simulate_dataset
    from vae_simulator.vae.io import save_model
    from vae_simulator.vae.train import TrainSettings, train_vae

    data = simulate_dataset(toy_registered.name, 200, 4, seed=1, progress=False)
    torch.manual_seed(0)
    model, summary = train_vae(data, tmp_path / "run", TrainSettings(epochs=3, batch_size=64, latent_dim=3,
                                                                     hidden=32, patience=50), progress=False)
    save_model(model, tmp_path / "weights", summary)
    return tmp_path / "weights"


def test_report_command_runs_end_to_end_on_the_toy_model(toy_weights, tmp_path, monkeypatch):
    from vae_simulator.validation.cli import main

    monkeypatch.chdir(tmp_path)  # the report must name its output folder relative to here
    out = tmp_path / "reports" / "toy"
    args = ["--drug", "test-1cmt", "--weights-dir", str(toy_weights), "--patients", "60",
            "--fit-patients", "8", "--mipd-patients", "30", "--draws", "20", "--out", str(out),
            "--no-progress"]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    assert str(tmp_path) not in report and "/tmp" not in report
    assert ("`pkdose validate --drug test-1cmt --weights-dir weights --patients 60 "
            "--fit-patients 8 --mipd-patients 30 --draws 20 --out reports/toy --no-progress`") in report
    summary = next(line for line in report.splitlines() if line.startswith("| test-1cmt |"))
    assert "(ref. " in summary  # the true-model MAP reference of the sparse prediction
    assert summary.count("PASS") + summary.count("MISS") == 3  # APE, sparse prediction, coverage
    for png in ("vpc_test-1cmt.png", "reconstruction_test-1cmt.png", "mipd_test-1cmt.png"):
        assert f"({png})" in report
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the held-out seed must differ from the training data seed (1)
    with pytest.raises(SystemExit, match="held-out seed 1 is the PK-VAE's training data seed"):
        main(args + ["--seed", "1"])


def test_drugs_without_weights_are_skipped_with_a_clear_line(toy_registered, tmp_path):
    from vae_simulator.validation.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["--drug", "test-1cmt", "--weights-dir", str(tmp_path / "empty"),
                 "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    report = (tmp_path / "r" / "report.md").read_text()
    assert "- test-1cmt: skipped, no trained PK-VAE weights (empty/test-1cmt.json missing)" in report
    assert "nothing was validated" in report
    (tmp_path / "empty" / "test-1cmt.json").write_text("{not json")
    main(["--drug", "test-1cmt", "--weights-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "r"),
          "--no-progress"])
    report = (tmp_path / "r" / "report.md").read_text()
    assert ("- test-1cmt: skipped, weights empty/test-1cmt.json could not be loaded: test-1cmt.json is not a "
            "valid PK-VAE manifest") in report
    assert str(tmp_path) not in report


@pytest.mark.parametrize("args,message", [
    (["--drug", "aspirin"], "unknown drug 'aspirin'; choose from vancomycin"),
    (["--patients", "0"], "--patients must be >= 1, got 0"),
    (["--draws", "1"], "--draws must be >= 2, got 1"),
    (["--interval", "-1"], "--interval must be >= 0, got -1"),
])
def test_bad_inputs_give_clear_errors(args, message, capsys, tmp_path):
    from vae_simulator.validation.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args + ["--out", str(tmp_path)])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "report.md").exists()


def test_sample_interval_beyond_the_models_horizon_is_refused(toy_registered, tmp_path):
    from vae_simulator.population import simulate_dataset
    from vae_simulator.vae.io import save_model
    from vae_simulator.vae.train import TrainSettings, build_model
    from vae_simulator.validation.cli import main

    data = simulate_dataset(toy_registered.name, 20, 4, seed=1, progress=False)
    save_model(build_model(data, TrainSettings(latent_dim=2, hidden=8)), tmp_path / "w", {"data_seed": 1})
    with pytest.raises(SystemExit, match=r"covers 4 intervals; sample interval j=3 needs at least j\+2 = 5"):
        main(["--drug", "test-1cmt", "--weights-dir", str(tmp_path / "w"), "--interval", "3", "--out",
              str(tmp_path), "--no-progress"])


def test_clinic_samples_fall_back_to_the_grid_when_missing(toy_registered):
    from vae_simulator.population import simulate_dataset
    from vae_simulator.validation.common import clinic_samples, exposure_of, true_last_interval_exposure

    data = simulate_dataset(toy_registered.name, 40, 4, seed=2, missing_prob=0.5, progress=False)
    samples = clinic_samples(data, toy_registered, 2)
    missing = data.sample_missing[:, 2, :]
    assert missing.any() and (~missing).any()
    # monitoring at 2 h and 11.5 h: a missing 11.5-h trough is the noisy 12-h grid point
    rows = np.flatnonzero(missing[:, 1])
    np.testing.assert_allclose(samples.times_h[rows, 1], 36.0)
    np.testing.assert_allclose(samples.conc_mg_l[rows, 1], data.conc_obs[rows, 2, -1])
    kept = np.flatnonzero(~missing[:, 0])
    np.testing.assert_allclose(samples.conc_mg_l[kept, 0], data.sample_conc[kept, 2, 0])
    # the short-cut exposure of the last interval equals the one of the full profile
    params = {p: data.params[:, i].astype(float) for i, p in enumerate(data.param_names)}
    full = exposure_of(toy_registered, toy_registered.simulate_intervals(params, data.doses_mg))[:, -1]
    shortcut = true_last_interval_exposure(toy_registered, params, data.doses_mg.astype(float))
    np.testing.assert_allclose(shortcut, full, rtol=1e-10)


def test_latent_population_draws_follow_the_fitted_population(toy_registered):
    from vae_simulator.population import simulate_dataset
    from vae_simulator.vae.train import TrainSettings, build_model
    from vae_simulator.validation.common import population_is_fitted, sample_latent_population

    data = simulate_dataset(toy_registered.name, 20, 2, seed=1, progress=False)
    model = build_model(data, TrainSettings(latent_dim=3, hidden=8))
    cov = np.repeat(data.covariates[:1].astype(float), 20000, axis=0)
    assert not population_is_fitted(model)  # the N(0, I) prior until fitted
    z = sample_latent_population(model, cov, np.random.default_rng(0))
    np.testing.assert_allclose(z.mean(0), 0.0, atol=0.03)
    with torch.no_grad():
        model.population.bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
        model.population.chol.copy_(torch.diag(torch.tensor([0.5, 2.0, 1.0])))
    assert population_is_fitted(model)
    z = sample_latent_population(model, cov, np.random.default_rng(0))
    np.testing.assert_allclose(z.mean(0), [1.0, -2.0, 0.5], atol=0.05)
    np.testing.assert_allclose(z.std(0), [0.5, 2.0, 1.0], rtol=0.03)


def test_record_writes_metrics_into_the_manifest_and_keeps_the_checksum(tmp_path):
    import json

    from vae_simulator.vae.io import load_model, record_metrics, save_model
    from vae_simulator.vae.model import PKVAE, VAEConfig

    model = PKVAE(VAEConfig(drug="vancomycin", n_covariates=7, grid_size=12, latent_dim=2, hidden=8))
    _weights, manifest = save_model(model, tmp_path, {"data_seed": 0})
    before = json.loads(manifest.read_text())["sha256"]
    record_metrics(manifest, {"reconstruction_median_ape": 0.07})
    after = json.loads(manifest.read_text())
    assert after["sha256"] == before and after["metrics"] == {"reconstruction_median_ape": 0.07}
    _, meta = load_model(manifest, expected_drug="vancomycin")  # still loads: checksum intact
    assert meta["metrics"]["reconstruction_median_ape"] == 0.07

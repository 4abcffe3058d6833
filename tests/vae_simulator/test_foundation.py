"""Covariates, the DrugModel contract, exposure metrics and the ODE integrator."""

from __future__ import annotations

import numpy as np
import pytest

from vae_simulator.covariates import Covariates, cockcroft_gault_crcl, draw_covariate_row, du_bois_bsa
from vae_simulator.exposure import METRICS, IntervalExposure, auc_per_interval, interval_exposure, time_above
from vae_simulator.groundtruth import DRUGS, get_model
from vae_simulator.groundtruth.ode import Bolus, Infusion, integrate_regimen


# ----------------------------------------------------------------------------- covariates
def test_cockcroft_gault_and_du_bois_worked_examples():
    # 40-y, 70-kg man, SCr 1.0: (140-40)*70/72 = 97.2 mL/min; woman x0.85.
    assert cockcroft_gault_crcl(40, 70, 1.0, 1) == pytest.approx(97.22, abs=0.01)
    assert cockcroft_gault_crcl(40, 70, 1.0, 0) == pytest.approx(97.22 * 0.85, abs=0.01)
    # Du Bois: 70 kg, 175 cm -> 1.85 m2 (tabulated value).
    assert du_bois_bsa(70, 175) == pytest.approx(1.85, abs=0.01)


def test_sampled_population_is_adult_and_plausible():
    cov = Covariates.sample(5000, np.random.default_rng(0))
    assert 18 <= cov.AGE.min() and cov.AGE.max() <= 90
    male = cov.SEX == 1
    assert 0.45 < male.mean() < 0.55
    assert cov.HT[male].mean() == pytest.approx(175.4, abs=1.0)  # NHANES 2015-2018
    assert cov.HT[~male].mean() == pytest.approx(161.7, abs=1.0)
    assert 75 < np.median(cov.WT[male]) < 100 and 60 < np.median(cov.WT[~male]) < 90
    assert 60 < np.median(cov.CRCL) < 130  # renal function declines with age, median adult ~90
    assert np.corrcoef(cov.AGE, cov.CRCL)[0, 1] < -0.3


def test_covariate_sampling_is_reproducible():
    a = Covariates.sample(100, np.random.default_rng(7)).as_array()
    b = Covariates.sample(100, np.random.default_rng(7)).as_array()
    c = Covariates.sample(100, np.random.default_rng(8)).as_array()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_scalar_patient_draw_equals_the_array_draw():
    """The environments' one-patient draw gives Covariates.sample(1)'s numbers bit for bit and leaves
    the generator in the same state, including seeds whose draws are redrawn (truncation, CrCL)."""
    redrawn = 0
    for seed in range(3000):
        fast_rng, array_rng = _CountingGenerator(seed), np.random.default_rng(seed)
        fast = draw_covariate_row(fast_rng)
        array = Covariates.sample(1, array_rng).as_array()[0]
        np.testing.assert_array_equal(fast, array)
        assert fast_rng.random() == array_rng.random()
        redrawn += fast_rng.calls > 6  # sex + 4 normals + the check above: more means a redraw
    assert redrawn > 10  # the comparison covered redraws


class _CountingGenerator:
    """A numpy Generator that counts the draws asked of it."""

    def __init__(self, seed: int):
        self.rng, self.calls = np.random.default_rng(seed), 0

    def random(self, *args):
        self.calls += 1
        return self.rng.random(*args)

    def normal(self, *args):
        self.calls += 1
        return self.rng.normal(*args)


@pytest.mark.parametrize("field,value,msg", [
    ("wt_kg", 12.0, r"WT=12 kg .* outside the physiological range \[30, 250\]"),
    ("age_y", 130.0, r"AGE=130 y .* outside the physiological range \[18, 100\]"),
    ("scr_mg_dl", float("nan"), r"SCR has a non-finite value"),
    ("sex", 0.5, r"SEX must be 0 \(female\) or 1 \(male\)"),
])
def test_covariates_out_of_range_are_refused(field, value, msg):
    kwargs = {"age_y": 50.0, "sex": 1.0, "wt_kg": 70.0, "ht_cm": 175.0, "scr_mg_dl": 1.0}
    kwargs[field] = value
    with pytest.raises(ValueError, match=msg):
        Covariates.from_measurements(**kwargs)


def test_covariates_wrong_shapes_are_refused():
    with pytest.raises(ValueError, match="has 2 values, expected 3"):
        Covariates(AGE=[50, 60, 70], SEX=[1, 0], WT=[70] * 3, HT=[170] * 3, BSA=[1.8] * 3, SCR=[1] * 3,
                   CRCL=[90] * 3)
    with pytest.raises(ValueError, match=r"shape \(n, 7\)"):
        Covariates.from_array(np.ones((4, 3)))


# ----------------------------------------------------------------------------- contract
def test_unknown_drug_is_refused():
    with pytest.raises(ValueError, match="unknown drug 'aspirin'; known drugs: vancomycin"):
        get_model("aspirin")
    assert "vancomycin" in DRUGS and "carboplatin" in DRUGS


def test_dose_validation_names_value_and_range(toy_model, cohort):
    params = toy_model.typical_parameters(cohort)
    times = toy_model.regimen_times_h(2)
    for bad, msg in [(-5.0, r"dose -5 mg .* outside the allowed range \[0, 2000\] mg"),
                     (2500.0, r"dose 2500 mg .* outside the allowed range"),
                     (np.nan, r"dose nan mg is not finite")]:
        doses = np.full((len(cohort), 2), 500.0)
        doses[3, 1] = bad
        with pytest.raises(ValueError, match=msg):
            toy_model.simulate(params, doses, times)
    with pytest.raises(ValueError, match=r"shape \(n_patients, n_intervals\)"):
        toy_model.simulate(params, np.full(len(cohort), 500.0), times)
    with pytest.raises(ValueError, match=r"times_h must lie in \[0, 24\] h"):
        toy_model.simulate(params, np.full((len(cohort), 2), 500.0), np.array([0.0, 30.0]))


def test_iiv_sampling_is_seeded_and_scalable(toy_model, cohort):
    a = toy_model.sample_parameters(cohort, np.random.default_rng(1))
    b = toy_model.sample_parameters(cohort, np.random.default_rng(1))
    c = toy_model.sample_parameters(cohort, np.random.default_rng(2))
    typical = toy_model.typical_parameters(cohort)
    np.testing.assert_array_equal(a["CL"], b["CL"])
    assert not np.array_equal(a["CL"], c["CL"])
    zero = toy_model.sample_parameters(cohort, np.random.default_rng(1), iiv_scale=0.0)
    np.testing.assert_array_equal(zero["CL"], typical["CL"])
    log_ratio = np.log(a["CL"] / typical["CL"])
    assert 0.15 < log_ratio.std() < 0.45  # omega 0.3, 50 patients
    with pytest.raises(ValueError, match="iiv_scale must be a finite number >= 0"):
        toy_model.sample_parameters(cohort, np.random.default_rng(1), iiv_scale=-1)


def test_observations_are_never_negative_and_blq_flagged(toy_model):
    rng = np.random.default_rng(0)
    conc = np.concatenate([np.zeros(500), np.full(500, 0.3), np.full(500, 20.0)])
    obs, blq = toy_model.sample_observations(conc, rng)
    assert np.all(obs >= 0) and np.all(np.isfinite(obs))
    assert blq[:500].mean() > 0.8 and not blq[1000:].any()
    assert np.all(obs[blq] == toy_model.lloq_mg_l / 2)
    cv = obs[1000:].std() / obs[1000:].mean()
    assert cv == pytest.approx(np.hypot(0.1, 0.5 / 20.0), rel=0.15)


# ----------------------------------------------------------------------------- exposure
@pytest.mark.parametrize("metric", METRICS)
def test_checked_once_exposure_equals_interval_exposure_bit_for_bit(metric):
    """The environments' per-step exposure (validated once per grid) gives interval_exposure's numbers."""
    rng = np.random.default_rng(3)
    grid_h = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0])
    conc = rng.lognormal(1.0, 1.0, (50, grid_h.size)) * (rng.random((50, grid_h.size)) > 0.1)  # some zeros
    start = rng.lognormal(0.0, 1.0, 50) * (rng.random(50) > 0.2)
    reference = interval_exposure(conc[:, None, :], grid_h, metric, 3.0, first_start_mg_l=start)[:, 0]
    np.testing.assert_array_equal(IntervalExposure(grid_h, metric, 3.0)(conc, start), reference)


def test_checked_once_exposure_refuses_a_bad_grid_or_metric():
    with pytest.raises(ValueError, match="strictly increasing"):
        IntervalExposure(np.array([1.0, 1.0, 2.0]), "auc24")
    with pytest.raises(ValueError, match="unknown exposure metric 'auc48'"):
        IntervalExposure(np.array([1.0, 2.0]), "auc48")
    with pytest.raises(ValueError, match="needs threshold_mg_l"):
        IntervalExposure(np.array([1.0, 2.0]), "time_above")


def test_auc_matches_closed_form_for_exponential_decay():
    # C(t) = 10 exp(-0.1 t) over 12 h, recorded at coarse points: log-down rule is exact.
    grid = np.array([1.0, 2.0, 4.0, 8.0, 12.0])
    conc = 10 * np.exp(-0.1 * grid)[None, None, :]
    conc_start = np.concatenate([np.full((1, 1, 5), 1e-12), conc], axis=1)  # interval 0 ~empty
    conc_start[0, 0, -1] = 10.0  # interval 1 starts at 10 mg/L
    auc = auc_per_interval(conc_start, grid)
    assert auc[0, 1] == pytest.approx(100 * (1 - np.exp(-1.2)), rel=1e-9)
    hours = time_above(conc_start, grid, threshold_mg_l=5.0)
    assert hours[0, 1] == pytest.approx(np.log(2) / 0.1, rel=1e-9)
    assert interval_exposure(conc_start, grid, "trough")[0, 1] == pytest.approx(10 * np.exp(-1.2))
    with pytest.raises(ValueError, match="unknown exposure metric 'mean'"):
        interval_exposure(conc_start, grid, "mean")


# ----------------------------------------------------------------------------- ODE integrator
def test_integrator_matches_closed_form_for_oral_and_infusion_regimens():
    n = 40
    rng = np.random.default_rng(0)
    ka, k, v = rng.uniform(0.5, 2.0, n), rng.uniform(0.05, 0.3, n), 30.0
    doses = rng.uniform(0, 600, (n, 4))
    doses[:, 2] = 0.0
    times = np.linspace(0, 48, 97)

    def rhs(t, y, u, seg_start, p):
        return np.stack([-p["ka"] * y[:, 0] + u[:, 0], p["ka"] * y[:, 0] - p["k"] * y[:, 1] + u[:, 1]], 1)

    oral = integrate_regimen(rhs, {"ka": ka, "k": k}, np.zeros((n, 2)), times,
                             [Bolus(12.0 * j, doses[:, j], 0) for j in range(4)], [], chunk=16)[:, 1] / v
    expected = np.zeros((n, times.size))
    for j in range(4):
        dt = times - 12.0 * j
        m = dt >= 0
        a = (ka / (ka - k))[:, None]
        expected[:, m] += doses[:, j:j + 1] / v * a * (np.exp(-k[:, None] * dt[m]) - np.exp(-ka[:, None] * dt[m]))
    np.testing.assert_allclose(oral, expected, rtol=1e-5, atol=1e-6)

    infused = integrate_regimen(rhs, {"ka": ka, "k": k}, np.zeros((n, 2)), times, [],
                                [Infusion(12.0 * j, 12.0 * j + 1.0, doses[:, j], 1) for j in range(4)],
                                method="BDF", chunk=16)[:, 1]
    assert np.all(infused >= -1e-9)
    # after the last infusion the amount decays mono-exponentially
    t_end = times.searchsorted(37.0)
    np.testing.assert_allclose(infused[:, -1], infused[:, t_end] * np.exp(-k * (48.0 - times[t_end])), rtol=1e-4)

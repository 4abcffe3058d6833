"""Mycophenolic acid with enterohepatic recirculation (vae_simulator.groundtruth.mycophenolate).

The figure the model must reproduce is the MPA profile shape: a primary peak ~1 h after an
MMF dose and a secondary peak after the gallbladder empties at a meal, which disappears when
EHC is switched off (Bullingham 1998 Clin Pharmacokinet 34:429; Jiao 2009 J Clin Pharmacol
(2009) showed the bile-release time sets the second peak's timing).
"""

from __future__ import annotations

import numpy as np
import pytest

from vae_simulator.covariates import Covariates
from vae_simulator.exposure import interval_exposure
from vae_simulator.groundtruth import get_model
from vae_simulator.groundtruth.mycophenolate import MPA_PER_MMF, Mycophenolate, batched_expm, ckd_epi_2009_gfr
from vae_simulator.groundtruth.ode import Bolus, integrate_regimen

STEADY_STATE_INTERVALS = 40  # 20 days: > 8 terminal half-lives of the typical patient


@pytest.fixture(scope="module")
def model() -> Mycophenolate:
    return get_model("mycophenolate")


@pytest.fixture(scope="module")
def typical_man() -> Covariates:
    return Covariates.from_measurements(age_y=50, sex=1, wt_kg=70, ht_cm=175, scr_mg_dl=1.0)


def _profiles(model: Mycophenolate, params, n_intervals: int, dose_mg: float = 1000.0) -> np.ndarray:
    n = len(next(iter(params.values())))
    return model.simulate_intervals(params, np.full((n, n_intervals), dose_mg))


def _local_maxima_h(profile: np.ndarray, grid_h: np.ndarray, start: float) -> np.ndarray:
    """Grid times (h) after ``start`` at which the profile has a strict local maximum."""
    inner = (profile[1:-1] > profile[:-2]) & (profile[1:-1] > profile[2:])
    times = grid_h[1:-1][inner]
    return times[times > start]


# ----------------------------------------------------------------------------- the figure
def test_primary_and_meal_driven_secondary_peaks(model, typical_man):
    """Typical patient, 1000 mg MMF q12h: Tmax 0.5-1.5 h (CellCept label: MPA Tmax ~1 h), and a
    local maximum within 1.5 h after each gallbladder emptying (meals at 4 and 10 h), both after
    the first dose and at steady state. With EHC off no local maximum follows the primary peak.
    The 1.5-h window is the emptying duration (0.5 h) plus the time to the absorption peak of
    the recycled MPA (ka 1.35 /h); a model without EHC cannot pass it. The relative size of EHC
    is tested on AUC below, the measure the literature reports."""
    grid = model.interval_grid_h
    params = model.typical_parameters(typical_man)
    conc = _profiles(model, params, STEADY_STATE_INTERVALS)[0]
    no_ehc = dict(params, ehc_fraction=np.zeros(1))
    conc_no_ehc = _profiles(model, no_ehc, STEADY_STATE_INTERVALS)[0]
    for profile in (conc[0], conc[-1]):
        assert 0.5 <= grid[profile.argmax()] <= 1.5
        secondary = _local_maxima_h(profile, grid, start=2.0)
        assert len(secondary) == 2
        for meal, peak in zip(model.meal_times_h, secondary):
            assert meal < peak <= meal + 1.5
            # Visible (our criterion: >= 30 % above the level when emptying starts), below the primary.
            c_peak, c_meal = profile[grid == peak][0], profile[grid == meal][0]
            assert 1.3 * c_meal <= c_peak < profile.max()
    for profile in (conc_no_ehc[0], conc_no_ehc[-1]):
        assert _local_maxima_h(profile, grid, start=grid[profile.argmax()]).size == 0


def test_ehc_share_of_auc_is_in_published_range(model, typical_man):
    """EHC contribution to steady-state AUC0-12: Bullingham 1998 reports ~37 % (10-61 %). The
    model's mass balance gives fm x ehc_fraction = 0.87 x 0.291 = 25.3 % (tolerance 1 point: the
    simulation is 20 days long, not infinite)."""
    params = model.typical_parameters(typical_man)
    auc = {}
    for label, ehc in (("ehc", params["ehc_fraction"]), ("none", np.zeros(1))):
        conc = _profiles(model, dict(params, ehc_fraction=ehc), STEADY_STATE_INTERVALS)
        auc[label] = interval_exposure(conc, model.interval_grid_h, "auc_interval")[0, -1]
    share = 1.0 - auc["none"] / auc["ehc"]
    assert 0.10 <= share <= 0.61
    assert share == pytest.approx(0.87 * 0.291, abs=0.01)


def test_emptying_time_sets_secondary_peak_time(typical_man):
    """Jiao 2009: moving the bile release moves the second peak. One meal at 6 h: the only
    secondary maximum lies in (6, 7.5] h, none near 4-5 h."""
    late_meal = Mycophenolate(meal_times_h=(6.0,))
    conc = _profiles(late_meal, late_meal.typical_parameters(typical_man), 3)[0, -1]
    secondary = _local_maxima_h(conc, late_meal.interval_grid_h, start=2.0)
    assert len(secondary) == 1 and 6.0 < secondary[0] <= 7.5


def test_steady_state_auc_near_published_and_mass_balance(model, typical_man):
    """Typical AUC0-12 at 1000 mg q12h, steady state.

    (a) It equals the mass balance dose x 0.739 x (1 + kB) / (CL_u (1 - fm ehc)) within 1 %
    (20 days simulated; terminal half-life ~56 h). (b) Sheng 2020 as published (ciclosporin)
    gives 40-60 mg*h/L, the usual exposure of stable recipients on 1 g bid quoted in our brief
    (reference notes, "~40-60"). (c) Our tacrolimus default (no ciclosporin block of biliary
    MPAG excretion) is 10-50 % higher (ciclosporin lowers MPA exposure by cutting EHC: CellCept
    label, Kuypers 2010; size from memory; model 27 %) and below 70 mg*h/L, i.e. at most
    one sixth above the upper end of that range."""
    auc = {}
    for comedication in ("tacrolimus", "ciclosporin"):
        drug = Mycophenolate(comedication=comedication)
        params = drug.typical_parameters(typical_man)
        conc = _profiles(drug, params, STEADY_STATE_INTERVALS)
        auc[comedication] = interval_exposure(conc, drug.interval_grid_h, "auc_interval")[0, -1]
        p = {name: value[0] for name, value in params.items()}
        net_cl = p["cl_unbound"] * (1 - 0.87 * p["ehc_fraction"]) / (1 + p["binding_ratio"])
        assert auc[comedication] == pytest.approx(1000.0 * MPA_PER_MMF / net_cl, rel=0.01)
    assert 40.0 <= auc["ciclosporin"] <= 60.0
    assert 1.1 <= auc["tacrolimus"] / auc["ciclosporin"] <= 1.5
    assert 40.0 <= auc["tacrolimus"] <= 70.0


# ----------------------------------------------------------------------------- solver
def test_matrix_exponential_matches_ode_integrator(model):
    """The exact piecewise solution equals integrate_regimen (RK45, rtol 1e-8) with the switch
    times as extra breakpoints, for sampled patients and uneven doses including a held dose."""
    rng = np.random.default_rng(3)
    cov = Covariates.sample(4, rng)
    params = model.sample_parameters(cov, rng)
    doses = np.array([[1000.0, 0.0, 3000.0], [500.0, 1500.0, 750.0],
                      [2000.0, 2000.0, 0.0], [0.0, 250.0, 1000.0]])
    times = model.regimen_times_h(3)
    exact = model.simulate(params, doses, times)
    boluses = [Bolus(t, amount, 0) for t, amount in model.dose_boluses(doses, 12.0 * np.arange(3))]
    states = integrate_regimen(model.rate_rhs(params), params, np.zeros((4, 5)), times, boluses, [],
                               extra_breaks_h=model.switch_times_h(3), rtol=1e-8, atol=1e-10)
    ode = model.total_mpa_mg_l(params, states[:, 1, :])
    np.testing.assert_allclose(exact, ode, rtol=0, atol=1e-5 * ode.max())


def test_batched_expm_matches_scipy():
    from scipy.linalg import expm
    a = np.random.default_rng(0).normal(size=(20, 5, 5)) * 4.0
    ours = batched_expm(a)
    for i in range(20):
        reference = expm(a[i])
        np.testing.assert_allclose(ours[i], reference, rtol=1e-10, atol=1e-10 * np.abs(reference).max())


def test_zero_and_maximum_doses_are_finite_and_linear(model):
    rng = np.random.default_rng(11)
    cov = Covariates.sample(30, rng)
    params = model.sample_parameters(cov, rng)
    zero = _profiles(model, params, 4, 0.0)
    high = _profiles(model, params, 4, 3000.0)
    unit = _profiles(model, params, 4, 1000.0)
    assert np.all(zero == 0.0)
    assert np.all(np.isfinite(high)) and np.all(high >= 0) and high.max() < 500.0
    np.testing.assert_allclose(high, 3.0 * unit, rtol=1e-9)  # the model is linear in dose


def test_population_exposure_is_plausible(model):
    """500 sampled patients on the standard dose, day 7: median AUC0-12 within the 30-60 target
    neighbourhood (30-70) and a wide spread (published between-patient AUC CV ~ 40-60 %)."""
    rng = np.random.default_rng(5)
    cov = Covariates.sample(500, rng)
    params = model.sample_parameters(cov, rng)
    conc = model.simulate_intervals(params, np.tile(model.standard_dose_mg(cov)[:, None], (1, 14)))
    auc = interval_exposure(conc, model.interval_grid_h, "auc_interval")[:, -1]
    assert 30.0 <= np.median(auc) <= 70.0
    assert 0.3 <= np.std(np.log(auc)) <= 0.8


# ----------------------------------------------------------------------------- contract
def test_contract_attributes(model, typical_man):
    grid = model.interval_grid_h
    assert grid[0] > 0 and np.all(np.diff(grid) > 0) and grid[-1] == model.interval_h == 12.0
    assert np.diff(grid).max() <= 0.5
    assert all(t in grid for t in model.monitoring_times_h)
    assert model.target.metric == "auc_interval" and (model.target.low, model.target.high) == (30.0, 60.0)
    assert model.standard_dose_mg(typical_man)[0] == 1000.0
    assert set(model.iiv_omega) <= set(model.parameter_names)
    assert MPA_PER_MMF == pytest.approx(0.739, abs=5e-4)
    assert ckd_epi_2009_gfr(1.0, 50, 1) == pytest.approx(87.4, abs=0.2)  # CKD-EPI 2009 calculator value


def test_same_seed_same_patients_different_seed_different(model):
    def run(seed):
        rng = np.random.default_rng(seed)
        cov = Covariates.sample(20, rng)
        params = model.sample_parameters(cov, rng)
        conc = _profiles(model, params, 2)
        obs, _ = model.sample_observations(conc, rng)
        return conc, obs
    a, b, c = run(1), run(1), run(2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.allclose(a[0], c[0])


def test_bad_input_is_refused(model, typical_man):
    params = model.typical_parameters(typical_man)
    with pytest.raises(ValueError, match=r"dose 3500 mg .* outside the allowed range \[0, 3000\] mg"):
        model.simulate_intervals(params, np.array([[1000.0, 3500.0]]))
    with pytest.raises(ValueError, match="comedication must be one of"):
        Mycophenolate(comedication="azathioprine")
    with pytest.raises(ValueError, match=r"meal time 11.8 h must lie in \[0, 11.5\]"):
        Mycophenolate(meal_times_h=(4.0, 11.8))
    with pytest.raises(ValueError, match="overlap"):
        Mycophenolate(meal_times_h=(4.0, 4.25))
    with pytest.raises(ValueError, match="v_central_unbound must be > 0"):
        model.simulate_intervals(dict(params, v_central_unbound=np.zeros(1)), np.array([[1000.0]]))
    with pytest.raises(ValueError, match=r"times_h must lie in \[0, 12\]"):
        model.simulate(params, np.array([[1000.0]]), np.array([1.0, 13.0]))

"""PD ground truth of paclitaxel + carboplatin: Friberg myelosuppression, Claret tumour model, grading."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from vae_simulator.covariates import Covariates
from vae_simulator.groundtruth.pd import calibration as cal
from vae_simulator.groundtruth.pd import friberg, grading, tumour
from vae_simulator.groundtruth.pd._statespace import refine_grid
from vae_simulator.groundtruth.pd.grading import Recist

# As coarse late in the cycle as the PK models' recording grids.
CYCLE_GRID_H = np.array([0.0, 0.5, 1.0, 2.0, 3.0, 3.5, 4.0, 6.0, 8.0, 12.0, 24.0, 36.0, 48.0, 72.0, 96.0,
                         120.0, 168.0, 240.0, 336.0, 504.0])


def synthetic_concentrations(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Paclitaxel-like (3-h infusion, peak ~5 umol/L) and carboplatin-like (0.5-h, peak ~100) profiles."""
    rng = np.random.default_rng(seed)
    t = CYCLE_GRID_H[None, :]
    scale_a, scale_b = np.exp(0.3 * rng.standard_normal((n, 1))), np.exp(0.2 * rng.standard_normal((n, 1)))
    rise_a, rise_b = np.minimum(t, 3.0) / 3.0, np.minimum(t, 0.5) / 0.5
    after_a = np.maximum(t - 3.0, 0.0)
    conc_a = scale_a * 5.0 * rise_a * (0.8 * np.exp(-after_a / 2.0) + 0.2 * np.exp(-after_a / 20.0))
    conc_b = scale_b * 100.0 * rise_b * np.exp(-np.maximum(t - 0.5, 0) / 3.0)
    return conc_a, conc_b


def friberg_reference(params: friberg.FribergParameters, i: int, times, conc_a, conc_b) -> np.ndarray:
    """Patient ``i``'s ANC from the untransformed Friberg ODE with scipy LSODA at tight tolerance."""
    ktr = 4.0 / params.mtt_h[i]

    def rhs(t, y):
        effect = params.slope_a_l_umol[i] * np.interp(t, times, conc_a[i]) + \
            params.slope_b_l_umol[i] * np.interp(t, times, conc_b[i])
        feedback = (params.circ0_e9_l[i] / y[4]) ** params.gamma[i]
        return [ktr * y[0] * (1 - effect) * feedback - ktr * y[0], ktr * (y[0] - y[1]), ktr * (y[1] - y[2]),
                ktr * (y[2] - y[3]), ktr * (y[3] - y[4])]

    sol = solve_ivp(rhs, (times[0], times[-1]), np.full(5, params.circ0_e9_l[i]), method="LSODA",
                    t_eval=times, rtol=1e-10, atol=1e-12, max_step=0.5)
    return sol.y[4]


@pytest.fixture(scope="module")
def conventional_cohort():
    """300 virtual patients, PK of one conventional cycle (175 mg/m2 + AUC 6) from the ground-truth models."""
    cov = Covariates.sample(300, np.random.default_rng(99))
    return cal.one_cycle_concentrations(cov, np.random.default_rng(100), 175.0, 6.0)


def typical_patient_exposure(n_cycles: int, carboplatin_auc: float) -> cal.Exposure:
    cov = Covariates.from_measurements(age_y=[56.0], sex=[0.0], wt_kg=[70.0], ht_cm=[168.0], scr_mg_dl=[0.8])
    pac, carbo = cal.get_model("paclitaxel"), cal.get_model("carboplatin")
    grid = np.union1d([0.0], np.union1d(pac.interval_grid_h, carbo.interval_grid_h))
    c_pac = pac.simulate(pac.typical_parameters(cov), pac.standard_dose_mg(cov)[:, None], grid) / 853.9 * 1000
    dose = cal.calvert_dose_mg(cov, carboplatin_auc)[:, None] if carboplatin_auc > 0 else np.zeros((1, 1))
    c_carbo = carbo.simulate(carbo.typical_parameters(cov), dose, grid) / 371.25 * 1000
    return cal.repeat_cycles(grid, c_pac, c_carbo, n_cycles, max_gap_h=2.0)


# ----------------------------------------------------------------------------- Friberg
def test_drug_free_steady_state_is_a_fixed_point():
    params = friberg.FribergParameters.sample(50, np.random.default_rng(1))
    zero = np.zeros((50, CYCLE_GRID_H.size))
    states = friberg.simulate(friberg.steady_state(params), CYCLE_GRID_H, zero, zero, params)
    expected = np.repeat(friberg.steady_state(params)[:, :, None], CYCLE_GRID_H.size, axis=2)
    np.testing.assert_allclose(states, expected, rtol=1e-12)


def test_fixed_step_rk4_agrees_with_scipy_solve_ivp():
    """The fast path (ln Prol, RK4, 4-h steps) against LSODA on the published equations: < 0.1% in ANC
    (the task asks 1%; measured ~1e-5), with drug effects up to E ~ 60 at the peaks."""
    params = friberg.FribergParameters.sample(6, np.random.default_rng(2))
    conc_a, conc_b = synthetic_concentrations(6)
    states = friberg.simulate(friberg.steady_state(params), CYCLE_GRID_H, conc_a, conc_b, params)
    anc = states[:, friberg.CIRC]
    assert (params.slope_a_l_umol[:, None] * conc_a).max() > 10  # the stiff, E >> 1 regime is exercised
    for i in range(6):
        reference = friberg_reference(params, i, CYCLE_GRID_H, conc_a, conc_b)
        np.testing.assert_allclose(anc[i], reference, rtol=1e-3)
    assert anc.min() < 0.8 * params.circ0_e9_l.min()  # the comparison covers a real nadir


def test_simulation_resumes_cycle_by_cycle():
    params = friberg.FribergParameters.sample(20, np.random.default_rng(3))
    conc_a, conc_b = synthetic_concentrations(20)
    times2 = np.concatenate([CYCLE_GRID_H, 504.0 + CYCLE_GRID_H[1:]])
    both = friberg.simulate(friberg.steady_state(params), times2, np.hstack([conc_a, conc_a[:, 1:]]),
                            np.hstack([conc_b, conc_b[:, 1:]]), params)
    first = friberg.simulate(friberg.steady_state(params), CYCLE_GRID_H, conc_a, conc_b, params)
    second = friberg.simulate(first[:, :, -1], 504.0 + CYCLE_GRID_H, conc_a, conc_b, params)
    # equal up to round-off (the one-cycle input restarts at 0 where the joined one has 2e-11 umol/L)
    np.testing.assert_allclose(np.concatenate([first, second[:, :, 1:]], axis=2), both, rtol=1e-9)


def test_typical_paclitaxel_nadir_timing_depth_and_recovery():
    """Typical patient, paclitaxel 175 mg/m2 over 3 h, ground-truth PK. Taxol US label: neutrophil nadir at a
    median of 11 days; 175 mg/m2/3 h gave ANC < 2.0 in 90% and < 0.5 in 28% of patients (breast Phase 3),
    so the median patient's nadir lies in [0.5, 2.0]; the reference: recovery toward baseline by day 21."""
    exposure = typical_patient_exposure(1, 0.0)
    params = friberg.FribergParameters.typical(1)
    anc = friberg.simulate(friberg.steady_state(params), exposure.times_h, exposure.paclitaxel_umol_l,
                           exposure.carboplatin_umol_l, params)[0, friberg.CIRC]
    nadir_day = exposure.times_h[anc.argmin()] / 24.0
    assert 9.0 <= nadir_day <= 13.0
    assert 0.5 <= anc.min() <= 2.0
    assert anc[-1] >= 0.85 * params.circ0_e9_l[0]  # day 21: recovered (Friberg's model rebounds slightly)
    combo = typical_patient_exposure(1, 6.0)
    anc_combo = friberg.simulate(friberg.steady_state(params), combo.times_h, combo.paclitaxel_umol_l,
                                 combo.carboplatin_umol_l, params)[0, friberg.CIRC]
    assert anc_combo.min() < anc.min()  # additive effects: carboplatin deepens the nadir


def test_calibrated_slopes_reproduce_published_incidences(conventional_cohort):
    """An independent cohort of 300 (other seeds than the calibration): paclitaxel alone 175 mg/m2 gives
    grade 4 in 27% (Taxol label, worst course) and 175 mg/m2 + carboplatin AUC 6 gives grade 3-4 in 63%
    (calibration target, see calibration.py). Tolerance 0.08 = ~3 binomial SE at n = 300."""
    grid, c_pac, c_carbo = conventional_cohort
    params = friberg.FribergParameters.sample(300, np.random.default_rng(101))

    def worst(exposure):
        states = friberg.simulate(friberg.steady_state(params), exposure.times_h, exposure.paclitaxel_umol_l,
                                  exposure.carboplatin_umol_l, params)
        return grading.worst_neutropenia_grade(states[:, friberg.CIRC])

    alone = worst(cal.repeat_cycles(grid, c_pac, np.zeros_like(c_carbo), 4))
    combo = worst(cal.repeat_cycles(grid, c_pac, c_carbo, 4))
    assert np.mean(alone == 4) == pytest.approx(cal.TARGET_PACLITAXEL_GRADE4, abs=0.08)
    assert np.mean(combo >= 3) == pytest.approx(cal.TARGET_GRADE34_INCIDENCE, abs=0.08)
    assert np.all(combo >= alone)


def test_extreme_doses_stay_finite_and_positive():
    params = friberg.FribergParameters.sample(10, np.random.default_rng(4))
    conc_a, conc_b = synthetic_concentrations(10)
    states = friberg.simulate(friberg.steady_state(params), CYCLE_GRID_H, 50 * conc_a, 50 * conc_b, params)
    assert np.all(np.isfinite(states)) and states.min() >= 0
    assert states[:, friberg.CIRC].min() < 0.01  # marrow ablated, yet the solution is well-behaved


def test_sampling_is_deterministic_and_scalable():
    a = friberg.FribergParameters.sample(100, np.random.default_rng(5))
    b = friberg.FribergParameters.sample(100, np.random.default_rng(5))
    c = friberg.FribergParameters.sample(100, np.random.default_rng(6))
    np.testing.assert_array_equal(a.circ0_e9_l, b.circ0_e9_l)
    np.testing.assert_array_equal(a.slope_b_l_umol, b.slope_b_l_umol)
    assert not np.array_equal(a.circ0_e9_l, c.circ0_e9_l)
    typical = friberg.FribergParameters.sample(3, np.random.default_rng(5), iiv_scale=0.0)
    np.testing.assert_array_equal(typical.mtt_h, friberg.FribergParameters.typical(3).mtt_h)
    cv = np.std(np.log(friberg.FribergParameters.sample(20000, np.random.default_rng(7)).circ0_e9_l))
    assert cv == pytest.approx(friberg.PACLITAXEL_CARBOPLATIN_ANC.omega_circ0, rel=0.03)


@pytest.mark.parametrize("bad,match", [
    (lambda a: -a, r"conc_a_umol_l\[0, 1\] = .* not allowed: concentrations must be finite and >= 0"),
    (lambda a: np.where(a > 1, np.nan, a), r"conc_a_umol_l\[.*\] = nan umol/L is not allowed"),
    (lambda a: a[:, :-1], r"conc_a_umol_l must have shape \(n_patients, n_times\) = \(3, 20\)"),
])
def test_bad_concentrations_are_refused(bad, match):
    params = friberg.FribergParameters.typical(3)
    conc_a, conc_b = synthetic_concentrations(3)
    with pytest.raises(ValueError, match=match):
        friberg.simulate(friberg.steady_state(params), CYCLE_GRID_H, bad(conc_a), conc_b, params)


def test_bad_times_states_and_parameters_are_refused():
    params = friberg.FribergParameters.typical(2)
    conc_a, conc_b = synthetic_concentrations(2)
    state = friberg.steady_state(params)
    with pytest.raises(ValueError, match="strictly increasing"):
        friberg.simulate(state, CYCLE_GRID_H[::-1], conc_a, conc_b, params)
    with pytest.raises(ValueError, match=r"state must have shape \(n_patients, 5\)"):
        friberg.simulate(state[:, :4], CYCLE_GRID_H, conc_a, conc_b, params)
    with pytest.raises(ValueError, match=r"state transit2 of patient 1 is -1.0; allowed: finite and >= 0"):
        negative = np.where([[0, 0, 0, 0, 0], [0, 0, 1, 0, 0]], -1.0, state)
        friberg.simulate(negative, CYCLE_GRID_H, conc_a, conc_b, params)
    with pytest.raises(ValueError, match="state0 has 2 patients but params has 3"):
        friberg.simulate(state, CYCLE_GRID_H, conc_a, conc_b, friberg.FribergParameters.typical(3))
    with pytest.raises(ValueError, match=r"parameter mtt_h of patient 0 is 0.0; allowed: finite and > 0"):
        friberg.FribergParameters([5.0], [0.0], [0.2], [1.0], [0.0])
    with pytest.raises(ValueError, match="iiv_scale must be a finite number >= 0"):
        friberg.FribergParameters.sample(2, np.random.default_rng(0), iiv_scale=-1.0)
    with pytest.raises(ValueError, match="max_step_h must be a finite number > 0"):
        friberg.simulate(state, CYCLE_GRID_H, conc_a, conc_b, params, max_step_h=0.0)


def test_refine_grid_interpolates_linearly():
    conc = np.array([[0.0, 2.0, 20.0, 21.0]])
    times, fine = refine_grid([0.0, 1.0, 10.0, 11.0], conc, max_gap_h=4.0)
    np.testing.assert_allclose(times, [0, 1, 4, 7, 10, 11])
    np.testing.assert_allclose(fine[0], np.interp(times, [0.0, 1.0, 10.0, 11.0], conc[0]))


# ----------------------------------------------------------------------------- tumour
def test_untreated_tumour_grows_exponentially_at_kl():
    params = tumour.TumourParameters.sample(5, np.random.default_rng(8))
    zero = np.zeros((5, CYCLE_GRID_H.size))
    size = tumour.simulate(tumour.initial_state(params), CYCLE_GRID_H, zero, zero, params)[:, tumour.SIZE]
    expected = params.baseline_mm[:, None] * np.exp(params.kl_per_h[:, None] * CYCLE_GRID_H[None, :])
    np.testing.assert_allclose(size, expected, rtol=1e-10)


def test_tumour_rk4_agrees_with_solve_ivp_and_resumes():
    params = tumour.TumourParameters.sample(4, np.random.default_rng(9), interaction_l2_umol2_h=1e-4)
    conc_a, conc_b = synthetic_concentrations(4)
    times2 = np.concatenate([CYCLE_GRID_H, 504.0 + CYCLE_GRID_H[1:]])
    ca2, cb2 = np.hstack([conc_a, conc_a[:, 1:]]), np.hstack([conc_b, conc_b[:, 1:]])
    both = tumour.simulate(tumour.initial_state(params), times2, ca2, cb2, params)
    p = params
    for i in range(4):
        def rhs(t, y, i=i):
            ca, cb = np.interp(t, times2, ca2[i]), np.interp(t, times2, cb2[i])
            kill = p.kd_a_l_umol_h[i] * y[1] + p.kd_b_l_umol_h[i] * y[2] + p.kd_ab_l2_umol2_h[i] * y[1] * y[2]
            return [y[0] * (p.kl_per_h[i] - np.exp(-p.lambda_per_h[i] * t) * kill),
                    p.k_exposure_per_h[i] * (ca - y[1]), p.k_exposure_per_h[i] * (cb - y[2])]
        ref = solve_ivp(rhs, (0, times2[-1]), [p.baseline_mm[i], 0, 0], method="LSODA", t_eval=times2,
                        rtol=1e-10, atol=1e-12, max_step=0.5)
        np.testing.assert_allclose(both[i, tumour.SIZE], ref.y[0], rtol=1e-3)
    first = tumour.simulate(tumour.initial_state(params), CYCLE_GRID_H, conc_a, conc_b, params)
    second = tumour.simulate(first[:, :, -1], 504.0 + CYCLE_GRID_H, conc_a, conc_b, params)
    np.testing.assert_allclose(second[:, :, -1], both[:, :, -1], rtol=1e-9)
    untreated = params.baseline_mm * np.exp(params.kl_per_h * times2[-1])
    assert np.all(both[:, tumour.SIZE, -1] < 0.99 * untreated)  # the drugs slow or reverse growth


def test_resistance_and_interaction_act_in_the_stated_direction():
    conc_a, conc_b = synthetic_concentrations(1)
    base = tumour.TumourParameters.typical(1)

    def log_kill(params, tau_h):
        state = tumour.initial_state(params)
        state[:, tumour.TAU] = tau_h
        end = tumour.simulate(state, CYCLE_GRID_H, conc_a, conc_b, params)[0, tumour.SIZE, -1]
        return np.log(params.baseline_mm[0]) + params.kl_per_h[0] * 504.0 - np.log(end)

    # lambda 0.035/week: after 20 weeks on treatment the same exposure kills half as much
    assert log_kill(base, 24 * 7 * 20.0) == pytest.approx(0.5 * log_kill(base, 0.0), rel=0.02)
    kills = [log_kill(tumour.TumourParameters.sample(1, np.random.default_rng(0), iiv_scale=0.0,
                                                     interaction_l2_umol2_h=g), 0.0)
             for g in (-1e-4, 0.0, 1e-4)]
    assert kills[0] < kills[1] < kills[2]  # antagonism < additivity < synergy


def test_calibrated_kill_reproduces_the_published_response_rate(conventional_cohort):
    """ORR of 6 conventional cycles (RECIST every 6 weeks) in an independent cohort of 300 against the
    calibration target 17% (Schiller 2002); tolerance 0.065 = ~3 binomial SE."""
    grid, c_pac, c_carbo = conventional_cohort
    params = tumour.TumourParameters.sample(300, np.random.default_rng(102))
    sizes = cal.tumour_sizes_at_assessments(cal.repeat_cycles(grid, c_pac, c_carbo, 6), params)
    assert sizes.shape == (300, 4)
    assert grading.objective_response_rate(sizes) == pytest.approx(cal.TARGET_ORR, abs=0.065)


def test_tumour_bad_inputs_are_refused():
    params = tumour.TumourParameters.typical(2)
    conc_a, conc_b = synthetic_concentrations(2)
    state = tumour.initial_state(params)
    with pytest.raises(ValueError, match=r"conc_b_umol_l\[0, 0\] = inf umol/L is not allowed"):
        tumour.simulate(state, CYCLE_GRID_H, conc_a, np.where(CYCLE_GRID_H == 0, np.inf, conc_b), params)
    with pytest.raises(ValueError, match="state size_mm must be > 0"):
        tumour.simulate(np.zeros((2, 4)), CYCLE_GRID_H, conc_a, conc_b, params)
    with pytest.raises(ValueError, match=r"parameter baseline_mm of patient 0 is -5.0"):
        tumour.TumourParameters([-5.0], [0.0], [0.0], [0.0], [0.0], [0.0], [0.01])
    with pytest.raises(ValueError, match="kill scale factor must be a finite number >= 0"):
        params.scale_kill(np.nan)


# ----------------------------------------------------------------------------- grading
def test_ctcae_v5_neutropenia_grades_at_their_boundaries():
    anc = np.array([2.5, 2.0, 1.99, 1.5, 1.49, 1.0, 0.99, 0.5, 0.49, 0.0])
    np.testing.assert_array_equal(grading.neutropenia_grade(anc), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    assert grading.neutropenia_grade(1.9, lln_e9_l=1.8) == 0
    np.testing.assert_array_equal(grading.worst_neutropenia_grade([[5.0, 0.8, 3.0], [5.0, 4.0, 2.1]]), [3, 0])


def test_recist_categories_and_best_response():
    baseline = np.array([100.0, 100.0, 100.0, 20.0, 100.0])
    nadir = np.array([100.0, 60.0, 50.0, 20.0, 100.0])
    current = np.array([70.0, 72.0, 59.0, 24.0, 0.0])
    status = grading.recist_status(baseline, nadir, current)
    # PR at exactly -30%; +20% over nadir (60 -> 72) and +12 mm = PD; +18% over nadir = still PR;
    # +20% but only +4 mm = SD; 0 = CR.
    np.testing.assert_array_equal(status, [Recist.PR, Recist.PD, Recist.PR, Recist.SD, Recist.CR])
    assert grading.recist_status(100.0, 50.0, 60.0) == Recist.PD  # exactly +20% and +10 mm
    history = np.array([[100, 90, 65, 80, 50], [100, 125, 60, 50, 40], [50, 40, 38, 36, 35]], dtype=float)
    np.testing.assert_array_equal(grading.recist_from_history(history),
                                  [[Recist.SD, Recist.PR, Recist.PD, Recist.PR],
                                   [Recist.PD, Recist.PR, Recist.PR, Recist.PR],
                                   [Recist.SD, Recist.SD, Recist.SD, Recist.PR]])
    # responses after the first PD do not count
    np.testing.assert_array_equal(grading.best_overall_response(grading.recist_from_history(history)),
                                  [Recist.PR, Recist.PD, Recist.PR])
    assert grading.objective_response_rate(history) == pytest.approx(2 / 3)
    assert grading.recist_status(50.0, 50.0, 3.0, cr_threshold_mm=5.0) == Recist.CR


@pytest.mark.parametrize("call,match", [
    (lambda: grading.neutropenia_grade([1.0, np.nan]), r"anc_e9_l contains nan 1e9/L; allowed: finite"),
    (lambda: grading.neutropenia_grade([-0.1]), r"anc_e9_l contains -0.1"),
    (lambda: grading.worst_neutropenia_grade([1.0, 2.0]), r"anc_history_e9_l must be a 2-D array"),
    (lambda: grading.recist_from_history([[50.0, -1.0]]), r"sizes_mm contains -1.0 mm"),
    (lambda: grading.recist_from_history([[50.0], [40.0]]), r"needs a baseline and at least one assessment"),
    (lambda: grading.recist_status(0.0, 0.0, 1.0), r"baseline_mm must be > 0"),
    (lambda: grading.recist_status(50.0, 60.0, 1.0), r"nadir_mm cannot exceed baseline_mm"),
    (lambda: grading.best_overall_response([[0, 7]]), r"status codes must be in"),
])
def test_grading_refuses_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_parameters_from_normals_are_the_sampled_patients():
    """``sample(n, rng)`` is ``from_normals`` of the same stream's (3, n) normals, bit for bit, and one
    patient's parameters do not depend on the batch they are computed in."""
    for cls in (friberg.FribergParameters, tumour.TumourParameters):
        drawn = cls.sample(7, np.random.default_rng(11), iiv_scale=0.8)
        eta = np.random.default_rng(11).standard_normal((3, 7))
        rebuilt = cls.from_normals(eta, 0.8)
        alone = cls.from_normals(eta[:, 4:5], 0.8)
        for f in fields(cls):
            np.testing.assert_array_equal(getattr(drawn, f.name), getattr(rebuilt, f.name))
            assert getattr(alone, f.name)[0] == getattr(rebuilt, f.name)[4]
        with pytest.raises(ValueError, match=r"eta must have shape \(3, n\)"):
            cls.from_normals(eta[:2])
        with pytest.raises(ValueError, match="iiv_scale must be a finite number >= 0"):
            cls.from_normals(eta, -1.0)

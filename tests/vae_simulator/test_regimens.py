"""Ground truth under any regimen (DrugModel.simulate_regimen) and the DosingEvents container."""

import numpy as np
import pytest

from vae_simulator.covariates import Covariates
from vae_simulator.events import DosingEvents, EventLimits, check_query_times
from vae_simulator.groundtruth import DRUGS, get_model


def _patients(name, n=3, seed=0):
    model = get_model(name)
    rng = np.random.default_rng(seed)
    return model, model.sample_parameters(Covariates.sample(n, rng), rng)


@pytest.mark.parametrize("name", DRUGS)
def test_regular_regimen_equals_simulate(name):
    """simulate_regimen on the drug's own schedule is simulate, bit for bit."""
    model, params = _patients(name)
    doses = np.linspace(*model.dose_range_mg, 6)[1:4][None, :].repeat(3, axis=0)
    times = model.regimen_times_h(3)
    regular = model.simulate(params, doses, times)
    np.testing.assert_array_equal(
        model.simulate_regimen(params, doses, model.interval_h * np.arange(3), times), regular)


@pytest.mark.parametrize("name", DRUGS)
def test_zero_before_first_dose_and_positive_after(name):
    model, params = _patients(name)
    start = 0.25 * model.interval_h if name != "mycophenolate" else 0.0
    dose = 0.5 * model.dose_range_mg[1]
    times = np.sort(np.concatenate([np.linspace(0.0, start, 4), start + model.interval_grid_h]))
    conc = model.simulate_regimen(params, np.full((3, 1), dose), np.array([start]), times)
    assert np.all(conc[:, times <= start] == 0.0)
    assert np.all(conc[:, -1] > 0.0)


@pytest.mark.parametrize("name", ["vancomycin", "carboplatin", "theophylline"])
def test_linear_drugs_superpose_irregular_doses(name):
    """Linear models: the response to an irregular regimen (uneven gaps, a loading dose, a held dose,
    mixed infusion lengths) is the sum of the responses to each dose alone, at every sample time."""
    model, params = _patients(name)
    lo, hi = model.infusion_range_h
    dose_times = model.interval_h * np.array([0.0, 0.6, 1.0, 2.4, 3.1])
    infusion = np.array([hi, lo, 0.5 * (lo + hi), hi, lo])
    top = model.dose_range_mg[1]
    doses = np.array([[top, 0.3 * top, 0.0, 0.5 * top, 0.2 * top]] * 3)
    times = np.linspace(0.0, 4.5 * model.interval_h, 97)
    together = model.simulate_regimen(params, doses, dose_times, times, infusion)
    alone = sum(model.simulate_regimen(params, np.where(np.arange(5) == j, doses, 0.0), dose_times, times, infusion)
                for j in range(5))
    np.testing.assert_allclose(together, alone, rtol=1e-10, atol=1e-12 * together.max())
    assert together.max() > 0


@pytest.mark.parametrize("name", ["phenytoin", "pembrolizumab", "paclitaxel", "mycophenolate"])
def test_nonlinear_drugs_are_time_invariant(name):
    """Shifting every dose and sample by the same time shifts the profile (mycophenolate: by whole
    12-h clock periods, because meals set gallbladder emptying)."""
    model, params = _patients(name)
    shift = model.interval_h if name == "mycophenolate" else 0.37 * model.interval_h
    dose_times = model.interval_h * np.array([0.0, 0.7, 1.9])
    doses = np.array([[0.8, 0.2, 0.5]] * 3) * model.dose_range_mg[1]
    times = np.linspace(0.0, 3.0 * model.interval_h, 40)
    base = model.simulate_regimen(params, doses, dose_times, times)
    shifted = model.simulate_regimen(params, doses, dose_times + shift, times + shift)
    np.testing.assert_allclose(shifted, base, rtol=1e-4, atol=1e-6 * base.max())


def test_nonlinear_phenytoin_is_not_superposable():
    """Saturable elimination: two doses close together give more than the sum of each alone."""
    model, params = _patients("phenytoin")
    dose_times, times = np.array([0.0, 6.0]), np.linspace(0.0, 48.0, 25)
    doses = np.full((3, 2), 600.0)
    together = model.simulate_regimen(params, doses, dose_times, times)
    alone = sum(model.simulate_regimen(params, np.where(np.arange(2) == j, doses, 0.0), dose_times, times)
                for j in range(2))
    assert np.all(together[:, -1] > alone[:, -1])


def test_simulate_regimen_refuses_bad_input():
    model, params = _patients("vancomycin")
    doses, times = np.full((3, 2), 1000.0), np.linspace(0.0, 24.0, 5)
    cases = [
        ((doses, np.array([12.0, 0.0]), times, None), "sorted"),
        ((doses, np.array([-1.0, 12.0]), times, None), ">= 0"),
        ((doses, np.array([0.0, np.nan]), times, None), "finite"),
        ((doses, np.array([0.0, 12.0, 24.0]), times, None), r"shape \(2,\)"),
        ((doses, np.array([0.0, 12.0]), times, np.array([1.0, 6.0])), r"infusion length 6.0 h of dose 1 .*\[1, 4\]"),
        ((doses, np.array([0.0, 12.0]), times, np.array([1.0])), "one length per dose"),
        ((np.full((3, 2), 5000.0), np.array([0.0, 12.0]), times, None), "5000 mg"),
        ((doses, np.array([0.0, 12.0]), np.array([0.0, -2.0]), None), "times_h must be"),
    ]
    for (d, dt, t, inf), message in cases:
        with pytest.raises(ValueError, match=message):
            model.simulate_regimen(params, d, dt, t, inf)


def test_oral_drug_refuses_an_infusion_length():
    model, params = _patients("theophylline")
    with pytest.raises(ValueError, match=r"\[0, 0\] h"):
        model.simulate_regimen(params, np.full((3, 1), 300.0), np.zeros(1), np.ones(2), np.array([1.0]))


# ----------------------------------------------------------------------------- DosingEvents
LIMITS = EventLimits(dose_max_mg=4000.0, infusion_range_h=(1.0, 4.0), horizon_h=240.0, max_gap_h=48.0)


def test_events_from_lists_pads_and_finds_last_event():
    events = DosingEvents.from_lists([[0.0, 8.0, 20.0], [2.0]], [[2000.0, 1000.0, 0.0], [1500.0]],
                                     [[2.0, 1.0, 1.0], [1.5]], limits=LIMITS)
    assert events.times_h.shape == (2, 3) and events.mask.tolist() == [[True] * 3, [True, False, False]]
    assert np.isinf(events.times_h[1, 1:]).all()
    np.testing.assert_array_equal(events.first_time_h(), [0.0, 2.0])
    # a sample at a dose time is pre-dose: the last event strictly before it
    np.testing.assert_array_equal(events.last_before(np.array([[8.0, 8.5, 30.0], [1.0, 2.0, 50.0]])),
                                  [[0, 1, 2], [-1, -1, 0]])
    regular = DosingEvents.regular(np.full((2, 3), 1000.0), 12.0, 1.0, limits=LIMITS)
    np.testing.assert_array_equal(regular.times_h, [[0.0, 12.0, 24.0]] * 2)


@pytest.mark.parametrize(("times", "amounts", "infusions", "message"), [
    ([[0.0, 12.0, 6.0]], [[1.0, 1.0, 1.0]], [[1.0, 1.0, 1.0]], "event 2 at 6 h comes before event 1"),
    ([[0.0, -3.0]], [[1.0, 1.0]], [[1.0, 1.0]], "time -3.0 must be finite and >= 0"),
    ([[0.0, np.inf]], [[1.0, 1.0]], [[1.0, 1.0]], "time inf"),
    ([[0.0]], [[np.nan]], [[1.0]], "amount nan"),
    ([[0.0]], [[5000.0]], [[1.0]], r"amount 5000 mg .*\[0, 4000\] mg"),
    ([[0.0]], [[1000.0]], [[6.0]], r"infusion duration 6 h .*\[1, 4\] h"),
    ([[0.0, 60.0]], [[1.0, 1.0]], [[1.0, 1.0]], "60 h between events 0 and 1 exceeds .* 48 h"),
    ([[0.0, 1.0]], [[1.0, 1.0, 1.0]], [[1.0, 1.0]], "3 amounts"),
])
def test_events_refuse_bad_histories(times, amounts, infusions, message):
    with pytest.raises(ValueError, match=message):
        DosingEvents.from_lists(times, amounts, infusions, limits=LIMITS)


def test_held_dose_needs_no_infusion_length():
    events = DosingEvents.from_lists([[0.0, 12.0]], [[1000.0, 0.0]], [[1.0, 0.0]], limits=LIMITS)
    assert events.amounts_mg[0, 1] == 0.0


@pytest.mark.parametrize(("query", "message"), [
    ([[0.0]], "not after the first dose"),
    ([[250.0]], "beyond the model's trained horizon of 240 h"),
    ([[70.0]], "58 h after the last dose"),
    ([[np.nan]], "finite"),
])
def test_query_times_are_checked(query, message):
    events = DosingEvents.from_lists([[0.0, 12.0]], [[1000.0, 1000.0]], [[1.0, 1.0]], limits=LIMITS)
    with pytest.raises(ValueError, match=message):
        check_query_times(events, np.array(query), LIMITS)
    np.testing.assert_array_equal(check_query_times(events, np.array([[1.0, 30.0]]), LIMITS), [[1.0, 30.0]])

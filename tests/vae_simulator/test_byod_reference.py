"""The one-compartment population baseline: closed forms, recovery, MAP-Bayes forecasts, M3, input checks."""

from __future__ import annotations

import numpy as np
import pytest

from vae_simulator.byod.reference import (
    OneCompartmentPopulation,
    fit_population_1cmt,
    forecast_1cmt,
    map_bayes,
    predict_1cmt,
)
from vae_simulator.events import DosingEvents


def _pop(route: str = "iv", cl: float = 5.0, v: float = 50.0, ka: float = 1.0, **kw) -> OneCompartmentPopulation:
    log_typical = np.log([cl, v] if route == "iv" else [cl, v, ka])
    args = {"omega_sd": np.full(log_typical.size, 0.3), "theta_wt": np.zeros(2), "wt_ref_kg": None,
            "sigma_prop": 0.1, "sigma_add_mg_l": 0.01, "lloq_mg_l": None}
    args.update(kw)
    return OneCompartmentPopulation(route, log_typical, **args)


def _predict(pop, times, amounts, infusion, query, weight=None):
    events = DosingEvents.from_lists([times], [amounts], [infusion])
    return predict_1cmt(pop, events, np.asarray([query], float), np.zeros((1, pop.log_typical.size)), weight)[0]


def test_iv_bolus_infusion_and_oral_match_closed_forms():
    k = 5.0 / 50.0
    np.testing.assert_allclose(_predict(_pop(), [0.0], [100.0], [0.0], [10.0]), 2.0 * np.exp(-1.0), rtol=1e-12)
    t = np.array([0.5, 2.0, 5.0])
    rate = 100.0 / 2.0
    infusion = rate / 5.0 * (1 - np.exp(-k * np.minimum(t, 2.0))) * np.exp(-k * np.maximum(t - 2.0, 0.0))
    np.testing.assert_allclose(_predict(_pop(), [0.0], [100.0], [2.0], t), infusion, rtol=1e-12)
    oral = 100.0 * 1.0 / (50.0 * (1.0 - k)) * (np.exp(-k * t) - np.exp(-1.0 * t))
    np.testing.assert_allclose(_predict(_pop("oral"), [0.0], [100.0], [0.0], t), oral, rtol=1e-12)


def test_doses_at_irregular_times_superpose_and_nothing_before_the_first_dose():
    q = np.array([0.0, 1.0, 1.5, 3.0, 7.25, 9.0, 30.0])
    got = _predict(_pop(), [1.5, 7.25], [100.0, 60.0], [0.0, 0.0], q)
    k = 0.1
    want = sum(d / 50.0 * np.exp(-k * (q - t0)) * (q > t0) for t0, d in ((1.5, 100.0), (7.25, 60.0)))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.all(got[:3] == 0.0)  # before and at the first dose (a sample at a dose time is a trough)
    heavy = _pop(theta_wt=np.array([0.75, 1.0]), wt_ref_kg=70.0)
    np.testing.assert_allclose(_predict(heavy, [0.0], [100.0], [0.0], [10.0], np.array([140.0])),
                               100.0 / 100.0 * np.exp(-5.0 * 2 ** 0.75 / 100.0 * 10.0), rtol=1e-12)


def _simulate(n: int, seed: int, route: str = "iv", n_samples: int = 3):
    """Known population (TV_CL 2 L/h, TV_V 30 L, omega 0.3/0.2, sigma_prop 0.1), 3 doses at irregular times."""
    rng = np.random.default_rng(seed)
    weight = 70.0 * np.exp(0.2 * rng.standard_normal(n))
    truth = OneCompartmentPopulation(route, np.log([2.0, 30.0, 1.0][:2 if route == "iv" else 3]),
                                     np.array([0.3, 0.2, 0.4][:2 if route == "iv" else 3]), np.array([0.75, 1.0]),
                                     70.0, 0.1, 0.02, None)
    eta = rng.standard_normal((n, truth.log_typical.size)) * truth.omega_sd
    times = np.stack([np.zeros(n), 8 + 4 * rng.random(n), 20 + 6 * rng.random(n)], axis=1)
    infusion = np.full((n, 3), 1.0 if route == "iv" else 0.0)
    events = DosingEvents(times, rng.choice([50.0, 100.0, 150.0], (n, 3)), infusion, np.ones((n, 3), bool))
    sample_h = np.sort(rng.uniform(0.5, 30.0, (n, n_samples)), axis=1)

    def measure(query_h):
        c = predict_1cmt(truth, events, query_h, eta, weight)
        return c, np.maximum(c + np.hypot(0.1 * c, 0.02) * rng.standard_normal(c.shape), 0.0)

    return truth, events, sample_h, measure(sample_h)[1], weight, eta, measure


@pytest.fixture(scope="module")
def cohort():
    truth, events, sample_h, conc, weight, eta, measure = _simulate(300, 0)
    no_blq, mask = np.zeros(conc.shape, bool), np.ones(conc.shape, bool)
    pop = fit_population_1cmt(events, sample_h, conc, no_blq, mask, route="iv", weight_kg=weight)
    return truth, events, sample_h, conc, no_blq, mask, weight, eta, measure, pop


def test_fit_recovers_the_population(cohort):
    truth, events, sample_h, conc, no_blq, mask, weight, _, _, pop = cohort
    np.testing.assert_allclose(np.exp(pop.log_typical), [2.0, 30.0], rtol=0.15)
    np.testing.assert_allclose(pop.omega_sd, truth.omega_sd, rtol=0.4)
    np.testing.assert_array_equal(pop.theta_wt, [0.75, 1.0])
    assert pop.wt_ref_kg == pytest.approx(np.median(weight))
    assert 0.05 < pop.sigma_prop < 0.2
    again = fit_population_1cmt(events, sample_h, conc, no_blq, mask, route="iv", weight_kg=weight)
    assert again.to_dict() == pop.to_dict()  # deterministic


def test_map_bayes_beats_the_typical_prediction_and_intervals_cover(cohort):
    _, events, sample_h, conc, no_blq, mask, weight, _, measure, pop = cohort
    later = np.sort(np.random.default_rng(7).uniform(30.0, 48.0, (len(events), 4)), axis=1)
    true_c, fresh = measure(later)
    out = forecast_1cmt(pop, events, sample_h, conc, no_blq, mask, later, weight, n_draws=400, seed=1)
    typical = predict_1cmt(pop, events, later, np.zeros((len(events), 2)), weight)
    assert np.median(np.abs(out["pred"] - true_c)) < 0.8 * np.median(np.abs(typical - true_c))
    covered = np.mean((fresh >= out["pi_lo"]) & (fresh <= out["pi_hi"]))
    assert 0.80 <= covered <= 0.97, covered
    assert np.all(out["ci_lo"] <= out["pred"] + 1e-9) and np.all(out["pred"] <= out["ci_hi"] + 1e-9)
    assert np.mean(out["pi_hi"] - out["pi_lo"]) > np.mean(out["ci_hi"] - out["ci_lo"]) and np.all(out["pi_lo"] >= 0)


def test_patient_without_samples_gets_the_prior(cohort):
    _, events, sample_h, conc, no_blq, mask, weight, _, _, pop = cohort
    none = mask.copy()
    none[0] = False
    eta, cov = map_bayes(pop, events.take([0, 1]), sample_h[:2], conc[:2], no_blq[:2], none[:2], weight[:2])
    np.testing.assert_array_equal(eta[0], 0.0)
    np.testing.assert_allclose(cov[0], np.diag(pop.omega_sd ** 2), rtol=1e-12)
    assert np.all(np.diag(cov[1]) < pop.omega_sd ** 2)  # samples shrink the posterior


def test_m3_keeps_the_fit_from_collapsing_under_censoring():
    _, events, sample_h, conc, weight, _, _ = _simulate(300, 3)
    lloq = float(np.quantile(conc, 0.2))
    blq = conc < lloq
    assert 0.15 < blq.mean() < 0.25
    pop = fit_population_1cmt(events, sample_h, np.where(blq, np.nan, conc), blq, np.ones(conc.shape, bool),
                              route="iv", weight_kg=weight, lloq_mg_l=lloq)
    assert np.exp(pop.log_typical[0]) == pytest.approx(2.0, rel=0.25)
    assert pop.lloq_mg_l == lloq


def test_oral_fit_without_weight():
    _, events, sample_h, conc, _, _, _ = _simulate(300, 5, route="oral", n_samples=4)
    pop = fit_population_1cmt(events, sample_h, conc, np.zeros(conc.shape, bool), np.ones(conc.shape, bool),
                              route="oral")
    assert pop.wt_ref_kg is None and np.all(pop.theta_wt == 0.0)
    np.testing.assert_allclose(np.exp(pop.log_typical), [2.0, 30.0, 1.0], rtol=0.35)
    # without the covariate, the weight's spread (log SD 0.2) joins the BSV of CL and V
    np.testing.assert_allclose(pop.omega_sd[:2], np.hypot([0.3, 0.2], [0.75 * 0.2, 0.2]), rtol=0.25)


def test_round_trip():
    pop = _pop("oral", theta_wt=np.array([0.75, 1.0]), wt_ref_kg=71.5, lloq_mg_l=0.2)
    back = OneCompartmentPopulation.from_dict(pop.to_dict())
    assert back.to_dict() == pop.to_dict()
    assert isinstance(back.log_typical, np.ndarray)


def test_bad_inputs_are_refused():
    pop = _pop()
    ev = DosingEvents.from_lists([[0.0]], [[100.0]])
    t, c, b, m = np.array([[1.0, 2.0]]), np.array([[1.0, 0.5]]), np.zeros((1, 2), bool), np.ones((1, 2), bool)
    with pytest.raises(ValueError, match="shape"):
        map_bayes(pop, ev, t, c[:, :1], b, m)
    with pytest.raises(ValueError, match=r"concentration -1.0 mg/L must be finite and >= 0"):
        map_bayes(pop, ev, t, np.array([[1.0, -1.0]]), b, m)
    with pytest.raises(ValueError, match=r"sample time nan h must be finite"):
        map_bayes(pop, ev, np.array([[1.0, np.nan]]), c, b, m)
    with pytest.raises(ValueError, match="LLOQ"):
        map_bayes(pop, ev, t, c, np.array([[False, True]]), m)
    with pytest.raises(ValueError, match="route"):
        fit_population_1cmt(ev, t, c, b, m, route="sc")
    with pytest.raises(ValueError, match="weight 0.0 kg must be positive"):
        fit_population_1cmt(ev, t, c, b, m, route="iv", weight_kg=np.array([0.0]))
    with pytest.raises(ValueError, match="give weight_kg"):
        predict_1cmt(_pop(theta_wt=np.array([0.75, 1.0]), wt_ref_kg=70.0), ev, t, np.zeros((1, 2)))
    with pytest.raises(ValueError, match="query_h must have shape"):
        predict_1cmt(pop, ev, np.array([1.0]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="query time -2.0 h"):
        predict_1cmt(pop, ev, np.array([[-2.0]]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="infusion durations must be 0"):
        predict_1cmt(_pop("oral"), DosingEvents.from_lists([[0.0]], [[100.0]], [[1.0]]), t, np.zeros((1, 3)))
    with pytest.raises(ValueError, match="no quantified sample"):
        fit_population_1cmt(ev, t, c, np.ones((1, 2), bool), m, route="iv", lloq_mg_l=0.1)

"""Event-driven simulators: the CT PK-VAE stepped one dose at a time, and the exact ground truth."""

import numpy as np
import pytest
import torch

from vae_simulator.ct_simulator import (
    CTPatientSimulator,
    EventPatients,
    EventSimulator,
    GroundTruthEventSimulator,
)
from vae_simulator.decoder_kernels import PARALLEL_ROWS, ROWS_PER_TASK
from vae_simulator.events import DosingEvents
from vae_simulator.irregular import simulate_regimen_dataset
from vae_simulator.vae.ct_train import CTTrainSettings, build_ct_model


@pytest.fixture(scope="module", params=["log-time", "no-log-time", "clock"])
def ct_sim(request) -> CTPatientSimulator:
    """A small untrained CT PK-VAE; with and without the log-time feature (new and first shipped
    models), and with clock features (their head weights made large so that they matter)."""
    torch.manual_seed(1)
    data = simulate_regimen_dataset("vancomycin", 100, seed=5, progress=False)
    model = build_ct_model(data, CTTrainSettings(hidden=16, latent_dim=3, log_time=request.param != "no-log-time",
                                                 n_clock_features=8 if request.param == "clock" else 0))
    if request.param == "clock":
        with torch.no_grad():
            model.decoder.head[0].weight[:, -8:] = torch.randn(16, 8)
    return CTPatientSimulator(model)


HISTORY = [(0.0, [2000.0, 1500.0, 1000.0], [2.0, 1.5, 1.0]), (8.0, [1000.0, 0.0, 1250.0], [1.0, 1.0, 1.0]),
           (20.5, [1000.0, 1000.0, 0.0], [1.0, 3.0, 1.0])]


def _step_through(sim, patients, history, query_after):
    state = sim.start(patients)
    for t, amounts, lengths in history:
        state = sim.give_doses(state, np.full(3, t), np.array(amounts), np.array(lengths))
    return sim.concentrations(state, query_after)


def _as_events(history):
    per_patient = [([], [], []) for _ in range(3)]
    for t, amounts, lengths in history:
        for i in range(3):
            if amounts[i] > 0:  # 0 mg means no dose
                per_patient[i][0].append(t)
                per_patient[i][1].append(amounts[i])
                per_patient[i][2].append(lengths[i])
    return DosingEvents.from_lists(*zip(*per_patient))


@pytest.mark.parametrize("make", ["ct", "truth"])
def test_both_simulators_implement_the_protocol(make, ct_sim):
    sim = ct_sim if make == "ct" else GroundTruthEventSimulator("vancomycin")
    assert isinstance(sim, EventSimulator)
    patients = sim.sample_patients(3, np.random.default_rng(0))
    conc = _step_through(sim, patients, HISTORY, np.array([[21.0, 30.0, 40.0]] * 3))
    assert conc.shape == (3, 3) and np.all(np.isfinite(conc)) and np.all(conc > 0)
    obs, blq = sim.observe(conc, np.random.default_rng(1))
    assert obs.shape == conc.shape and np.all(obs >= 0) and np.all(obs[blq] == 0.5 * sim.lloq_mg_l)


def test_stepping_equals_the_decoder_over_the_whole_history(ct_sim):
    patients = ct_sim.sample_patients(3, np.random.default_rng(2))
    query = np.array([[21.0, 25.5, 44.0]] * 3)
    stepped = _step_through(ct_sim, patients, HISTORY, query)
    events = _as_events(HISTORY)
    model = ct_sim.model
    batch = {"cov": torch.as_tensor(patients.covariates, dtype=torch.float32),
             "dose_time_h": torch.as_tensor(events.times_h, dtype=torch.float32),
             "dose_mg": torch.as_tensor(events.amounts_mg, dtype=torch.float32),
             "infusion_h": torch.as_tensor(events.infusion_h, dtype=torch.float32)}
    with torch.no_grad():
        whole = model.predict(torch.as_tensor(patients.hidden, dtype=torch.float32), batch,
                              torch.as_tensor(query, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(stepped, whole, rtol=1e-5)


def test_ground_truth_equals_simulate_regimen():
    sim = GroundTruthEventSimulator("vancomycin")
    patients = sim.sample_patients(3, np.random.default_rng(3))
    query = np.array([[21.0, 30.0, 44.0]] * 3)
    stepped = _step_through(sim, patients, HISTORY, query)
    events = _as_events(HISTORY)
    truth = sim.truth
    for i in range(3):
        m = events.mask[i]
        params = {p: patients.hidden[i:i + 1, j] for j, p in enumerate(truth.parameter_names)}
        exact = truth.simulate_regimen(params, events.amounts_mg[i:i + 1, m], events.times_h[i, m], query[i],
                                       events.infusion_h[i, m])
        np.testing.assert_allclose(stepped[i], exact[0], rtol=1e-12)


def test_zero_before_any_dose(ct_sim):
    patients = ct_sim.sample_patients(2, np.random.default_rng(4))
    state = ct_sim.start(patients)
    np.testing.assert_array_equal(ct_sim.concentrations(state, np.array([[0.0, 5.0]] * 2)), 0.0)


@pytest.mark.parametrize(("dose", "message"), [
    ((5.0, 5000.0, 1.0), r"dose 5000 mg is outside \[0, 4000\] mg"),
    ((5.0, 1000.0, 9.0), r"infusion length 9 h is outside \[1, 4\] h"),
    ((1.0, 1000.0, 1.0), "before the last dose at 2 h"),
    ((200.0, 1000.0, 1.0), "more than the longest gap"),
    ((np.nan, 1000.0, 1.0), "finite"),
])
def test_bad_doses_are_refused(ct_sim, dose, message):
    for sim in (ct_sim, GroundTruthEventSimulator("vancomycin")):
        state = sim.give_doses(sim.start(sim.sample_patients(1, np.random.default_rng(0))), np.array([2.0]),
                               np.array([1000.0]), np.array([1.0]))
        with pytest.raises(ValueError, match=message):
            sim.give_doses(state, *(np.array([v]) for v in dose))


def test_bad_times_and_latents_are_refused(ct_sim):
    patients = ct_sim.sample_patients(1, np.random.default_rng(0))
    state = ct_sim.give_doses(ct_sim.start(patients), np.array([10.0]), np.array([1000.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="before the patient's last dose"):
        ct_sim.concentrations(state, np.array([[5.0]]))
    with pytest.raises(ValueError, match="beyond the trained horizon"):
        ct_sim.concentrations(state, np.array([[10.0 + ct_sim.limits.horizon_h + 1.0]]))
    with pytest.raises(ValueError, match=r"shape \(1, T\)"):
        ct_sim.concentrations(state, np.array([12.0]))
    d = ct_sim.model.cfg.latent_dim
    with pytest.raises(ValueError, match="outside the fitted population's range"):
        ct_sim.make_patients(patients.covariates, np.full((1, d), 1e6))
    with pytest.raises(ValueError, match="z"):
        ct_sim.make_patients(patients.covariates, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="outside"):
        ct_sim.make_patients(patients.covariates, np.full((1, d), np.nan))
    assert len(ct_sim.make_patients(patients.covariates, patients.hidden)) == 1


@pytest.mark.parametrize("n", [5, PARALLEL_ROWS + 70])  # the serial loop; a batch split over the cores
def test_a_patients_numbers_do_not_depend_on_the_batch(ct_sim, n):
    """The vector environments' promise (bit for bit): rows stepped together equal rows stepped alone."""
    rng = np.random.default_rng(6)
    patients = ct_sim.sample_patients(n, rng)
    times = rng.choice([0.0, 0.5, 1.0, 3.0], n)
    doses = rng.uniform(250.0, 3000.0, n)
    together = ct_sim.give_doses(ct_sim.start(patients), times, doses, np.full(n, 1.0))
    together = ct_sim.give_doses(together, times + 12.0, doses[::-1].copy(), np.full(n, 1.0))
    query = times[:, None] + np.array([[12.5, 14.0, 23.0]])
    batch = ct_sim.concentrations(together, query)
    for i in sorted({0, 1, n // 2, ROWS_PER_TASK, n - 1} & set(range(n))):
        alone = ct_sim.start(EventPatients(patients.covariates[i:i + 1], patients.hidden[i:i + 1]))
        alone = ct_sim.give_doses(alone, times[i:i + 1], doses[i:i + 1], np.array([1.0]))
        alone = ct_sim.give_doses(alone, times[i:i + 1] + 12.0, doses[::-1][i:i + 1].copy(), np.array([1.0]))
        np.testing.assert_array_equal(ct_sim.concentrations(alone, query[i:i + 1])[0], batch[i])


@pytest.mark.parametrize("make", ["ct", "truth"])
def test_state_rows_can_be_taken_and_put_back(make, ct_sim):
    sim = ct_sim if make == "ct" else GroundTruthEventSimulator("vancomycin")
    patients = sim.sample_patients(3, np.random.default_rng(7))
    state = sim.give_doses(sim.start(patients), np.zeros(3), np.array([1000.0, 0.0, 2000.0]), np.ones(3))
    part = sim.give_doses(state.take([2]), np.array([12.0]), np.array([500.0]), np.array([1.0]))
    state.put([2], part)
    np.testing.assert_array_equal(state.last_h, [0.0, np.nan, 12.0])
    query = np.array([[13.0, 20.0]] * 3)
    np.testing.assert_array_equal(sim.concentrations(state, query)[2], sim.concentrations(part, query[2:])[0])
    assert np.all(sim.concentrations(state, query)[1] == 0.0)  # never dosed


def test_ground_truth_patients_can_be_pinned():
    sim = GroundTruthEventSimulator("vancomycin")
    drawn = sim.sample_patients(2, np.random.default_rng(8))
    assert len(sim.make_patients(drawn.covariates, drawn.hidden)) == 2
    with pytest.raises(ValueError, match="parameter CL of patient 0"):
        sim.make_patients(drawn.covariates, np.where(np.arange(4) == 0, -1.0, drawn.hidden))
    with pytest.raises(ValueError, match=r"params \(n, 4\) \(CL, V1, Q, V2\)"):
        sim.make_patients(drawn.covariates, drawn.hidden[:, :3])

"""The continuous-time PK-VAE behind the interval contract (vae_simulator.ct_interval) and the -v1 ids on it."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import pk_envs
from vae_simulator.ct_interval import CTIntervalSimulator
from vae_simulator.interface import PatientSimulator


@pytest.fixture(scope="module")
def vancomycin() -> CTIntervalSimulator:
    return CTIntervalSimulator(drug="vancomycin")


def _clock_model_simulator() -> CTIntervalSimulator:
    """Vancomycin's schedule on a small untrained CT PK-VAE with clock features that matter."""
    import torch

    from vae_simulator.ct_simulator import CTPatientSimulator
    from vae_simulator.irregular import simulate_regimen_dataset
    from vae_simulator.vae.ct_train import CTTrainSettings, build_ct_model

    torch.manual_seed(2)
    data = simulate_regimen_dataset("vancomycin", 100, seed=5, progress=False)
    model = build_ct_model(data, CTTrainSettings(hidden=16, latent_dim=3, n_clock_features=8))
    with torch.no_grad():
        model.decoder.head[0].weight[:, -8:] = torch.randn(16, 8)
    return CTIntervalSimulator(CTPatientSimulator(model))


@pytest.mark.parametrize("clock", [False, True], ids=["shipped", "clock-features"])
def test_interval_steps_equal_the_event_simulator_bit_for_bit(vancomycin, clock):
    sim = _clock_model_simulator() if clock else vancomycin
    ct = sim.ct
    assert sim.ct.stepper.has_clock == clock
    assert isinstance(sim, PatientSimulator)
    patients = sim.sample_patients(6, np.random.default_rng(1))
    stepper = sim.stepper()
    state, constants = stepper.start(patients.covariates, patients.z)
    events = ct.start(ct.make_patients(patients.covariates, patients.z))
    schedule = np.array([[1000, 1500, 0, 0, 750, 2000]] * 3 + [[0, 0, 1000, 1000, 0, 1250]] * 3, float)
    grid = np.tile(sim.grid_h, (6, 1))
    for k in range(schedule.shape[1]):
        doses = schedule[:, k]
        conc, log_sigma, state = stepper.step(state, constants, doses)
        events = ct.give_doses(events, np.full(6, k * sim.interval_h), doses, np.full(6, sim.infusion_h))
        np.testing.assert_array_equal(conc, ct.concentrations(events, k * sim.interval_h + grid))
        assert np.all(np.isfinite(log_sigma))
    assert np.all(conc[3:, :] > 0)  # dosed from the third interval on


def test_a_hold_beyond_the_trained_gap_is_refused_with_the_limit(vancomycin):
    sim = vancomycin
    assert sim.max_held_intervals == 7  # 100 h trained gap, q12h
    patients = sim.sample_patients(1, np.random.default_rng(2))
    state = sim.initial_state(patients)
    for _ in range(5):  # no dose yet: holding is always fine (exactly 0 mg/L)
        conc, _, state = sim.step(state, patients, [0.0])
        assert np.all(conc == 0)
    _, _, state = sim.step(state, patients, [1000.0])
    for _ in range(sim.max_held_intervals):
        conc, _, state = sim.step(state, patients, [0.0])
        assert np.all(conc > 0)
    with pytest.raises(ValueError, match=r"108 h since the last one.*100 h; at most 7 held doses in a row"):
        sim.step(state, patients, [0.0])
    conc, _, _ = sim.step(state, patients, [1000.0])  # a dose after the longest hold is within range
    assert np.all(conc > 0)


def test_observe_uses_the_linear_error_and_reports_below_lloq_as_half_lloq(vancomycin):
    sim = vancomycin
    conc = np.array([[0.0, 1.0, 20.0]])
    observed = sim.observe(conc, sim.log_residual_sd(conc), np.random.default_rng(0))
    lloq = sim.ct.lloq_mg_l
    assert observed[0, 0] == 0.5 * lloq and np.all(observed >= 0)
    prop, add = sim.ct.residual_error
    draws = np.stack([sim.observe(np.full((1, 2000), 20.0), np.zeros((1, 2000)), np.random.default_rng(s))
                      for s in range(3)])
    assert draws.std() == pytest.approx(np.hypot(prop * 20.0, add), rel=0.05)


def _hold_heavy_actions(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.where(rng.random((n, 1)) < 0.5, -1.0, rng.uniform(-1, 1, (n, 1))).astype(np.float32)


def test_v1_holds_truncate_and_the_vector_env_equals_single_envs():
    env_id, n, seed = "PKDose/Mycophenolate-v1", 4, 3
    envs = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point")
    singles = [gym.make(env_id) for _ in range(n)]
    obs_v, _ = envs.reset(seed=seed)
    np.testing.assert_array_equal(obs_v, np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(singles)]))
    rng, done, beyond = np.random.default_rng(0), np.zeros(n, bool), 0
    for _ in range(40):
        actions = _hold_heavy_actions(rng, n)
        obs_v, rew_v, term_v, trunc_v, info_v = envs.step(actions)
        for i, env in enumerate(singles):
            if done[i]:
                obs, reward, term, trunc = env.reset()[0], 0.0, False, False
            else:
                obs, reward, term, trunc, info = env.step(actions[i])
                if info["beyond_trained_gap"]:
                    beyond += 1
                    assert trunc and reward == 0.0 and np.all(info["sample_missing"])
            np.testing.assert_array_equal(obs_v[i], obs)
            assert (rew_v[i], term_v[i], trunc_v[i]) == (reward, term, trunc)
        done = term_v | trunc_v
    assert beyond >= 2  # the truncation was exercised


def test_v1_ids_are_registered_with_the_continuous_decoder_and_pass_the_checker():
    from gymnasium.utils.env_checker import check_env

    assert sum(i.endswith("-v1") for i in pk_envs.SINGLE_DRUG_IDS) == 25
    env = gym.make("PKDose/Vancomycin-v1")
    assert env.unwrapped.decoder == "continuous" and gym.make("PKDose/Vancomycin-v0").unwrapped.decoder == "interval"
    check_env(env.unwrapped, skip_render_check=True)
    with pytest.raises(ValueError, match="decoder must be one of"):
        gym.make("PKDose/Vancomycin-v0", decoder="ode")


def test_mycophenolate_v2_runs_the_second_decoder_release_and_v1_keeps_the_first():
    """Only mycophenolate's decoder changed (clock features), so only it has -v2 ids; -v1 and the
    regimen id keep release 1, bit for bit, and the tools take the latest release."""
    from gymnasium.utils.env_checker import check_env

    from pk_envs.regimen_core import load_event_simulator
    from vae_simulator.vae.io import ct_weights_path

    v2 = [i for i in pk_envs.SINGLE_DRUG_IDS if i.endswith("-v2")]
    assert len(v2) == 5 and all(i.startswith("PKDose/Mycophenolate") for i in v2)
    assert "PKDose/Vancomycin-v2" not in gym.registry
    new, old = gym.make("PKDose/Mycophenolate-v2").unwrapped, gym.make("PKDose/Mycophenolate-v1").unwrapped
    assert (new.decoder, old.decoder) == ("continuous-2", "continuous")
    assert (new.decoder_release, old.decoder_release) == (2, 1)
    assert gym.make("PKDose/Mycophenolate-v0").unwrapped.decoder_release is None
    assert new.task.sim.ct.stepper.has_clock and not old.task.sim.ct.stepper.has_clock
    assert load_event_simulator("vancomycin").release == 1  # regimen ids pin release 1 (mycophenolate has none)
    check_env(new, skip_render_check=True)
    obs_new, obs_old = new.reset(seed=3)[0], old.reset(seed=3)[0]
    for _ in range(3):
        obs_new, *_ = new.step(new.action_space.sample() * 0 + 0.3)
        obs_old, *_ = old.step(old.action_space.sample() * 0 + 0.3)
    assert not np.array_equal(obs_new, obs_old)  # another decoder, other concentrations
    assert ct_weights_path("mycophenolate") == ct_weights_path("mycophenolate", 2) != ct_weights_path("mycophenolate", 1)
    assert ct_weights_path("vancomycin") == ct_weights_path("vancomycin", 1)
    for release in (0, 3, 1.5, True):
        with pytest.raises(ValueError, match=r"mycophenolate: decoder release must be an integer in \[1, 2\]"):
            ct_weights_path("mycophenolate", release)

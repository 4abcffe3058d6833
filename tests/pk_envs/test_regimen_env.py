"""Regimen environments: dose, interval and whether to draw a level, on the continuous-time PK-VAE."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import pk_envs
from vae_simulator.ct_simulator import GroundTruthEventSimulator

VANCO = "PKDose/Vancomycin-Regimen-v0"


def test_ids_are_registered_with_the_longest_course():
    assert {VANCO, "PKDose/Vancomycin-Regimen-MO-v0", "PKDose/Phenytoin-Regimen-Discrete-v0"} <= set(pk_envs.REGIMEN_IDS)
    assert gym.spec(VANCO).max_episode_steps == 30  # 240 h at q8h
    assert gym.spec("PKDose/Phenytoin-Regimen-v0").max_episode_steps == 42  # 336 h at q8h


@pytest.mark.parametrize("env_id", [VANCO, "PKDose/Phenytoin-Regimen-Discrete-v0", "PKDose/Vancomycin-Regimen-MO-v0"])
def test_checkers_pass(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*reward returned by `step\\(\\)` must be a float.*")
        warnings.filterwarnings("ignore", message=".*Not able to test alternative render modes.*")
        check_env(env.unwrapped)
        if "MO" not in env_id:
            sb3_check_env(env.unwrapped, warn=True)


def _run(env, actions, seed=0):
    env.reset(seed=seed)
    out = []
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out.append((obs, reward, info))
        if terminated or truncated:
            break
    return out


def test_vector_env_reproduces_single_envs_exactly():
    n, rng = 4, np.random.default_rng(0)
    envs = gym.make_vec(VANCO, num_envs=n, vectorization_mode="vector_entry_point")
    singles = [gym.make(VANCO) for _ in range(n)]
    obs_v, _ = envs.reset(seed=3)
    obs_s = np.stack([env.reset(seed=3 + i)[0] for i, env in enumerate(singles)])
    np.testing.assert_array_equal(obs_v, obs_s)
    done, ended = np.zeros(n, bool), 0
    for _ in range(40):
        actions = rng.uniform(-1.1, 1.1, (n, 3)).astype(np.float32)
        obs_v, rew_v, term_v, trunc_v, _ = envs.step(actions)
        for i, env in enumerate(singles):
            if done[i]:  # NEXT_STEP autoreset: this step only resets
                obs, reward, term, trunc = env.reset()[0], 0.0, False, False
            else:
                obs, reward, term, trunc, _ = env.step(actions[i])
            np.testing.assert_array_equal(obs_v[i], obs)
            assert rew_v[i] == reward and term_v[i] == term and trunc_v[i] == trunc
        done = term_v | trunc_v
        ended += done.sum()
    assert ended >= n  # every sub-environment finished a course at least once (autoreset exercised)


def test_a_course_fills_its_time_and_rewards_are_per_day():
    env = gym.make(VANCO).unwrapped
    q12 = _run(env, [env.doses_to_action(1000.0, 12.0)] * 30)
    q24 = _run(env, [env.doses_to_action(2000.0, 24.0)] * 30)
    assert len(q12) == 20 and len(q24) == 10
    assert q12[-1][2]["time_h"] == q24[-1][2]["time_h"] == env.course_h
    # the same daily dose gives nearly the same daily exposure: per-day efficacy makes the two comparable
    eff12, eff24 = (sum(step[2]["efficacy"] for step in run) for run in (q12, q24))
    assert abs(eff12 - eff24) < 0.15 * max(eff12, eff24)
    auc12, auc24 = q12[-1][2]["exposure"], q24[-1][2]["exposure"]
    assert 0.8 < auc12 / auc24 < 1.25


def test_a_level_costs_exactly_level_cost_and_is_observed():
    env = gym.make(VANCO, level_cost=0.25).unwrapped
    without = _run(env, [env.doses_to_action(1500.0, 12.0, draw=False)] * 3)
    drawn = _run(env, [env.doses_to_action(1500.0, 12.0, draw=i == 2) for i in range(3)])
    assert without[2][1] - drawn[2][1] == pytest.approx(0.25, abs=1e-12)
    obs_without, obs_drawn, info = without[2][0], drawn[2][0], drawn[2][2]
    level_slot = 7 + 2 * 4  # covariates, 4 doses, 4 intervals
    assert obs_without[level_slot + 2] == 1.0 and obs_without[level_slot] == 0.0  # no level, no observation
    assert info["level_drawn"] and info["level_mg_l"] > 0
    assert obs_drawn[level_slot] == pytest.approx(info["level_mg_l"] / 25.0, rel=1e-6)
    assert obs_drawn[level_slot + 1] == 0.0 and obs_drawn[level_slot + 2] == 0.0  # just drawn
    np.testing.assert_array_equal(np.delete(obs_without, range(level_slot, level_slot + 6)),
                                  np.delete(obs_drawn, range(level_slot, level_slot + 6)))  # dynamics unchanged


def test_vector_reward_counts_levels_as_a_third_objective():
    env = gym.make("PKDose/Vancomycin-Regimen-MO-v0").unwrapped
    assert env.reward_dim == 3
    (_, reward, info), = _run(env, [env.doses_to_action(1500.0, 8.0, draw=True)])[:1]
    assert reward.dtype == np.float32 and reward.shape == (3,)
    assert reward[2] == -1.0 and reward[0] == pytest.approx(info["efficacy"], rel=1e-6) and reward[1] <= 0


def test_holding_past_the_trained_gap_truncates():
    env = gym.make(VANCO).unwrapped
    run = _run(env, [env.doses_to_action(1000.0, 12.0)] + [env.doses_to_action(0.0, 48.0)] * 5)
    last = run[-1][2]
    assert last["beyond_trained_gap"] and len(run) == 3  # 48 h + 48 h holds, the second cut at 100 h
    assert last["time_h"] == pytest.approx(100.0) and last["clip_count"] == 1


def test_overdosing_phenytoin_ends_in_a_serious_event():
    env = gym.make("PKDose/Phenytoin-Regimen-Discrete-v0").unwrapped
    run = _run(env, [env.doses_to_action(800.0, 8.0)] * 42)
    assert run[-1][2]["event"] and run[-1][2]["peak_mg_l"] > 40.0
    assert run[-1][1] < 0


def test_ground_truth_patients_run_in_the_same_environment():
    env = gym.make(VANCO, simulator=GroundTruthEventSimulator("vancomycin")).unwrapped
    run = _run(env, [env.doses_to_action(1500.0, 12.0, draw=True)] * 20)
    assert len(run) == 20 and all(np.isfinite(step[1]) for step in run)
    assert 300 < run[-1][2]["exposure"] < 1500  # AUC24 of 3 g/day in a typical adult


@pytest.mark.parametrize(("action", "message"), [
    (np.array([np.nan, 0.0, 0.0], np.float32), "not finite"),
    (np.zeros(2, np.float32), r"shape \(3,\)"),
])
def test_bad_actions_are_refused(action, message):
    env = gym.make(VANCO)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(action)


def test_bad_discrete_actions_options_and_arguments_are_refused():
    env = gym.make("PKDose/Vancomycin-Regimen-Discrete-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"interval index in \[0, 3\]"):
        env.step(np.array([2, 4, 0]))
    with pytest.raises(ValueError, match="outside the fitted population's range"):
        env.reset(options={"z": [1e6] * 6})
    with pytest.raises(ValueError, match="shape"):
        env.reset(options={"z": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"weight": 70})
    with pytest.raises(ValueError, match="not an option"):
        env.unwrapped.doses_to_action(1000.0, 10.0)
    with pytest.raises(ValueError, match="no regimen environment for 'mycophenolate'"):
        pk_envs.RegimenEnv("mycophenolate")
    with pytest.raises(ValueError, match="level_cost"):
        pk_envs.RegimenEnv(level_cost=-1)


def test_out_of_range_actions_are_clipped_and_counted():
    env = gym.make(VANCO)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([1.5, 0.0, 0.0], np.float32))
    assert info["dose_mg"] == 3000.0 and info["clip_count"] == 1


def test_render_shows_the_course():
    env = gym.make(VANCO, render_mode="rgb_array")
    env.reset(seed=0)
    env.step(env.unwrapped.doses_to_action(1500.0, 12.0, draw=True))
    image = env.render()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.std() > 0


def test_the_docstring_examples_run():
    import doctest

    import pk_envs.regimen

    result = doctest.testmod(pk_envs.regimen, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8 and result.failed == 0

"""Warm-starting PPO from a teacher: demonstrations, behaviour cloning, configuration checks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO

import pk_envs  # noqa: F401
from agents.evaluate import evaluate_policy
from agents.training import RunConfig
from agents.warm_start import behaviour_clone, collect_demonstrations, parse_warm_start

ENV_ID = "PKDose/PaclitaxelCarboplatin-v1"
GT = {"simulators": "groundtruth"}


def teacher(observations, infos):
    """Full doses in cycle 1, then doses that fall with the observed ANC nadir: a rule worth cloning."""
    nadir = np.clip(observations[:, 8:9], 0.0, 3.0)
    first = observations[:, 16:17] <= 0
    return np.where(first, 0.5, -0.5 + nadir / 3.0) * np.ones((1, 2), np.float32)


def test_demonstrations_hold_every_step_and_the_discounted_returns_to_go():
    demos = collect_demonstrations(ENV_ID, teacher, 7, env_kwargs=GT, gamma=1.0, seed=11, batch=3)
    result = evaluate_policy(ENV_ID, teacher, n_patients=7, seed=11, env_kwargs=GT, num_envs=7)
    assert len(demos["obs"]) == int(result.per_patient["steps"].sum())
    starts = np.flatnonzero(demos["obs"][:, 16] <= 0)  # each patient's first step, in patient order
    assert len(starts) == 7
    np.testing.assert_allclose(demos["returns"][starts], result.per_patient["return"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(demos["actions"], teacher(demos["obs"], {}))
    discounted = collect_demonstrations(ENV_ID, teacher, 7, env_kwargs=GT, gamma=0.5, seed=11, batch=3)
    env, rewards = gym.make(ENV_ID, **GT), []  # patient 0 by hand: sum of 0.5^t r_t
    obs, _ = env.reset(seed=11)
    while True:
        obs, reward, terminated, truncated, _ = env.step(teacher(obs[None], {})[0])
        rewards.append(reward)
        if terminated or truncated:
            break
    assert discounted["returns"][0] == pytest.approx(sum(r * 0.5 ** t for t, r in enumerate(rewards)), rel=1e-5)
    with pytest.raises(ValueError, match="gamma in"):
        collect_demonstrations(ENV_ID, teacher, 7, env_kwargs=GT, gamma=0.0)


def test_behaviour_cloning_makes_the_policy_act_like_the_teacher():
    demos = collect_demonstrations(ENV_ID, teacher, 40, env_kwargs=GT, seed=21)
    model = PPO("MlpPolicy", gym.make(ENV_ID, **GT), seed=0, device="cpu", n_steps=64, batch_size=64)
    before = np.abs(model.predict(demos["obs"], deterministic=True)[0] - demos["actions"]).mean()
    losses = behaviour_clone(model, demos, epochs=150, batch_size=128, action_std=0.05, seed=0)
    after = np.abs(model.predict(demos["obs"], deterministic=True)[0] - demos["actions"]).mean()
    assert losses[-1] < 0.2 * losses[0] and after < 0.05 < before
    np.testing.assert_allclose(np.exp(model.policy.log_std.detach().numpy()), 0.05, rtol=1e-6)
    again = PPO("MlpPolicy", gym.make(ENV_ID, **GT), seed=0, device="cpu", n_steps=64, batch_size=64)
    assert behaviour_clone(again, demos, epochs=3, batch_size=128, seed=0) == \
        behaviour_clone(PPO("MlpPolicy", gym.make(ENV_ID, **GT), seed=0, device="cpu", n_steps=64, batch_size=64),
                        demos, epochs=3, batch_size=128, seed=0)


def test_warm_start_configuration_is_checked():
    assert parse_warm_start("informed:0.2") == ("informed", 0.2) and parse_warm_start(None) is None
    for bad in ("informed", "informed:-1", "informed:x", "expert:0.2"):
        with pytest.raises(ValueError, match="warm_start must be 'informed:LAMBDA'"):
            parse_warm_start(bad)
    config = RunConfig(env_id=ENV_ID, warm_start="informed:0.2")
    assert config.hyperparameters["learning_rate"] == 3e-5
    assert RunConfig(env_id=ENV_ID, warm_start="informed:0.2",
                     hyperparameters={"learning_rate": 1e-4}).hyperparameters["learning_rate"] == 1e-4
    with pytest.raises(ValueError, match="is for PPO on"):
        RunConfig(algo="sac", env_id=ENV_ID, warm_start="informed:0.2")
    with pytest.raises(ValueError, match="is for PPO on"):
        RunConfig(env_id="PKDose/Vancomycin-v0", warm_start="informed:0.2")

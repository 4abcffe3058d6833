"""Every registered id tells agents what its observation entries are and how its reward is weighted,
through public attributes (the agents room never reads ``env.unwrapped.task``)."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

import pk_envs


@pytest.mark.parametrize("env_id", [i for i in pk_envs.ALL_IDS if "Regimen" not in i])
def test_observation_names_and_reward_weights_are_public(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make(env_id, reward_weights=(1.0, 2.0)).unwrapped if "-MO" not in env_id else gym.make(env_id).unwrapped
    names = env.observation_names
    assert len(names) == env.observation_space.shape[0] == len(set(names))
    expected = (1.0, 1.0) if "-MO" in env_id else (1.0, 2.0)
    np.testing.assert_array_equal(env.reward_weights, expected)
    if hasattr(env, "conventional_action"):
        np.testing.assert_array_equal(env.dose_maximum, [225.0, 7.5])
        np.testing.assert_array_equal(env.standard_doses, [175.0, 6.0])
        assert env.cycle_h == 504.0 and env.n_cycles == gym.spec(env_id).max_episode_steps
    else:
        assert env.course_intervals == gym.spec(env_id).max_episode_steps and env.concentration_scale_mg_l > 0


@pytest.mark.parametrize("env_id", ["PKDose/Vancomycin-v0", "PKDose/Vancomycin-Regimen-v0",
                                    "PKDose/PaclitaxelCarboplatin-v0", "PKDose/PaclitaxelCarboplatin-v1"])
def test_every_task_family_implements_the_task_protocol(env_id):
    from pk_envs.task import StepResult, Task

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make(env_id).unwrapped
    assert isinstance(env.task, Task)
    env.reset(seed=0)
    cohort, rows = env._cohort, np.array([0])
    doses, clipped = env._to_doses(env.action_space.sample())
    out = env.task.advance(cohort, rows, doses, clipped)
    assert isinstance(out, StepResult) and out.objectives.shape[0] == 1 and isinstance(out.info, dict)

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
    from pk_envs.task import Actions, StepResult, Task

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make(env_id).unwrapped
    assert isinstance(env.task, Task) and isinstance(env.task.actions, Actions)
    env.reset(seed=0)
    cohort, rows = env._cohort, np.array([0])
    doses, clipped = env.task.actions.to_doses(env.action_space.sample(), 1)
    out = env.task.advance(cohort, rows, doses, clipped)
    assert isinstance(out, StepResult) and out.objectives.shape[0] == 1 and isinstance(out.info, dict)


#: (id, doses) pairs of each family whose action is exact: doses_to_action then to_doses gives them back
ROUND_TRIPS = [("PKDose/Vancomycin-v0", (1500.0,)), ("PKDose/Vancomycin-Discrete-v0", (1250.0,)),
               ("PKDose/Vancomycin-Regimen-v0", (1500.0, 8.0, True)),
               ("PKDose/Vancomycin-Regimen-Discrete-v0", (1250.0, 24.0, False)),
               ("PKDose/PaclitaxelCarboplatin-v0", (112.5, 3.75)),
               ("PKDose/PaclitaxelCarboplatin-Discrete-v0", (140.0, 4.8))]


@pytest.mark.parametrize("env_id, doses", ROUND_TRIPS)
def test_one_action_api_for_every_family(env_id, doses):
    """doses_to_action on the env and to_doses on its actions are inverses, in the single and the vector env."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make(env_id).unwrapped
        envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point")
    action = env.doses_to_action(*doses)
    assert env.action_space.contains(np.asarray(action, dtype=env.action_space.dtype))
    decoded, clipped = env.task.actions.to_doses(action, 1)
    np.testing.assert_allclose(np.ravel(decoded), np.asarray(doses, dtype=float), rtol=1e-6)
    assert not clipped.any()
    batch, _ = envs.unwrapped.task.actions.to_doses(np.stack([action, action]), 2)
    np.testing.assert_array_equal(batch[0], batch[1])
    np.testing.assert_allclose(np.ravel(batch[0]), np.ravel(decoded))


def test_the_old_regimen_action_name_still_works_with_a_deprecation_warning():
    env = gym.make("PKDose/Vancomycin-Regimen-v0").unwrapped
    with pytest.warns(DeprecationWarning, match="doses_to_action"):
        old = env.regimen_to_action(1000.0, 12.0, draw=True)
    np.testing.assert_array_equal(old, env.doses_to_action(1000.0, 12.0, draw=True))


@pytest.mark.parametrize("env_id", ["PKDose/Vancomycin-v0", "PKDose/Vancomycin-Regimen-v0",
                                    "PKDose/PaclitaxelCarboplatin-v1"])
def test_single_and_vector_envs_render_through_the_task(env_id):
    """One render path: the single env's image is the vector env's first, from task.render."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make(env_id, render_mode="rgb_array")
        envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", render_mode="rgb_array")
    env.reset(seed=3)
    envs.reset(seed=3)
    action = env.action_space.sample()
    env.step(action)
    envs.step(np.stack([action, action]))
    image, images = env.render(), envs.render()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.std() > 0
    assert len(images) == 2
    np.testing.assert_array_equal(image, images[0])

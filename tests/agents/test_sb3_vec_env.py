"""SAME_STEP autoreset of the native vector envs and the SB3 VecEnv adapter over them."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import pk_envs  # noqa: F401
from agents.sb3_vec_env import NativeVecEnv


@pytest.mark.parametrize("env_id", ["PKDose/Phenytoin-v0", "PKDose/PaclitaxelCarboplatin-v0"])
def test_same_step_autoreset_equals_sync_vector_env(env_id):
    """Native SAME_STEP == SyncVectorEnv(SAME_STEP) of single envs: obs, rewards, flags, every info key."""
    n = 3
    native = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point",
                          autoreset_mode=AutoresetMode.SAME_STEP)
    sync = SyncVectorEnv([lambda: gym.make(env_id) for _ in range(n)], autoreset_mode=AutoresetMode.SAME_STEP)
    assert native.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    native.reset(seed=5)
    sync.reset(seed=5)
    rng = np.random.default_rng(0)
    episodes_ended = 0
    for _ in range(16 if "Phenytoin" in env_id else 8):
        actions = rng.uniform(-1, 1, size=native.action_space.shape).astype(np.float32)
        got, want = native.step(actions), sync.step(actions)
        for a, b in zip(got[:4], want[:4]):
            np.testing.assert_array_equal(a, b)
        info, expected = got[4], want[4]
        assert set(info) == set(expected)
        if "final_obs" in expected:
            episodes_ended += int(expected["_final_obs"].sum())
            np.testing.assert_array_equal(info["_final_obs"], expected["_final_obs"])
            for i in np.flatnonzero(expected["_final_obs"]):
                np.testing.assert_array_equal(info["final_obs"][i], expected["final_obs"][i])
            assert set(info["final_info"]) == set(expected["final_info"])
            for key, value in expected["final_info"].items():
                np.testing.assert_array_equal(np.asarray(info["final_info"][key]), np.asarray(value), err_msg=key)
        for key, value in expected.items():
            if key not in ("final_obs", "final_info"):
                np.testing.assert_array_equal(np.asarray(info[key]), np.asarray(value), err_msg=key)
    assert episodes_ended >= n  # the test crossed episode ends


def test_bad_autoreset_mode_is_refused():
    with pytest.raises(ValueError, match="autoreset_mode must be one of"):
        gym.make_vec("PKDose/Phenytoin-v0", num_envs=2, vectorization_mode="vector_entry_point",
                     autoreset_mode="disabled")


def test_adapter_follows_sb3_conventions():
    """terminal_observation / TimeLimit.truncated on ended episodes, reset obs returned, seeds from seed()."""
    venv = NativeVecEnv("PKDose/Phenytoin-v0", 4)
    venv.seed(3)
    first = venv.reset()
    again = NativeVecEnv("PKDose/Phenytoin-v0", 4)
    again.seed(3)
    np.testing.assert_array_equal(first, again.reset())
    actions = np.linspace(-1.0, -0.4, 4, dtype=np.float32)[:, None]  # a different low dose per patient (no events)
    dose_max = gym.make("PKDose/Phenytoin-v0").unwrapped.dose_levels_mg[-1]  # the env's public dose range
    for step in range(14):  # the phenytoin course is 14 intervals
        obs, rewards, dones, infos = venv.step(actions)
        assert rewards.shape == (4,) and len(infos) == 4
        assert all("efficacy" in info and "covariates" not in info for info in infos)
        # each patient's own row of the vector info, in order
        np.testing.assert_allclose([info["dose_mg"] for info in infos], (actions[:, 0] + 1.0) / 2.0 * dose_max, rtol=1e-6)
    assert dones.all()
    for i, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is True
        assert info["interval"] == 14  # the ended episode's last step, not the new episode's
        assert not np.array_equal(info["terminal_observation"], obs[i])
    assert np.all(obs[:, 7:11] == 0)  # new episodes: no dose given yet


def test_adapter_refuses_vector_rewards():
    with pytest.raises(ValueError, match="vector rewards"):
        NativeVecEnv("PKDose/Phenytoin-MO-v0", 2)

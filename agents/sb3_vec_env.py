"""A Stable-Baselines3 ``VecEnv`` over a natively batched Gymnasium vector environment.

SB3 trains on its own ``VecEnv`` interface; wrapping N single environments in SB3's
``DummyVecEnv`` steps them one by one in Python. :class:`NativeVecEnv` instead drives one
``gym.make_vec(env_id, num_envs, vectorization_mode="vector_entry_point",
autoreset_mode=SAME_STEP)``, which steps every patient in one decoder call, and translates the
conventions:

| SB3 expects | the Gymnasium vector env gives (SAME_STEP autoreset) |
|---|---|
| ``reset() -> obs`` with seeds from ``seed()`` | ``reset(seed=[...]) -> (obs, info)`` |
| a list of N info dicts | one dict of ``(N, ...)`` arrays with ``_key`` masks |
| ``info["terminal_observation"]`` when an episode ended | ``info["final_obs"][i]`` |
| ``info["TimeLimit.truncated"]`` (bootstrap the value at a time limit) | ``truncated[i] and not terminated[i]`` |

Only the per-patient scalar and short-vector infos (efficacy, toxicity, event, dose, RECIST,
grade-4 tallies, objectives, ...) are copied into the per-environment dicts: the profiles and
covariates would cost a copy per step that training never reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from agents.baselines import check_env_id

#: Per-environment info values copied for SB3: scalars and vectors up to this length.
MAX_INFO_VECTOR = 4


class NativeVecEnv(VecEnv):
    """``num_envs`` episodes of a PKDose id, stepped together, as an SB3 ``VecEnv``.

    Args:
        env_id: a registered PKDose id with a scalar reward (not ``-MO``).
        num_envs: number of parallel patients (>= 1).
        env_kwargs: constructor arguments for the environment (e.g. ``reward_weights``).

    Seeding follows SB3: ``seed(s)`` makes the next ``reset()`` seed sub-environment ``i`` with
    ``s + i``; without it, a reset continues each sub-environment's generator.
    """

    def __init__(self, env_id: str, num_envs: int, env_kwargs: dict[str, Any] | None = None):
        check_env_id(env_id)
        self.env_id = env_id
        self.envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                                 autoreset_mode=AutoresetMode.SAME_STEP, **(env_kwargs or {}))
        if getattr(self.envs, "reward_dim", 1) != 1:
            self.envs.close()
            raise ValueError(f"{env_id!r} returns vector rewards; SB3 trains on scalar rewards: use the id "
                             "without '-MO' and choose reward_weights")
        super().__init__(num_envs, self.envs.single_observation_space, self.envs.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        seeds = None if all(s is None for s in self._seeds) else [s for s in self._seeds]
        options = self._options[0] if self._options and self._options[0] else None
        observations, info = self.envs.reset(seed=seeds, options=options)
        self.reset_infos = self._split_infos(info, np.zeros(self.num_envs, bool), np.zeros(self.num_envs, bool))
        self._reset_seeds()
        self._reset_options()
        return observations

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async()")
        observations, rewards, terminated, truncated, info = self.envs.step(self._actions)
        self._actions = None
        dones = terminated | truncated
        return observations, np.asarray(rewards, np.float32), dones, self._split_infos(info, terminated, truncated)

    def _split_infos(self, info: dict[str, Any], terminated: np.ndarray, truncated: np.ndarray) -> list[dict]:
        """The vector info dict -> one dict per sub-environment (ended episodes: their final info)."""
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        sources = [info, info["final_info"]] if "final_info" in info else [info]
        for source in sources:  # final_info last: an ended episode reports its last step
            for key, value in source.items():
                if key.startswith("_") or key in ("final_obs", "final_info"):
                    continue
                value = np.asarray(value)
                if value.ndim > 2 or (value.ndim == 2 and value.shape[1] > MAX_INFO_VECTOR):
                    continue
                mask = source.get(f"_{key}")
                if mask is None or np.all(mask):  # every sub-environment has it: one pass, no index arithmetic
                    for one, entry in zip(infos, value):
                        one[key] = entry
                else:
                    for i in np.flatnonzero(mask):
                        infos[i][key] = value[i]
        for i in np.flatnonzero(terminated | truncated):
            infos[i]["terminal_observation"] = info["final_obs"][i]
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return infos

    def close(self) -> None:
        self.envs.close()

    # SB3 asks these of its sub-environments; the batched env answers for all of them at once.
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.envs, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"NativeVecEnv cannot set {attr_name!r} on individual sub-environments")

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list:
        result = getattr(self.envs, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        images = self.envs.render()
        return list(images) if images is not None else [None] * self.num_envs

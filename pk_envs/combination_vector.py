"""Natively batched :class:`PaclitaxelCarboplatinVectorEnv`: N patients, one decoder call per drug per step.

It reproduces ``SyncVectorEnv`` of N :class:`~pk_envs.combination.PaclitaxelCarboplatinEnv`
exactly: sub-environment ``i`` has its own generator, seeded ``seed + i`` as SyncVectorEnv seeds
its sub-environments, and draws its episode's random numbers at reset in the single
environment's order; the decoders' per-patient results do not depend on the batch
(:func:`pk_envs._common.batch_invariant`) and the PD models are element-wise over patients.
Autoreset is Gymnasium's ``NEXT_STEP``: the step after an episode ends resets that
sub-environment (its action is ignored) and returns its first observation with reward 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import logger
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from pk_envs._common import batched_options, check_int_in, scatter_rows, with_masks
from pk_envs.combination import check_render_mode, render_course
from pk_envs.combination_core import CombinationTask, conventional_doses


class PaclitaxelCarboplatinVectorEnv(VectorEnv):
    """``num_envs`` combination-chemotherapy episodes stepped together (arguments as the single env).

    ``max_episode_steps`` (set by ``gym.make_vec`` from the registration) truncates like
    Gymnasium's TimeLimit. Rewards are ``(num_envs,)`` floats, or ``(num_envs, 2)`` float32 with
    ``vector_reward=True`` (``reward_space`` is then the single environment's, as in
    MO-Gymnasium's MOSyncVectorEnv). ``info`` is a dict of arrays with ``_key`` masks, as
    SyncVectorEnv builds it. ``reset(options=...)`` pins patients: values with a leading axis of
    ``num_envs`` are per sub-environment, others apply to all.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2,  # noqa: RUF012 (Gymnasium convention)
                "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, simulators=None, *, max_episode_steps: int | None = None,
                 render_mode: str | None = None, **task_kwargs):
        self.num_envs = check_int_in("num_envs", num_envs, 1)
        check_render_mode(render_mode, self.metadata)
        self.task = CombinationTask(simulators=simulators, **task_kwargs)
        if max_episode_steps is not None:
            check_int_in("max_episode_steps", max_episode_steps, 1)
        self.max_episode_steps = max_episode_steps
        self.horizon = min(self.task.n_cycles, max_episode_steps or self.task.n_cycles)
        self.render_mode = render_mode
        self.single_action_space = self.task.actions.space
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.single_observation_space = self.task.observation_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        if self.task.vector_reward:
            self.reward_space = self.task.reward_space
            self.reward_dim = 2
        self._cohort = self.task.new_cohort(self.num_envs)
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._started = False

    def conventional_action(self, observations: np.ndarray) -> np.ndarray:
        """The conventional regimen's actions for ``(num_envs, D)`` observations."""
        return self.task.actions.from_doses(*conventional_doses(observations))

    def reset(self, *, seed: int | list | None = None, options: dict[str, Any] | None = None):
        """Reset every sub-environment; ``seed`` an int (sub-env i gets ``seed + i``), a list or None."""
        super().reset(seed=seed if isinstance(seed, int) else None)
        n = self.num_envs
        seeds = [None] * n if seed is None else [seed + i for i in range(n)] if isinstance(seed, int) else list(seed)
        if len(seeds) != n:
            raise ValueError(f"seed must be an int, None or a list of {n} seeds, got {len(seeds)} seeds")
        for i, s in enumerate(seeds):
            if s is not None or self._rngs[i] is None:
                self._rngs[i] = seeding.np_random(s)[0]
        per_env = [options] * n
        if options and batched_options(options, n):
            per_env = [{key: None if value is None else np.asarray(value, dtype=float)[i]
                        for key, value in options.items()} for i in range(n)]
        rows = np.arange(n)
        self.task.start(self._cohort, rows, [self.task.draw_episode(self._rngs[i], per_env[i]) for i in range(n)])
        self._autoreset[:] = False
        self._started = True
        return self.task.observations(self._cohort), with_masks(self.task.patient_info(self._cohort, rows),
                                                                 np.ones(n, dtype=bool))

    def step(self, actions):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        n = self.num_envs
        doses, clipped = self.task.actions.to_doses(actions, n)
        resetting = self._autoreset.copy()
        active, restart = np.flatnonzero(~resetting), np.flatnonzero(resetting)
        if restart.size:
            self.task.start(self._cohort, restart, [self.task.draw_episode(self._rngs[i]) for i in restart])
        rewards = np.zeros((n, 2), np.float32) if self.task.vector_reward else np.zeros(n)
        terminated, truncated = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        infos: dict[str, Any] = {}
        if active.size:
            out = self.task.advance(self._cohort, active, doses[active], clipped[active])
            rewards[active] = self.task.rewards(out["objectives"])
            terminated[active] = out["terminated"]
            truncated[active] = out["truncated"] | (self._cohort.given[active] >= self.horizon)
            step_info = {k: v for k, v in out["info"].items() if k not in self.task.PATIENT_KEYS}
            infos = with_masks(scatter_rows(step_info, active, n), ~resetting)
        infos.update(with_masks(self.task.patient_info(self._cohort, np.arange(n)), np.ones(n, dtype=bool)))
        self._autoreset = terminated | truncated
        return self.task.observations(self._cohort), rewards, terminated, truncated, infos

    def render(self):
        """One image per sub-environment (a tuple, as SyncVectorEnv returns)."""
        if self.render_mode is None:
            logger.warn('render() needs render_mode="rgb_array" at construction')
            return None
        return tuple(render_course(self.task, self._cohort, i) for i in range(self.num_envs))

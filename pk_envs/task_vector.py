"""The natively batched vector environment shared by the single-drug and combination envs.

A *task* (a :class:`~pk_envs.task.Task`) holds the batched dynamics; this class turns it
into a Gymnasium ``VectorEnv`` that reproduces ``SyncVectorEnv`` of N single environments exactly:
sub-environment ``i`` has its own generator, seeded ``seed + i`` as SyncVectorEnv seeds its
sub-environments, and draws its episode's random numbers at reset in the single environment's
order; the decoders' per-patient results do not depend on the batch
(:func:`pk_envs._common.batch_invariant`). Autoreset is Gymnasium's default ``NEXT_STEP``: the
step after an episode ends resets that sub-environment (its action is ignored) and returns its
first observation with reward 0 and no termination or truncation. ``autoreset_mode=SAME_STEP``
(as ``SyncVectorEnv(..., autoreset_mode=AutoresetMode.SAME_STEP)``) instead resets it within the
step that ended the episode: the returned observation is the new episode's first, and
``info["final_obs"]`` (object array) / ``info["final_info"]`` hold the ended episode's last
observation and step info; Stable-Baselines3's ``VecEnv`` convention needs this mode.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import logger
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from pk_envs._common import batched_options, check_int_in, check_render_mode, scatter_rows, with_masks
from pk_envs.task import Task


class TaskVectorEnv(VectorEnv):
    """``num_envs`` episodes of one task stepped together.

    ``max_episode_steps`` (set by ``gym.make_vec`` from the registration) truncates like
    Gymnasium's TimeLimit; an episode is never longer than the task's horizon. Rewards are
    ``(num_envs,)`` floats, or ``(num_envs, 2)`` float32 for ``vector_reward=True`` (then
    ``reward_space`` is the single environment's, as in MO-Gymnasium's MOSyncVectorEnv). ``info`` is
    a dict of arrays with ``_key`` masks, as SyncVectorEnv builds it. ``reset(options=...)`` pins
    patients: values with a leading axis of ``num_envs`` are per sub-environment, others apply to all.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4,  # noqa: RUF012 (Gymnasium convention)
                "autoreset_mode": AutoresetMode.NEXT_STEP}

    task: Task

    def _setup(self, num_envs: int, task: Task, task_horizon: int, max_episode_steps: int | None,
               render_mode: str | None, autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP) -> None:
        self.num_envs = check_int_in("num_envs", num_envs, 1)
        modes = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            mode = None
        if mode not in modes:
            raise ValueError(f"autoreset_mode must be one of {[m.value for m in modes]}, got {autoreset_mode!r}")
        self.autoreset_mode = mode
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        self.task = task
        if max_episode_steps is not None:
            check_int_in("max_episode_steps", max_episode_steps, 1)
        self.max_episode_steps = max_episode_steps
        self.horizon = min(task_horizon, max_episode_steps or task_horizon)
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        self.single_action_space = task.actions.space
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.single_observation_space = task.observation_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        if task.vector_reward:
            self.reward_space = task.reward_space
            self.reward_dim = int(task.reward_space.shape[0])
        self._cohort = task.new_cohort(self.num_envs)
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._started = False

    # Gymnasium API -----------------------------------------------------------
    def reset(self, *, seed: int | list | None = None, options: dict[str, Any] | None = None):
        """Reset every sub-environment; ``seed`` an int (sub-env i gets ``seed + i``), a list or None."""
        is_int = isinstance(seed, (int, np.integer))
        super().reset(seed=int(seed) if is_int else None)
        n = self.num_envs
        if seed is None or is_int:
            seeds = [None if seed is None else int(seed) + i for i in range(n)]  # as SyncVectorEnv seeds its envs
        else:
            seeds = list(seed)
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
        info = self.task.patient_info(self._cohort, rows)
        return self.task.observations(self._cohort), with_masks(info, np.ones(n, dtype=bool))

    def step(self, actions):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        n = self.num_envs
        doses, clipped = self.task.actions.to_doses(actions, n)
        resetting = self._autoreset.copy()
        active, restart = np.flatnonzero(~resetting), np.flatnonzero(resetting)
        if restart.size:
            self.task.start(self._cohort, restart, [self.task.draw_episode(self._rngs[i]) for i in restart])
        rewards = np.zeros((n, self.reward_dim), np.float32) if self.task.vector_reward else np.zeros(n)
        terminated, truncated = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        infos: dict[str, Any] = {}
        if active.size:
            out = self.task.advance(self._cohort, active, doses[active], clipped[active])
            rewards[active] = self.task.rewards(out.objectives)
            terminated[active] = out.terminated
            truncated[active] = out.truncated | (self._cohort.given[active] >= self.horizon)
            step_info = {k: v for k, v in out.info.items() if k not in self.task.PATIENT_KEYS}
            infos = with_masks(scatter_rows(step_info, active, n), ~resetting)
        ended = terminated | truncated
        if self.autoreset_mode == AutoresetMode.SAME_STEP and ended.any():
            infos = self._restart_ended(ended, out.info)
        else:
            self._autoreset = ended
        infos.update(with_masks(self.task.patient_info(self._cohort, np.arange(n)), np.ones(n, dtype=bool)))
        return self.task.observations(self._cohort), rewards, terminated, truncated, infos

    def _restart_ended(self, ended: np.ndarray, step_info: dict[str, np.ndarray]) -> dict[str, Any]:
        """SAME_STEP autoreset: set the ended episodes' last observation and info aside, start new ones.

        ``step_info`` covers all sub-environments (none resets at the start of a step in this mode).
        Returns the step's info as SyncVectorEnv builds it: step keys only for the episodes that go
        on, ``final_obs`` / ``final_info`` for those that ended.
        """
        n = self.num_envs
        rows, going = np.flatnonzero(ended), np.flatnonzero(~ended)
        final_obs = np.full(n, None, dtype=object)
        last = self.task.observations(self._cohort)
        for i in rows:
            final_obs[i] = last[i]
        final_info = with_masks(scatter_rows({k: v[rows] for k, v in step_info.items()}, rows, n), ended)
        self.task.start(self._cohort, rows, [self.task.draw_episode(self._rngs[i]) for i in rows])
        step_keys = {k: v[going] for k, v in step_info.items() if k not in self.task.PATIENT_KEYS}
        infos = with_masks(scatter_rows(step_keys, going, n), ~ended)
        infos.update({"final_obs": final_obs, "_final_obs": ended.copy(),
                      "final_info": final_info, "_final_info": ended.copy()})
        return infos

    def render(self):
        """One image per sub-environment (a tuple, as SyncVectorEnv returns)."""
        if self.render_mode is None:
            logger.warn('render() needs render_mode="rgb_array" at construction')
            return None
        return tuple(self.task.render(self._cohort, i) for i in range(self.num_envs))

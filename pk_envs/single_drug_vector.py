"""Natively batched :class:`SingleDrugVectorEnv`: N patients, one decoder call per step.

It reproduces ``SyncVectorEnv`` of N :class:`~pk_envs.single_drug.SingleDrugEnv` exactly:
sub-environment ``i`` has its own generator, seeded ``seed + i`` like SyncVectorEnv seeds its
sub-environments, draws its episode's random numbers at reset in the single environment's
order, and the decoder's per-patient results do not depend on the batch
(:func:`pk_envs._common.batch_invariant`). Autoreset is Gymnasium's default ``NEXT_STEP``:
the step after an episode ends resets that sub-environment and returns its first observation
with reward 0 and no termination or truncation. The action of a sub-environment on that
step is ignored.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from pk_envs._common import batched_options, check_int_in, check_render_mode, scatter_rows, with_masks
from pk_envs.single_drug_core import SingleDrugTask
from vae_simulator.simulator import PKSimulator


class SingleDrugVectorEnv(VectorEnv):
    """``num_envs`` single-drug dosing episodes stepped together (arguments as SingleDrugEnv).

    ``max_episode_steps`` (set by ``gym.make_vec`` from the registration) truncates like
    Gymnasium's TimeLimit; the course is never longer than the decoder's training horizon.
    Rewards are ``(num_envs,)`` floats, or ``(num_envs, 2)`` float32 for ``vector_reward=True``
    (then ``reward_space`` is the single environment's, as in MO-Gymnasium's MOSyncVectorEnv).
    ``info`` is a dict of arrays with ``_key`` masks, as SyncVectorEnv builds it.
    """

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 4,
                                "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, drug: str | None = None, *, simulator: PKSimulator | None = None,
                 max_episode_steps: int | None = None, render_mode: str | None = None, **task_kwargs):
        self.num_envs = check_int_in("num_envs", num_envs, 1)
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        if simulator is None and drug is None:
            drug = "vancomycin"
        self.task = SingleDrugTask(drug, simulator=simulator, **task_kwargs)
        if max_episode_steps is not None:
            check_int_in("max_episode_steps", max_episode_steps, 1)
        self.max_episode_steps = max_episode_steps
        self.horizon = min(self.task.horizon, max_episode_steps or self.task.horizon)
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

    @property
    def drug(self) -> str:
        return self.task.drug

    def reset(self, *, seed: int | list | None = None, options: dict[str, Any] | None = None):
        """Reset every sub-environment; ``seed`` an int (sub-env i gets ``seed + i``), a list or None.

        ``options`` may pin patients: ``{"covariates": (num_envs, C), "z": (num_envs, d)}``.
        """
        super().reset(seed=int(seed) if isinstance(seed, (int, np.integer)) else None)
        n = self.num_envs
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else seed + i for i in range(n)]  # as SyncVectorEnv seeds its envs
        else:
            seeds = list(seed)
        if len(seeds) != n:
            raise ValueError(f"seed must be an int, None or a list of {n} seeds, got {len(seeds)} seeds")
        for i, s in enumerate(seeds):
            if s is not None or self._rngs[i] is None:
                self._rngs[i] = seeding.np_random(s)[0]
        per_env = [None] * n
        if options:
            per_env = [{key: None if value is None else np.asarray(value, dtype=float)[i] for key, value in
                        options.items()} for i in range(n)] if batched_options(options, n) else [options] * n
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
        doses, clipped = self.task.actions.to_mg(actions, n)
        resetting = self._autoreset.copy()
        active = np.flatnonzero(~resetting)
        restart = np.flatnonzero(resetting)
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
            from gymnasium import logger

            logger.warn('render() needs render_mode="rgb_array" at construction')
            return None
        return tuple(self.task.render(self._cohort, i) for i in range(self.num_envs))


# former private names, kept for modules that import them
_batched_options, _scatter, _with_masks = batched_options, scatter_rows, with_masks

"""The single-patient Gymnasium environment shared by the single-drug and combination envs.

A *task* (a :class:`~pk_envs.task.Task`: ``SingleDrugTask``, ``RegimenTask``, ``CombinationTask``)
holds the batched dynamics; this class runs it
for one patient (a batch of one), so the single environment and the native vector environment
(:class:`~pk_envs.task_vector.TaskVectorEnv`) execute the same code. All randomness of an episode
is drawn at reset from ``self.np_random``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from pk_envs._common import check_render_mode, first_row
from pk_envs.task import Task


class TaskEnv(gym.Env[np.ndarray, Any]):
    """One patient's episode of a task; subclasses build the task and name its facts."""

    #: An id shown in the render warning, e.g. ``"PKDose/Vancomycin-v0"``.
    example_id = "PKDose/Vancomycin-v0"

    task: Task

    def _setup(self, task: Task, render_mode: str | None) -> None:
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        self.task = task
        self.action_space = task.actions.space
        self.observation_space = task.observation_space
        if task.vector_reward:
            self.reward_space = task.reward_space
            self.reward_dim = int(task.reward_space.shape[0])
        self._cohort = task.new_cohort(1)
        self._rows = np.array([0])
        self._started = False

    # public facts --------------------------------------------------------------
    @property
    def reward_weights(self) -> np.ndarray:
        """Weights ``w`` of the scalar reward ``w . objectives`` (``(2,)``; the -MO ids return the vector)."""
        return np.array(self.task.reward_weights, dtype=float)

    # Gymnasium API -----------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.task.start(self._cohort, self._rows, [self.task.draw_episode(self.np_random, options)])
        self._started = True
        return self._observation(), first_row(self.task.patient_info(self._cohort, self._rows))

    def step(self, action):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        doses, clipped = self.task.actions.to_doses(action, 1)  # validated: ValueError naming a bad action
        out = self.task.advance(self._cohort, self._rows, doses, clipped)
        reward = self.task.rewards(out.objectives)[0]
        reward = reward if self.task.vector_reward else float(reward)
        return self._observation(), reward, bool(out.terminated[0]), bool(out.truncated[0]), first_row(out.info)

    def _observation(self) -> np.ndarray:
        return self.task.observations(self._cohort)[0]

    def render(self):
        if self.render_mode is None:
            gym.logger.warn('render() needs render_mode="rgb_array" at construction, e.g. '
                            f'gym.make("{self.example_id}", render_mode="rgb_array")')
            return None
        return self.task.render(self._cohort, 0)

"""Natively batched :class:`RegimenVectorEnv`: N patients, one simulator call per step.

Reproduces ``SyncVectorEnv`` of N :class:`~pk_envs.regimen.RegimenEnv` exactly; seeding,
autoreset (``NEXT_STEP``, or ``SAME_STEP`` on request) and info as in
:class:`~pk_envs.task_vector.TaskVectorEnv`.
"""

from __future__ import annotations

from typing import ClassVar

from gymnasium.vector import AutoresetMode

from pk_envs.regimen_core import RegimenTask
from pk_envs.task_vector import TaskVectorEnv
from vae_simulator.ct_simulator import EventSimulator


class RegimenVectorEnv(TaskVectorEnv):
    """``num_envs`` regimen episodes stepped together (arguments as RegimenEnv)."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 4,
                                "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, drug: str | None = None, *, simulator: EventSimulator | None = None,
                 max_episode_steps: int | None = None, render_mode: str | None = None,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP, **task_kwargs):
        task = RegimenTask(drug, simulator=simulator, **task_kwargs)
        self._setup(num_envs, task, task.horizon, max_episode_steps, render_mode, autoreset_mode)

    @property
    def drug(self) -> str:
        return self.task.drug

    @property
    def target(self):
        """The drug's therapeutic window (:class:`~vae_simulator.groundtruth.base.ExposureTarget`)."""
        return self.task.target

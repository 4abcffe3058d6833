"""Natively batched :class:`PaclitaxelCarboplatinVectorEnv`: N patients, one decoder call per drug per step.

Reproduces ``SyncVectorEnv`` of N :class:`~pk_envs.combination.PaclitaxelCarboplatinEnv` exactly
(the PD models are element-wise over patients); the seeding, autoreset (``NEXT_STEP``, or ``SAME_STEP`` on request) and info
conventions are those of :class:`~pk_envs.task_vector.TaskVectorEnv`.
"""

from __future__ import annotations

import numpy as np
from gymnasium.vector import AutoresetMode

from pk_envs.combination_core import OBS_NAMES, CombinationTask, conventional_doses
from pk_envs.task_vector import TaskVectorEnv


class PaclitaxelCarboplatinVectorEnv(TaskVectorEnv):
    """``num_envs`` combination-chemotherapy episodes stepped together (arguments as the single env)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2,  # noqa: RUF012 (Gymnasium convention)
                "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, simulators=None, *, max_episode_steps: int | None = None,
                 render_mode: str | None = None, autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
                 **task_kwargs):
        task = self.task_class(simulators=simulators, **task_kwargs)
        self._setup(num_envs, task, task.n_cycles, max_episode_steps, render_mode, autoreset_mode)

    #: the batched dynamics (the v1 twin sets its own)
    task_class = CombinationTask
    #: what each observation entry is (as the single environment's)
    observation_names: tuple[str, ...] = OBS_NAMES

    def conventional_action(self, observations: np.ndarray) -> np.ndarray:
        """The conventional regimen's actions for ``(num_envs, D)`` observations."""
        return self.task.actions.from_doses(*conventional_doses(observations))

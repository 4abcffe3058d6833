"""Natively batched :class:`PaclitaxelCarboplatinV1VectorEnv`: N multimodal patients stepped together.

Reproduces ``SyncVectorEnv`` of N :class:`~pk_envs.combination_v1.PaclitaxelCarboplatinV1Env` exactly,
as the v0 vector env does for v0 (same :class:`~pk_envs.task_vector.TaskVectorEnv` machinery).
"""

from __future__ import annotations

import numpy as np

from pk_envs.combination_v1_core import (
    OBS_NAMES_V1,
    MultimodalCombinationTask,
    adaptive_doses,
    conventional_doses_v1,
)
from pk_envs.combination_vector import PaclitaxelCarboplatinVectorEnv


class PaclitaxelCarboplatinV1VectorEnv(PaclitaxelCarboplatinVectorEnv):
    """``num_envs`` v1 combination episodes stepped together (arguments as the single env)."""

    task_class = MultimodalCombinationTask
    #: what each observation entry is (as the single environment's)
    observation_names: tuple[str, ...] = OBS_NAMES_V1

    def conventional_action(self, observations: np.ndarray) -> np.ndarray:
        """Conventional dosing with the label's reductions for ``(num_envs, D)`` observations."""
        return self.task.actions.from_doses(*conventional_doses_v1(observations))

    def adaptive_action(self, observations: np.ndarray) -> np.ndarray:
        """The toxicity-adaptive clinical rule's actions for ``(num_envs, D)`` observations."""
        return self.task.actions.from_doses(*adaptive_doses(observations))

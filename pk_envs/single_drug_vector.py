"""Natively batched :class:`SingleDrugVectorEnv`: N patients, one decoder call per step.

Reproduces ``SyncVectorEnv`` of N :class:`~pk_envs.single_drug.SingleDrugEnv` exactly; the
seeding, autoreset (``NEXT_STEP``, or ``SAME_STEP`` on request) and info conventions are those of
:class:`~pk_envs.task_vector.TaskVectorEnv`.
"""

from __future__ import annotations

from typing import ClassVar

from gymnasium.vector import AutoresetMode

from pk_envs.single_drug_core import SingleDrugTask
from pk_envs.task_vector import TaskVectorEnv
from vae_simulator.interface import PatientSimulator


class SingleDrugVectorEnv(TaskVectorEnv):
    """``num_envs`` single-drug dosing episodes stepped together (arguments as SingleDrugEnv).

    ``reset(options=...)`` may pin patients: ``{"covariates": (num_envs, C), "z": (num_envs, d)}``.
    """

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 4,
                                "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, drug: str | None = None, *, simulator: PatientSimulator | None = None,
                 max_episode_steps: int | None = None, render_mode: str | None = None,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP, **task_kwargs):
        if simulator is None and drug is None:
            drug = "vancomycin"
        task = SingleDrugTask(drug, simulator=simulator, **task_kwargs)
        self._setup(num_envs, task, task.horizon, max_episode_steps, render_mode, autoreset_mode)

    @property
    def drug(self) -> str:
        return self.task.drug

    @property
    def target(self):
        """The drug's therapeutic window (:class:`~vae_simulator.groundtruth.base.ExposureTarget`)."""
        return self.task.target

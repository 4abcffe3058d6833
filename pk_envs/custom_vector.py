"""Natively batched :class:`CustomDrugVectorEnv`: N patients of a table's PK-VAE, one decoder call per step."""

from __future__ import annotations

from pathlib import Path

from pk_envs.custom import SIMULATOR_ARGUMENTS, custom_simulator
from pk_envs.single_drug_vector import SingleDrugVectorEnv
from vae_simulator.byod.simulator import TableIntervalSimulator


class CustomDrugVectorEnv(SingleDrugVectorEnv):
    """``num_envs`` episodes of :class:`~pk_envs.custom.CustomDrugEnv` (same arguments), equal to its SyncVectorEnv."""

    def __init__(self, num_envs: int = 1, weights: str | Path | None = None, target: str | None = None, **kwargs):
        settings = {key: kwargs.pop(key) for key in SIMULATOR_ARGUMENTS if key in kwargs}
        super().__init__(num_envs, simulator=custom_simulator(weights, target, **settings), **kwargs)

    @property
    def simulator(self) -> TableIntervalSimulator:
        """The patients' simulator (a PatientSimulator): what a model-based baseline doses with."""
        return self.task.sim

    @property
    def covariate_names(self) -> tuple[str, ...]:
        """The encoded covariate columns of the observation's first entries."""
        return tuple(self.task.sim.covariate_names)

"""Natively batched :class:`CustomDrugVectorEnv`: N patients of a table's PK-VAE, one decoder call per step."""

from __future__ import annotations

from pathlib import Path

from pk_envs.custom import SIMULATOR_ARGUMENTS, TableModelAttributes, custom_simulator
from pk_envs.single_drug_vector import SingleDrugVectorEnv


class CustomDrugVectorEnv(TableModelAttributes, SingleDrugVectorEnv):
    """``num_envs`` episodes of :class:`~pk_envs.custom.CustomDrugEnv` (same arguments), equal to its SyncVectorEnv."""

    def __init__(self, num_envs: int = 1, weights: str | Path | None = None, target: str | None = None, **kwargs):
        settings = {key: kwargs.pop(key) for key in SIMULATOR_ARGUMENTS if key in kwargs}
        super().__init__(num_envs, simulator=custom_simulator(weights, target, **settings), **kwargs)

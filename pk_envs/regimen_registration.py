"""Ids of the regimen environments: ``PKDose/<Drug>-Regimen<variant>-v0``.

| id | reward | action |
|---|---|---|
| ``PKDose/<Drug>-Regimen-v0`` | scalar ``efficacy - toxicity - level_cost * levels`` | ``Box(-1, 1, (3,))``: dose, interval, draw a level |
| ``PKDose/<Drug>-Regimen-MO-v0`` | vector ``[efficacy, -toxicity, -levels]`` | continuous |
| ``PKDose/<Drug>-Regimen-Discrete-v0`` | scalar | ``MultiDiscrete([dose levels, intervals, 2])`` |

``<Drug>``: Vancomycin, Phenytoin. ``max_episode_steps`` is the most doses a course can hold
(course / shortest interval: vancomycin 30, phenytoin 42). The continuous-time PK-VAE is loaded
when the first environment is made.
"""

from __future__ import annotations

import numpy as np

from pk_envs.registration import register_variants
from pk_envs.single_drug_core import SPECS
from vae_simulator.irregular import HORIZON_H, INTERVAL_OPTIONS_H

REGIMEN_DRUGS = ("vancomycin", "phenytoin")
REGIMEN_VARIANTS: dict[str, dict] = {
    "": {},
    "-MO": {"vector_reward": True},
    "-Discrete": {"discrete": True},
}


def register_regimen_envs() -> list[str]:
    """Register the regimen ids (skipping any already registered); returns them."""
    ids = []
    for drug in REGIMEN_DRUGS:
        steps = int(np.ceil(HORIZON_H[drug] / min(INTERVAL_OPTIONS_H[drug]) - 1e-9))
        variants = {f"-Regimen{suffix}": kwargs for suffix, kwargs in REGIMEN_VARIANTS.items()}
        ids += register_variants(SPECS[drug].name, "pk_envs.regimen:RegimenEnv",
                                 "pk_envs.regimen_vector:RegimenVectorEnv", variants, steps, {"drug": drug})
    return ids

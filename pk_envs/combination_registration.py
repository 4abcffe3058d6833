"""Ids of the combination-chemotherapy environment: ``PKDose/PaclitaxelCarboplatin<variant>-v<version>``.

v0: neutrophils and NSCLC (:class:`~pk_envs.combination.PaclitaxelCarboplatinEnv`); v1: the
multimodal patient with three tumour types and four serious adverse events
(:class:`~pk_envs.combination_v1.PaclitaxelCarboplatinV1Env`); the same variants for both.

| id | reward | action |
|---|---|---|
| ``PKDose/PaclitaxelCarboplatin-v0`` | scalar ``w . [response, -toxicity]`` | continuous ``Box(-1, 1, (2,))`` |
| ``PKDose/PaclitaxelCarboplatin-MO-v0`` | vector ``[response, -toxicity]`` (MO-Gymnasium) | continuous |
| ``PKDose/PaclitaxelCarboplatin-Discrete-v0`` | scalar | ``Discrete(25)`` dose-level pairs |

Six 21-day cycles (``max_episode_steps=6``). Any constructor argument of
:class:`~pk_envs.combination.PaclitaxelCarboplatinEnv` passes through ``gym.make``, e.g.
``gym.make("PKDose/PaclitaxelCarboplatin-MO-v0", discrete=True)`` or ``simulators="groundtruth"``.
The trained PK-VAEs are loaded when the first environment is made, not at registration.
"""

from __future__ import annotations

from pk_envs.registration import register_variants

COMBINATION_NAME = "PaclitaxelCarboplatin"
COMBINATION_CYCLES = 6
#: Variant suffix -> constructor arguments (same suffixes as the single-drug ids).
COMBINATION_VARIANTS: dict[str, dict] = {
    "": {},
    "-MO": {"vector_reward": True},
    "-Discrete": {"discrete": True},
}


def register_combination_envs() -> list[str]:
    """Register the combination ids, v0 and v1 (skipping any already registered); returns them."""
    return register_variants(COMBINATION_NAME, "pk_envs.combination:PaclitaxelCarboplatinEnv",
                             "pk_envs.combination_vector:PaclitaxelCarboplatinVectorEnv", COMBINATION_VARIANTS,
                             COMBINATION_CYCLES, {}) + \
        register_variants(COMBINATION_NAME, "pk_envs.combination_v1:PaclitaxelCarboplatinV1Env",
                          "pk_envs.combination_v1_vector:PaclitaxelCarboplatinV1VectorEnv", COMBINATION_VARIANTS,
                          COMBINATION_CYCLES, {}, version=1)

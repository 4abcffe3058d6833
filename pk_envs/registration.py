"""Environment ids: ``PKDose/<Drug><variant>-v<version>``, one row per drug, variant and version (table in pk_envs)."""

from __future__ import annotations

import gymnasium as gym

from pk_envs.single_drug_core import SPECS

NAMESPACE = "PKDose"

#: Variant suffix -> constructor arguments. Kept small and orthogonal: combine further
#: settings through kwargs, e.g. ``gym.make("PKDose/Vancomycin-MO-v0", discrete=True)``.
SINGLE_DRUG_VARIANTS: dict[str, dict] = {
    "": {},                                           # scalar reward, continuous dose, clinic observation
    "-MO": {"vector_reward": True},                   # [efficacy, -toxicity] for MO-Gymnasium
    "-Discrete": {"discrete": True},                  # clinical dose levels
    "-FullObs": {"full_observation": True},           # + true exposure and latent z (debugging)
    "-Hard": {"noise_scale": 2.0, "missing_prob": 0.25},  # twice the assay error, a quarter of samples missing
}


def env_id(name: str, variant: str = "", version: int = 0) -> str:
    return f"{NAMESPACE}/{name}{variant}-v{version}"


#: Version -> constructor arguments of the single-drug ids (SingleDrugEnv's Version History)
SINGLE_DRUG_VERSIONS: dict[int, dict] = {0: {"decoder": "interval"}, 1: {"decoder": "continuous"},
                                         2: {"decoder": "continuous-2"}}


def register_variants(name: str, entry_point: str, vector_entry_point: str, variants: dict[str, dict],
                      max_episode_steps: int | None, base_kwargs: dict, version: int = 0) -> list[str]:
    """Register ``name`` with each variant (skipping ids already registered); returns the ids."""
    ids = []
    for suffix, kwargs in variants.items():
        env = env_id(name, suffix, version)
        if env not in gym.registry:
            # Gymnasium's passive checker wants scalar rewards; MO ids turn it off as mo_gym.make does
            gym.register(env, entry_point=entry_point, vector_entry_point=vector_entry_point,
                         max_episode_steps=max_episode_steps, kwargs={**base_kwargs, **kwargs},
                         disable_env_checker=bool(kwargs.get("vector_reward", False)))
        ids.append(env)
    return ids


def register_single_drug_envs() -> list[str]:
    """Register every single-drug id (weights are loaded only when an environment is made)."""
    from vae_simulator.vae.io import CT_RELEASES

    ids = []
    for version, version_kwargs in SINGLE_DRUG_VERSIONS.items():
        for drug, spec in SPECS.items():
            if version >= 2 and CT_RELEASES.get(drug, 1) < version:  # only drugs whose decoder changed
                continue
            ids += register_variants(spec.name, "pk_envs.single_drug:SingleDrugEnv",
                                     "pk_envs.single_drug_vector:SingleDrugVectorEnv", SINGLE_DRUG_VARIANTS,
                                     spec.course_intervals, {"drug": drug, **version_kwargs}, version)
    return ids


#: the single-drug environment on a PK-VAE learnt from a user's table (weights= and target= required)
CUSTOM_NAME = "Custom"


def register_custom_envs() -> list[str]:
    """Register ``PKDose/Custom-v0`` and its variants (the course length comes from the weights)."""
    return register_variants(CUSTOM_NAME, "pk_envs.custom:CustomDrugEnv", "pk_envs.custom_vector:CustomDrugVectorEnv",
                             SINGLE_DRUG_VARIANTS, None, {})

"""Hyperparameters of the learned dosing policies, per algorithm and environment family.

Read top to bottom; every value is a Stable-Baselines3 constructor argument. Tuned on
``PKDose/Vancomycin-v0`` (PPO: target attainment on a 200-patient validation cohort after
50k-400k steps; see README, Agents) and kept for the other single-drug ids; the combination
course is 6 cycles with a delayed tumour response, so its discount is higher.

Why these values:

- ``gamma`` 0.95 / 0.99: a dose acts mostly on the interval it is given in (single drug), but a
  chemotherapy cycle's effect on tumour size and on the neutrophil nadir shows one cycle later.
  Regimen ids 0.97: a level drawn now pays off in the doses after it (not tuned).
- ``n_steps * n_envs`` = 2,048 transitions per PPO update (16 patients x 128 intervals: several
  whole courses per environment), minibatches of 512, 10 epochs: SB3's defaults scaled for short
  episodes.
- ``log_std_init`` -0.5 (PPO): the action is a dose on [-1, 1]; SB3's default std 1 spends the
  first updates dosing at the bounds (clipped).
- RecurrentPPO (sb3-contrib): PPO's values with an LSTM of 64 units in front of the same heads,
  for the partially observed courses (a level drawn cycles ago still matters); not tuned.
- SAC: 8 patients per step and one gradient step per vector step (1 per 8 transitions) keeps SAC
  affordable on 2 CPU cores (SAC's cost is its gradient steps, ~85/s here).
"""

from __future__ import annotations

import copy
from typing import Any

import pk_envs

ALGORITHMS = ("ppo", "sac", "recurrent_ppo")

#: SB3 policy class alias per algorithm (RecurrentPPO: an LSTM over the course, sb3-contrib).
POLICY_NAMES = {"ppo": "MlpPolicy", "sac": "MlpPolicy", "recurrent_ppo": "MlpLstmPolicy"}

#: Default number of parallel patients (vector env size) per algorithm.
DEFAULT_N_ENVS = {"ppo": 16, "sac": 8, "recurrent_ppo": 16}

#: The main job's PPO on a single-drug id (``pkdose train`` without ``--n-envs``): 64 patients x 32
#: intervals (the same 2,048 transitions per update), minibatches of 1,024 (half the gradient steps)
#: and one torch thread. Measured on the 2-core machine, 600k steps on PKDose/Vancomycin-v0, one run
#: after the other: 149 s of training against 249 s with the 16 x 128 / 512 defaults above, held-out
#: attainment 0.824 [0.814, 0.834] against 0.828 [0.818, 0.839] (docs/speed.md). The defaults above
#: stay what sweeps and benchmarks use, so their published figures still reproduce.
MAIN_JOB_PPO_SINGLE = {"n_envs": 64, "hyperparameters": {"n_steps": 32, "batch_size": 1024}, "torch_threads": 1}

_NET = {"net_arch": [128, 128]}

HYPERPARAMETERS: dict[str, dict[str, dict[str, Any]]] = {
    "ppo": {
        "single": {"n_steps": 128, "batch_size": 512, "n_epochs": 10, "learning_rate": 3e-4, "gamma": 0.95,
                   "gae_lambda": 0.9, "clip_range": 0.2, "ent_coef": 0.0,
                   "policy_kwargs": {**_NET, "log_std_init": -0.5}},
        "combination": {"n_steps": 64, "batch_size": 256, "n_epochs": 10, "learning_rate": 3e-4, "gamma": 0.99,
                        "gae_lambda": 0.95, "clip_range": 0.2, "ent_coef": 0.0,
                        "policy_kwargs": {**_NET, "log_std_init": -0.5}},
        "regimen": {"n_steps": 128, "batch_size": 512, "n_epochs": 10, "learning_rate": 3e-4, "gamma": 0.97,
                    "gae_lambda": 0.95, "clip_range": 0.2, "ent_coef": 0.0,
                    "policy_kwargs": {**_NET, "log_std_init": -0.5}},
    },
    "sac": {
        "single": {"learning_rate": 1e-3, "buffer_size": 200_000, "learning_starts": 2_000, "batch_size": 256,
                   "tau": 0.02, "gamma": 0.95, "train_freq": 1, "gradient_steps": 1, "policy_kwargs": _NET},
        "combination": {"learning_rate": 1e-3, "buffer_size": 100_000, "learning_starts": 1_000,
                        "batch_size": 256, "tau": 0.02, "gamma": 0.99, "train_freq": 1, "gradient_steps": 1,
                        "policy_kwargs": _NET},
        "regimen": {"learning_rate": 1e-3, "buffer_size": 200_000, "learning_starts": 2_000, "batch_size": 256,
                    "tau": 0.02, "gamma": 0.97, "train_freq": 1, "gradient_steps": 1, "policy_kwargs": _NET},
    },
}

# RecurrentPPO: PPO's values per family, plus the LSTM
HYPERPARAMETERS["recurrent_ppo"] = {
    family: {**values, "policy_kwargs": {**values["policy_kwargs"], "lstm_hidden_size": 64}}
    for family, values in HYPERPARAMETERS["ppo"].items()}


def check_algorithm(algo: str) -> str:
    """``algo`` lower-cased if it is one of :data:`ALGORITHMS`, else a ValueError listing them."""
    name = str(algo).lower()
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGORITHMS)}")
    return name


def env_family(env_id: str) -> str:
    """``"single"``, ``"combination"`` or ``"regimen"`` for a registered PKDose id (ValueError otherwise)."""
    if env_id in pk_envs.COMBINATION_IDS:
        return "combination"
    if env_id in pk_envs.REGIMEN_IDS:
        return "regimen"
    check_env_id(env_id)
    return "single"  # a single-drug id, or one on a table's model (Custom)


def check_env_id(env_id: str) -> str:
    """``env_id`` if it is a registered PKDose id, else ValueError listing the ids."""
    if env_id not in pk_envs.ALL_IDS and env_id not in pk_envs.CUSTOM_IDS:
        raise ValueError(f"unknown environment id {env_id!r}; PKDose ids are: {', '.join(pk_envs.ALL_IDS)} "
                         f"and, with weights= and target=, {', '.join(pk_envs.CUSTOM_IDS)}")
    return env_id


def hyperparameters(algo: str, env_id: str) -> dict[str, Any]:
    """A fresh copy of the tuned SB3 arguments for ``algo`` on ``env_id``."""
    return copy.deepcopy(HYPERPARAMETERS[check_algorithm(algo)][env_family(env_id)])

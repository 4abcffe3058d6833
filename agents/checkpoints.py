"""Save and load trained agents without unpickling anything.

An agent is Stable-Baselines3's ``.zip`` (so SB3 users can open it) plus a JSON sidecar::

    model.zip    SB3 archive: JSON "data", torch state dicts (policy, optimisers)
    model.json   {"format": "pkdose-agent", "algo", "env_id", "env_kwargs", "hyperparameters",
                  "num_timesteps", "sha256" of the zip, "pkdose_version"}
    model.replay.npz   SAC only, for resuming: the replay buffer's arrays

SB3 stores objects it cannot write as JSON (spaces, schedules, the policy class, the last
observation) cloudpickled inside "data", and ``SB3.load`` would unpickle them. :func:`load_agent`
never does: it passes every such entry as a ``custom_objects`` replacement rebuilt from the
sidecar (spaces from the environment id, schedules from the hyperparameters), and the torch
tensors load with ``weights_only=True`` (SB3's own loader). An archive holding a pickled entry
we cannot rebuild is refused. The sidecar's SHA-256 catches a corrupt or swapped archive.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm

from agents.config import POLICY_NAMES, check_algorithm

ALGORITHM_CLASSES: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "sac": SAC, "recurrent_ppo": RecurrentPPO}
FORMAT = "pkdose-agent"
#: Pickled SB3 entries that ``learn`` rebuilds itself (the rollout state): replaced by None.
_REBUILT_BY_SB3 = ("_last_obs", "_last_episode_starts", "_last_original_obs", "_last_lstm_states", "ep_info_buffer",
                   "ep_success_buffer", "rollout_buffer_class", "replay_buffer_class", "lr_schedule")
_REPLAY_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pkdose")
    except PackageNotFoundError:
        return "unknown"


def save_agent(model: BaseAlgorithm, path: str | Path, *, algo: str, env_id: str, env_kwargs: dict[str, Any],
               hyperparameters: dict[str, Any], replay_buffer: bool = False) -> Path:
    """Write ``path`` (``.zip``), its ``.json`` sidecar and, for SAC with ``replay_buffer``, ``.replay.npz``."""
    path = Path(path).with_suffix(".zip")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    if replay_buffer and getattr(model, "replay_buffer", None) is not None:
        buffer = model.replay_buffer
        np.savez(path.with_suffix(".replay.npz"), pos=buffer.pos, full=buffer.full,
                 **{name: getattr(buffer, name) for name in _REPLAY_FIELDS})
    meta = {"format": FORMAT, "algo": check_algorithm(algo), "env_id": env_id, "env_kwargs": env_kwargs,
            "hyperparameters": hyperparameters, "num_timesteps": int(model.num_timesteps),
            "sha256": _sha256(path), "pkdose_version": _package_version()}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=list))
    return path


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The checked sidecar of an agent archive (ValueError naming what is wrong)."""
    path = Path(path).with_suffix(".zip")
    sidecar = path.with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"no agent archive at {path}")
    if not sidecar.is_file():
        raise ValueError(f"{path} has no sidecar {sidecar.name}: not a pkdose agent (or copied without it)")
    try:
        meta = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{sidecar} is not valid JSON: {err}") from None
    found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
    if found != FORMAT:
        raise ValueError(f"{sidecar} is not a pkdose agent sidecar (format {found!r}, expected {FORMAT!r})")
    if _sha256(path) != meta.get("sha256"):
        raise ValueError(f"{path} does not match the SHA-256 in {sidecar.name}: the archive is corrupt or was replaced")
    return meta


def load_agent(path: str | Path, env: Any = None, *, expected_env_id: str | None = None,
               expected_algo: str | None = None) -> tuple[BaseAlgorithm, dict[str, Any]]:
    """Load an agent written by :func:`save_agent`; returns ``(model, sidecar)``.

    Args:
        path: the ``.zip`` (or its stem).
        env: an SB3 ``VecEnv`` to continue training on (optional for prediction).
        expected_env_id, expected_algo: refuse an agent of another environment or algorithm.
    """
    meta = read_sidecar(path)
    path = Path(path).with_suffix(".zip")
    algo = check_algorithm(meta["algo"])
    if expected_algo is not None and algo != check_algorithm(expected_algo):
        raise ValueError(f"{path} holds a {algo.upper()} agent, not {expected_algo.upper()}")
    if expected_env_id is not None and meta["env_id"] != expected_env_id:
        raise ValueError(f"{path} was trained on {meta['env_id']!r}, not {expected_env_id!r}")
    custom = _custom_objects(path, algo, meta)
    try:
        model = ALGORITHM_CLASSES[algo].load(path, env=env, custom_objects=custom, device="cpu")
    except (RuntimeError, KeyError, zipfile.BadZipFile) as err:
        raise ValueError(f"cannot load {path} as a {algo.upper()} agent for {meta['env_id']!r}: {err}") from None
    replay = path.with_suffix(".replay.npz")
    if replay.is_file() and getattr(model, "replay_buffer", None) is not None:
        _restore_replay_buffer(model, replay)
    return model, meta


def _custom_objects(path: Path, algo: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Replacements for every pickled entry of the archive's "data" (nothing is unpickled)."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a Stable-Baselines3 archive: {err}") from None
    pickled = sorted(k for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v)
    env = gym.make(meta["env_id"], **meta.get("env_kwargs", {}))
    hyper = meta.get("hyperparameters", {})
    known = {"observation_space": env.observation_space, "action_space": env.action_space,
             "policy_class": ALGORITHM_CLASSES[algo].policy_aliases[POLICY_NAMES[algo]],
             "clip_range": hyper.get("clip_range", 0.2), "train_freq": hyper.get("train_freq", 1),
             **dict.fromkeys(_REBUILT_BY_SB3)}
    env.close()
    unknown = [k for k in pickled if k not in known]
    if unknown:
        raise ValueError(f"{path} holds pickled entries {unknown} that pkdose cannot rebuild; it never unpickles "
                         "files, so this archive cannot be loaded")
    return {k: known[k] for k in pickled}


def _restore_replay_buffer(model: BaseAlgorithm, path: Path) -> None:
    buffer = model.replay_buffer
    with np.load(path, allow_pickle=False) as saved:
        for name in _REPLAY_FIELDS:
            if saved[name].shape != getattr(buffer, name).shape:
                raise ValueError(f"{path}: replay buffer {name} has shape {saved[name].shape}, the agent's buffer "
                                 f"{getattr(buffer, name).shape}; it belongs to another configuration")
            getattr(buffer, name)[...] = saved[name]
        buffer.pos, buffer.full = int(saved["pos"]), bool(saved["full"])

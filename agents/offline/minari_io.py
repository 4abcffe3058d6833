"""Logged episodes as a Minari dataset (arrow format, no jax) and back.

Layout of one Minari episode of ``L`` steps, as ``minari.load_dataset(id).iterate_episodes()``
returns it: ``observations (L + 1, D)``, ``actions (L, ...)``, ``rewards (L,)`` (the scalar
reward; for ``-MO`` ids ``w . objectives``, see :mod:`agents.offline.collect`),
``terminations`` / ``truncations (L,)`` (the last step is a termination when a serious event or
progression ended the episode, else a truncation), and ``infos``, each ``(L + 1, ...)`` in
Minari's convention: row 0 the reset info, row ``t + 1`` the info returned by step ``t``:

- ``behaviour_prob``: probability / density of action ``t`` under the behaviour policy (row 0: 1);
- ``objectives`` ``(L + 1, 2)``: ``[efficacy or response, -toxicity]`` of step ``t`` (row 0: 0);
- the step-outcome keys of :mod:`agents.offline.collect` (row 0: 0);
- the policy-input keys (patient constants such as ``standard_dose_mg``, ``covariates``): the
  value reported with each observation, on every row.

The episode's environment seed is in its Minari episode metadata (``seed``). The dataset
metadata holds the environment spec with the constructor arguments used (so
``dataset.recover_environment()`` rebuilds the same environment; ``import pk_envs`` first) and a
``pkdose`` entry: format version, env id and kwargs, behaviour policy, seed and the info keys.

Minari finds datasets under ``MINARI_DATASETS_PATH``: the functions here take the root as
``data_dir`` and set that variable only while they run (not thread-safe), so nothing goes to
``~/.minari`` unless asked.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pyarrow as pa
from minari.data_collector import EpisodeBuffer
from tqdm.auto import tqdm

import pk_envs  # noqa: F401  (registers the ids recover_environment makes)
from agents.baselines import check_env_id
from agents.offline.env_facts import check_json_kwargs
from agents.offline.episodes import LoggedEpisodes, info_keys

FORMAT_VERSION = 1
WRITE_CHUNK = 100  # episodes per Minari update (progress bar granularity)
DATASETS_PATH_VARIABLE = "MINARI_DATASETS_PATH"


@contextmanager
def datasets_root(data_dir: str | os.PathLike | None) -> Iterator[None]:
    """Point Minari at ``data_dir`` (its datasets root) while the block runs; ``None`` leaves it as is."""
    if data_dir is None:
        yield
        return
    old = os.environ.get(DATASETS_PATH_VARIABLE)
    os.environ[DATASETS_PATH_VARIABLE] = str(Path(data_dir).resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(DATASETS_PATH_VARIABLE, None)
        else:
            os.environ[DATASETS_PATH_VARIABLE] = old


def dataset_dir(dataset_id: str, data_dir: str | os.PathLike) -> Path:
    """``<data_dir>/<dataset_id>``, the directory Minari gives a dataset (ValueError for a malformed id)."""
    try:
        minari.dataset.minari_dataset.parse_dataset_id(dataset_id)
    except ValueError:
        raise ValueError(f"dataset id {dataset_id!r} is malformed; use (namespace/)name-v<version>, e.g. "
                         f"'pkdose/Vancomycin/clinician-v0'") from None
    return Path(data_dir) / dataset_id


def write_minari_dataset(episodes: LoggedEpisodes, dataset_id: str, data_dir: str | os.PathLike, *,
                         policy_name: str = "unknown", seed: int | None = None, env_kwargs: dict | None = None,
                         overwrite: bool = False, description: str | None = None, progress: bool = False) -> Path:
    """Write ``episodes`` as the Minari dataset ``dataset_id`` under ``data_dir``; returns its directory.

    Args:
        episodes: logged episodes (:func:`agents.offline.collect.collect_episodes`).
        dataset_id: Minari id, e.g. ``"pkdose/Vancomycin/clinician-v0"``.
        data_dir: the datasets root (what ``MINARI_DATASETS_PATH`` would be).
        policy_name: the behaviour policy (stored as Minari's ``algorithm_name``).
        seed: the first environment seed the episodes were logged with (metadata).
        env_kwargs: the environment's constructor arguments (JSON-serialisable), recorded in the spec.
        overwrite: replace an existing dataset of that id (only a directory holding a Minari dataset).
        description: dataset description (a default one names the env and policy).
        progress: show a tqdm progress bar over episodes.

    Raises:
        ValueError: a malformed id, an existing dataset without ``overwrite``, non-JSON ``env_kwargs``.
    """
    check_env_id(episodes.env_id)
    env_kwargs = check_json_kwargs(env_kwargs)
    target = dataset_dir(dataset_id, data_dir)
    if target.exists():
        if not overwrite:
            raise ValueError(f"dataset {dataset_id!r} already exists at {target}; pass overwrite=True to replace it")
        if not (target / "data" / "metadata.json").is_file():
            raise ValueError(f"{target} exists but holds no Minari dataset; not removing it")
        shutil.rmtree(target)
    spec = gym.spec(episodes.env_id)
    spec = dataclasses.replace(spec, kwargs={**spec.kwargs, **env_kwargs})
    combination = "z_paclitaxel" in episodes.infos
    input_keys, outcome_keys = info_keys(combination)
    input_keys = [k for k in input_keys if k in episodes.infos]
    outcome_keys = [k for k in outcome_keys if k in episodes.infos]
    buffers = [_episode_buffer(episodes, i, input_keys, outcome_keys) for i in range(episodes.n_episodes)]
    pkdose = {"format_version": FORMAT_VERSION, "env_id": episodes.env_id, "env_kwargs": env_kwargs,
              "discrete": bool(episodes.discrete), "policy": policy_name, "seed": seed,
              "policy_input_keys": input_keys, "step_outcome_keys": outcome_keys,
              "reward": "the environment's scalar reward; for -MO ids w . objectives with its reward_weights"}
    with datasets_root(data_dir), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Minari's reminders about permalinks and e-mails
        dataset = minari.create_dataset_from_buffers(
            dataset_id, [], env=spec, algorithm_name=policy_name, author="pkdose",
            description=description or f"{episodes.n_episodes} episodes of {episodes.env_id} under {policy_name}",
            data_format="arrow")
    storage = dataset.storage
    # minari 0.5.4 re-measures the whole directory after every episode (quadratic: 2 min for 1,000
    # episodes); measure once at the end instead
    storage.get_size = lambda: 0.0
    try:
        with tqdm(total=episodes.n_episodes, unit="episode", desc="writing Minari", disable=not progress) as bar:
            for start in range(0, episodes.n_episodes, WRITE_CHUNK):
                dataset.update_dataset_from_buffer(buffers[start:start + WRITE_CHUNK])
                bar.update(len(buffers[start:start + WRITE_CHUNK]))
    finally:
        del storage.get_size
    storage.update_metadata({"pkdose": pkdose, "dataset_size": storage.get_size()})
    return target


def _episode_buffer(episodes: LoggedEpisodes, i: int, input_keys: list[str], outcome_keys: list[str]) -> EpisodeBuffer:
    n_steps = int(episodes.lengths[i])
    terminated = bool(episodes.terminated[i])
    ends = np.zeros(n_steps, dtype=bool)
    infos = {"behaviour_prob": _after_reset(episodes.behaviour_prob[i, :n_steps], 1.0),
             "objectives": _after_reset(episodes.objectives[i, :n_steps], 0.0)}
    for key in outcome_keys:
        infos[key] = _after_reset(episodes.infos[key][i, :n_steps], 0)
    for key in input_keys:  # patient constants: the last observation's value is the last step's
        values = episodes.infos[key][i, :n_steps]
        infos[key] = np.concatenate([values, values[-1:]])
    # minari 0.5.4 cannot decode 1-D numpy info arrays (empty shape metadata); lists round-trip exactly
    infos = {k: v.tolist() if v.ndim == 1 else v for k, v in infos.items()}
    return EpisodeBuffer(id=i, seed=int(episodes.seeds[i]), observations=episodes.observations[i, :n_steps + 1],
                         actions=episodes.actions[i, :n_steps], rewards=episodes.rewards[i, :n_steps].tolist(),
                         terminations=np.where(np.arange(n_steps) == n_steps - 1, terminated, ends).tolist(),
                         truncations=np.where(np.arange(n_steps) == n_steps - 1, not terminated, ends).tolist(),
                         infos=infos)


def _after_reset(values: np.ndarray, fill) -> np.ndarray:
    """Step values with the reset row in front (Minari's infos have one row per observation)."""
    return np.concatenate([np.full((1,) + values.shape[1:], fill, dtype=values.dtype), values])


# ---------------------------------------------------------------------------- loading


def load_logged_episodes(dataset: str | os.PathLike, expected_env_id: str | None = None,
                         data_dir: str | os.PathLike | None = None) -> LoggedEpisodes:
    """Read a dataset written by :func:`write_minari_dataset` back as :class:`LoggedEpisodes`.

    Args:
        dataset: a dataset id (looked up under ``data_dir``, or Minari's own root when None)
            or the path of a dataset directory (``<root>/<id>`` or its ``data`` folder).
        expected_env_id: refuse a dataset of another environment id.
        data_dir: the datasets root for an id.

    Raises:
        FileNotFoundError: no such dataset.
        ValueError: another env id than expected, not a pkdose dataset, or a corrupted/unreadable file
            (the message names the dataset and the problem).
    """
    if expected_env_id is not None:
        check_env_id(expected_env_id)
    path = Path(dataset)
    if (path / "data" / "metadata.json").is_file():
        path = path / "data"
    label = str(dataset)
    if not (path / "metadata.json").is_file():
        root = _default_root(data_dir) / str(dataset)
        if not (root / "data").is_dir():
            raise FileNotFoundError(f"no Minari dataset {label!r}: {root} does not exist")
        path = root / "data"
    try:
        loaded = minari.MinariDataset(path)
        meta = loaded.storage.metadata.get("pkdose")
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"it was not written by agents.offline.minari_io (format {FORMAT_VERSION}): "
                             f"no 'pkdose' metadata")
        env_id = meta["env_id"]
        if expected_env_id is not None and env_id != expected_env_id:
            raise _EnvMismatch(f"Minari dataset {label!r} holds episodes of {env_id!r}, not of the expected "
                               f"{expected_env_id!r}")
        if loaded.env_spec is None or loaded.env_spec.id != env_id:
            raise ValueError(f"its environment spec does not match its env id {env_id!r}")
        seeds = [m["seed"] for m in loaded.storage.get_episode_metadata(loaded.episode_indices)]
        episodes = list(loaded.iterate_episodes())
        return _assemble(env_id, episodes, seeds, meta)
    except _EnvMismatch as exc:
        raise ValueError(str(exc)) from None
    except (OSError, ValueError, KeyError, IndexError, TypeError, AssertionError, json.JSONDecodeError,
            pa.ArrowException) as exc:
        raise ValueError(f"Minari dataset {label!r} at {path} is corrupted or unreadable: "
                         f"{type(exc).__name__}: {exc}") from None


class _EnvMismatch(Exception):
    pass


def _default_root(data_dir: str | os.PathLike | None) -> Path:
    """``data_dir``, else Minari's root: ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get(DATASETS_PATH_VARIABLE)
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def _assemble(env_id: str, episodes: list, seeds: list, meta: dict) -> LoggedEpisodes:
    """Minari episodes -> padded arrays (the inverse of :func:`_episode_buffer`)."""
    if not episodes:
        raise ValueError("it holds no episodes")
    lengths = np.array([len(ep) for ep in episodes], dtype=np.int64)
    n, horizon = len(episodes), int(lengths.max())
    discrete = bool(meta["discrete"])
    outcome = ["behaviour_prob", "objectives", *meta["step_outcome_keys"]]
    inputs = list(meta["policy_input_keys"])
    first = episodes[0]
    obs_dim = np.asarray(first.observations).shape[1:]
    act_shape = np.asarray(first.actions).shape[1:]
    arrays = {"observations": np.zeros((n, horizon + 1, *obs_dim), np.float32),
              "actions": np.zeros((n, horizon, *act_shape), np.int64 if discrete else np.float32),
              "rewards": np.zeros((n, horizon))}
    infos = {key: np.zeros((n, horizon, *np.asarray(first.infos[key]).shape[1:]),
                           np.asarray(first.infos[key]).dtype) for key in outcome + inputs}
    infos["behaviour_prob"][:] = 1.0
    terminated = np.zeros(n, dtype=bool)
    for i, ep in enumerate(episodes):
        n_steps = lengths[i]
        observations = np.asarray(ep.observations)
        if observations.shape[0] != n_steps + 1 or np.asarray(ep.actions).shape[0] != n_steps:
            raise ValueError(f"episode {ep.id} has {observations.shape[0]} observations and "
                             f"{np.asarray(ep.actions).shape[0]} actions for {n_steps} steps")
        arrays["observations"][i, :n_steps + 1] = observations
        arrays["actions"][i, :n_steps] = ep.actions
        arrays["rewards"][i, :n_steps] = ep.rewards
        terminated[i] = bool(np.asarray(ep.terminations)[-1])
        for key in outcome + inputs:
            values = np.asarray(ep.infos[key])
            if values.shape[0] != n_steps + 1:
                raise ValueError(f"episode {ep.id}: infos[{key!r}] has {values.shape[0]} rows, expected {n_steps + 1}")
            infos[key][i, :n_steps] = values[1:] if key in outcome else values[:-1]
    behaviour_prob, objectives = infos.pop("behaviour_prob"), infos.pop("objectives")
    return LoggedEpisodes(env_id=env_id, observations=arrays["observations"], actions=arrays["actions"],
                          rewards=arrays["rewards"], objectives=objectives.astype(np.float64),
                          behaviour_prob=behaviour_prob.astype(np.float64), lengths=lengths, terminated=terminated,
                          seeds=np.asarray(seeds, dtype=np.int64), infos=infos, discrete=discrete)

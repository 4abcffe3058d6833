"""Baseline dosing policies that see an environment only through the Gymnasium API.

Every policy has one batched interface, as a vector environment gives its data::

    actions = policy(observations, infos)   # observations (N, D), infos a dict of (N, ...) arrays
    policy.reset(num_envs)                  # optional: called before a new batch of episodes

``actions`` is ``(N, *single_action_shape)``: ``(N, 1)`` float32 in [-1, 1] for a single-drug
continuous id, ``(N, 2)`` for the combination, ``(N,)`` integers for ``-Discrete`` ids. Any
callable with this signature (a user's function, :class:`SB3Policy`) works with
:func:`agents.evaluate.evaluate_policy`.

- :class:`StandardDosingPolicy`: the label/guideline dose (single drug, from
  ``info["standard_dose_mg"]``) or the conventional chemotherapy regimen (combination).
- :class:`FixedDosePolicy`: the same action for everyone (``-1`` = no drug, ``1`` = maximum).
- :class:`RandomPolicy`: uniform actions from the action space with its own seeded generator.
- :class:`SB3Policy`: adapter for a Stable-Baselines3 model's ``predict``.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from agents.config import check_env_id, env_family


class Policy(Protocol):
    """``(observations (N, D), infos dict of (N, ...) arrays) -> actions (N, ...)``."""

    def __call__(self, observations: np.ndarray, infos: dict[str, Any]) -> np.ndarray: ...


def reset_policy(policy: Policy, num_envs: int) -> None:
    """Call ``policy.reset(num_envs)`` when the policy defines it (stateful policies)."""
    reset = getattr(policy, "reset", None)
    if callable(reset):
        reset(num_envs)


class StandardDosingPolicy:
    """The clinic's standard: label dose (single drug) or the conventional regimen (combination).

    Uses only the public helpers of the environment class, on one scalar environment made with
    ``gym.make(env_id, **env_kwargs)`` (its PK-VAE is cached by ``pk_envs``, so this is cheap):

    - single-drug ids: ``env.unwrapped.doses_to_action(mg)`` applied to each patient's
      ``info["standard_dose_mg"]`` (mg per interval): the continuous action
      ``2 * mg / dose_max_mg - 1`` or, for ``-Discrete`` ids, the nearest dose level;
    - regimen ids: ``env.unwrapped.doses_to_action(mg, h, draw=False)``: the label dose at the
      label interval (``info["standard_interval_h"]``), no levels;
    - combination ids: ``env.unwrapped.conventional_action(observation)`` per patient:
      paclitaxel 175 mg/m2 + carboplatin AUC 6 mg*min/mL, -20 % after an observed grade-4 nadir.

    Args:
        env_id: a PKDose id, e.g. ``"PKDose/Vancomycin-v0"``; must be the id evaluated (the
            action mapping differs between continuous and discrete ids).
        **env_kwargs: constructor arguments also passed to the evaluated environment
            (e.g. ``discrete=True``).
    """

    def __init__(self, env_id: str, **env_kwargs: Any):
        self.env_id = check_env_id(env_id)
        self._env = gym.make(env_id, **env_kwargs).unwrapped
        family = env_family(env_id)
        self._combination, self._regimen = family == "combination", family == "regimen"

    def __call__(self, observations: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        observations = np.asarray(observations)
        if self._combination:
            rows = [self._env.conventional_action(row) for row in observations]
        else:
            if "standard_dose_mg" not in infos:
                raise ValueError("StandardDosingPolicy needs infos['standard_dose_mg'] (single-drug PKDose ids), "
                                 f"got keys {sorted(k for k in infos if not k.startswith('_'))}")
            doses = np.asarray(infos["standard_dose_mg"], dtype=float)
            if self._regimen:  # the label dose at the label interval, no levels
                intervals = np.asarray(infos["standard_interval_h"], dtype=float)
                rows = [self._env.doses_to_action(mg, tau, draw=False) for mg, tau in zip(doses, intervals)]
            else:
                rows = [self._env.doses_to_action(float(mg)) for mg in doses]
        return np.asarray(rows)

    def __repr__(self) -> str:
        return f"StandardDosingPolicy({self.env_id!r})"


class AdaptiveRulePolicy:
    """The toxicity-adaptive clinical rule of the combination v1 ids: ``env.unwrapped.adaptive_action(observation)``
    per patient (per-drug escalation after mild nadirs, reductions after serious toxicity; see
    :func:`pk_envs.combination_v1_core.adaptive_doses`).

    Args:
        env_id: a PKDose id whose environment has ``adaptive_action`` (``PKDose/PaclitaxelCarboplatin*-v1``).
        **env_kwargs: constructor arguments also passed to the evaluated environment.
    """

    def __init__(self, env_id: str, **env_kwargs: Any):
        self.env_id = check_env_id(env_id)
        self._env = gym.make(env_id, **env_kwargs).unwrapped
        if not hasattr(self._env, "adaptive_action"):
            raise ValueError(f"{env_id!r} has no adaptive clinical rule (adaptive_action); the combination v1 ids do")

    def __call__(self, observations: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        return np.asarray([self._env.adaptive_action(row) for row in np.asarray(observations)])

    def __repr__(self) -> str:
        return f"AdaptiveRulePolicy({self.env_id!r})"


class FixedDosePolicy:
    """The same action for every patient and step (e.g. ``-1``: no drug, ``1``: maximum dose).

    Args:
        action: one environment action: a float or array of the single action shape
            (continuous ids, in [-1, 1]) or an int (discrete ids). It is broadcast to ``(N, ...)``.
    """

    def __init__(self, action: float | np.ndarray):
        self.action = np.asarray(action)
        if self.action.dtype.kind not in "iuf" or not np.all(np.isfinite(self.action)):
            raise ValueError(f"action must be finite numbers, got {action!r}")

    def __call__(self, observations: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        n = len(observations)
        action = self.action.astype(np.float32) if self.action.dtype.kind == "f" else self.action
        if action.ndim == 0 and action.dtype.kind == "f":
            action = action.reshape(1)  # a scalar dose for the (1,) single-drug action
        return np.broadcast_to(action, (n, *action.shape)).copy()

    def __repr__(self) -> str:
        return f"FixedDosePolicy({self.action.tolist()!r})"


class RandomPolicy:
    """Uniform random actions from ``action_space`` with the policy's own seeded generator.

    Deterministic: ``reset`` is not needed; the same seed and call sequence give the same actions.

    Args:
        action_space: the single environment's action space (``envs.single_action_space``).
        seed: seed of the policy's ``np.random.Generator``.
    """

    def __init__(self, action_space: gym.Space, seed: int = 0):
        if not isinstance(action_space, (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete)):
            raise ValueError(f"action_space must be a Box, Discrete or MultiDiscrete space, got {action_space!r}")  # noqa: TRY004 (project convention)
        self.action_space = action_space
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    def __call__(self, observations: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        n = len(observations)
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            return space.start + self.rng.integers(0, space.n, size=n)
        if isinstance(space, gym.spaces.MultiDiscrete):
            return space.start + self.rng.integers(0, space.nvec, size=(n, *space.shape))
        return self.rng.uniform(space.low, space.high, size=(n, *space.shape)).astype(space.dtype)

    def __repr__(self) -> str:
        return f"RandomPolicy({self.action_space!r}, seed={self.seed})"


class SB3Policy:
    """A Stable-Baselines3 model (PPO, SAC, RecurrentPPO, ...) as a batched policy.

    Calls ``model.predict(obs, state, episode_start, deterministic)``; a recurrent model's LSTM
    state is carried between calls and cleared by :meth:`reset` (the evaluator calls it before
    each batch of new patients), so each patient's course starts from a fresh memory.

    Args:
        model: anything with SB3's ``predict(observation, state=None, episode_start=None,
            deterministic=...) -> (actions, state)``.
        deterministic: use the mean / greedy action (evaluation) rather than sampling.
    """

    def __init__(self, model: Any, deterministic: bool = True):
        if not callable(getattr(model, "predict", None)):
            raise ValueError(f"model must have a predict(observation, deterministic=...) method, got {model!r}")  # noqa: TRY004 (project convention)
        self.model = model
        self.deterministic = bool(deterministic)
        self._state: Any = None
        self._episode_start: np.ndarray | None = None

    def reset(self, num_envs: int) -> None:
        """Forget the recurrent state: the next call starts ``num_envs`` new courses."""
        self._state = None
        self._episode_start = np.ones(num_envs, dtype=bool)

    def __call__(self, observations: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        observations = np.asarray(observations)
        if self._episode_start is None or len(self._episode_start) != len(observations):
            self.reset(len(observations))
        actions, self._state = self.model.predict(observations, state=self._state,
                                                  episode_start=self._episode_start,
                                                  deterministic=self.deterministic)
        self._episode_start = np.zeros(len(observations), dtype=bool)
        return np.asarray(actions)

    def __repr__(self) -> str:
        return f"SB3Policy({type(self.model).__name__}, deterministic={self.deterministic})"



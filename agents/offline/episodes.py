"""Logged episodes as padded arrays: the one format the offline tools share.

A batch of ``n`` logged episodes of at most ``T`` steps (a step = one dosing interval or cycle):

| field | shape | meaning |
|---|---|---|
| ``observations`` | ``(n, T + 1, D)`` float32 | observation before each step, plus the last one |
| ``actions`` | ``(n, T, *A)`` float32, or ``(n, T)`` int64 for discrete ids | action taken |
| ``rewards`` | ``(n, T)`` float64 | scalar reward of the step |
| ``objectives`` | ``(n, T, 2)`` float64 | ``[efficacy or response, -toxicity]`` of the step |
| ``behaviour_prob`` | ``(n, T)`` float64 | probability (discrete) or density (continuous, per unit of action) of the taken action under the behaviour policy, > 0 |
| ``lengths`` | ``(n,)`` int64 | steps of each episode, 1 .. T |
| ``terminated`` | ``(n,)`` bool | the episode ended by termination (e.g. a serious toxicity event), not truncation |
| ``seeds`` | ``(n,)`` int64 | the environment seed of each episode (its virtual patient) |

Entries past an episode's length are padding: 0 (and ``behaviour_prob`` 1); ``step_mask``
marks the real steps. ``infos`` holds extra per-step arrays ``(n, T, ...)`` (e.g. the
``standard_dose_mg`` a target policy needs), padded the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: info keys logged with every step: what a policy reads before acting, and what the step produced
POLICY_INPUT_KEYS = {False: ("standard_dose_mg", "covariates", "z"),
                     True: ("covariates", "z_paclitaxel", "z_carboplatin")}
STEP_OUTCOME_KEYS = {False: ("dose_mg", "samples_mg_l", "sample_missing", "exposure", "efficacy", "toxicity", "event"),
                     True: ("paclitaxel_mg_m2", "carboplatin_auc", "paclitaxel_mg", "carboplatin_mg", "dose_limited",
                            "anc_nadir_observed", "neutropenia_grade", "grade4_days", "tumour_size_mm",
                            "tumour_assessed", "recist")}


def info_keys(combination: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(policy-input keys, step-outcome keys)`` logged for single-drug or combination ids."""
    return POLICY_INPUT_KEYS[bool(combination)], STEP_OUTCOME_KEYS[bool(combination)]



@dataclass(frozen=True)
class LoggedEpisodes:
    """``n`` logged episodes of one environment id (see the module table for shapes and units)."""

    env_id: str
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    objectives: np.ndarray
    behaviour_prob: np.ndarray
    lengths: np.ndarray
    terminated: np.ndarray
    seeds: np.ndarray
    infos: dict[str, np.ndarray] = field(default_factory=dict)
    discrete: bool = False

    def __post_init__(self) -> None:
        n = len(self.lengths)
        if n == 0:
            raise ValueError("LoggedEpisodes needs at least one episode, got 0")
        if self.rewards.ndim != 2 or self.rewards.shape[0] != n:
            raise ValueError(f"rewards must be (n_episodes={n}, T), got shape {self.rewards.shape}")
        t = self.rewards.shape[1]
        expected = {"observations": (n, t + 1), "actions": (n, t), "objectives": (n, t, 2),
                    "behaviour_prob": (n, t), "terminated": (n,), "seeds": (n,)}
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got[:len(shape)] != shape:
                raise ValueError(f"{name} must have leading shape {shape}, got {got}")
        for name, value in self.infos.items():
            if value.shape[:2] != (n, t):
                raise ValueError(f"infos[{name!r}] must have leading shape {(n, t)}, got {value.shape}")
        lengths = np.asarray(self.lengths)
        if lengths.dtype.kind not in "iu" or np.any(lengths < 1) or np.any(lengths > t):
            raise ValueError(f"lengths must be integers in [1, {t}], got min {lengths.min()}, max {lengths.max()}")
        prob = self.behaviour_prob[self.step_mask]
        if not np.all(np.isfinite(prob)) or np.any(prob <= 0):
            bad = prob[~np.isfinite(prob) | (prob <= 0)][0]
            raise ValueError(f"behaviour_prob must be finite and > 0 on every logged step, got {bad!r}")
        for name in ("rewards", "objectives"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"{name} contain NaN or inf")

    @property
    def n_episodes(self) -> int:
        return len(self.lengths)

    @property
    def horizon(self) -> int:
        """``T``, the longest episode's number of steps."""
        return self.rewards.shape[1]

    @property
    def step_mask(self) -> np.ndarray:
        """``(n, T)`` bool, True on real (not padded) steps."""
        return np.arange(self.horizon)[None, :] < np.asarray(self.lengths)[:, None]

    def returns(self, gamma: float = 1.0) -> np.ndarray:
        """``(n,)`` discounted return of each episode (``gamma`` in (0, 1])."""
        if not (0 < gamma <= 1):
            raise ValueError(f"gamma must lie in (0, 1], got {gamma!r}")
        discount = gamma ** np.arange(self.horizon)
        return (self.rewards * self.step_mask * discount).sum(axis=1)

    def subset(self, index: np.ndarray) -> LoggedEpisodes:
        """The episodes at ``index`` (e.g. a bootstrap resample or the first k), same padding."""
        index = np.asarray(index)
        return LoggedEpisodes(
            env_id=self.env_id, observations=self.observations[index], actions=self.actions[index],
            rewards=self.rewards[index], objectives=self.objectives[index],
            behaviour_prob=self.behaviour_prob[index], lengths=self.lengths[index],
            terminated=self.terminated[index], seeds=self.seeds[index],
            infos={k: v[index] for k, v in self.infos.items()}, discrete=self.discrete)

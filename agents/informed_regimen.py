"""The informed-regimen policy of the combination: one cycle to learn the patient, then the regimen
that a model of simulated patients predicts best for them.

Cycle 1 is given at a fixed starting level (:data:`START_LEVELS`: paclitaxel 80 % of 175 mg/m2,
carboplatin AUC 7.2, the constant regimen with the lowest serious-adverse-event rate at
conventional response in the oracle's grid). At each decision (before the cycles of
:data:`DECISION_CYCLES` the policy is given: by default before cycle 2, when the clinic has seen the
cycle-1 counts, neuropathy and delays besides covariates, tumour type and features, and before
cycle 3, when it has seen the first tumour assessment) it gives, until the next decision, the one of
the 25 oracle regimens (:func:`agents.combination_study.regimen_levels`) maximising

    P(objective response | regimen, observation) - lambda x P(serious adverse event | regimen, observation),

each probability from its own logistic regression on the standardised observation at that
decision, fitted on simulated training patients (seeds from :data:`FIT_SEED`, disjoint from the
study, validation and distillation cohorts) dosed like this up to the decision and then by each of
the 25 regimens.

Why it is here: it is a transparent, realizable benchmark of what the information in the
observation is worth (no clairvoyance: the models are fitted on other patients, the
patient's own random events are unknown), so an agent's result can be read against it, and the
published goal against the front it traces over ``lambda``. It uses the environment through the
Gymnasium API and its public ``doses_to_action`` / ``observation_names`` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from agents.combination_study import ENV_ID, level_actions, regimen_levels, regimen_rollouts

#: seeds of the training patients the outcome models are fitted on
FIT_SEED = 4_000_000
#: cycle 1 as fractions of paclitaxel 175 mg/m2 and carboplatin AUC 6 mg*min/mL
START_LEVELS = (0.8, 1.2)
#: the cycles before which the policy decides: after cycle 1's counts, after the first tumour
#: assessment (cycle 2) and after the second (cycle 4), the environment assessing every 2 cycles
DECISION_CYCLES = (2, 3, 5)


@dataclass(frozen=True)
class StageOutcomes:
    """Training patients dosed up to a decision, then by every regimen: ``observations`` ``(P, D)`` (at the
    decision), ``response`` and ``serious`` ``(P, R)`` (1 = objective response / any serious adverse
    event over the course), ``levels`` ``(R, 2)``. Patients whose course ended before the decision
    (no regimen can change their outcome) are left out."""

    observations: np.ndarray
    response: np.ndarray
    serious: np.ndarray
    levels: np.ndarray


class OutcomeModels:
    """Per regimen, logistic regressions of response and of any serious adverse event on the standardised
    observation at a decision (L2, ``C`` = inverse strength; an outcome that never varies in training
    is predicted as that constant)."""

    def __init__(self, outcomes: StageOutcomes, C: float = 0.5):
        try:
            from sklearn.linear_model import LogisticRegression
        except ImportError:
            raise ImportError("the informed-regimen policy (and --warm-start) needs scikit-learn: "
                              "pip install -e '.[study]'") from None

        x = np.asarray(outcomes.observations, dtype=float)
        self.mean, self.scale = x.mean(axis=0), np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        self.levels = outcomes.levels
        z = (x - self.mean) / self.scale
        self.models: dict[str, list[Any]] = {}
        for name, y in (("response", outcomes.response), ("serious", outcomes.serious)):
            self.models[name] = [float(y[0, j]) if np.all(y[:, j] == y[0, j])
                                 else LogisticRegression(C=C, max_iter=5000).fit(z, y[:, j]) for j in range(y.shape[1])]

    def predict(self, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(P(response), P(SAE))``, each ``(N, R)``, for ``(N, D)`` observations at the decision."""
        z = (np.atleast_2d(np.asarray(observations, dtype=float)) - self.mean) / self.scale
        return tuple(np.column_stack([np.full(len(z), m) if isinstance(m, float) else m.predict_proba(z)[:, 1]
                                      for m in self.models[name]]) for name in ("response", "serious"))


class InformedRegimenPolicy:
    """Cycle 1 at :data:`START_LEVELS`; before cycle ``DECISION_CYCLES[k]`` (``k = 0 .. len(stages) - 1``) the
    constant regimen with the highest predicted ``response - lam x serious adverse event`` by ``stages[k]``,
    given until the next decision (``lam`` >= 0, per patient, the trade-off of the study's two rates).
    Batched and stateful (``reset(num_envs)``), as :mod:`agents.baselines`."""

    def __init__(self, stages: Sequence[OutcomeModels], lam: float, env_id: str = ENV_ID,
                 env_kwargs: dict | None = None):
        if not np.isfinite(lam) or lam < 0:
            raise ValueError(f"lam must be finite and >= 0, got {lam}")
        if len(stages) > len(DECISION_CYCLES):
            raise ValueError(f"at most {len(DECISION_CYCLES)} stages (decisions before cycles {DECISION_CYCLES}), "
                             f"got {len(stages)}")
        self.stages, self.lam = list(stages), float(lam)
        names = gym.make(env_id, **(env_kwargs or {})).unwrapped.observation_names
        self._cycle = names.index("cycle_fraction")
        self._regimens = level_actions(regimen_levels(), env_kwargs, env_id)
        self._start = level_actions(np.array([START_LEVELS]), env_kwargs, env_id)[0]
        self.reset(0)

    def reset(self, num_envs: int) -> None:
        self._given = np.zeros(num_envs, np.int64)  # cycles dosed in the current episode
        self._choice = np.full(num_envs, -1, np.int64)

    def __call__(self, observations: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        observations = np.asarray(observations)
        if self._given.size != len(observations):
            self.reset(len(observations))
        first = observations[:, self._cycle] <= 0  # a new episode (reset or autoreset)
        self._given[first], self._choice[first] = 0, -1
        for k, models in enumerate(self.stages):
            deciding = self._given == DECISION_CYCLES[k] - 1
            if deciding.any():
                p_response, p_serious = models.predict(observations[deciding])
                self._choice[deciding] = np.argmax(p_response - self.lam * p_serious, axis=1)
        self._given += 1
        return np.where(first[:, None], self._start, self._regimens[np.maximum(self._choice, 0)]).astype(np.float32)


def simulate_stage(n_patients: int, prior: InformedRegimenPolicy | None = None, seed: int = FIT_SEED,
                   env_kwargs: dict | None = None, batch_patients: int = 40, progress: bool = True,
                   env_id: str = ENV_ID) -> StageOutcomes:
    """Patients ``seed + i`` dosed by ``prior`` (``None``: cycle 1 at :data:`START_LEVELS`) up to its next
    decision (before cycle ``DECISION_CYCLES[len(prior.stages)]``), then by each constant regimen (the
    same seed under every regimen: the same patient and random events)."""
    if n_patients < 50:
        raise ValueError(f"n_patients must be >= 50 to fit 50 outcome models, got {n_patients}")
    prior = prior if prior is not None else InformedRegimenPolicy([], 0.0, env_id, env_kwargs)
    if len(prior.stages) >= len(DECISION_CYCLES):
        raise ValueError(f"the prior already makes all {len(DECISION_CYCLES)} decisions")
    given_before = DECISION_CYCLES[len(prior.stages)] - 1  # cycles the prior doses before this decision
    levels = regimen_levels()
    regimen_actions = level_actions(levels, env_kwargs, env_id)
    envs = gym.make_vec(env_id, num_envs=batch_patients * len(levels), vectorization_mode="vector_entry_point",
                        **(env_kwargs or {}))
    observations, response, serious = [], [], []
    try:
        for first in tqdm(range(0, n_patients, batch_patients), disable=not progress,
                          desc=f"informed regimen, decision before cycle {given_before + 1}"):
            seeds = [seed + min(first + i, n_patients - 1) for i in range(batch_patients)]
            rollouts = regimen_rollouts(envs, seeds, regimen_actions, prior, given_before)
            keep = (np.arange(batch_patients) < n_patients - first) & rollouts["open_at_decision"]
            observations.append(rollouts["at_decision"][keep])
            response.append(rollouts["objective_response"][keep])
            serious.append(rollouts["serious_adverse_event"][keep])
    finally:
        envs.close()
    return StageOutcomes(np.concatenate(observations), np.concatenate(response).astype(float),
                         np.concatenate(serious).astype(float), levels)


def fit_informed_regimens(lams: Sequence[float], n_stages: int = 2, n_patients: int = 5000, seed: int = FIT_SEED,
                          env_kwargs: dict | None = None, progress: bool = True, env_id: str = ENV_ID,
                          C: float = 0.5) -> dict[float, InformedRegimenPolicy]:
    """Per trade-off ``lam``, the policy with ``n_stages`` decisions (before the first ``n_stages`` of
    :data:`DECISION_CYCLES`).
    Each stage's models are fitted on ``n_patients`` training patients dosed by the stages before it:
    the first stage's (cycle 1 is fixed) are shared by every ``lam``, later ones are ``lam``'s own."""
    if not 1 <= n_stages <= len(DECISION_CYCLES):
        raise ValueError(f"n_stages must be in 1..{len(DECISION_CYCLES)}, got {n_stages}")
    first = OutcomeModels(simulate_stage(n_patients, None, seed, env_kwargs, progress=progress, env_id=env_id), C)
    policies = {}
    for lam in lams:
        policy = InformedRegimenPolicy([first], lam, env_id, env_kwargs)
        for _ in range(n_stages - 1):
            outcomes = simulate_stage(n_patients, policy, seed, env_kwargs, progress=progress, env_id=env_id)
            policy = InformedRegimenPolicy([*policy.stages, OutcomeModels(outcomes, C)], lam, env_id, env_kwargs)
        policies[float(lam)] = policy
    return policies

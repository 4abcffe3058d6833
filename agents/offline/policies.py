"""Stochastic dosing policies with exact action probabilities, for logging and off-policy evaluation.

Every policy here has the batched interface of :mod:`agents.baselines` plus what OPE needs:

    actions = policy(observations, infos)                  # samples with the policy's own seeded generator
    actions = policy.sample(observations, infos, rng)      # with a given np.random.Generator
    p = policy.action_prob(observations, infos, actions)   # (N,) probability / density of given actions
    P = policy.probabilities(observations, infos)          # discrete ids: (N, n_actions), rows sum to 1
    actions = policy.sample_from_uniforms(observations, infos, u)   # u: (N, policy.n_uniforms) in [0, 1)

``action_prob`` is a probability for discrete ids and a density per unit of action, with respect to
the environment's action coordinates (``Box(-1, 1)``), for continuous ids: a truncated normal on
the action bounds (``scipy.stats.truncnorm``, exact, never a clipped point mass). Sampling is by
inversion of ``n_uniforms`` uniforms per row, so :func:`agents.offline.collect.collect_episodes`
can give each episode its own random stream (results independent of the batch size).

- :class:`ClinicianPolicy`: a behaviour policy that looks like clinical practice (rule below).
- :class:`GaussianPerturbedPolicy`: truncated normal around any deterministic policy's action.
- :class:`SoftDiscretePolicy`: epsilon-soft version of any deterministic discrete policy.
- :class:`UniformRandomPolicy`: uniform over the action space.

Clinician rule (:class:`ClinicianPolicy`), in dose fractions ``u`` of the action maximum (see
:mod:`agents.offline.env_facts`); ``s`` = the standard dose (StandardDosingPolicy: the label dose
``info["standard_dose_mg"]``, or paclitaxel 175 mg/m2 + carboplatin AUC 6 for the combination):

- single drug, first interval: the standard dose ``s``;
- single drug, later intervals: the clinician reads the last interval's assays (observation,
  divided by the drug's concentration scale), estimates the target exposure from them (trough
  target: the trough sample; AUC or average-concentration targets: linear-up / log-down
  trapezoids over the samples with the trough also taken as the pre-dose level, as a clinic does
  by hand) and compares it with the target window. Below it, with probability ``act_prob`` the
  dose rises by ``step_fraction * s``, else it stays at the last dose; above it, likewise down
  (not below 0); inside it, or with a needed sample missing, the last dose is kept;
- combination: the conventional regimen of the observation (``conventional_action``: the last
  dose level, -20 % after an observed grade 4 nadir). After an observed grade 3 nadir (0.5-1.0
  x10^9/L), with probability ``act_prob`` both drugs drop by ``step_fraction`` of their standard
  dose (not below 60 %); with a nadir >= 1.5 x10^9/L (grade <= 1) and no tumour shrinkage of 10 %
  or more at the last assessment (SLD ratio >= 0.9, also before the first assessment), with
  probability ``act_prob`` both rise by that step (not above 120 %);
- dose noise: the chosen mean ``m`` gets a truncated normal with SD ``noise_cv * s`` (per drug,
  at least 0.01 of the maximum) on the action bounds (continuous ids), or, on discrete ids,
  probabilities ``softmax(-(level - m)^2 / (2 w^2))`` over each drug's levels, ``w`` = that SD
  but at least half the smallest level spacing, multiplied over drugs and mixed with
  ``epsilon / n_actions`` so that every action has probability > 0.

Defaults: ``act_prob = 0.7``, ``step_fraction = 0.2``, ``noise_cv = 0.1``, ``epsilon = 0.02``. The
rule is a deterministic function of (observation, info); only the action is random, so the
probabilities are exact (a two-component mixture: act / do not act).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import gymnasium as gym
import numpy as np

from agents.baselines import Policy, StandardDosingPolicy
from agents.offline.distributions import (
    continuous_actions,
    discrete_prob,
    sample_discrete,
    truncnorm_mixture_density,
    truncnorm_mixture_sample,
)
from agents.offline.env_facts import EnvFacts, env_facts

MIN_SIGMA_U = 0.01        # floor of the clinician's dose-noise SD, fraction of the action maximum
GRADE3_NADIR_E9_L = (0.5, 1.0)
WELL_TOLERATED_NADIR_E9_L = 1.5
NO_RESPONSE_SLD_RATIO = 0.9
LOWEST_LEVEL, HIGHEST_LEVEL = 0.6, 1.2  # combination: fractions of the standard dose the clinician stays within


class StochasticPolicy(ABC):
    """A policy with exact action probabilities; subclasses give ``action_prob`` and ``sample_from_uniforms``."""

    discrete: bool
    n_uniforms: int

    def __init__(self, seed: int = 0):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    def __call__(self, observations: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        return self.sample(observations, infos, self.rng)

    def sample(self, observations: np.ndarray, infos: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        """Actions drawn with ``rng`` (same generator state, same actions)."""
        return self.sample_from_uniforms(observations, infos, rng.random((len(observations), self.n_uniforms)))

    @abstractmethod
    def sample_from_uniforms(self, observations: np.ndarray, infos: dict[str, Any],
                             uniforms: np.ndarray) -> np.ndarray:
        """Actions by inversion of ``uniforms`` ``(N, n_uniforms)`` in [0, 1)."""

    @abstractmethod
    def action_prob(self, observations: np.ndarray, infos: dict[str, Any], actions: np.ndarray) -> np.ndarray:
        """``(N,)`` probability (discrete) or density per unit action (continuous) of ``actions``."""

    def probabilities(self, observations: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        """Discrete ids: ``(N, n_actions)`` action probabilities."""
        raise ValueError(f"{self!r} is a continuous policy; it has densities (action_prob), not probabilities")

    def _check_uniforms(self, observations: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        uniforms = np.asarray(uniforms, dtype=float)
        if uniforms.shape != (len(observations), self.n_uniforms):
            raise ValueError(f"uniforms must have shape {(len(observations), self.n_uniforms)}, got {uniforms.shape}")
        return uniforms


# ---------------------------------------------------------------------------- clinician


class ClinicianPolicy(StochasticPolicy):
    """Standard dosing with the adjustments and dose noise of real clinicians (rule in the module doc).

    Args:
        env_id: a PKDose id (single drug or combination, continuous or discrete).
        seed: seed of the policy's own generator (used by ``__call__``).
        act_prob: probability that the clinician acts on an out-of-window (or toxicity / no-response)
            result, in (0, 1].
        step_fraction: one adjustment step, as a fraction of the standard dose, in (0, 1].
        noise_cv: SD of the dose noise as a fraction of the standard dose, > 0.
        epsilon: discrete ids: uniform mixing weight in (0, 1) (every action keeps probability > 0).
        env_kwargs: constructor arguments of the environment (as given to the logger).
    """

    def __init__(self, env_id: str, seed: int = 0, act_prob: float = 0.7, step_fraction: float = 0.2,
                 noise_cv: float = 0.1, epsilon: float = 0.02, env_kwargs: dict | None = None):
        super().__init__(seed)
        for name, value, ok in (("act_prob", act_prob, 0 < act_prob <= 1),
                                ("step_fraction", step_fraction, 0 < step_fraction <= 1),
                                ("noise_cv", noise_cv, 0 < noise_cv < 10), ("epsilon", epsilon, 0 < epsilon < 1)):
            if not (np.isfinite(value) and ok):
                raise ValueError(f"{name} has to lie in its range (act_prob (0, 1], step_fraction (0, 1], "
                                 f"noise_cv (0, 10), epsilon (0, 1)), got {value!r}")
        self.env_id = env_id
        self.facts: EnvFacts = env_facts(env_id, env_kwargs)
        self.act_prob, self.step_fraction, self.noise_cv, self.epsilon = act_prob, step_fraction, noise_cv, epsilon
        self.standard = StandardDosingPolicy(env_id, **(env_kwargs or {}))
        self.discrete = self.facts.discrete
        self.n_uniforms = 1 if self.discrete else 1 + self.facts.action_dim

    def __repr__(self) -> str:
        return (f"ClinicianPolicy({self.env_id!r}, seed={self.seed}, act_prob={self.act_prob}, "
                f"step_fraction={self.step_fraction}, noise_cv={self.noise_cv}, epsilon={self.epsilon})")

    # the rule -----------------------------------------------------------------
    def _to_u(self, actions: np.ndarray) -> np.ndarray:
        """Environment actions -> ``(N, A)`` dose fractions."""
        f = self.facts
        actions = np.asarray(actions)
        if not self.discrete:
            return (actions.reshape(len(actions), f.action_dim).astype(float) + 1.0) / 2.0
        index = np.unravel_index(actions.astype(np.int64).reshape(-1), [len(v) for v in f.levels_u])
        return np.stack([np.asarray(levels)[i] for levels, i in zip(f.levels_u, index)], axis=1)

    def components(self, observations: np.ndarray, infos: dict[str, Any]) -> tuple[np.ndarray, ...]:
        """The rule: ``weights (N, 2)`` (act, keep), ``means (N, 2, A)`` and ``sigma (N, A)`` in dose fractions."""
        obs = np.atleast_2d(np.asarray(observations, dtype=float))
        f = self.facts
        if obs.shape[1] <= max(f.obs_index.values()):
            raise ValueError(f"observations of {self.env_id} have at least {max(f.obs_index.values()) + 1} "
                             f"entries, got shape {obs.shape}")
        keep = self._standard_u(obs, infos)  # standard dose (single drug) / conventional regimen
        standard_u = keep.copy()
        if f.combination:
            standard_u[:] = f.standard_u
            act = self._combination_adjustment(obs, keep, standard_u)
        else:
            started = obs[:, f.obs_index["time_fraction"]] > 0
            keep = np.where(started[:, None], obs[:, [f.obs_index["last_dose"]]], standard_u)
            direction = np.where(started, self._single_drug_direction(obs), 0.0)
            act = np.clip(keep + direction[:, None] * self.step_fraction * standard_u, 0.0, 1.0)
        weights = np.stack([np.full(len(obs), self.act_prob), np.full(len(obs), 1.0 - self.act_prob)], axis=1)
        sigma = np.maximum(self.noise_cv * standard_u, MIN_SIGMA_U)
        return weights, np.stack([act, keep], axis=1), sigma

    def _standard_u(self, obs: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        """StandardDosingPolicy's dose as fractions, computed once per distinct (observation, label dose):
        OPE evaluates many actions at one state, and that policy works row by row."""
        key = obs if self.facts.combination else \
            np.column_stack([obs, np.asarray(infos.get("standard_dose_mg", np.zeros(len(obs))), dtype=float)])
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        picked = {k: np.asarray(v)[first] for k, v in infos.items() if not k.startswith("_")}
        return self._to_u(self.standard(obs[first], picked))[inverse.reshape(-1)]

    def _single_drug_direction(self, obs: np.ndarray) -> np.ndarray:
        """+1 below the window, -1 above, 0 inside or unknown, from the last interval's assays."""
        f = self.facts
        m = len(f.monitor_h)
        samples = obs[:, f.obs_index["samples"]:f.obs_index["samples"] + m] * f.conc_scale_mg_l
        missing = obs[:, f.obs_index["missing"]:f.obs_index["missing"] + m] > 0.5
        times = np.asarray(f.monitor_h)
        trough = samples[:, int(np.argmax(times))]
        if f.target_metric == "trough":
            level, known = trough, ~missing[:, int(np.argmax(times))]
        elif f.target_metric == "peak":
            level, known = samples.max(axis=1), ~missing.any(axis=1)
        else:  # AUC / average-concentration targets: trapezoids from the trough (pre-dose) through the samples
            t = np.concatenate([[0.0], times, [f.interval_h]])
            c = np.concatenate([trough[:, None], samples, samples[:, -1:]], axis=1)
            c0, c1, dt = c[:, :-1], c[:, 1:], np.diff(t)[None, :]
            falling = (c1 < c0) & (c1 > 0)
            ratio = np.log(np.where(falling, c0 / np.where(falling, c1, 1.0), 2.0))
            log_down = (c0 - c1) * dt / ratio
            auc = np.sum(np.where(falling, log_down, 0.5 * (c0 + c1) * dt), axis=1)
            cavg = auc / f.interval_h
            level = cavg * {"auc24": 24.0, "auc_interval": f.interval_h}.get(f.target_metric, 1.0)
            known = ~missing.any(axis=1)
        direction = np.where(level < f.target_low, 1.0, np.where(level > f.target_high, -1.0, 0.0))
        return np.where(known, direction, 0.0)

    def _combination_adjustment(self, obs: np.ndarray, keep: np.ndarray, standard_u: np.ndarray) -> np.ndarray:
        """The acted-on doses: one step down after grade 3, up when well tolerated without response."""
        index = self.facts.obs_index
        nadir = obs[:, index["anc_nadir_last_cycle"]]
        started = obs[:, index["cycle_fraction"]] > 0
        grade3 = started & (nadir >= GRADE3_NADIR_E9_L[0]) & (nadir < GRADE3_NADIR_E9_L[1])
        escalate = started & (nadir >= WELL_TOLERATED_NADIR_E9_L) & \
            (obs[:, index["sld_last_assessed_rel"]] >= NO_RESPONSE_SLD_RATIO)
        direction = np.where(grade3, -1.0, np.where(escalate, 1.0, 0.0))[:, None]
        moved = keep + direction * self.step_fraction * standard_u
        bounded = np.clip(moved, LOWEST_LEVEL * standard_u, HIGHEST_LEVEL * standard_u)
        return np.where(direction != 0, np.clip(bounded, 0.0, 1.0), keep)

    # distributions --------------------------------------------------------------
    def probabilities(self, observations: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        if not self.discrete:
            return super().probabilities(observations, infos)
        weights, means, sigma = self.components(observations, infos)
        per_component = None
        for d, levels in enumerate(self.facts.levels_u):
            levels = np.asarray(levels)
            width = np.maximum(sigma[:, None, d:d + 1], 0.5 * np.min(np.diff(levels)))
            logits = -((levels[None, None, :] - means[:, :, d:d + 1]) ** 2) / (2.0 * width ** 2)
            p = np.exp(logits - logits.max(axis=2, keepdims=True))
            p /= p.sum(axis=2, keepdims=True)
            per_component = p if per_component is None else \
                (per_component[:, :, :, None] * p[:, :, None, :]).reshape(len(p), p.shape[1], -1)
        mixed = np.sum(weights[:, :, None] * per_component, axis=1)
        return (1.0 - self.epsilon) * mixed + self.epsilon / mixed.shape[1]

    def action_prob(self, observations: np.ndarray, infos: dict[str, Any], actions: np.ndarray) -> np.ndarray:
        if self.discrete:
            return discrete_prob(self.probabilities(observations, infos), actions)
        weights, means, sigma = self.components(observations, infos)
        a = continuous_actions(actions, len(weights), self.facts.action_dim)
        ones = np.ones(self.facts.action_dim)
        return truncnorm_mixture_density(a, weights, 2.0 * means - 1.0,
                                         np.broadcast_to(2.0 * sigma[:, None, :], means.shape), -ones, ones)

    def sample_from_uniforms(self, observations, infos, uniforms) -> np.ndarray:
        uniforms = self._check_uniforms(observations, uniforms)
        if self.discrete:
            return sample_discrete(uniforms, self.probabilities(observations, infos))
        weights, means, sigma = self.components(observations, infos)
        ones = np.ones(self.facts.action_dim)
        return truncnorm_mixture_sample(uniforms, weights, 2.0 * means - 1.0,
                                        np.broadcast_to(2.0 * sigma[:, None, :], means.shape), -ones,
                                        ones).astype(np.float32)


# ---------------------------------------------------------------------------- target-policy wrappers


class GaussianPerturbedPolicy(StochasticPolicy):
    """Truncated normal around a deterministic policy's action: ``a ~ TN(base(obs), sigma^2)`` on the bounds.

    Args:
        base: a deterministic continuous policy, ``(observations, infos) -> actions (N, A)``, e.g.
            :class:`agents.baselines.StandardDosingPolicy` or ``SB3Policy(model, deterministic=True)``.
        sigma: SD in action units (> 0), the same for every dimension.
        action_space: the single environment's ``Box`` (``envs.single_action_space``): its bounds
            truncate the normal and its shape gives ``A``.
        seed: seed of the policy's own generator.
    """

    discrete = False

    def __init__(self, base: Policy, sigma: float, action_space: gym.spaces.Box, seed: int = 0):
        super().__init__(seed)
        if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
            raise ValueError(f"action_space must be a 1-D Box, got {action_space!r}")
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a finite number > 0 (action units), got {sigma!r}")
        self.base, self.sigma = base, float(sigma)
        self.low, self.high = action_space.low.astype(float), action_space.high.astype(float)
        self.dim = action_space.shape[0]
        self.n_uniforms = 1 + self.dim

    def __repr__(self) -> str:
        return f"GaussianPerturbedPolicy({self.base!r}, sigma={self.sigma})"

    def _params(self, observations, infos) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        centre = continuous_actions(self.base(observations, infos), len(observations), self.dim)
        if not np.all(np.isfinite(centre)):
            raise ValueError(f"base policy {self.base!r} returned non-finite actions")
        loc = np.clip(centre, self.low, self.high)[:, None, :]
        return np.ones((len(loc), 1)), loc, np.full(loc.shape, self.sigma)

    def action_prob(self, observations, infos, actions) -> np.ndarray:
        weights, loc, scale = self._params(observations, infos)
        return truncnorm_mixture_density(continuous_actions(actions, len(loc), self.dim), weights, loc, scale,
                                         self.low, self.high)

    def sample_from_uniforms(self, observations, infos, uniforms) -> np.ndarray:
        uniforms = self._check_uniforms(observations, uniforms)
        return truncnorm_mixture_sample(uniforms, *self._params(observations, infos), self.low,
                                        self.high).astype(np.float32)


class SoftDiscretePolicy(StochasticPolicy):
    """Epsilon-soft deterministic discrete policy: ``P(a) = (1 - epsilon) [a = base(obs)] + epsilon / n``.

    Args:
        base: a deterministic discrete policy returning ``(N,)`` integer actions.
        epsilon: weight of the uniform mixture, in (0, 1].
        action_space: the single environment's ``Discrete(n)`` space.
        seed: seed of the policy's own generator.
    """

    discrete = True
    n_uniforms = 1

    def __init__(self, base: Policy, epsilon: float, action_space: gym.spaces.Discrete, seed: int = 0):
        super().__init__(seed)
        if not isinstance(action_space, gym.spaces.Discrete) or action_space.start != 0:
            raise ValueError(f"action_space must be Discrete(n) starting at 0, got {action_space!r}")
        if not (np.isfinite(epsilon) and 0 < epsilon <= 1):
            raise ValueError(f"epsilon must lie in (0, 1], got {epsilon!r}")
        self.base, self.epsilon, self.n_actions = base, float(epsilon), int(action_space.n)

    def __repr__(self) -> str:
        return f"SoftDiscretePolicy({self.base!r}, epsilon={self.epsilon})"

    def probabilities(self, observations, infos) -> np.ndarray:
        greedy = np.asarray(self.base(observations, infos)).reshape(-1)
        if greedy.size != len(observations) or greedy.dtype.kind not in "iu" or \
                np.any((greedy < 0) | (greedy >= self.n_actions)):
            raise ValueError(f"base policy {self.base!r} must return {len(observations)} integer actions in "
                             f"[0, {self.n_actions - 1}], got {greedy!r}")
        p = np.full((len(greedy), self.n_actions), self.epsilon / self.n_actions)
        p[np.arange(len(greedy)), greedy] += 1.0 - self.epsilon
        return p

    def action_prob(self, observations, infos, actions) -> np.ndarray:
        return discrete_prob(self.probabilities(observations, infos), actions)

    def sample_from_uniforms(self, observations, infos, uniforms) -> np.ndarray:
        uniforms = self._check_uniforms(observations, uniforms)
        return sample_discrete(uniforms, self.probabilities(observations, infos))


class UniformRandomPolicy(StochasticPolicy):
    """Uniform actions on a bounded ``Box`` (density ``1 / volume``) or a ``Discrete(n)`` (``1 / n``)."""

    def __init__(self, action_space: gym.Space, seed: int = 0):
        super().__init__(seed)
        if isinstance(action_space, gym.spaces.Discrete) and action_space.start == 0:
            self.discrete, self.n_uniforms, self.n_actions = True, 1, int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box) and action_space.is_bounded("both") and \
                len(action_space.shape) == 1:
            self.discrete, self.n_uniforms = False, action_space.shape[0]
            self.low, self.high = action_space.low.astype(float), action_space.high.astype(float)
        else:
            raise ValueError(f"action_space must be Discrete(n) from 0 or a bounded 1-D Box, got {action_space!r}")
        self.action_space = action_space

    def __repr__(self) -> str:
        return f"UniformRandomPolicy({self.action_space!r}, seed={self.seed})"

    def probabilities(self, observations, infos) -> np.ndarray:
        if not self.discrete:
            return super().probabilities(observations, infos)
        return np.full((len(observations), self.n_actions), 1.0 / self.n_actions)

    def action_prob(self, observations, infos, actions) -> np.ndarray:
        if self.discrete:
            return discrete_prob(self.probabilities(observations, infos), actions)
        a = continuous_actions(actions, len(observations), len(self.low))
        inside = np.all((a >= self.low) & (a <= self.high), axis=1)
        return np.where(inside, 1.0 / np.prod(self.high - self.low), 0.0)

    def sample_from_uniforms(self, observations, infos, uniforms) -> np.ndarray:
        uniforms = self._check_uniforms(observations, uniforms)
        if self.discrete:
            return np.minimum((uniforms[:, 0] * self.n_actions).astype(np.int64), self.n_actions - 1)
        return (self.low + uniforms * (self.high - self.low)).astype(np.float32)


# ---------------------------------------------------------------------------- by name

#: Behaviour policies the logging command knows, by name.
POLICY_NAMES = ("clinician", "standard-perturbed", "uniform")
#: Spread of "standard-perturbed": SD in action units (continuous) or epsilon (discrete).
STANDARD_PERTURBATION = 0.1


def make_policy(name: str, env_id: str, seed: int = 0, env_kwargs: dict | None = None) -> StochasticPolicy:
    """A behaviour policy by name (:data:`POLICY_NAMES`).

    ``clinician``: :class:`ClinicianPolicy` with its defaults; ``standard-perturbed``: the standard
    dose with a truncated normal of SD 0.1 (continuous) or epsilon 0.1 (discrete);
    ``uniform``: :class:`UniformRandomPolicy`.
    """
    if name not in POLICY_NAMES:
        raise ValueError(f"unknown policy {name!r}; known policies: {', '.join(POLICY_NAMES)}")
    if name == "clinician":
        return ClinicianPolicy(env_id, seed=seed, env_kwargs=env_kwargs)
    env = gym.make(env_id, **(env_kwargs or {}))
    space = env.action_space
    env.close()
    if name == "uniform":
        return UniformRandomPolicy(space, seed=seed)
    standard = StandardDosingPolicy(env_id, **(env_kwargs or {}))
    if isinstance(space, gym.spaces.Discrete):
        return SoftDiscretePolicy(standard, STANDARD_PERTURBATION, space, seed=seed)
    return GaussianPerturbedPolicy(standard, STANDARD_PERTURBATION, space, seed=seed)

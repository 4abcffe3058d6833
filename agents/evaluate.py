"""Evaluate a dosing policy on a fixed, seeded cohort of virtual patients (Gymnasium API only).

``evaluate_policy(env_id, policy, n_patients, seed)`` runs patient ``i`` (``i = 0 .. n-1``)
exactly once, as the sub-environment seeded ``seed + i`` (the seed ``SyncVectorEnv`` and the
native vector env give sub-environment ``i`` of ``reset(seed=seed)``), in batches of
``num_envs`` through ``gym.make_vec(env_id, vectorization_mode="vector_entry_point")``. Each
batch is reset with explicit seeds and stepped until every patient's first episode has ended;
steps after that (the ``NEXT_STEP`` autoreset and later episodes) are ignored. So a seed fixes
the held-out cohort, and two policies evaluated with the same seed see the same patients.

Per-patient figures (all from ``info`` and the rewards; no simulator internals):

| key | meaning | from |
|---|---|---|
| ``return`` | sum of scalar rewards (absent for ``-MO`` ids) | reward |
| ``return_<objective>`` | sum of each objective: ``efficacy`` / ``response`` and ``neg_toxicity`` | ``info["objectives"]`` |
| ``steps`` | intervals (cycles) given | |
| single drug: ``in_window_fraction`` | fraction of intervals whose true exposure lies in the target window ``[target.low, target.high]`` (where efficacy >= 0.5, see SingleDrugEnv); regimen ids: fraction of treatment hours, each interval weighted by its length | ``info["exposure"]``, ``info["interval_h"]`` |
| regimen ids: ``levels_drawn`` | drug levels drawn over the course | ``info["level_drawn"]`` |
| single drug: ``toxic_exposure`` | 1 if any interval's true exposure exceeded the drug's toxic threshold (``env.target.toxic_above``: the window's upper end for vancomycin, phenytoin, mycophenolate, theophylline; 188 mg/L trough for pembrolizumab) or a serious event occurred | ``info["exposure"]``, ``info["event"]`` |
| single drug: ``serious_event`` | 1 if a serious toxicity event ended the course (vancomycin AKI, phenytoin/theophylline peak > 40 mg/L) | ``info["event"]`` |
| single drug: ``cumulative_dose_mg`` | total dose, mg | ``info["dose_mg"]`` |
| combination: ``objective_response`` | 1 if the best RECIST response was CR or PR (codes 0, 1) | ``info["best_response"]`` |
| combination: ``progression`` | 1 if RECIST progressive disease ended the course (code 3) | ``info["recist"]`` |
| combination: ``grade4_neutropenia`` | 1 if any cycle had grade-4 neutropenia | ``info["grade4_events"]`` |
| combination v1: ``serious_adverse_event`` | 1 if any cycle had grade-4 neutropenia, febrile neutropenia, grade-4 thrombocytopenia or severe neuropathy | ``info["any_serious_adverse_event"]`` |
| combination v1: ``tumour_type`` | the patient's tumour type code (for per-type tables, not a figure) | ``info["tumour_type"]`` |
| combination: ``cumulative_paclitaxel_mg_m2``, ``cumulative_carboplatin_auc`` | total dose, mg/m2 and mg*min/mL | ``info`` |
| combination: ``cycles_after_response``, ``paclitaxel_after_response_mg_m2``, ``carboplatin_after_response_auc`` | cycles given after the assessment that found the first CR/PR, and their total doses (what a policy does once the response endpoint is reached) | ``info`` |

Each figure's mean over patients comes with a 95 % percentile-bootstrap interval over patients
(``n_bootstrap`` resamples, fixed ``bootstrap_seed``; one resample of patients for all figures).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from agents.baselines import Policy, check_env_id, reset_policy

OBJECTIVE_RESPONSE_CODES = (0, 1)  # RECIST CR, PR
PROGRESSION_CODE = 3


@dataclass(frozen=True)
class Estimate:
    """A mean over patients with its 95 % bootstrap confidence interval (same units as the figure)."""

    mean: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.mean:.3g} [{self.low:.3g}, {self.high:.3g}]"


@dataclass
class EvaluationResult:
    """Outcome of :func:`evaluate_policy`: per-patient arrays and their mean estimates.

    Attributes:
        env_id: the evaluated id.
        policy_name: ``repr``/name of the policy.
        n_patients: cohort size; patients are the sub-environments seeded ``seed .. seed + n - 1``.
        seed: the cohort's first seed.
        per_patient: figure name -> ``(n_patients,)`` float array (units in the module table).
        metrics: figure name -> :class:`Estimate` (mean and 95 % bootstrap CI over patients).
    """

    env_id: str
    policy_name: str
    n_patients: int
    seed: int
    per_patient: dict[str, np.ndarray]
    metrics: dict[str, Estimate] = field(default_factory=dict)

    def to_markdown_rows(self, keys: list[str] | None = None, digits: int = 3) -> list[str]:
        """Markdown table rows ``| policy | env | key1 | key2 ... |`` with ``mean [low, high]`` cells.

        Use with :func:`markdown_header` (same ``keys``) to build a table of several results.
        """
        keys = list(self.metrics) if keys is None else keys
        unknown = [k for k in keys if k not in self.metrics]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; available: {sorted(self.metrics)}")
        cells = [f"{self.metrics[k].mean:.{digits}g} [{self.metrics[k].low:.{digits}g}, "
                 f"{self.metrics[k].high:.{digits}g}]" for k in keys]
        return [f"| {self.policy_name} | {self.env_id} | " + " | ".join(cells) + " |"]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (per-patient arrays as lists); :meth:`from_json` reads it back."""
        return {"env_id": self.env_id, "policy_name": self.policy_name, "n_patients": self.n_patients,
                "seed": self.seed, "per_patient": {k: np.asarray(v, float).tolist() for k, v in self.per_patient.items()},
                "metrics": {k: [e.mean, e.low, e.high] for k, e in self.metrics.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvaluationResult:
        try:
            per_patient = {k: np.asarray(v, dtype=float) for k, v in data["per_patient"].items()}
            metrics = {k: Estimate(*map(float, v)) for k, v in data["metrics"].items()}
            return cls(str(data["env_id"]), str(data["policy_name"]), int(data["n_patients"]), int(data["seed"]),
                       per_patient, metrics)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not an evaluation result: {err!r}") from None


def markdown_header(keys: list[str]) -> list[str]:
    """The two header lines of a table whose rows come from :meth:`EvaluationResult.to_markdown_rows`."""
    return ["| policy | environment | " + " | ".join(keys) + " |",
            "|---|---|" + "---:|" * len(keys)]


def bootstrap_ci(values: dict[str, np.ndarray], n_bootstrap: int = 2000, seed: int = 0,
                 level: float = 0.95) -> dict[str, Estimate]:
    """Percentile-bootstrap CIs of the mean of each ``(n,)`` array, one shared resample of patients."""
    n = len(next(iter(values.values())))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_bootstrap, n))
    tail = (1.0 - level) / 2.0 * 100.0
    out = {}
    for key, v in values.items():
        means = v[idx].mean(axis=1)
        low, high = np.percentile(means, [tail, 100.0 - tail])
        out[key] = Estimate(float(v.mean()), float(low), float(high))
    return out


def evaluate_policy(env_id: str, policy: Policy | Callable[[np.ndarray, dict], np.ndarray],
                    n_patients: int = 1000, seed: int = 0, num_envs: int = 250, *,
                    n_bootstrap: int = 2000, bootstrap_seed: int = 0, env_kwargs: dict | None = None,
                    policy_name: str | None = None, progress: bool = False) -> EvaluationResult:
    """Run ``n_patients`` seeded virtual patients once each under ``policy``; metrics with 95 % CIs.

    Args:
        env_id: a PKDose id (``pk_envs.ALL_IDS``), e.g. ``"PKDose/Vancomycin-v0"``.
        policy: ``(observations (N, D), infos) -> actions (N, ...)``; ``policy.reset(N)`` is
            called before each batch when defined.
        n_patients: cohort size (>= 1); patient ``i`` is seeded ``seed + i``.
        seed: first seed of the cohort (int >= 0).
        num_envs: batch size of the vector env (>= 1; capped at ``n_patients``). Results do not
            depend on it for stateless numpy policies (the envs are batch-invariant); a neural
            policy's actions can differ in the last bits between batch sizes (BLAS kernels), so
            compare neural policies at the same ``num_envs``.
        n_bootstrap: bootstrap resamples for the CIs (>= 100).
        bootstrap_seed: seed of the bootstrap resampling.
        env_kwargs: extra constructor arguments for ``gym.make_vec`` (e.g. ``{"iiv_scale": 0.5}``).
        policy_name: label for tables (default ``repr(policy)``).
        progress: a progress bar over the batches of patients.

    Raises:
        ValueError: unknown id, bad sizes or seeds, actions of the wrong shape.
    """
    check_env_id(env_id)
    for name, value, low in (("n_patients", n_patients, 1), ("seed", seed, 0), ("num_envs", num_envs, 1),
                             ("n_bootstrap", n_bootstrap, 100)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if not callable(policy):
        raise ValueError(f"policy must be callable (observations, infos) -> actions, got {policy!r}")  # noqa: TRY004 (project convention)
    n_envs = int(min(num_envs, n_patients))
    envs = gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="vector_entry_point", **(env_kwargs or {}))
    try:
        starts = tqdm(range(0, n_patients, n_envs), desc=f"evaluating {policy_name or 'policy'}", unit="batch",
                      disable=not progress, leave=False)
        batches = [_run_batch(envs, policy, [seed + start + i for i in range(n_envs)]) for start in starts]
    finally:
        envs.close()
    per_patient = {k: np.concatenate([b[k] for b in batches])[:n_patients] for k in batches[0]}
    return EvaluationResult(env_id, policy_name or repr(policy), int(n_patients), int(seed), per_patient,
                            bootstrap_ci(per_patient, n_bootstrap, bootstrap_seed))


def _run_batch(envs: gym.vector.VectorEnv, policy, seeds: list[int]) -> dict[str, np.ndarray]:
    """First episode of each sub-environment (seeded ``seeds``) -> per-patient figures."""
    n = envs.num_envs
    observations, infos = envs.reset(seed=seeds)
    reset_policy(policy, n)
    combination = "recist" in infos
    target = getattr(envs.unwrapped, "target", None)  # single drug: the therapeutic window
    expected_shape = envs.action_space.shape
    done = np.zeros(n, dtype=bool)
    responded = np.zeros(n, dtype=bool)  # combination: a CR/PR was found before this step's cycle
    acc: dict[str, np.ndarray] = {}

    def add(key: str, values: np.ndarray, live: np.ndarray) -> None:
        acc[key] = acc.get(key, np.zeros(n)) + np.where(live, values, 0.0)

    while not done.all():
        actions = np.asarray(policy(observations, infos))
        if actions.shape != expected_shape:
            raise ValueError(f"policy returned actions of shape {actions.shape}; {n} environments need "
                             f"{expected_shape} (single action space {envs.single_action_space})")
        observations, rewards, terminated, truncated, infos = envs.step(actions)
        live = ~done  # sub-environments still in their first episode took this step
        objectives = np.asarray(infos["objectives"], dtype=float)
        rewards = np.asarray(rewards, dtype=float)
        if rewards.ndim == 1:
            add("return", rewards, live)
        add("return_response" if combination else "return_efficacy", objectives[:, 0], live)
        add("return_neg_toxicity", objectives[:, 1], live)
        add("steps", np.ones(n), live)
        if combination:
            add("cumulative_paclitaxel_mg_m2", infos["paclitaxel_mg_m2"], live)
            add("cumulative_carboplatin_auc", infos["carboplatin_auc"], live)
            after = live & responded
            add("cycles_after_response", np.ones(n), after)
            add("paclitaxel_after_response_mg_m2", infos["paclitaxel_mg_m2"], after)
            add("carboplatin_after_response_auc", infos["carboplatin_auc"], after)
            responded |= live & np.isin(infos["best_response"], OBJECTIVE_RESPONSE_CODES)
        else:
            # regimen ids: intervals of different lengths, weighted by their hours
            hours = np.asarray(infos["interval_h"], dtype=float) if "interval_h" in infos else np.ones(n)
            exposure = np.asarray(infos["exposure"], dtype=float)
            add("hours_in_window", hours * ((exposure >= target.low) & (exposure <= target.high)), live)
            add("hours", hours, live)
            if "level_drawn" in infos:
                add("levels_drawn", np.asarray(infos["level_drawn"], dtype=float), live)
            add("serious_event", np.asarray(infos["event"], dtype=float), live)
            toxic = np.asarray(infos["event"], bool) | (np.asarray(infos["exposure"]) > target.toxic_above)
            add("toxic_intervals", toxic, live)
            add("cumulative_dose_mg", infos["dose_mg"], live)
        ending = live & (np.asarray(terminated) | np.asarray(truncated))
        if combination:  # the episode's final RECIST and grade-4 tallies, read on its last step
            add("objective_response", np.isin(infos["best_response"], OBJECTIVE_RESPONSE_CODES), ending)
            add("progression", np.asarray(infos["recist"]) == PROGRESSION_CODE, ending)
            add("grade4_neutropenia", np.asarray(infos["grade4_events"]) > 0, ending)
            if "any_serious_adverse_event" in infos:  # v1: any of its four serious adverse events
                add("serious_adverse_event", np.asarray(infos["any_serious_adverse_event"], dtype=float), ending)
                add("tumour_type", np.asarray(infos["tumour_type"], dtype=float), ending)
        done |= ending
    if not combination:
        acc["in_window_fraction"] = acc.pop("hours_in_window") / acc.pop("hours")
        acc["toxic_exposure"] = (acc.pop("toxic_intervals") > 0).astype(float)
    return acc

"""Reports of trained agents against baselines: markdown tables and PNG figures.

- :func:`baseline_policies`: the clinical baselines and sanity floors for an id.
- :func:`results_table`: one markdown table of :class:`~agents.evaluate.EvaluationResult` rows.
- :func:`record_courses`: a few patients' doses and exposures under each policy (same patients).
- :func:`plot_dose_trajectories`, :func:`plot_learning_curve`: the figures of a report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.baselines import (
    AdaptiveRulePolicy,
    FixedDosePolicy,
    Policy,
    RandomPolicy,
    StandardDosingPolicy,
    reset_policy,
)
from agents.config import env_family
from agents.evaluate import EvaluationResult, markdown_header

#: Metrics shown in tables, per environment family (those present in a result are shown).
SINGLE_KEYS = ["return", "in_window_fraction", "toxic_exposure", "serious_event", "levels_drawn", "cumulative_dose_mg"]
COMBINATION_KEYS = ["return", "objective_response", "serious_adverse_event", "grade4_neutropenia", "progression",
                    "cumulative_paclitaxel_mg_m2", "cumulative_carboplatin_auc"]


def baseline_policies(env_id: str, seed: int = 0, env_kwargs: dict | None = None) -> dict[str, Policy]:
    """Standard dosing, MIPD and oracle (single-drug ids), the adaptive rule (combination v1), no drug,
    maximum dose, random.

    ``env_kwargs``: the evaluated environment's constructor arguments (e.g. ``weights`` and
    ``target`` of ``PKDose/Custom-v0``), given to every baseline that makes one."""
    from agents.model_based import MIPDPolicy, OraclePolicy
    from agents.regimen_policies import MIPDRegimenPolicy, OracleRegimenPolicy

    kwargs = dict(env_kwargs or {})
    env = gym.make(env_id, **kwargs)
    space = env.action_space
    discrete = isinstance(space, gym.spaces.Discrete)
    family = env_family(env_id)
    single, regimen = family == "single", family == "regimen"
    adaptive = hasattr(env.unwrapped, "adaptive_action")
    env.close()
    policies: dict[str, Policy] = {"standard dosing": StandardDosingPolicy(env_id, **kwargs)}
    if adaptive:
        policies["adaptive clinical rule"] = AdaptiveRulePolicy(env_id, **kwargs)
    if single:
        policies["MIPD (PK-VAE encoder)"] = MIPDPolicy(env_id, **kwargs)
        policies["oracle (true latent)"] = OraclePolicy(env_id, **kwargs)
    if regimen:
        policies["MIPD, 2 levels (CT PK-VAE encoder)"] = MIPDRegimenPolicy(env_id, **kwargs)
        policies["oracle (true latent)"] = OracleRegimenPolicy(env_id, **kwargs)
    if isinstance(space, gym.spaces.MultiDiscrete):  # regimen: dose level, interval, draw
        lowest, highest = np.zeros(space.shape, np.int64), space.nvec - 1
    elif discrete:
        lowest, highest = 0, space.n - 1
    else:
        lowest, highest = np.full(space.shape, -1.0, np.float32), np.ones(space.shape, np.float32)
    policies["no drug"] = FixedDosePolicy(lowest)
    policies["maximum dose"] = FixedDosePolicy(highest)
    policies["random"] = RandomPolicy(space, seed=seed)
    return policies


def results_table(results: list[EvaluationResult]) -> str:
    """A markdown table, ``mean [95 % CI]`` per metric, one row per result."""
    available = set.intersection(*(set(r.metrics) for r in results))
    keys = [k for k in dict.fromkeys([*SINGLE_KEYS, *COMBINATION_KEYS]) if k in available]
    lines = markdown_header(keys)
    for result in results:
        lines += result.to_markdown_rows(keys)
    return "\n".join(lines)


def record_courses(env_id: str, policy: Policy, seeds: list[int], env_kwargs: dict | None = None
                   ) -> dict[str, np.ndarray]:
    """Doses and exposures of the patients seeded ``seeds`` under ``policy``: ``(n, steps)`` arrays.

    Single drug: ``dose_mg``, ``exposure``; combination: ``paclitaxel_mg_m2``,
    ``carboplatin_auc``, ``anc_nadir`` (if reported). Steps after an episode's end are NaN.
    """
    envs = gym.make_vec(env_id, num_envs=len(seeds), vectorization_mode="vector_entry_point",
                        **(env_kwargs or {}))
    observations, infos = envs.reset(seed=list(seeds))
    reset_policy(policy, len(seeds))
    keys = ["dose_mg", "exposure", "paclitaxel_mg_m2", "carboplatin_auc", "anc_nadir"]
    courses: dict[str, list[np.ndarray]] = {}
    done = np.zeros(len(seeds), dtype=bool)
    while not done.all():
        observations, _, terminated, truncated, infos = envs.step(np.asarray(policy(observations, infos)))
        for key in keys:
            if key in infos:
                courses.setdefault(key, []).append(np.where(done, np.nan, np.asarray(infos[key], dtype=float)))
        done |= np.asarray(terminated) | np.asarray(truncated)
    envs.close()
    return {key: np.stack(values, axis=1) for key, values in courses.items()}


def plot_dose_trajectories(env_id: str, courses: dict[str, dict[str, np.ndarray]], path: Path,
                           target: Any = None) -> Path:
    """One column per patient: dose per step (top) and exposure (bottom) under each policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(courses.values()))
    combination = "paclitaxel_mg_m2" in first
    if combination:
        rows = [("paclitaxel_mg_m2", "paclitaxel, mg/m$^2$"), ("carboplatin_auc", "carboplatin AUC, mg$\\cdot$min/mL"),
                ("anc_nadir", "ANC nadir, x10$^9$/L")]
    else:
        unit = f" ({target.metric}), {target.unit}" if target is not None else ""
        rows = [("dose_mg", "dose, mg"), ("exposure", f"exposure{unit}")]
    rows = [(key, label) for key, label in rows if key in first]
    n = first[rows[0][0]].shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(4 * n, 3 * len(rows)), sharex=True, squeeze=False)
    for name, course in courses.items():
        steps = np.arange(1, course[rows[0][0]].shape[1] + 1)
        for r, (key, _) in enumerate(rows):
            for j in range(n):
                if r == 0:
                    axes[r, j].step(steps, course[key][j], where="mid", label=name)
                else:
                    axes[r, j].plot(steps, course[key][j], marker="o", ms=3, label=name)
    for j in range(n):
        axes[0, j].set_title(f"patient {j + 1}")
        axes[-1, j].set_xlabel("cycle" if combination else "dosing interval")
        if target is not None and not combination:
            axes[1, j].axhspan(target.low, target.high, color="green", alpha=0.12, label="target window")
        if combination and "anc_nadir" in first:
            axes[-1, j].axhline(0.5, color="red", ls=":", label="grade 4 (< 0.5)")
    for r, (_, label) in enumerate(rows):
        axes[r, 0].set_ylabel(label)
    axes[0, -1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{env_id}: doses of the same held-out patients under each policy")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_learning_curve(evaluations: Path, path: Path, references: dict[str, float] | None = None) -> Path | None:
    """Validation-cohort mean return over training steps, with baselines' returns as lines."""
    if not evaluations.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with np.load(evaluations, allow_pickle=False) as data:
        steps, returns = data["timesteps"], data["mean_return"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, returns, marker="o", label="agent (validation cohort)")
    for i, (name, value) in enumerate((references or {}).items()):
        ax.axhline(value, ls="--", color=f"C{i + 1}", label=f"{name} (test cohort)")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("mean return per course")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

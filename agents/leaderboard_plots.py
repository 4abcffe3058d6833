"""The leaderboard's figures: aggregate intervals and performance profiles (rliable), learning curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

AGGREGATES = ("IQM", "Median", "Mean", "Optimality gap")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_aggregate(agg: dict[str, dict[str, list[float]]], path: Path) -> Path:
    """rliable's interval plot: each aggregate of normalised scores with its 95 % CI, per policy."""
    from rliable import plot_utils

    plt = _pyplot()
    order = sorted(agg, key=lambda p: agg[p]["IQM"][0])
    points = {p: np.array([agg[p][k][0] for k in AGGREGATES]) for p in order}
    intervals = {p: np.array([[agg[p][k][1] for k in AGGREGATES], [agg[p][k][2] for k in AGGREGATES]]) for p in order}
    fig, _ = plot_utils.plot_interval_estimates(points, intervals, metric_names=list(AGGREGATES), algorithms=order,
                                                xlabel="normalised score (0 = standard dosing, 1 = oracle)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_profiles(score_dict: dict[str, np.ndarray], path: Path, reps: int = 2000) -> Path:
    """Performance profiles: the fraction of runs (all envs) whose normalised score exceeds tau."""
    from rliable import library as rly
    from rliable import plot_utils

    plt = _pyplot()
    top = max(1.2, float(max(np.max(v) for v in score_dict.values())))
    taus = np.linspace(min(-0.5, float(min(np.min(v) for v in score_dict.values()))), top, 81)
    from agents.leaderboard import seeded_numpy_global

    with seeded_numpy_global(0):
        profiles, cis = rly.create_performance_profile(score_dict, taus, reps=reps)
    from matplotlib.lines import Line2D

    colors = {name: f"C{i}" for i, name in enumerate(score_dict)}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=cis, ax=ax, colors=colors,
                                         xlabel=r"normalised score $\tau$ (0 = standard, 1 = oracle)")
    ax.legend([Line2D([], [], color=c, lw=2) for c in colors.values()], list(colors), fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def learning_curves(results_dir: Path) -> dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]]:
    """env id -> algorithm -> one ``(timesteps, validation mean return)`` per seed."""
    curves: dict[str, dict[str, list[Any]]] = {}
    for run in sorted((results_dir / "trials").glob("*/run/evaluations.npz")):
        config = json.loads((run.parent / "run.json").read_text())
        with np.load(run, allow_pickle=False) as data:
            curve = (data["timesteps"].copy(), data["mean_return"].copy())
        curves.setdefault(config["env_id"], {}).setdefault(config["algo"], []).append(curve)
    return curves


def plot_learning_curves(results_dir: Path, path: Path) -> Path | None:
    """One panel per env: validation return over training, each seed thin, their mean bold."""
    curves = learning_curves(results_dir)
    if not curves:
        return None
    plt = _pyplot()
    n = len(curves)
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (env, by_algo) in zip(axes.flat, curves.items()):
        for i, (algo, runs) in enumerate(sorted(by_algo.items())):
            for steps, values in runs:
                ax.plot(steps, values, color=f"C{i}", alpha=0.3, lw=0.8)
            length = min(len(s) for s, _ in runs)
            ax.plot(runs[0][0][:length], np.mean([v[:length] for _, v in runs], axis=0), color=f"C{i}", lw=2,
                    label=f"{algo} ({len(runs)} seeds)")
        ax.set_title(env.removeprefix("PKDose/"), fontsize=9)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("validation mean return")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

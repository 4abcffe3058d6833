"""Ground-truth study of offline policy evaluation: how wrong is each estimator, measured.

    python -m agents.offline.study                          # defaults below, about 10 minutes on 2 cores
    python -m agents.offline.study --sizes 100 1000 10000 --repeats 10 --envs PKDose/Phenytoin-v0
    python -m agents.offline.study --agent reports/benchmark/runs/ppo-Phenytoin-v0-seed0/best_model.zip

For each environment, clinical logs come from the clinician behaviour policy
(:class:`agents.offline.policies.ClinicianPolicy`). Target policies, from near to far:
the clinician itself (on-policy), the standard dose with truncated-normal noise SD 0.1, the same
with SD 0.3, each trained agent given with ``--agent`` (a pkdose agent archive of that env, its
deterministic action with truncated-normal noise SD 0.1, so that it has a density), and uniform
random dosing. A target's true value is its mean return from on-policy
simulation of the same virtual patients (the cohort's seeds; ``--truth-replays K`` averages K runs
with independent action noise), so the error of an estimate is
``estimate - truth`` on identical patients. For every dataset size and repeat (independent
cohorts), each estimator (IS, WIS, PDIS, WPDIS, FQE, DR and WDR with the FQE model) gives an
estimate and a 95 % CI; the table reports bias, RMSE and CI coverage over repeats, and the mean
effective sample size. ``--out`` gets ``study.md``, ``study.json`` and ``error_vs_size.png``.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from agents.baselines import SB3Policy, StandardDosingPolicy
from agents.checkpoints import load_agent, read_sidecar
from agents.offline.collect import collect_episodes, logged_action_prob, policy_infos
from agents.offline.episodes import LoggedEpisodes
from agents.offline.estimators import (
    doubly_robust,
    importance_sampling,
    per_decision_is,
    weighted_importance_sampling,
    weighted_per_decision_is,
)
from agents.offline.fqe import fitted_q_evaluation
from agents.offline.policies import (
    ClinicianPolicy,
    GaussianPerturbedPolicy,
    StochasticPolicy,
    UniformRandomPolicy,
)

ESTIMATORS = ("IS", "WIS", "PDIS", "WPDIS", "FQE", "DR", "WDR")
FQE_SAMPLES = 8  # target actions sampled per state for FQE's expectation (continuous ids)
FQE_BATCH = 1024
AGENT_NOISE_SD = 0.1  # action units: a trained agent's deterministic action gets this noise (a density)
TRUTH_SEED = 1_000_000  # policy seeds of the on-policy truth runs (the logs use 0 .. repeats - 1)


def target_policies(env_id: str, agent_paths: list[Path] = ()) -> dict[str, StochasticPolicy]:
    """The study's target policies, nearest to farthest from the clinician.

    ``agent_paths``: pkdose agent archives; those trained on ``env_id`` join the targets.
    """
    space = gym.make(env_id).action_space
    standard = StandardDosingPolicy(env_id)
    targets: dict[str, StochasticPolicy] = {
        "clinician (on-policy)": ClinicianPolicy(env_id, seed=7),
        "standard + N(0, 0.1)": GaussianPerturbedPolicy(standard, 0.1, space, seed=7),
        "standard + N(0, 0.3)": GaussianPerturbedPolicy(standard, 0.3, space, seed=7)}
    for path in agent_paths:
        meta = read_sidecar(path)
        if meta["env_id"] == env_id:
            model, _ = load_agent(path, expected_env_id=env_id)
            name = f"{meta['algo'].upper()} agent + N(0, {AGENT_NOISE_SD})"
            if name in targets:
                name = f"{name} ({path})"
            targets[name] = GaussianPerturbedPolicy(SB3Policy(model), AGENT_NOISE_SD, space, seed=7)
    targets["uniform random"] = UniformRandomPolicy(space, seed=7)
    return targets


def target_actions(episodes: LoggedEpisodes, policy: StochasticPolicy, seed: int) -> np.ndarray:
    """``(n, T+1, K, *A)`` actions of ``policy`` sampled at every logged state (FQE's expectation)."""
    rng = np.random.default_rng(seed)
    n, horizon = episodes.n_episodes, episodes.horizon
    out = np.zeros((n, horizon + 1, FQE_SAMPLES, *episodes.actions.shape[2:]), dtype=np.float32)
    for t in range(horizon + 1):
        infos = policy_infos(episodes, min(t, horizon - 1))  # the last state's infos are not logged: reuse
        for k in range(FQE_SAMPLES):
            out[:, t, k] = policy.sample(episodes.observations[:, t], infos, rng)
    return out


def estimate_all(episodes: LoggedEpisodes, policy: StochasticPolicy, seed: int) -> dict[str, tuple]:
    """Every estimator on one dataset: name -> (estimate, low, high, ess)."""
    prob = logged_action_prob(episodes, policy)
    out = {}
    for name, fn in (("IS", importance_sampling), ("WIS", weighted_importance_sampling),
                     ("PDIS", per_decision_is), ("WPDIS", weighted_per_decision_is)):
        try:
            e = fn(episodes, prob, n_bootstrap=500, seed=seed)
            out[name] = (e.estimate, e.low, e.high, e.ess)
        except ValueError:  # e.g. no logged action has target support: no estimate, not a NaN
            out[name] = (np.nan, np.nan, np.nan, 0.0)
    steps = max(100, -(-int(episodes.step_mask.sum()) // FQE_BATCH))  # about one pass over the data per iteration
    fqe = fitted_q_evaluation(episodes, target_actions=target_actions(episodes, policy, seed), seed=seed,
                              n_iterations=episodes.horizon + 4, steps_per_iteration=steps,
                              batch_size=FQE_BATCH, n_bootstrap=500)
    out["FQE"] = (fqe.estimate.estimate, fqe.estimate.low, fqe.estimate.high, fqe.estimate.ess)
    for name, weighted in (("DR", False), ("WDR", True)):
        try:
            e = doubly_robust(episodes, prob, fqe.q_logged, fqe.v_states, weighted=weighted, n_bootstrap=500, seed=seed)
            out[name] = (e.estimate, e.low, e.high, e.ess)
        except ValueError:
            out[name] = (np.nan, np.nan, np.nan, 0.0)
    return out


def true_value(env_id: str, policy: StochasticPolicy, size: int, seed: int, replays: int) -> float:
    """Mean return of ``policy`` run on-policy on the cohort's patients (env seeds ``seed ...``),
    averaged over ``replays`` independent streams of the policy's own randomness (policy seeds
    ``TRUTH_SEED + j``, disjoint from the logging seeds ``0 .. repeats - 1``): each replay lowers
    the Monte-Carlo error of the truth against which the estimators are scored."""
    if isinstance(replays, bool) or not isinstance(replays, (int, np.integer)) or replays < 1:
        raise ValueError(f"replays must be an integer >= 1, got {replays!r}")
    values = []
    for j in range(replays):
        replay = copy.copy(policy)  # same policy, own action noise
        replay.seed = TRUTH_SEED + j
        values.append(collect_episodes(env_id, replay, size, seed=seed).returns().mean())
    return float(np.mean(values))


def run_study(env_ids: list[str], sizes: list[int], repeats: int, progress: bool = True,
              agent_paths: list[Path] = (), truth_replays: int = 1) -> list[dict]:
    rows = []
    for env_id in env_ids:
        policies = target_policies(env_id, agent_paths)
        jobs = [(size, r) for size in sizes for r in range(repeats)]
        for size, r in tqdm(jobs, desc=env_id, disable=not progress):
            seed = 10_000_000 + 1_000_000 * r  # independent cohorts per repeat, unseen by training
            logged = collect_episodes(env_id, ClinicianPolicy(env_id, seed=r), size, seed=seed)
            for name, policy in policies.items():
                truth = true_value(env_id, policy, size, seed, truth_replays)
                for estimator, (est, low, high, ess) in estimate_all(logged, policy, r).items():
                    rows.append({"env": env_id, "target": name, "size": size, "repeat": r, "estimator": estimator,
                                 "truth": float(truth), "estimate": float(est), "low": float(low),
                                 "high": float(high), "ess": float(ess)})
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Bias, RMSE, CI coverage and ESS over repeats per (env, target, size, estimator)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["env"], row["target"], row["size"], row["estimator"]), []).append(row)
    out = []
    for (env, target, size, estimator), group in groups.items():
        err = np.array([g["estimate"] - g["truth"] for g in group])
        ok = np.isfinite(err)
        covered = [g["low"] <= g["truth"] <= g["high"] for g in group if np.isfinite(g["estimate"])]
        out.append({"env": env, "target": target, "size": size, "estimator": estimator,
                    "truth": float(np.mean([g["truth"] for g in group])),
                    "bias": float(err[ok].mean()) if ok.any() else np.nan,
                    "rmse": float(np.sqrt(np.mean(err[ok] ** 2))) if ok.any() else np.nan,
                    "coverage": float(np.mean(covered)) if covered else np.nan,
                    "ess": float(np.mean([g["ess"] for g in group])), "failed": int((~ok).sum()), "n": len(group)})
    return out


def compact_table(summary: list[dict]) -> str:
    """One row per (env, target, estimator): RMSE and CI coverage at each dataset size, ESS at the largest."""
    sizes = sorted({s["size"] for s in summary})
    by_key = {(s["env"], s["target"], s["estimator"], s["size"]): s for s in summary}
    head = ["env", "target policy", f"true value (n={sizes[-1]:,})", "estimator",
            *(f"RMSE n={n:,}" for n in sizes), *(f"coverage n={n:,}" for n in sizes), f"ESS n={sizes[-1]:,}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|---|" + "---:|" * (2 * len(sizes) + 1)]
    for env, target, estimator in dict.fromkeys((s["env"], s["target"], s["estimator"]) for s in summary):
        cells = [by_key.get((env, target, estimator, n)) for n in sizes]
        truth = next(c["truth"] for c in reversed(cells) if c)  # the largest cohorts' mean
        rmse = [f"{c['rmse']:.2f}" + ("*" if c["failed"] else "") if c else "" for c in cells]
        cover = [f"{c['coverage']:.0%}" if c and np.isfinite(c["coverage"]) else "" for c in cells]
        ess = f"{cells[-1]['ess']:.0f}" if cells[-1] else ""
        lines.append(f"| {env.split('/')[-1]} | {target} | {truth:.2f} | {estimator} | "
                     + " | ".join([*rmse, *cover, ess]) + " |")
    return "\n".join(lines)


def write_outputs(summary: list[dict], rows: list[dict], out: Path) -> str:
    """``study.md`` (the compact table, then every summary row), ``study.json`` and the plot; returns
    the compact table."""
    out.mkdir(parents=True, exist_ok=True)
    lines = ["| env | target policy | episodes | estimator | true value | bias | RMSE | CI coverage | ESS |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for s in summary:
        lines.append(f"| {s['env'].split('/')[-1]} | {s['target']} | {s['size']} | {s['estimator']} | "
                     f"{s['truth']:.2f} | {s['bias']:+.2f} | {s['rmse']:.2f} | {s['coverage']:.0%} | {s['ess']:.0f} |"
                     + (f" ({s['failed']} of {s['n']} without support)" if s["failed"] else ""))
    compact = compact_table(summary)
    footnote = ("\n\n* some repeats without an estimate (no logged action has target support)"
                if any(s["failed"] for s in summary) else "")
    (out / "study.md").write_text(f"{compact}{footnote}\n\nEvery (size, estimator):\n\n" + "\n".join(lines) + "\n")
    (out / "study.json").write_text(json.dumps({"summary": summary, "runs": rows}, indent=1))
    _plot(summary, out / "error_vs_size.png")
    return compact


def _plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(s["env"] for s in summary))
    targets = list(dict.fromkeys(s["target"] for s in summary))  # nearest to farthest from the behaviour
    fig, axes = plt.subplots(len(envs), len(targets), figsize=(3.2 * len(targets), 2.9 * len(envs)),
                             squeeze=False)
    for (row, env), (col, target) in ((r, c) for r in enumerate(envs) for c in enumerate(targets)):
        ax = axes[row, col]
        for estimator in ESTIMATORS:
            pts = sorted((s["size"], s["rmse"]) for s in summary
                         if (s["env"], s["target"], s["estimator"]) == (env, target, estimator))
            if pts:
                ax.plot(*zip(*pts), marker="o", label=estimator)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{env.split('/')[-1]}\n{target}", fontsize=8)
        ax.set_xlabel("logged episodes", fontsize=8)
    for row in range(len(envs)):
        axes[row, 0].set_ylabel("RMSE of the value estimate", fontsize=8)
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pkdose ope", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["PKDose/Phenytoin-v0", "PKDose/PaclitaxelCarboplatin-v0"],
                   help="continuous PKDose ids (default: phenytoin and the combination)")
    p.add_argument("--sizes", nargs="+", type=int, default=[100, 1000], help="logged episodes per dataset")
    p.add_argument("--repeats", type=int, default=5, help="independent datasets per size (default 5)")
    p.add_argument("--out", type=Path, default=Path("reports/ope"), help="output folder (default reports/ope)")
    p.add_argument("--agent", type=Path, action="append", default=[], metavar="ZIP",
                   help="a trained agent archive (python train.py / python -m agents.benchmark) to add as a "
                        "target on its env; repeatable")
    p.add_argument("--truth-replays", type=int, default=1, metavar="K",
                   help="on-policy runs of each target on the same patients, averaged into its true value "
                        "(default 1; more lowers the truth's Monte-Carlo error, at K times its cost)")
    args = p.parse_args(argv)
    if args.truth_replays < 1:
        p.error(f"--truth-replays must be >= 1, got {args.truth_replays}")
    for path in args.agent:
        try:
            env_id = read_sidecar(path)["env_id"]
        except (OSError, ValueError) as err:
            p.error(str(err))
        if env_id not in args.envs:
            p.error(f"--agent {path} was trained on {env_id!r}, which is not among --envs {args.envs}")
    if args.repeats < 2 or min(args.sizes) < 2:
        p.error(f"--repeats and every --sizes must be >= 2, got {args.repeats} and {args.sizes}")
    for env_id in args.envs:
        space = gym.make(env_id).action_space  # unknown ids fail here, before any work
        if not isinstance(space, gym.spaces.Box):
            p.error(f"{env_id!r} has discrete actions; the study's perturbed targets need a continuous id")
    rows = run_study(args.envs, args.sizes, args.repeats, agent_paths=args.agent,
                     truth_replays=args.truth_replays)
    print(write_outputs(summarise(rows), rows, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

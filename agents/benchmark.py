"""Benchmark: PPO and SAC on PKDose ids against the clinical baselines, one table, plus figures.

    python -m agents.benchmark                                  # the 6 base ids, seeds 0 1 2
    python -m agents.benchmark --envs PKDose/Vancomycin-v0 --seeds 0 --ppo-timesteps 300000
    python -m agents.benchmark --pareto-only                    # only the combination's trade-off front

For each id: every baseline (:func:`agents.report.baseline_policies`) and, per algorithm and seed,
an agent trained with :func:`agents.training.train` (SAC is skipped on ``-Discrete`` ids), all
evaluated on the same held-out cohort (``--eval-patients`` patients, seeds from 1,000,000). An
algorithm's row pools its seeds' patients (so its CI covers seed-to-seed and patient variation).

Writes to ``--out`` (default ``reports/benchmark``): ``results.md`` (the table), ``results.json``,
``trajectories_<env>.png`` (doses of three held-out patients under each policy) and, for the
combination, ``pareto_front.png``: PPO trained with several toxicity weights
(``--pareto-weights``), the efficacy/toxicity trade-off it traces against conventional dosing,
and ``combination_goal.md``: the relative change in response and grade-4 neutropenia against
conventional dosing with paired-bootstrap 95 % CIs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from agents.baselines import SB3Policy
from agents.callbacks import TEST_SEED
from agents.checkpoints import load_agent
from agents.evaluate import EvaluationResult, bootstrap_ci, evaluate_policy
from agents.report import baseline_policies, plot_dose_trajectories, record_courses, results_table
from agents.training import RunConfig, train

BASE_IDS = ["PKDose/Vancomycin-v0", "PKDose/Phenytoin-v0", "PKDose/Mycophenolate-v0", "PKDose/Theophylline-v0",
            "PKDose/Pembrolizumab-v0", "PKDose/PaclitaxelCarboplatin-v0"]
COMBINATION_ID = "PKDose/PaclitaxelCarboplatin-v0"


def pooled(results: list[EvaluationResult], name: str, n_bootstrap: int = 2000) -> EvaluationResult:
    """Several seeds' results on the same cohort as one result (patients pooled)."""
    per_patient = {k: np.concatenate([r.per_patient[k] for r in results]) for k in results[0].per_patient}
    first = results[0]
    return EvaluationResult(first.env_id, name, len(next(iter(per_patient.values()))), first.seed, per_patient,
                            bootstrap_ci(per_patient, n_bootstrap))


def relative_change(policy: EvaluationResult, reference: EvaluationResult, key: str, n_bootstrap: int = 2000,
                    seed: int = 0) -> tuple[float, float, float]:
    """``mean(policy) / mean(reference) - 1`` with a paired percentile bootstrap over the same patients."""
    a, b = policy.per_patient[key], reference.per_patient[key]
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs the same cohort, got {a.shape} and {b.shape} patients")
    idx = np.random.default_rng(seed).integers(0, a.size, size=(n_bootstrap, a.size))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = a[idx].mean(axis=1) / b[idx].mean(axis=1) - 1.0
        point = a.mean() / b.mean() - 1.0
    low, high = np.nanpercentile(ratios, [2.5, 97.5])
    return float(point), float(low), float(high)


def train_agent(algo: str, env_id: str, seed: int, timesteps: int, out: Path, reward_weights=None) -> SB3Policy:
    """Train (or reuse a finished run in ``out``) and return its best policy on the validation cohort."""
    config = RunConfig(algo=algo, env_id=env_id, seed=seed, total_timesteps=timesteps, reward_weights=reward_weights,
                       eval_freq=max(timesteps // 4, 1), checkpoint_freq=max(timesteps // 4, 1))
    finished = out / "final_model.json"
    if not (finished.is_file() and json.loads(finished.read_text())["num_timesteps"] >= timesteps):
        train(config, out, resume=(out / "run.json").is_file(), progress_bar=True)
    best = out / "best_model.zip"
    model, _ = load_agent(best if best.is_file() else out / "final_model.zip", expected_env_id=env_id)
    return SB3Policy(model)


def benchmark_env(env_id: str, args: argparse.Namespace) -> list[EvaluationResult]:
    policies = dict(baseline_policies(env_id))
    agents: dict[str, list[SB3Policy]] = {}
    for algo in ("ppo", "sac"):
        if algo == "sac" and "Discrete" in env_id:
            continue
        timesteps = args.ppo_timesteps if algo == "ppo" else args.sac_timesteps
        agents[algo.upper()] = [train_agent(algo, env_id, s, timesteps, args.out / "runs" /
                                            f"{algo}-{env_id.split('/')[-1]}-seed{s}") for s in args.seeds]
    kw = {"n_patients": args.eval_patients, "seed": TEST_SEED, "num_envs": min(args.eval_patients, 500)}
    results = [pooled([evaluate_policy(env_id, p, policy_name=name, **kw) for p in seeds],
                      f"{name} ({len(seeds)} seed{'s' * (len(seeds) > 1)})") for name, seeds in agents.items()]
    results += [evaluate_policy(env_id, policy, policy_name=name, **kw) for name, policy in policies.items()]
    shown = {name: seeds[0] for name, seeds in agents.items()}
    shown.update({k: v for k, v in policies.items() if k not in ("random", "no drug", "maximum dose")})
    seeds = [TEST_SEED + i for i in range(3)]
    courses = {name: record_courses(env_id, policy, seeds) for name, policy in shown.items()}
    import gymnasium as gym

    target = getattr(gym.make(env_id).unwrapped, "target", None)
    plot_dose_trajectories(env_id, courses, args.out / f"trajectories_{env_id.split('/')[-1]}.png", target)
    return results


def pareto_front(args: argparse.Namespace) -> list[str]:
    """PPO on the combination with several toxicity weights; plot and goal table against conventional dosing."""
    kw = {"n_patients": args.eval_patients, "seed": TEST_SEED, "num_envs": min(args.eval_patients, 500)}
    conventional = evaluate_policy(COMBINATION_ID, baseline_policies(COMBINATION_ID)["standard dosing"],
                                   policy_name="conventional", **kw)
    points = []
    for weight in args.pareto_weights:
        out = args.out / "runs" / f"pareto-ppo-toxw{weight:g}"
        policy = train_agent("ppo", COMBINATION_ID, args.seeds[0], args.pareto_timesteps, out, (1.0, weight))
        points.append((weight, evaluate_policy(COMBINATION_ID, policy, policy_name=f"PPO w_tox={weight:g}", **kw)))
    lines = [("| policy | response rate | grade-4 neutropenia | response change vs conventional | "
             "grade-4 change vs conventional | goal (+23.4 %, -18.7 %, CIs exclude 0) |"), "|---|---:|---:|---:|---:|---|"]
    for _, result in points:
        r_change = relative_change(result, conventional, "objective_response")
        g_change = relative_change(result, conventional, "grade4_neutropenia")
        met = r_change[0] >= 0.234 and r_change[1] > 0 and g_change[0] <= -0.187 and g_change[2] < 0
        lines.append(f"| {result.policy_name} | {result.metrics['objective_response']} | "
                     f"{result.metrics['grade4_neutropenia']} | {_percent(r_change)} | {_percent(g_change)} | "
                     f"{'met' if met else 'not met'} |")
    lines.append(f"| conventional | {conventional.metrics['objective_response']} | "
                 f"{conventional.metrics['grade4_neutropenia']} | | | |")
    _plot_pareto(points, conventional, args.out / "pareto_front.png")
    (args.out / "combination_goal.md").write_text("\n".join(lines) + "\n")
    return lines


def _percent(change: tuple[float, float, float]) -> str:
    """``+12.3% [+1.0%, +25.0%]``, or n/a when the reference rate is 0 (a ratio has no value then)."""
    if not np.all(np.isfinite(change)):
        return "n/a (reference rate 0)"
    return f"{change[0]:+.1%} [{change[1]:+.1%}, {change[2]:+.1%}]"


def _plot_pareto(points, conventional: EvaluationResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for result, style in [(r, "o") for _, r in points] + [(conventional, "s")]:
        g, o = result.metrics["grade4_neutropenia"], result.metrics["objective_response"]
        ax.errorbar(g.mean, o.mean, xerr=[[g.mean - g.low], [g.high - g.mean]], yerr=[[o.mean - o.low],
                    [o.high - o.mean]], fmt=style, capsize=3, label=result.policy_name)
    ax.set_xlabel("grade-4 neutropenia rate (courses)")
    ax.set_ylabel("objective response rate (RECIST CR/PR)")
    ax.set_title("Paclitaxel-carboplatin: efficacy/toxicity trade-off (95 % CIs)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _tables(results: list[EvaluationResult]) -> str:
    """One table each for the single-drug ids, the regimen ids and the combination (their metrics differ)."""
    import pk_envs

    regimen = [r for r in results if r.env_id in pk_envs.REGIMEN_IDS]
    single = [r for r in results if r.env_id != COMBINATION_ID and r not in regimen]
    combination = [r for r in results if r.env_id == COMBINATION_ID]
    return "\n\n".join(results_table(group) for group in (single, regimen, combination) if group) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pkdose benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=BASE_IDS, help="scalar-reward ids (default: the 6 base ids)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds (default 0 1 2)")
    p.add_argument("--ppo-timesteps", type=int, default=300_000, help="PPO budget per run (default 300000)")
    p.add_argument("--sac-timesteps", type=int, default=30_000, help="SAC budget per run (default 30000)")
    p.add_argument("--pareto-weights", nargs="+", type=float, default=[0.5, 1.0, 2.0, 4.0],
                   help="toxicity weights of the combination's Pareto runs (efficacy weight 1)")
    p.add_argument("--pareto-timesteps", type=int, default=100_000, help="PPO budget per Pareto run (default 100000)")
    p.add_argument("--pareto-only", action="store_true", help="only the combination's Pareto front and goal table")
    p.add_argument("--no-pareto", action="store_true", help="skip the Pareto front")
    p.add_argument("--eval-patients", type=int, default=1000, help="held-out cohort size (default 1000)")
    p.add_argument("--out", type=Path, default=Path("reports/benchmark"), help="output folder")
    args = p.parse_args(argv)
    for name in ("ppo_timesteps", "sac_timesteps", "pareto_timesteps", "eval_patients"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if any(w < 0 for w in args.pareto_weights):
        p.error(f"--pareto-weights must be >= 0, got {args.pareto_weights}")
    try:
        for env_id in args.envs:
            RunConfig(env_id=env_id)  # validates the id (and refuses -MO ids) before hours of training
    except ValueError as err:
        p.error(str(err))
    args.out.mkdir(parents=True, exist_ok=True)
    sections = []
    if not args.pareto_only:
        results = []
        for env_id in args.envs:
            print(f"== {env_id}", flush=True)
            results += benchmark_env(env_id, args)
            (args.out / "results.md").write_text(_tables(results))  # grows as envs finish
        sections.append(_tables(results))
        (args.out / "results.json").write_text(json.dumps(
            [{"env": r.env_id, "policy": r.policy_name, **{k: [e.mean, e.low, e.high] for k, e in r.metrics.items()}}
             for r in results], indent=2))
    if not args.no_pareto:
        sections.append("\n".join(pareto_front(args)))
    print("\n\n".join(sections))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

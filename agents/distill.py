"""A clinically readable summary of a combination dosing policy: shallow decision trees distilled from it.

    python -m agents.distill runs/v1/ppo-w1-s0/best_model.zip --out reports/combination_v1

The policy is run on a cohort of virtual patients (seeds from 3,000,000, disjoint from training and
from the study cohort); at each cycle its doses are recorded as dose levels (the nearest of
0, 60, 80, 100, 120 % of 175 mg/m2 and AUC 6) together with the observation the policy saw. One
depth-limited ``sklearn`` decision tree per drug is fitted on half the patients and its fidelity (how
often the tree's level equals the policy's) measured on the other half. The report lists the
trees' rules in the environment's observation names (``env.observation_names``), each held-out
patient's regimen per cycle with the conditions that led the tree to it, and draws both trees
(``policy_tree.png``). Fidelity says how far the summary can be trusted: a low figure means the
policy does things the tree cannot say.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

from agents.baselines import SB3Policy
from agents.checkpoints import load_agent
from agents.combination_study import ORACLE_LEVELS, STANDARD_DOSES

ENV_ID = "PKDose/PaclitaxelCarboplatin-v1"
DISTILL_SEED = 3_000_000
LEVELS = np.array(ORACLE_LEVELS)
STANDARD = STANDARD_DOSES
DRUGS = ("paclitaxel", "carboplatin")


def record_decisions(policy, n_patients: int, env_id: str = ENV_ID, env_kwargs: dict | None = None,
                     batch: int = 250) -> dict[str, np.ndarray]:
    """Observations ``(M, D)``, dose levels ``(M, 2)`` (indices into :data:`LEVELS`), patient ids and cycles of
    every decision of the policy on ``n_patients`` seeded patients (first episode of each)."""
    envs = gym.make_vec(env_id, num_envs=min(batch, n_patients), vectorization_mode="vector_entry_point",
                        **(env_kwargs or {}))
    obs_all, levels_all, patient_all, cycle_all = [], [], [], []
    try:
        from tqdm.auto import tqdm

        for start in tqdm(range(0, n_patients, envs.num_envs), desc="recording decisions", unit="batch",
                          leave=False):
            n = envs.num_envs
            observations, infos = envs.reset(seed=[DISTILL_SEED + start + i for i in range(n)])
            done, cycle = np.zeros(n, bool), np.zeros(n, np.int64)
            while not done.all():
                actions = policy(observations, infos)
                seen = observations
                observations, _, terminated, truncated, infos = envs.step(actions)
                doses = np.stack([infos["paclitaxel_mg_m2"], infos["carboplatin_auc"]], axis=1) / STANDARD
                live = ~done & (start + np.arange(n) < n_patients)
                obs_all.append(seen[live])
                levels_all.append(np.abs(doses[live, :, None] - LEVELS).argmin(axis=2))
                patient_all.append(start + np.flatnonzero(live))
                cycle_all.append(cycle[live] + 1)
                cycle += 1
                done |= terminated | truncated
        names = tuple(envs.unwrapped.observation_names)
    finally:
        envs.close()
    return {"obs": np.concatenate(obs_all), "levels": np.concatenate(levels_all),
            "patient": np.concatenate(patient_all), "cycle": np.concatenate(cycle_all), "names": names}


def distill(decisions: dict, max_depth: int = 3, seed: int = 0) -> dict:
    """One tree per drug on half the patients; fidelity on the other half."""
    from sklearn.tree import DecisionTreeClassifier

    train = decisions["patient"] % 2 == 0
    trees, fidelity = [], []
    for j in range(2):
        tree = DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=20, random_state=seed)
        tree.fit(decisions["obs"][train], decisions["levels"][train, j])
        trees.append(tree)
        fidelity.append(float(np.mean(tree.predict(decisions["obs"][~train]) == decisions["levels"][~train, j])))
    both = np.mean([(trees[0].predict(decisions["obs"][~train]) == decisions["levels"][~train, 0]) &
                    (trees[1].predict(decisions["obs"][~train]) == decisions["levels"][~train, 1])])
    return {"trees": trees, "fidelity": fidelity, "fidelity_both": float(both), "held_out": ~train}


def decision_path(tree, x: np.ndarray, names: tuple[str, ...]) -> str:
    """The conditions a tree checks on one observation, as text."""
    node_indicator = tree.decision_path(x[None, :])
    feature, threshold = tree.tree_.feature, tree.tree_.threshold
    steps = []
    for node in node_indicator.indices:
        if feature[node] >= 0:
            op = "<=" if x[feature[node]] <= threshold[node] else ">"
            steps.append(f"{names[feature[node]]} {op} {threshold[node]:.3g}")
    return "; ".join(steps) or "(root)"


def report(decisions: dict, result: dict, n_patients_shown: int = 5) -> list[str]:
    from sklearn.tree import export_text

    names = list(decisions["names"])
    lines = [(f"Fidelity on held-out patients ({int(result['held_out'].sum())} decisions): paclitaxel level "
             f"{100 * result['fidelity'][0]:.1f} %, carboplatin level {100 * result['fidelity'][1]:.1f} %, both "
             f"{100 * result['fidelity_both']:.1f} %. Levels 0-4 = 0, 60, 80, 100, 120 % of 175 mg/m2 / AUC 6.\n")]
    for drug, tree in zip(DRUGS, result["trees"]):
        lines += [f"### {drug} level\n", "```", export_text(tree, feature_names=names).rstrip(), "```\n"]
    lines += ["### Held-out patients, cycle by cycle\n",
              "| patient | cycle | paclitaxel (mg/m2) | carboplatin (AUC) | what the tree checked (paclitaxel) |",
              "|---:|---:|---:|---:|---|"]
    held = np.flatnonzero(result["held_out"])
    for patient in np.unique(decisions["patient"][held])[:n_patients_shown]:
        for i in held[decisions["patient"][held] == patient]:
            level = decisions["levels"][i]
            lines.append(f"| {DISTILL_SEED + patient} | {decisions['cycle'][i]} | {LEVELS[level[0]] * 175:.0f} | "
                         f"{LEVELS[level[1]] * 6:.1f} | {decision_path(result['trees'][0], decisions['obs'][i], names)} |")
    return lines


def plot_trees(result: dict, names: tuple[str, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.tree import plot_tree

    fig, axes = plt.subplots(2, 1, figsize=(14, 10), dpi=100)
    for ax, drug, tree, fid in zip(axes, DRUGS, result["trees"], result["fidelity"]):
        plot_tree(tree, feature_names=list(names), class_names=[f"{100 * v:.0f} %" for v in LEVELS[tree.classes_]],
                  filled=True, impurity=False, fontsize=7, ax=ax)
        ax.set_title(f"{drug} dose level chosen by the policy (tree fidelity {100 * fid:.0f} % on held-out patients)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pkdose distill", description=__doc__.splitlines()[0],
                                epilog=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policy", type=Path, help="an SB3 zip trained on PKDose/PaclitaxelCarboplatin-v1")
    p.add_argument("--patients", type=int, default=1000, help="patients whose decisions are recorded (default 1000)")
    p.add_argument("--max-depth", type=int, default=3, help="depth of each tree (default 3)")
    p.add_argument("--out", type=Path, default=Path("reports/combination_v1"))
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    if args.patients < 20:
        p.error(f"--patients must be >= 20, got {args.patients}")
    if not 1 <= args.max_depth <= 8:
        p.error(f"--max-depth must be in 1-8, got {args.max_depth}")
    if not args.policy.is_file():
        p.error(f"no policy file {args.policy}")
    model, _ = load_agent(args.policy, expected_env_id=ENV_ID)
    decisions = record_decisions(SB3Policy(model), args.patients)
    result = distill(decisions, args.max_depth)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["# What the policy does, as two decision trees\n", (f"Policy: `{args.policy}`; command: "
             f"`pkdose distill {' '.join(argv)}`.\n"), *report(decisions, result),
             "\n![policy trees](policy_tree.png)\n"]
    (args.out / "policy_tree.md").write_text("\n".join(lines) + "\n")
    plot_trees(result, decisions["names"], args.out / "policy_tree.png")
    print("\n".join(lines[:8]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

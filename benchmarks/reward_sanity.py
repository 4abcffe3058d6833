"""Reward design check: standard dosing must beat no drug and the maximum dose.

    python benchmarks/reward_sanity.py [--patients 100] [--combination-patients 50]

Mean scalar return (default reward weights) over seeded virtual patients (seeds 0..n-1) of every
scalar environment id, under three fixed policies: the standard dose (the drug's label or guideline
dose, ``info["standard_dose_mg"]``; conventional paclitaxel 175 mg/m2 + carboplatin AUC 6 with a
20% reduction after grade 4 neutropenia for the combination), no drug, and the maximum action.
Prints a markdown table (mean +- standard error).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import pk_envs  # noqa: F401  (registers the ids)

SINGLE = ("Vancomycin", "Phenytoin", "Theophylline", "Mycophenolate", "Pembrolizumab")


def episode_return(env: gym.Env, seed: int, policy: str) -> float:
    obs, info = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        if policy == "none":
            action = np.full(env.action_space.shape, -1.0, dtype=np.float32)
        elif policy == "max":
            action = np.ones(env.action_space.shape, dtype=np.float32)
        elif hasattr(env.unwrapped, "conventional_action"):
            action = env.unwrapped.conventional_action(obs)
        else:
            action = env.unwrapped.doses_to_action(float(np.ravel(info["standard_dose_mg"])[0]))
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        done = terminated or truncated
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patients", type=int, default=100, help="patients per single-drug id (default 100)")
    p.add_argument("--combination-patients", type=int, default=50, help="patients for the combination (default 50)")
    args = p.parse_args(argv)
    if args.patients < 2 or args.combination_patients < 2:
        p.error("need at least 2 patients per id for a standard error")
    print("| environment | standard dosing | no drug | maximum dose |")
    print("|---|---:|---:|---:|")
    from tqdm import tqdm

    jobs = [(d, args.patients) for d in SINGLE] + [("PaclitaxelCarboplatin", args.combination_patients)]
    for name, n in tqdm(jobs, desc="environments", leave=False):
        env = gym.make(f"PKDose/{name}-v0")
        cells = []
        for policy in ("standard", "none", "max"):
            returns = np.array([episode_return(env, seed, policy) for seed in range(n)])
            cells.append(f"{returns.mean():.2f} +- {returns.std(ddof=1) / np.sqrt(n):.2f}")
        tqdm.write(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

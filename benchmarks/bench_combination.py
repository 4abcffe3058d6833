"""Speed of the combination environment: compiled PD against the numpy RK4, side by side.

    python benchmarks/bench_combination.py                # about 2 minutes on 2 cores
    python benchmarks/bench_combination.py --quick        # fewer steps

Measures, in one run and on the same machine, with ``pd_backend="compiled"`` (the default, numba)
and ``pd_backend="numpy"`` (the reference RK4):

1. the single ``PKDose/PaclitaxelCarboplatin-v0`` environment, steps/s (resets included);
2. the native vector environment at N = 4,096, patient-steps/s (autoresets included);
   both also for the ``-v1`` multimodal patient (compiled only: its two marrow chains and delays);
3. PPO on the native SB3 adapter at 64 environments: the share of training wall time spent in
   the environment's step (and in the PD integration alone).

Goals (issue 14): single >= 2,000 steps/s, native N = 4,096 >= 200,000 patient-steps/s, the
combination's share of PPO training time < 30 %.
"""

from __future__ import annotations

import argparse
import time
import warnings

import _timing  # first: one BLAS thread before numpy is imported
import gymnasium as gym
import numpy as np

import pk_envs
from pk_envs import combination_core

ENV_ID = "PKDose/PaclitaxelCarboplatin-v0"
#: the multimodal patient (platelets, delays, neuropathy, febrile neutropenia; compiled PD only)
V1_ID = "PKDose/PaclitaxelCarboplatin-v1"
BACKENDS = ("compiled", "numpy")
gym.register_envs(pk_envs)


def single_rate(backend: str, seconds: float, env_id: str = ENV_ID) -> float:
    env = gym.make(env_id, pd_backend=backend)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (64, 2)).astype(np.float32)
    env.reset(seed=0)
    env.step(actions[0])  # the compiled kernel loads here, not in the timing

    def step() -> int:
        _, _, terminated, truncated, _ = env.step(actions[step.k % 64])
        step.k += 1
        if terminated or truncated:
            env.reset()
        return 1

    step.k = 0
    return _timing.rate(step, 50, seconds)


def vector_rate(backend: str, n: int, steps: int, env_id: str = ENV_ID) -> float:
    envs = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", pd_backend=backend)
    actions = np.random.default_rng(0).uniform(-1, 1, (n, 2)).astype(np.float32)
    envs.reset(seed=0)
    envs.step(actions)
    start = time.perf_counter()
    for _ in range(steps):
        envs.step(actions)
    return n * steps / (time.perf_counter() - start)


def ppo_shares(backend: str, timesteps: int) -> dict[str, float]:
    """Wall-time shares of PPO training in the env's ``advance`` and in the PD integration."""
    from stable_baselines3 import PPO

    from agents.config import hyperparameters
    from agents.sb3_vec_env import NativeVecEnv
    from vae_simulator.groundtruth import pd

    spent = {"env": 0.0, "pd": 0.0}
    task_advance = combination_core.CombinationTask.advance
    pd_functions = {"integrate_cycle": pd.integrate_cycle, "simulate_both": pd.simulate_both}

    def timed(fn, key):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - start
        return wrapper

    combination_core.CombinationTask.advance = timed(task_advance, "env")
    for name, fn in pd_functions.items():
        setattr(combination_core, name, timed(fn, "pd"))
    try:
        env = NativeVecEnv(ENV_ID, 64, {"pd_backend": backend})
        params = hyperparameters("ppo", ENV_ID)
        model = PPO("MlpPolicy", env, seed=0, verbose=0, device="cpu", **params)
        start = time.perf_counter()
        model.learn(timesteps)
        total = time.perf_counter() - start
    finally:
        combination_core.CombinationTask.advance = task_advance
        for name, fn in pd_functions.items():
            setattr(combination_core, name, fn)
    return {"total_s": total, "env_share": spent["env"] / total, "pd_share": spent["pd"] / total}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/bench_combination.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="shorter measurements")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    seconds, vec_steps = (1.0, 2) if args.quick else (4.0, 6)
    ppo_steps = 64 * 128 * (1 if args.quick else 4)
    from tqdm import tqdm

    with tqdm(total=4, desc="measuring", unit="part", leave=False) as bar:
        single = {b: single_rate(b, seconds) for b in BACKENDS}
        bar.update()
        vector = {b: vector_rate(b, 4096, vec_steps) for b in BACKENDS}
        bar.update()
        shares = {b: ppo_shares(b, ppo_steps) for b in BACKENDS}
        bar.update()
        single_v1, vector_v1 = single_rate("compiled", seconds, V1_ID), vector_rate("compiled", 4096, vec_steps, V1_ID)
        bar.update()
    print("| measurement | compiled PD | numpy RK4 | ratio | goal |\n|---|---|---|---|---|")
    print(f"| single env, steps/s | {single['compiled']:,.0f} | {single['numpy']:,.0f} | "
          f"{single['compiled'] / single['numpy']:.1f}x | >= 2,000 |")
    print(f"| native vector env N = 4,096, patient-steps/s | {vector['compiled']:,.0f} | {vector['numpy']:,.0f} | "
          f"{vector['compiled'] / vector['numpy']:.1f}x | >= 200,000 |")
    print(f"| v1 (multimodal) single env, steps/s | {single_v1:,.0f} | | | |")
    print(f"| v1 native vector env N = 4,096, patient-steps/s | {vector_v1:,.0f} | | | |")
    print(f"| PPO, 64 envs, {ppo_steps:,} steps: wall time | {shares['compiled']['total_s']:.1f} s | "
          f"{shares['numpy']['total_s']:.1f} s | {shares['numpy']['total_s'] / shares['compiled']['total_s']:.1f}x | |")
    print(f"| PPO: share of training time in the env step | {100 * shares['compiled']['env_share']:.0f} % | "
          f"{100 * shares['numpy']['env_share']:.0f} % | | < 30 % |")
    print(f"| PPO: share in the PD integration | {100 * shares['compiled']['pd_share']:.0f} % | "
          f"{100 * shares['numpy']['pd_share']:.0f} % | | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Sweep throughput on Ray Tune: the same trials with 1 and with 2 worker processes, side by side.

    python benchmarks/bench_sweep.py                   # 4 PPO trials of 20,000 steps each
    python benchmarks/bench_sweep.py --trials 6 --timesteps 50000

Each configuration runs a fresh sweep (new results directory, embedded local Ray started once)
of ``--trials`` PPO trials on PKDose/Vancomycin-v0 (seeds 0..n-1, 100 evaluation patients) with
``max_concurrent_trials`` = 1, then 2. Prints wall time, trials per hour and the speed-up; the
cluster figure (N nodes) is an estimate from the per-process rate, said to be one.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _timing  # noqa: F401 (first: one BLAS thread per process)

from agents.sweep import run_sweep
from agents.sweep_config import parse_sweep_config


def sweep_seconds(trials: int, timesteps: int, concurrent: int, root: Path) -> float:
    config = parse_sweep_config({"name": f"bench-{concurrent}", "algorithms": ["ppo"], "envs": ["PKDose/Vancomycin-v0"],
                                 "seeds": list(range(trials)), "eval_patients": 100, "baselines": False,
                                 "timesteps": {"ppo": timesteps}})
    start = time.perf_counter()
    states = run_sweep(config, root / f"workers{concurrent}", max_concurrent=concurrent, verbose=0)
    elapsed = time.perf_counter() - start
    if set(states.values()) != {"TERMINATED"}:
        raise RuntimeError(f"trials failed: {states}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--timesteps", type=int, default=20_000)
    args = parser.parse_args()
    import ray

    ray.init(include_dashboard=False, logging_level="ERROR")
    with tempfile.TemporaryDirectory() as tmp:
        from tqdm import tqdm

        seconds = {n: sweep_seconds(args.trials, args.timesteps, n, Path(tmp))
                   for n in tqdm((1, 2), desc="worker counts", leave=False)}
    ray.shutdown()
    print(f"{args.trials} PPO trials x {args.timesteps:,} steps (PKDose/Vancomycin-v0), embedded Ray\n")
    print("| worker processes | wall time (s) | trials per hour | speed-up |")
    print("|---:|---:|---:|---:|")
    for n, s in seconds.items():
        print(f"| {n} | {s:.1f} | {args.trials / s * 3600:.0f} | {seconds[1] / s:.2f}x |")
    per_process = args.trials / seconds[1] * 3600
    print(f"\nEstimate, not measured: N nodes of 16 cores run about {per_process:.0f} x 16 x N trials of this size "
          "per hour while the sweep has more trials than cores (trials are independent; Tune adds seconds per trial).")


if __name__ == "__main__":
    main()

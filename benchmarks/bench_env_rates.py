"""Single-env and native-vector rates of a few ids, with Gymnasium's Pendulum-v1 in the same process.

    python benchmarks/bench_env_rates.py                       # this checkout
    git worktree add /tmp/before 257adb4                        # an earlier commit, for a before/after table
    python benchmarks/bench_env_rates.py --tree /tmp/before     # the same measurements on that tree

Prints one JSON line per run (steps/s of ``gym.make``'d single envs, patient-steps/s of the native vector
env over one whole episode with its autoreset step at N = 1,024 and 4,096). Run the two trees alternately,
twice each: the machine's speed drifts by 20-40 % between minutes (docs/speed.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

IDS = ("PKDose/Vancomycin-v0", "PKDose/Vancomycin-v1", "PKDose/Phenytoin-v1")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1],
                   help="the checkout whose pk_envs is measured (default: this one)")
    p.add_argument("--ids", default=",".join(IDS), help="comma-separated ids (default: %(default)s)")
    args = p.parse_args(argv)
    tree = args.tree.resolve()
    if not (tree / "pk_envs").is_dir():
        p.error(f"{tree} has no pk_envs package")
    sys.path[:0] = [str(tree), str(tree / "benchmarks")]  # that tree's packages, not the installed ones
    warnings.filterwarnings("ignore")
    import _timing  # noqa: F401  (one BLAS thread, before numpy)
    import gymnasium as gym
    from bench_envs import single_env_rate, vector_rate

    import pk_envs

    if not Path(pk_envs.__file__).resolve().is_relative_to(tree):
        raise SystemExit(f"error: imported {pk_envs.__file__}, not {tree}'s pk_envs")
    out: dict = {"tree": str(tree)}
    for env_id in args.ids.split(","):
        vector_rate(env_id, 300, "native", 2)  # loads (or compiles) the kernels outside the timing
        out[f"{env_id} single"] = round(single_env_rate(env_id, False, 2.0))
        for n in (1024, 4096):
            out[f"{env_id} native {n}"] = round(vector_rate(env_id, n, "native")["patient_steps_per_s"])
    env, steps, start = gym.make("Pendulum-v1"), 0, time.perf_counter()
    env.reset(seed=0)
    action = env.action_space.sample()
    while time.perf_counter() - start < 1.0:
        _, _, terminated, truncated, _ = env.step(action)
        steps += 1
        if terminated or truncated:
            env.reset()
    out["Pendulum-v1 single"] = round(steps / (time.perf_counter() - start))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())

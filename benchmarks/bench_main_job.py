"""PPO's main job (600,000 steps on PKDose/Vancomycin-v0) under other SB3 settings: training time and
held-out attainment, the measurement behind ``agents.config.MAIN_JOB_PPO_SINGLE``.

    python benchmarks/bench_main_job.py --n-envs 16 --n-steps 128 --batch 512 --threads 2   # the defaults
    python benchmarks/bench_main_job.py --n-envs 64 --n-steps 32 --batch 1024 --threads 1   # the main job's

Each run trains with ``agents.training.train`` (validation checks and checkpoints as the main job),
then evaluates the best model on the 1,000 held-out patients, and prints one JSON line. Run the
settings one after the other on an otherwise idle machine (~3-4 min each on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-envs", type=int, required=True)
    p.add_argument("--n-steps", type=int, required=True, help="intervals per patient per PPO update")
    p.add_argument("--batch", type=int, required=True, help="PPO minibatch size")
    p.add_argument("--threads", type=int, required=True, help="torch threads")
    p.add_argument("--timesteps", type=int, default=600_000)
    p.add_argument("--env", default="PKDose/Vancomycin-v0")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    from agents.baselines import SB3Policy
    from agents.callbacks import TEST_SEED
    from agents.checkpoints import load_agent
    from agents.config import hyperparameters
    from agents.evaluate import evaluate_policy
    from agents.training import RunConfig, train

    torch.set_num_threads(args.threads)
    params = {**hyperparameters("ppo", args.env), "n_steps": args.n_steps, "batch_size": args.batch}
    config = RunConfig(algo="ppo", env_id=args.env, total_timesteps=args.timesteps, n_envs=args.n_envs,
                       hyperparameters=params)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train(config, tmp, progress_bar=False)
        seconds = time.perf_counter() - start
        best = Path(tmp) / "best_model.zip"
        model, _ = load_agent(best if best.exists() else Path(tmp) / "final_model.zip", expected_env_id=args.env)
        result = evaluate_policy(args.env, SB3Policy(model), n_patients=1000, seed=TEST_SEED)
    attainment = result.metrics["in_window_fraction"]
    print(json.dumps({**vars(args), "train_s": round(seconds, 1), "in_window": round(attainment.mean, 4),
                      "ci": [round(attainment.low, 4), round(attainment.high, 4)]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""pkdose main job: learn a dosing policy and compare it with how patients are dosed today.

    pkdose train                                      # PPO on vancomycin, evaluated against every baseline
    pkdose train --algo sac --env PKDose/Phenytoin-v0 --timesteps 100000
    pkdose train --out runs/my-run --resume           # continue a killed run from its last checkpoint
    pkdose train --weights runs/byod/mine/best/mine.json --target trough:15-20   # your table's PK-VAE
    tensorboard --logdir runs                         # training curves, target attainment, toxicity

(``python train.py ...`` is the same job from a source checkout.)

The main job, on embedded defaults (about 3.5 minutes on 2 CPU cores):

1. trains a policy with Stable-Baselines3 on virtual patients simulated by the shipped PK-VAE
   (``--timesteps`` dosing intervals over all patients; TensorBoard logs, checkpoints, and a
   periodic check on a 200-patient validation cohort that keeps the best policy);
2. evaluates the best policy and the baselines (standard dosing, MIPD with the PK-VAE encoder,
   the oracle that knows the true patient, no drug, maximum dose, random) on the same held-out
   cohort of ``--eval-patients`` virtual patients never seen in training (seeds from 1,000,000);
3. prints the table (means with 95 % bootstrap CIs) and writes a report folder: ``report.md``,
   ``results.json``, ``dose_trajectories.png``, ``learning_curve.png``.

Other commands: ``pkdose --help`` lists them (``pkdose vae``, ``pkdose generate``, ``pkdose
benchmark``, ...); each has ``--help``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DEFAULT_ENV = "PKDose/Vancomycin-v0"


def env_options(args: argparse.Namespace) -> dict:
    """The environment arguments of ``--weights``, ``--target`` and each ``--env-option KEY=VALUE``."""
    options = {} if args.weights is None else {"weights": str(args.weights)}
    if args.target is not None:
        options["target"] = args.target
    for item in args.env_option:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--env-option {item!r} is not KEY=VALUE (e.g. intervals_h=[12])")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value  # plain text, e.g. target=auc24:400-600
    return options


def parse_args(argv: list[str], prog: str = "pkdose train") -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", default="ppo", help="ppo (default), sac or recurrent_ppo (an LSTM policy, sb3-contrib)")
    p.add_argument("--env", default=DEFAULT_ENV,
                   help="a scalar-reward PKDose id (default PKDose/Vancomycin-v0; see pk_envs.ALL_IDS)")
    p.add_argument("--timesteps", type=int, default=None,
                   help="training budget in environment steps (default: 600000 for PPO, 60000 for SAC)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training patients and networks (default 0)")
    p.add_argument("--reward-weights", default=None, metavar="W_EFF,W_TOX",
                   help="weights of efficacy and toxicity in the reward, e.g. 1,2 (default: the env's 1,1)")
    p.add_argument("--weights", default=None, metavar="MANIFEST",
                   help="a PK-VAE learnt from your table (pkdose vae --data ...): trains on "
                        "PKDose/Custom-v0 with it (needs --target)")
    p.add_argument("--target", default=None, metavar="METRIC:LOW-HIGH",
                   help="exposure window of --weights, e.g. auc24:400-600, trough:15-20")
    p.add_argument("--env-option", action="append", default=[], metavar="KEY=VALUE",
                   help="another environment argument (VALUE as JSON), e.g. intervals_h=[12] or "
                        "dose_range_mg=[0,3000]; repeatable")
    p.add_argument("--warm-start", default=None, metavar="informed:LAMBDA",
                   help="PPO on PKDose/PaclitaxelCarboplatin-v1 only: start from a behaviour clone of the "
                        "informed-regimen policy with trade-off LAMBDA (agents.warm_start), e.g. informed:0.2")
    p.add_argument("--n-envs", type=int, default=None,
                   help="patients simulated in parallel (default: PPO 64 on single-drug ids with the main job's "
                        "faster settings, agents.config.MAIN_JOB_PPO_SINGLE; otherwise 16 PPO, 8 SAC)")
    p.add_argument("--eval-patients", type=int, default=1000, help="held-out cohort size (default 1000)")
    p.add_argument("--out", default=None, help="run and report directory (default runs/<algo>-<env>-seed<seed>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, prog: str = "pkdose train") -> int:
    """The main job (module docstring); ``prog`` is the name ``--help`` shows."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv, prog)

    # Heavy imports after argument parsing, so --help is instant.
    from agents.baselines import SB3Policy
    from agents.callbacks import TEST_SEED
    from agents.checkpoints import load_agent
    from agents.config import MAIN_JOB_PPO_SINGLE, env_family
    from agents.evaluate import evaluate_policy
    from agents.report import (
        baseline_policies,
        plot_dose_trajectories,
        plot_learning_curve,
        record_courses,
        results_table,
    )
    from agents.training import RunConfig, train

    # 1. Configuration: embedded defaults, overridden by the options. Bad values raise here.
    algo = args.algo.lower()
    try:
        options, env_id = env_options(args), args.env
        if args.weights is not None and env_id == DEFAULT_ENV:
            env_id = "PKDose/Custom-v0"
        fast = algo == "ppo" and args.n_envs is None and not args.resume and env_family(env_id) == "single"
        preset = MAIN_JOB_PPO_SINGLE if fast else {"n_envs": args.n_envs, "hyperparameters": {}}
        config = RunConfig(algo=algo, env_id=env_id, seed=args.seed, n_envs=preset["n_envs"],
                           total_timesteps=args.timesteps or (60_000 if algo == "sac" else 600_000),
                           reward_weights=args.reward_weights, env_options=options,
                           hyperparameters=dict(preset["hyperparameters"]), warm_start=args.warm_start)
        if args.eval_patients < 2:
            raise ValueError(f"--eval-patients must be >= 2, got {args.eval_patients}")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_dir = Path(args.out or f"runs/{config.algo}-{config.env_id.split('/')[-1]}-seed{config.seed}")
    if args.resume:  # the run's own configuration; only the budget may be raised
        try:
            config = RunConfig.load(run_dir)
        except (ValueError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        config.total_timesteps = args.timesteps or config.total_timesteps
    print(f"Training {config.algo.upper()} on {config.env_id} for {config.total_timesteps:,} steps "
          f"({config.n_envs} patients in parallel) -> {run_dir}")

    # 2. Training: TensorBoard in run_dir/tensorboard, checkpoints, best model on the validation cohort.
    import torch

    start, threads = time.perf_counter(), torch.get_num_threads()
    try:
        if fast:  # a 128 x 128 MLP trains faster on one thread than split over two
            torch.set_num_threads(MAIN_JOB_PPO_SINGLE["torch_threads"])
        train(config, run_dir, resume=args.resume, progress_bar=not args.no_progress)
    except (ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)
    train_s = time.perf_counter() - start
    best = run_dir / "best_model.zip"
    model, _ = load_agent(best if best.exists() else run_dir / "final_model.zip", expected_env_id=config.env_id,
                          expected_algo=config.algo)

    # 3. Evaluation: the agent and every baseline on the same held-out patients.
    policies = {f"{config.algo.upper()} (this run)": SB3Policy(model), **baseline_policies(config.env_id, env_kwargs=config.env_kwargs)}
    results = []
    for name, policy in policies.items():
        print(f"Evaluating {name} on {args.eval_patients} held-out patients ...", flush=True)
        results.append(evaluate_policy(config.env_id, policy, n_patients=args.eval_patients, seed=TEST_SEED,
                                       env_kwargs=config.env_kwargs, policy_name=name, progress=not args.no_progress))
    table = results_table(results)
    print("\n" + table + "\n")

    # 4. Report: markdown, JSON and figures.
    seeds = [TEST_SEED + i for i in range(3)]
    shown = {k: v for k, v in policies.items() if k not in ("random", "no drug", "maximum dose")}
    courses = {name: record_courses(config.env_id, policy, seeds, config.env_kwargs) for name, policy in shown.items()}
    import gymnasium as gym

    target = getattr(gym.make(config.env_id, **config.env_kwargs).unwrapped, "target", None)
    plot_dose_trajectories(config.env_id, courses, run_dir / "dose_trajectories.png", target)
    references = ("standard dosing", "MIPD (PK-VAE encoder)", "oracle (true latent)")
    returns = {r.policy_name: r.metrics["return"].mean for r in results if r.policy_name in references}
    plot_learning_curve(run_dir / "evaluations.npz", run_dir / "learning_curve.png", returns)
    command = f"{prog} " + " ".join(argv)
    (run_dir / "report.md").write_text(
        f"# {config.algo.upper()} on {config.env_id}\n\nCommand: `{command.strip()}`; training took "
        f"{train_s / 60:.1f} min for {config.total_timesteps:,} steps.\n\nHeld-out cohort: {args.eval_patients} "
        f"virtual patients (seeds {TEST_SEED}..{TEST_SEED + args.eval_patients - 1}); means with 95 % bootstrap "
        f"CIs.\n\n{table}\n\n![dose trajectories](dose_trajectories.png)\n\n![learning curve](learning_curve.png)\n")
    (run_dir / "results.json").write_text(json.dumps(
        {r.policy_name: {k: [e.mean, e.low, e.high] for k, e in r.metrics.items()} for r in results}, indent=2))
    print(f"Report: {run_dir / 'report.md'} (TensorBoard: tensorboard --logdir {run_dir / 'tensorboard'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

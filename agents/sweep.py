"""Sweeps of algorithms x environment ids x seeds on Ray Tune, locally or on a cluster, same command.

    pkdose sweep configs/leaderboard.toml --results reports/leaderboard
    RAY_ADDRESS=head-node:6379 pkdose sweep configs/leaderboard.toml --results /shared/leaderboard
    pkdose sweep configs/smoke.toml --results /tmp/smoke --max-concurrent 1

With no address (neither ``--address`` nor ``RAY_ADDRESS``) ``ray.init()`` starts an embedded Ray on
this machine's cores; with one, the same sweep runs on that cluster (every node needs pkdose
installed, and ``--results`` must be a directory all nodes share, e.g. NFS: trials write there
directly, so a killed trial resumes from its own checkpoints on whichever node reruns it).

One Tune trial per (algorithm, env, seed) trains with :func:`agents.training.train` and evaluates
its best policy on the held-out cohort; one trial per env evaluates every baseline on the same
cohort. The results directory::

    <results>/sweep.json                 the config, its fingerprint, the state of each trial
    <results>/trials/<trial>/run/        the training run (TensorBoard, checkpoints, best model)
    <results>/trials/<trial>/evaluation.json   per-patient results on the held-out cohort
    <results>/tune/                      Ray Tune's experiment state (for restore)
    <results>/leaderboard.{md,json}, *.png    written by agents.leaderboard at the end

A killed sweep, run again with the same command, resumes: Tune restores its experiment
(``Tuner.restore``, errored trials rerun) and a trial whose ``evaluation.json`` exists returns it
without work, one whose training was cut resumes from its last checkpoint. A failed trial is
retried once (``FailureConfig(max_failures=1)``) and then reported in ``sweep.json``, not fatal.
Before anything starts the config is checked in full, a results directory of another config is
refused, and an unreachable address is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

from agents.sweep_config import SweepConfig, Trial, load_sweep_config

EVALUATION_FORMAT = "pkdose-evaluation/1"
SWEEP_FORMAT = "pkdose-sweep/1"


# --- one trial (no Ray needed: the Tune trainable below only wraps it) ---------------------------

def run_trial(trial: Trial, results_dir: str | Path, *, progress: bool = False) -> dict[str, Any]:
    """Run one trial into ``<results_dir>/trials/<trial.name>``; returns a summary of its evaluation.

    Idempotent: a finished trial (its ``evaluation.json`` written for this very trial) is read back,
    a cut training run resumes from its last checkpoint.
    """
    from agents.callbacks import TEST_SEED

    trial_dir = Path(results_dir) / "trials" / trial.name
    done = trial_dir / "evaluation.json"
    if done.is_file():
        saved = json.loads(done.read_text())
        if saved.get("trial") == json.loads(json.dumps(trial.to_json())):
            return _summary(trial, saved["results"])
    trial_dir.mkdir(parents=True, exist_ok=True)
    kw = {"n_patients": trial.eval_patients, "seed": TEST_SEED, "num_envs": min(trial.eval_patients, 500),
          "progress": progress}
    if trial.kind == "baselines":
        results = [r.to_json() for r in evaluate_baselines(trial.env_id, kw)]
    else:
        results = [train_and_evaluate(trial, trial_dir / "run", kw, progress).to_json()]
    payload = {"format": EVALUATION_FORMAT, "trial": trial.to_json(), "results": results}
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(done)  # atomic: a killed trial never leaves half an evaluation
    return _summary(trial, results)


def train_and_evaluate(trial: Trial, run_dir: Path, eval_kw: dict[str, Any], progress: bool):
    """Train (resuming a cut run; validation cohort for the best model) and evaluate the best policy
    on the held-out cohort of ``eval_kw``."""
    from agents.baselines import SB3Policy
    from agents.checkpoints import load_agent
    from agents.evaluate import evaluate_policy
    from agents.training import RunConfig, train

    # ten validation points draw the learning curve (is the budget at a plateau?)
    config = RunConfig(algo=trial.algo, env_id=trial.env_id, seed=trial.seed, total_timesteps=trial.timesteps,
                       n_envs=trial.n_envs, reward_weights=trial.reward_weights,
                       eval_freq=max(trial.timesteps // 10, 1), checkpoint_freq=max(trial.timesteps // 5, 1),
                       hyperparameters=dict(trial.hyperparameters))
    train(config, run_dir, resume=(run_dir / "run.json").is_file(), progress_bar=progress)
    best = run_dir / "best_model.zip"
    model, _ = load_agent(best if best.is_file() else run_dir / "final_model.zip", expected_env_id=trial.env_id)
    return evaluate_policy(trial.env_id, SB3Policy(model), policy_name=trial.algo, env_kwargs=config.env_kwargs,
                           **eval_kw)


def evaluate_baselines(env_id: str, eval_kw: dict[str, Any]) -> list:
    """Every baseline of ``env_id`` on the cohort; on combination ids also the constant-regimen oracle."""
    import pk_envs
    from agents.evaluate import evaluate_policy
    from agents.report import baseline_policies

    results = [evaluate_policy(env_id, policy, policy_name=name, **eval_kw)
               for name, policy in baseline_policies(env_id).items()]
    if env_id in pk_envs.COMBINATION_IDS:
        results.append(combination_oracle(env_id, eval_kw["n_patients"], eval_kw["seed"]))
    return results


def combination_oracle(env_id: str, n_patients: int, seed: int):
    """Per patient, the best of the 25 constant regimens for response - toxicity (see combination_study)."""
    import numpy as np

    from agents.combination_study import best_regimens, oracle_outcomes
    from agents.evaluate import EvaluationResult, bootstrap_ci
    from agents.leaderboard import figures

    outcomes = oracle_outcomes([seed + i for i in range(n_patients)], progress=False, env_id=env_id)
    _, toxicity = figures(env_id)
    rows, best = np.arange(n_patients), best_regimens(outcomes, lam=1.0)
    per_patient = {"objective_response": outcomes["objective_response"][rows, best].astype(float),
                   toxicity: outcomes["serious_adverse_event"][rows, best].astype(float)}
    return EvaluationResult(env_id, "oracle (best constant regimen)", n_patients, seed, per_patient,
                            bootstrap_ci(per_patient))


def _summary(trial: Trial, results: list[dict[str, Any]]) -> dict[str, Any]:
    means = {f"{r['policy_name']}/{k}": v[0] for r in results for k, v in r["metrics"].items()}
    return {"trial": trial.name, "n_results": len(results), **means}


def _trial_dirname(tune_trial: Any) -> str:
    """Tune's trial folder named like ours (``ppo-Vancomycin-v0-seed3``), not after the whole config."""
    return Trial.from_json(tune_trial.config["trial"]).name


def _trainable(params: dict[str, Any]) -> None:
    """The Tune function trainable: register the ids in this worker, run the trial, report it."""
    import torch
    from ray import tune

    import pk_envs  # noqa: F401 (the Gymnasium registry does not travel to Ray workers)

    torch.set_num_threads(max(1, int(params.get("threads", 1))))
    tune.report(run_trial(Trial.from_json(params["trial"]), params["results_dir"]))


# --- the sweep ---------------------------------------------------------------------------------------

def check_results_dir(config: SweepConfig, results_dir: Path) -> None:
    """Refuse a results directory written by another config (its fingerprint differs)."""
    state = results_dir / "sweep.json"
    if not state.is_file():
        if results_dir.is_dir() and any(results_dir.iterdir()):
            raise ValueError(f"{results_dir} is not empty and holds no sweep.json: choose an empty or new directory")
        return
    saved = json.loads(state.read_text())
    if saved.get("fingerprint") != config.fingerprint():
        raise ValueError(f"{results_dir} holds the results of another sweep config ({saved.get('name')!r}, "
                         f"{len(saved.get('trials', {}))} trials); use a new --results directory, or the config "
                         "it was made with to resume it")


def check_address(address: str | None) -> None:
    """Fail fast, before any trial, when a Ray address names a head that does not answer."""
    if address in (None, "", "auto", "local"):
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"Ray address {address!r} is not host:port (or ray://host:port, 'auto', 'local')")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise ConnectionError(f"cannot reach the Ray cluster at {address!r} ({err}); start it with "
                              "'ray start --head' there, or unset RAY_ADDRESS to run on this machine") from None


def _write_state(results_dir: Path, config: SweepConfig, states: dict[str, str],
                 errors: dict[str, str] | None = None) -> None:
    payload = {"format": SWEEP_FORMAT, "name": config.name, "fingerprint": config.fingerprint(),
               "config": dict(vars(config)), "trials": states, "errors": errors or {}}
    (results_dir / "sweep.json").write_text(json.dumps(payload, indent=2, default=list))


def run_sweep(config: SweepConfig, results_dir: str | Path, *, address: str | None = None,
              max_concurrent: int | None = None, cpus_per_trial: int = 1, verbose: int = 1) -> dict[str, str]:
    """Run (or resume) every trial of ``config`` on Ray Tune; returns trial name -> ``TERMINATED`` / ``ERROR``.

    Args:
        address: a Ray cluster (default ``$RAY_ADDRESS``; none: an embedded local Ray).
        max_concurrent: trials at once (default: as many as the CPUs allow).
        cpus_per_trial: CPUs (and torch threads) per trial.
    """
    try:
        import ray
        from ray import tune
    except ImportError:
        raise ValueError("sweeps need Ray Tune: pip install -e \".[sweep]\" (ray[tune], rliable)") from None

    if re.match(r"^[a-z][a-z0-9+.-]*:/", str(results_dir)):  # a URI (Path() folds '//' to '/')
        raise ValueError(f"--results {results_dir}: object storage (s3://, gs://, ...) is not supported yet; trials "
                         "write their runs directly, so give a directory every node shares (local disk, NFS)")
    results_dir = Path(results_dir).resolve()
    address = address or os.environ.get("RAY_ADDRESS") or None
    check_results_dir(config, results_dir)
    check_address(address)
    results_dir.mkdir(parents=True, exist_ok=True)
    trials = config.trials()
    _write_state(results_dir, config, {t.name: "PENDING" for t in trials})
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose > 1, logging_level="ERROR",
                 runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore::DeprecationWarning"}})
    trainable = tune.with_resources(_trainable, {"cpu": cpus_per_trial})
    experiment = results_dir / "tune"
    if tune.Tuner.can_restore(str(experiment)):
        tuner = tune.Tuner.restore(str(experiment), trainable, resume_errored=True)
    else:
        space = {"trial": tune.grid_search([t.to_json() for t in trials]), "results_dir": str(results_dir),
                 "threads": cpus_per_trial}
        tuner = tune.Tuner(trainable, param_space=space,
                           tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent,
                                                       trial_dirname_creator=_trial_dirname),
                           run_config=tune.RunConfig(name="tune", storage_path=str(results_dir), verbose=verbose,
                                                     failure_config=tune.FailureConfig(max_failures=1)))
    grid = tuner.fit()
    states, errors = {t.name: "PENDING" for t in trials}, {}
    for result in grid:
        name = Trial.from_json(result.config["trial"]).name
        states[name] = "ERROR" if result.error else "TERMINATED"
        if result.error:  # the last attempt's exception line (the whole traceback: tune/<trial>/error.txt)
            errors[name] = _exception_line(str(result.error))
    _write_state(results_dir, config, states, errors)
    return states


def _exception_line(text: str) -> str:
    """``ValueError: ...`` out of a traceback (its last such line), at most 500 characters."""
    lines = text.strip().splitlines()
    found = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b", line)]
    return (found[-1] if found else lines[-1] if lines else "unknown error")[:500]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pkdose sweep", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Examples:\n" + __doc__.split("\n\n")[1])
    parser.add_argument("config", type=Path, help="the sweep file (TOML, see agents/sweep_config.py)")
    parser.add_argument("--results", default=None,
                        help="results directory (default reports/<config name>); shared by all nodes on a cluster")
    parser.add_argument("--address", default=None, help="Ray cluster address (default $RAY_ADDRESS, else local)")
    parser.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default: by CPUs)")
    parser.add_argument("--cpus-per-trial", type=int, default=1, help="CPUs and torch threads per trial")
    parser.add_argument("--no-leaderboard", action="store_true", help="do not write the leaderboard at the end")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_sweep_config(args.config)
        if args.max_concurrent is not None and args.max_concurrent < 1:
            raise ValueError(f"--max-concurrent must be >= 1, got {args.max_concurrent}")
        if args.cpus_per_trial < 1:
            raise ValueError(f"--cpus-per-trial must be >= 1, got {args.cpus_per_trial}")
        results = args.results or Path("reports") / config.name
        states = run_sweep(config, results, address=args.address, max_concurrent=args.max_concurrent,
                           cpus_per_trial=args.cpus_per_trial)
    except (ValueError, FileNotFoundError, ConnectionError) as err:
        print(f"pkdose sweep: error: {err}", file=sys.stderr)
        return 2
    failed = [name for name, state in states.items() if state != "TERMINATED"]
    errors = json.loads((Path(results).resolve() / "sweep.json").read_text()).get("errors", {})
    for name in failed:
        print(f"trial {name} failed twice: {errors.get(name, 'see its error.txt')}", file=sys.stderr)
    print(f"{len(states) - len(failed)} of {len(states)} trials finished" +
          (f"; failed after a retry: {', '.join(failed)}" if failed else ""))
    if not args.no_leaderboard:
        from agents.leaderboard import write_leaderboard

        for path in write_leaderboard(results):
            print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

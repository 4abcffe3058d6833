"""``pkdose``: one front door to every command of the package.

    pkdose --help                         # this list
    pkdose train                          # the main job: learn a dosing policy, compare with today's dosing
    pkdose train --env PKDose/PaclitaxelCarboplatin-v1 --timesteps 2000000 --n-envs 64
    pkdose vae --drug vancomycin          # train a PK-VAE on virtual patients
    pkdose vae --data my_table.csv --covariates WT,CRCL   # ... or on your own NONMEM table
    pkdose <command> --help               # each command's options and examples
    pkdose bench combination              # a benchmarks/ script (source checkout only)

Each command is the ``main(argv)`` of one module (named below), so ``python -m <module>`` runs
the same thing; ``python train.py ...`` is ``pkdose train ...`` from a source checkout.
"""

from __future__ import annotations

import importlib
import runpy
import sys
from pathlib import Path

#: command -> (module whose ``main(argv)`` it runs, one line for the list)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("agents.main_job", "learn a dosing policy and compare it with today's dosing (the main job)"),
    "vae": ("vae_simulator.vae.train", "train a PK-VAE: --drug NAME on virtual patients, --data TABLE on yours"),
    "vae-ct": ("vae_simulator.vae.ct_train", "train a continuous-time PK-VAE on virtual patients on any regimens"),
    "refit": ("vae_simulator.vae.refit", "refit the latent population of shipped PK-VAEs"),
    "generate": ("vae_simulator.generate", "generate a data set of virtual patient profiles"),
    "population": ("vae_simulator.population_summary", "ground-truth population summary under standard dosing"),
    "validate": ("vae_simulator.validation.cli", "validation report of a PK-VAE on held-out virtual patients"),
    "validate-ct": ("vae_simulator.validation.ct", "validation of the continuous-time PK-VAE on any regimens"),
    "mipd": ("vae_simulator.mipd", "model-informed precision dosing from a clinic's monitoring table"),
    "mipd-ct": ("vae_simulator.ct_mipd", "MIPD on the continuous-time PK-VAE: dose and interval"),
    "forecast": ("vae_simulator.forecast", "forecast concentrations with 90 % intervals from a dosing history"),
    "tdm-example": ("vae_simulator.tdm_example", "example clinic monitoring tables (NONMEM layout)"),
    "byod-examples": ("vae_simulator.byod.examples", "example tables to bring: real R-package PK data, a virtual one"),
    "figures": ("vae_simulator.figures", "figures of the ground-truth population"),
    "calibrate": ("vae_simulator.groundtruth.pd.calibration", "re-derive the combination's calibrated PD constants"),
    "calibrate-v1": ("vae_simulator.groundtruth.pd.calibration_v1",
                     "re-derive the multimodal combination patient's calibrated constants"),
    "benchmark": ("agents.benchmark", "PPO and SAC on PKDose ids against the clinical baselines"),
    "sweep": ("agents.sweep", "a sweep of algorithms x envs x seeds on Ray Tune, locally or on a cluster"),
    "leaderboard": ("agents.leaderboard", "the leaderboard of a sweep (rliable aggregates), with your own policy"),
    "study": ("agents.combination_study", "the combination study: agents vs conventional, adaptive rule, oracle"),
    "distill": ("agents.distill", "decision trees distilled from a combination policy (interpretable summary)"),
    "collect": ("agents.offline.collect", "log episodes under a behaviour policy (offline RL data, Minari)"),
    "ope": ("agents.offline.study", "ground-truth study of offline policy evaluation estimators"),
}
#: ``pkdose vae --data TABLE``: a PK-VAE learnt from a user's table
TABLE_VAE = "vae_simulator.byod.train"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TAGLINE = ("pkdose: Gymnasium environments for precision dosing on a PK-VAE virtual patient, the agents that learn "
           "in them, and their evaluation.")


def overview(prog: str) -> str:
    width = max(len(name) for name in COMMANDS)
    rows = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    rows.append(f"  {'bench':<{width}}  run a benchmarks/ script, e.g. '{prog} bench combination' (source checkout)")
    return (f"usage: {prog} <command> [options]\n\n{TAGLINE}\n\ncommands:\n"
            + "\n".join(rows) + f"\n\n'{prog} <command> --help' shows a command's options.")


def run_benchmark(argv: list[str], prog: str) -> int:
    """``bench NAME [options]``: ``benchmarks/bench_NAME.py`` (or ``NAME.py``) of the source checkout."""
    scripts = sorted(p.stem.removeprefix("bench_") for p in BENCHMARKS.glob("*.py") if not p.stem.startswith("_"))
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} bench NAME [options]\n\nbenchmarks: {', '.join(scripts) or '(none: not a source checkout)'}")
        return 0
    name = argv[0]
    path = next((p for p in (BENCHMARKS / f"bench_{name}.py", BENCHMARKS / f"{name}.py") if p.is_file()), None)
    if path is None:
        where = f"available: {', '.join(scripts)}" if scripts else "the benchmarks ship with the source checkout"
        print(f"{prog} bench: unknown benchmark {name!r} ({where})", file=sys.stderr)
        return 2
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv, sys.path = [str(path), *argv[1:]], [str(BENCHMARKS), *sys.path]
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as done:
        return int(done.code or 0) if not isinstance(done.code, str) else 1
    finally:
        sys.argv, sys.path = saved_argv, saved_path
    return 0


def main(argv: list[str] | None = None, *, default_command: str | None = None, prog: str = "pkdose") -> int:
    """Run ``argv[0]``'s command with the rest; with ``default_command``, options alone run that command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":
        return run_benchmark(argv[1:], prog)
    if argv and argv[0] in COMMANDS:
        name, rest = argv[0], argv[1:]
    elif default_command is not None and (not argv or argv[0].startswith("-")):
        name, rest = default_command, argv
    elif not argv or argv[0] in ("-h", "--help"):
        print(overview(prog))
        return 0
    else:
        print(f"{prog}: unknown command {argv[0]!r}; choose one of {', '.join([*COMMANDS, 'bench'])} "
              f"('{prog} --help')", file=sys.stderr)
        return 2
    module = COMMANDS[name][0]
    if name == "vae" and any(a == "--data" or a.startswith("--data=") for a in rest):
        module = TABLE_VAE
    if name == "train":
        from agents.main_job import main as main_job

        return main_job(rest, prog=f"{prog} train" if default_command is None else prog)
    result = importlib.import_module(module).main(rest)
    return 0 if result is None else int(result)


if __name__ == "__main__":
    raise SystemExit(main())

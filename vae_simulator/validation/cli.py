"""Command line of the PK-VAE validation report.

    python -m vae_simulator.validate --drug all --patients 1000 --out reports/vae
    python -m vae_simulator.validate --drug vancomycin --weights-dir runs/vae/vancomycin/best

Writes ``<out>/report.md`` (markdown tables: a summary against the goals, then one section
per check) and PNG figures next to it; drugs without trained weights are listed as skipped.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from vae_simulator.groundtruth import DRUGS, get_model
from vae_simulator.vae.io import record_metrics, shipped_weights_dir
from vae_simulator.validation.report import write_report
from vae_simulator.validation.run import STEPS, DrugValidation, ValidationSettings, validate_drug

PROG = "pkdose validate"


def build_parser() -> argparse.ArgumentParser:
    d = ValidationSettings()
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--drug", default="all", help=f"one of {', '.join(DRUGS)}, or 'all' (default)")
    p.add_argument("--patients", type=int, default=d.n_patients,
                   help=f"held-out patients for reconstruction, sparse prediction, calibration and the "
                        f"standard-dose cohort (default {d.n_patients})")
    p.add_argument("--fit-patients", type=int, default=d.n_fit,
                   help=f"patients fitted with the one-compartment comparator (default {d.n_fit})")
    p.add_argument("--mipd-patients", type=int, default=d.n_mipd,
                   help=f"MIPD study cohort (default {d.n_mipd})")
    p.add_argument("--interval", type=int, default=d.interval,
                   help=f"interval j (from 0) whose peak and trough are sampled; j+1 is predicted "
                        f"(default {d.interval})")
    p.add_argument("--draws", type=int, default=d.n_draws,
                   help=f"posterior-predictive draws per patient for calibration (default {d.n_draws})")
    p.add_argument("--seed", type=int, default=d.seed,
                   help=f"held-out seed, must differ from the training data seed (default {d.seed})")
    p.add_argument("--weights-dir", type=Path, default=None,
                   help="folder with <drug>.json + .safetensors to validate instead of the shipped weights")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: the work is many small sequential steps, MAP "
                        "refinement above all, where more threads mostly wait on each other, badly so on a "
                        "busy machine)")
    p.add_argument("--out", type=Path, default=Path("reports/vae"),
                   help="output folder (default reports/vae)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--record", action="store_true",
                   help="write each drug's headline metrics into its manifest (shipped, or --weights-dir)")
    return p


def display_command(argv: list[str]) -> str:
    """The command line as typed, with absolute paths made relative (or cut to their name)."""
    def shown(arg: str) -> str:
        if not os.path.isabs(arg):
            return arg
        rel = os.path.relpath(arg)
        return rel if not rel.startswith("..") else Path(arg).name
    return " ".join([PROG] + [shlex.quote(shown(a)) for a in argv])


class StepProgress:
    """Advances a progress bar as each step of a drug's validation completes."""

    def __init__(self, bar: tqdm):
        self.bar, self.drug, self.running = bar, "", False

    def start(self, drug: str) -> None:
        self.drug, self.running = drug, False

    def __call__(self, step: str) -> None:
        if self.running:
            self.bar.update(1)
        self.running = True
        self.bar.set_postfix_str(f"{self.drug}: {step}")

    def finish(self) -> None:
        if self.running:
            self.bar.update(1)
        self.running = False


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.drug == "all":
        drugs = DRUGS
    else:
        try:
            get_model(args.drug)
        except ValueError:
            parser.error(f"unknown drug {args.drug!r}; choose from {', '.join(DRUGS)} or 'all'")
        drugs = (args.drug,)
    for flag, value, minimum in (("--patients", args.patients, 1), ("--fit-patients", args.fit_patients, 1),
                                 ("--mipd-patients", args.mipd_patients, 1), ("--draws", args.draws, 2),
                                 ("--interval", args.interval, 0), ("--threads", args.threads, 1)):
        if value < minimum:
            parser.error(f"{flag} must be >= {minimum}, got {value}")
    settings = ValidationSettings(n_patients=args.patients, n_fit=args.fit_patients,
                                  n_mipd=args.mipd_patients, interval=args.interval, seed=args.seed,
                                  n_draws=args.draws, weights_dir=args.weights_dir)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        results = _validate_all(drugs, settings, args)
    finally:
        torch.set_num_threads(threads_before)  # main() may run inside a longer process (tests)
    report = write_report(results, settings, display_command(argv), args.out)
    if args.record:
        for r in results:
            if not r.skipped:
                path = (args.weights_dir or shipped_weights_dir()) / f"{r.drug}.json"
                record_metrics(path, headline_metrics(r, display_command(argv)))
                print(f"{r.drug}: metrics recorded in {path}")
    for r in results:
        print(f"{r.drug}: skipped, {r.skipped}" if r.skipped else f"{r.drug}: validated in {r.seconds:.0f} s")
    print(f"report: {report}")
    return 0


def _validate_all(drugs: tuple[str, ...], settings: ValidationSettings,
                  args: argparse.Namespace) -> list[DrugValidation]:
    """Validate each drug in turn under one progress bar; a ValueError ends the run with its message."""
    results = []
    with tqdm(total=len(drugs) * len(STEPS), unit="step", desc="PK-VAE validation",
              disable=args.no_progress) as bar:
        progress = StepProgress(bar)
        for drug in drugs:
            progress.start(drug)
            try:
                results.append(validate_drug(drug, settings, args.out, progress))
            except ValueError as exc:
                raise SystemExit(f"error: {exc}") from exc
            progress.finish()
    return results


def headline_metrics(r: DrugValidation, command: str) -> dict:
    """The numbers a manifest records: one per goal of the validation (fractions, not percent)."""
    metrics: dict = {"command": command, "held_out_patients": r.reconstruction.n_patients,
                     "reconstruction_median_ape": r.reconstruction.median_ape,
                     "reconstruction_log_rmse": r.reconstruction.log_rmse,
                     "prediction_interval_90_coverage": r.calibration.coverage}
    metrics["next_interval_within_20pct"] = {metric: dict(by) for metric, by in r.sparse.within.items()}
    metrics["mipd_in_target_window"] = dict(r.mipd.in_window)
    return metrics

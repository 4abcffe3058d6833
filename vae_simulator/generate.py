"""Generate a training set of virtual patient profiles per drug.

Example::

    python -m vae_simulator.generate --drug vancomycin --patients 10000 --intervals 10 --seed 0
    python -m vae_simulator.generate --drug all --out data/

Writes ``<out>/<drug>_n<patients>_k<intervals>_s<seed>.npz`` (see
:class:`vae_simulator.population.PopulationData` for the arrays) and prints a summary.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from vae_simulator.exposure import interval_exposure
from vae_simulator.groundtruth import DRUGS, get_model
from vae_simulator.population import PopulationData, simulate_dataset


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pkdose generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--drug", default="all", help=f"one of {', '.join(DRUGS)}, or 'all' (default)")
    p.add_argument("--patients", type=int, default=10_000, help="virtual patients per drug (default 10000)")
    p.add_argument("--intervals", type=int, default=10, help="dosing intervals per patient (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--iiv-scale", type=float, default=1.0,
                   help="scale of published inter-individual variability (default 1 = as published)")
    p.add_argument("--missing-prob", type=float, default=0.2,
                   help="probability that a scheduled clinic sample is missing (default 0.2)")
    p.add_argument("--out", type=Path, default=Path("data"), help="output folder (default ./data)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def summarise(data: PopulationData) -> str:
    """One line of population exposure percentiles for a generated data set."""
    model = get_model(data.drug)
    target = model.target
    exposure = interval_exposure(data.conc_true.astype(float), data.grid_h, target.metric, target.threshold_mg_l)
    p5, p50, p95 = np.percentile(exposure[:, -1], [5, 50, 95])
    in_window = np.mean((exposure >= target.low) & (exposure <= target.high))
    return (f"{data.drug:14s} n={data.doses_mg.shape[0]:6d} K={data.doses_mg.shape[1]:3d} "
            f"last-interval {target.metric} p5/p50/p95 = {p5:.3g}/{p50:.3g}/{p95:.3g} {target.unit}; "
            f"intervals in target window {100 * in_window:.1f}%")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    drugs = DRUGS if args.drug == "all" else (args.drug,)
    for drug in drugs:
        if drug not in DRUGS:
            raise SystemExit(f"error: unknown drug {drug!r}; choose from {', '.join(DRUGS)} or 'all'")
    args.out.mkdir(parents=True, exist_ok=True)
    for drug in drugs:
        start = time.perf_counter()
        data = simulate_dataset(drug, args.patients, args.intervals, args.seed, iiv_scale=args.iiv_scale,
                                missing_prob=args.missing_prob, progress=not args.no_progress)
        elapsed = time.perf_counter() - start
        path = args.out / f"{drug}_n{args.patients}_k{args.intervals}_s{args.seed}.npz"
        data.to_npz(path)
        print(f"{summarise(data)}; {elapsed:.1f} s -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

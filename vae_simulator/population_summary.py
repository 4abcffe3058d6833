"""Ground-truth population summary: every drug under its standard dosing, against its target.

    pkdose population [--patients 500] [--intervals 10] [--seed 0]

Simulates a virtual population of every drug in the ground-truth library (no PK-VAE) and prints
the last interval's exposure (median, 5th-95th percentile) and the share in the window and above
the toxic threshold.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def population_summary(n_patients: int, n_intervals: int, seed: int) -> None:
    """Simulate standard dosing for every drug and print target attainment."""
    from vae_simulator.covariates import Covariates
    from vae_simulator.exposure import interval_exposure
    from vae_simulator.groundtruth import DRUGS, get_model

    print(f"Ground-truth virtual population: {n_patients} patients per drug, {n_intervals} intervals, "
          f"standard dosing, seed {seed}\n")
    header = ("drug", "interval", "target", "median (p5-p95), last interval", "in window", "toxic", "time")
    rows = []
    from tqdm.auto import tqdm

    for i, drug in enumerate(tqdm(DRUGS, desc="simulating", unit="drug", leave=False)):
        start = time.perf_counter()
        model = get_model(drug)
        rng = np.random.default_rng([seed, i])
        cov = Covariates.sample(n_patients, rng)
        params = model.sample_parameters(cov, rng)
        doses = np.repeat(model.standard_dose_mg(cov)[:, None], n_intervals, axis=1)
        conc = model.simulate_intervals(params, doses)
        t = model.target
        exposure = interval_exposure(conc, model.interval_grid_h, t.metric, t.threshold_mg_l)[:, -1]
        p5, p50, p95 = np.percentile(exposure, [5, 50, 95])
        rows.append((drug, f"{model.interval_h:g} h", f"{t.metric} {t.low:.3g}-{t.high:.3g} {t.unit}",
                     f"{p50:.3g} ({p5:.3g}-{p95:.3g})",
                     f"{100 * np.mean((exposure >= t.low) & (exposure <= t.high)):.1f}%",
                     f"{100 * np.mean(exposure > t.toxic_above):.1f}%", f"{time.perf_counter() - start:.1f} s"))
    widths = [max(len(r[c]) for r in (header, *rows)) for c in range(len(header))]
    for r in (header, *rows):
        print("  ".join(v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(r, widths))))



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pkdose population", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=500, help="patients per drug (default 500)")
    parser.add_argument("--intervals", type=int, default=10, help="dosing intervals (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    if args.patients < 1 or args.intervals < 1:
        parser.error(f"--patients and --intervals must be >= 1, got {args.patients} and {args.intervals}")
    population_summary(args.patients, args.intervals, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

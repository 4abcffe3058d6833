"""Speed of the bring-your-own-data path: training on a table, forecasting 1,000 patients.

    python -m vae_simulator.byod.examples virtual --patients 1000 --samples 10,10 --out data/virtual_vanco10.csv
    python benchmarks/bench_byod.py --data data/virtual_vanco10.csv --covariates AGE,SEX:cat,WT,HT,SCR --lloq 5

Trains a PK-VAE on the table (the 20 % held-out split and the default 1-cmt prior of ``train.py vae --data``, no report),
then forecasts every record's last sample inside the trained range from its earlier ones (encoder, MAP refinement
and the 90 % intervals, by sigma points, the default, and by 200 latent draws, side by side) and prints the wall times. Goals (issue 13): training
on 1,000 patients x 10 samples under 10 minutes on 2 cores, forecasting 1,000 patients under 10 s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from vae_simulator.byod.report import forecast_split, within_trained_range
from vae_simulator.byod.train import train_on_table
from vae_simulator.ct_mipd import sample_arrays
from vae_simulator.forecast import METHODS, forecast_intervals


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/bench_byod.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--covariates", default="")
    p.add_argument("--lloq", type=float, default=None)
    p.add_argument("--patients", type=int, default=1000, help="records to forecast (default 1000)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run = train_on_table(args.data, args.covariates, name="bench", out_dir=Path(out), lloq_mg_l=args.lloq,
                             progress=False)
        train_s = time.perf_counter() - start
    table = run.table
    times, conc, blq, mask = sample_arrays(table)
    mask = within_trained_range(run.model, table.events, times, mask)
    usable, earlier, last = forecast_split(times, mask)
    rec = usable[:args.patients]
    cov = run.encoder.transform(table, warn=False)
    forecast_s = {}
    for method in METHODS:
        start = time.perf_counter()
        forecast_intervals(run.model, cov[rec], table.events.take(rec), (times[rec], conc[rec], blq[rec],
                           earlier[:len(rec)]), times[rec, last[:len(rec)]][:, None], method=method)
        forecast_s[method] = time.perf_counter() - start
    n_samples = int(mask[run.train_index].sum())
    print("| step | size | wall time | goal |\n|---|---|---|---|")
    print(f"| train (1-cmt prior, then {run.summary['epochs_run']} epochs fine-tuning) | {len(run.train_index)} training records, {n_samples} samples "
          f"| {train_s:.0f} s | < 600 s for 1,000 x 10 |")
    print(f"| forecast (encoder + MAP + sigma-point intervals, default) | {len(rec)} patients | "
          f"{forecast_s['sigma']:.1f} s | < 10 s for 1,000 |")
    print(f"| forecast (encoder + MAP + 200 latent draws) | {len(rec)} patients | {forecast_s['draws']:.1f} s | "
          f"(x{forecast_s['draws'] / forecast_s['sigma']:.1f} the default) |")
    return 0 if all(np.isfinite(list(forecast_s.values()))) else 1


if __name__ == "__main__":
    raise SystemExit(main())

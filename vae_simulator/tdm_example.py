"""Example clinic monitoring tables (NONMEM layout) simulated from the ground-truth models.

    python -m vae_simulator.tdm_example --drug vancomycin --patients 3 --seed 0 \
        --out examples/vancomycin_tdm.csv

Virtual patients get doses on the drug's schedule and a few samples at irregular ward times;
the samples carry the published residual error, and results below the assay LLOQ are written as
DV = LLOQ with BLQ = 1 (the M3 convention). The table starts at an arbitrary clock time, as
real data do. Read such tables with :func:`vae_simulator.nonmem.read_histories`.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vae_simulator.covariates import Covariates
from vae_simulator.groundtruth import get_model
from vae_simulator.groundtruth.base import Parameters

EXAMPLE_COLUMNS = ("ID", "TIME", "AMT", "DV", "EVID", "MDV", "BLQ", "AGE", "SEX", "WT", "HT", "SCR")


def simulate_tdm_rows(drug_name: str, covariates: Covariates, doses_mg: np.ndarray,
                      sample_times_h: Sequence[Sequence[float]], rng: np.random.Generator,
                      first_dose_time_h: float = 0.0, ids: Sequence[str] | None = None,
                      params: Parameters | None = None) -> list[dict[str, str]]:
    """Table rows for ground-truth patients of ``drug_name``.

    Patient ``i`` gets ``doses_mg[i]`` (mg per scheduled interval; 0 = held, no row) from
    ``first_dose_time_h`` (h on the table clock) and samples at ``sample_times_h[i]`` (h from the
    first dose). ``params``: individual parameters (default: drawn with the published IIV).
    """
    drug = get_model(drug_name)
    doses_mg = drug.check_doses(doses_mg)
    n, k = doses_mg.shape
    if len(covariates) != n or len(sample_times_h) != n:
        raise ValueError(f"{n} dosing histories but {len(covariates)} covariate rows and "
                         f"{len(sample_times_h)} sample-time lists")
    ids = [str(101 + i) for i in range(n)] if ids is None else [str(i) for i in ids]
    params = drug.sample_parameters(covariates, rng) if params is None else params
    rows = []
    for i in range(n):
        times = np.sort(np.asarray(sample_times_h[i], dtype=float))
        one = {name: np.asarray(value, dtype=float)[i:i + 1] for name, value in params.items()}
        conc = drug.simulate(one, doses_mg[i:i + 1], times)[0] if times.size else np.zeros(0)
        obs, blq = drug.sample_observations(conc, rng)
        cov = {"AGE": f"{covariates.AGE[i]:.0f}", "SEX": f"{covariates.SEX[i]:.0f}",
               "WT": f"{covariates.WT[i]:.1f}", "HT": f"{covariates.HT[i]:.0f}",
               "SCR": f"{covariates.SCR[i]:.2f}"}
        events = [(j * drug.interval_h, 1, f"{doses_mg[i, j]:g}", ".", "0")
                  for j in range(k) if doses_mg[i, j] > 0]
        events += [(t, 0, ".", f"{drug.lloq_mg_l:g}" if b else f"{c:.1f}", str(int(b)))
                   for t, c, b in zip(times, obs, blq)]
        events.sort(key=lambda e: (e[0], e[1]))  # a sample at a dose time is the pre-dose trough
        for t, evid, amt, dv, flag in events:
            rows.append({"ID": ids[i], "TIME": f"{first_dose_time_h + t:.2f}", "AMT": amt, "DV": dv,
                         "EVID": str(evid), "MDV": str(evid), "BLQ": flag, **cov})
    return rows


def write_rows(rows: Sequence[dict[str, str]], path: str | Path,
               columns: Sequence[str] = EXAMPLE_COLUMNS) -> None:
    """Write table rows as CSV with a header."""
    with Path(path).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def example_rows(drug_name: str, n_patients: int = 3, seed: int = 0) -> list[dict[str, str]]:
    """A small realistic table: 2-4 standard doses in 250-mg steps (the first patient has one held),
    then 1-3 samples per patient around the drug's monitoring times, off schedule as on a ward."""
    drug = get_model(drug_name)
    if n_patients < 1:
        raise ValueError(f"n_patients must be >= 1, got {n_patients}")
    rng = np.random.default_rng(seed)
    cov = Covariates.sample(n_patients, rng)
    n_doses = rng.integers(2, 5, n_patients)
    k = int(n_doses.max())
    doses = np.round(np.tile(drug.standard_dose_mg(cov)[:, None], (1, k)) / 250.0) * 250.0
    doses = np.clip(doses, *drug.dose_range_mg)
    doses[np.arange(k)[None, :] >= n_doses[:, None]] = 0.0
    if n_doses[0] > 2:
        doses[0, 1] = 0.0  # a held dose, later doses given
    tau, peak = drug.interval_h, drug.monitoring_times_h[0]
    times = []
    for i in range(n_patients):
        last = n_doses[i] - 1
        candidates = [last * tau + peak + rng.uniform(-0.4, 0.6), (last + 1) * tau - rng.uniform(0.1, 0.8),
                      last * tau - rng.uniform(0.1, 0.8)]
        times.append(np.round(candidates[:1 + i % 3], 1))
    return simulate_tdm_rows(drug_name, cov, doses, times, rng,
                             first_dose_time_h=float(np.round(rng.uniform(6, 20), 1)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pkdose tdm-example", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--drug", default="vancomycin", help="ground-truth drug (default vancomycin)")
    p.add_argument("--patients", type=int, default=3, help="virtual patients (default 3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", type=Path, required=True, help="CSV file to write")
    args = p.parse_args(argv)
    rows = example_rows(args.drug, args.patients, args.seed)
    write_rows(rows, args.out)
    print(f"wrote {len(rows)} rows for {args.patients} {args.drug} patients to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

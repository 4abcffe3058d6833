"""Speed of the PK-VAE simulator against the mechanistic ground truth, side by side.

    python benchmarks/bench_simulator.py [--patients 1000] [--intervals 10] [--repeats 3]

For every drug with a shipped decoder, the same virtual patients and the same randomised
10-interval regimens are simulated by

* the mechanistic ground-truth model (closed form or scipy ODE, vectorised over patients),
* the PK-VAE decoder in torch (one batched forward pass, no autograd), and
* the PK-VAE numpy fast path the environments use (one ``PKSimulator.step`` per interval),

and the table prints the best-of-``repeats`` wall time of each and the speed-up ratios. Absolute
times vary with machine load; the ratios, measured in the same run, are what to compare.
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread per process: on a small shared machine, spinning thread pools distort
# small-matrix timings by 10x (measured); set before numpy and torch are imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import time

import numpy as np
import torch

from vae_simulator.covariates import Covariates
from vae_simulator.groundtruth import DRUGS, get_model
from vae_simulator.population import random_regimens
from vae_simulator.simulator import PKSimulator
from vae_simulator.vae.io import load_pretrained, shipped_weights_dir


def best_time(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_drug(drug: str, n: int, k: int, repeats: int, seed: int = 0) -> dict:
    truth = get_model(drug)
    model, _ = load_pretrained(drug)
    sim = PKSimulator(model)
    rng = np.random.default_rng(seed)
    cov = Covariates.sample(n, rng)
    params = truth.sample_parameters(cov, rng)
    doses = random_regimens(truth, cov, k, rng)
    patients = sim.make_patients(cov.as_array(), rng.standard_normal((n, sim.latent_dim)))

    def numpy_path():
        state = sim.initial_state(patients)
        for j in range(k):
            _, _, state = sim.step(state, patients, doses[:, j])

    z_t = torch.as_tensor(patients.z, dtype=torch.float32)
    cov_t = torch.as_tensor(patients.covariates, dtype=torch.float32)
    doses_t = torch.as_tensor(doses, dtype=torch.float32)

    def torch_path():
        with torch.inference_mode():
            model.decode(z_t, cov_t, doses_t)

    t_truth = best_time(lambda: truth.simulate_intervals(params, doses), repeats)
    t_torch = best_time(torch_path, repeats)
    t_numpy = best_time(numpy_path, repeats)
    return {"drug": drug, "truth_s": t_truth, "torch_s": t_torch, "numpy_s": t_numpy}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patients", type=int, default=1000, help="patients per drug (default 1000)")
    p.add_argument("--intervals", type=int, default=10, help="dosing intervals (default 10)")
    p.add_argument("--repeats", type=int, default=3, help="timing repeats, best is kept (default 3)")
    args = p.parse_args(argv)
    if min(args.patients, args.intervals, args.repeats) < 1:
        p.error("--patients, --intervals and --repeats must be >= 1")
    drugs = [d for d in DRUGS if (shipped_weights_dir() / f"{d}.json").is_file()]
    print(f"{args.patients} patients x {args.intervals} intervals, best of {args.repeats}; "
          f"torch threads {torch.get_num_threads()}\n")
    print("| drug | ground truth (s) | PK-VAE torch (s) | PK-VAE numpy (s) | truth / torch | truth / numpy |")
    print("|---|---:|---:|---:|---:|---:|")
    for drug in drugs:
        r = bench_drug(drug, args.patients, args.intervals, args.repeats)
        print(f"| {drug} | {r['truth_s']:.4f} | {r['torch_s']:.4f} | {r['numpy_s']:.4f} | "
              f"{r['truth_s'] / r['torch_s']:.1f}x | {r['truth_s'] / r['numpy_s']:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

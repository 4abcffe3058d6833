"""Speed of the PK-VAE simulator against the mechanistic ground truth, side by side.

    python benchmarks/bench_simulator.py [--patients 1000] [--intervals 10] [--repeats 3]

For every drug with a shipped decoder, the same virtual patients and the same randomised
10-interval regimens are simulated by

* the mechanistic ground-truth model (closed form or scipy ODE, vectorised over patients),
* the PK-VAE decoder in torch (one batched forward pass, no autograd),
* the PK-VAE numpy reference path (``PKSimulator.step``, float64, one call per interval), and
* the environments' fast path (``DecoderStepper`` as ``pk_envs`` runs it: float32 network,
  batch-invariant products, one call per interval),

and the table prints the best-of-``repeats`` wall time of each and the speed-up ratios. Absolute
times vary with machine load; the ratios, measured in the same run, are what to compare.
``benchmarks/bench_performance.py`` runs this as its part 1.
"""

from __future__ import annotations

import argparse

import _timing  # first: sets one BLAS thread before numpy is imported
import numpy as np
import torch

from pk_envs._common import batch_invariant
from vae_simulator.covariates import Covariates
from vae_simulator.groundtruth import DRUGS, get_model
from vae_simulator.population import random_regimens
from vae_simulator.simulator import PKSimulator
from vae_simulator.vae.io import load_pretrained, shipped_weights_dir

#: Ground-truth runs longer than this (s) are not repeated (for timing or the memory trace).
TRACE_TRUTH_MAX_S = 5.0


def shipped_drugs() -> list[str]:
    """Drugs whose PK-VAE weights ship with the package."""
    return [d for d in DRUGS if (shipped_weights_dir() / f"{d}.json").is_file()]


def bench_drug(drug: str, n: int, k: int, repeats: int, seed: int = 0, trace_memory: bool = False) -> dict:
    """Wall times (s) of the four paths on the same ``n`` patients and ``k``-interval regimens;
    with ``trace_memory`` also each path's traced peak (MiB, numpy paths; see ``traced_peak_mib``)."""
    truth = get_model(drug)
    model, _ = load_pretrained(drug)
    sim = PKSimulator(model)
    stepper = batch_invariant(sim)
    rng = np.random.default_rng(seed)
    cov = Covariates.sample(n, rng)
    params = truth.sample_parameters(cov, rng)
    doses = random_regimens(truth, cov, k, rng)
    # latents from the fitted population (a raw N(0, I) draw can fall outside it, which is refused)
    z = sim.typical_latent(cov.as_array()) + rng.standard_normal((n, sim.latent_dim)) @ sim.latent_chol.T
    patients = sim.make_patients(cov.as_array(), z)

    def numpy_path():
        state = sim.initial_state(patients)
        for j in range(k):
            _, _, state = sim.step(state, patients, doses[:, j])

    def fast_path():
        state, constants = stepper.start(patients.covariates, patients.z)
        for j in range(k):
            _, _, state = stepper.step(state, constants, doses[:, j])

    z_t = torch.as_tensor(patients.z, dtype=torch.float32)
    cov_t = torch.as_tensor(patients.covariates, dtype=torch.float32)
    doses_t = torch.as_tensor(doses, dtype=torch.float32)

    def torch_path():
        with torch.inference_mode():
            model.decode(z_t, cov_t, doses_t)

    def truth_path():
        truth.simulate_intervals(params, doses)

    first = _timing.best_time(truth_path, 1)  # a slow ODE model is run once; a fast one gets the same best-of
    out = {"drug": drug, "truth_s": min(first, _timing.best_time(truth_path, repeats - 1)) if first < TRACE_TRUTH_MAX_S
           and repeats > 1 else first}
    out.update(torch_s=_timing.best_time(torch_path, repeats), numpy_s=_timing.best_time(numpy_path, repeats),
               fast_s=_timing.best_time(fast_path, repeats))
    if trace_memory:
        out.update(numpy_mib=_timing.traced_peak_mib(numpy_path), fast_mib=_timing.traced_peak_mib(fast_path),
                   truth_mib=_timing.traced_peak_mib(truth_path) if out["truth_s"] < TRACE_TRUTH_MAX_S else float("nan"))
    return out


def markdown_rows(results: list[dict]) -> list[str]:
    """The simulator table (times in s, ratios against the ground truth)."""
    rows = [("| drug | ground truth (s) | PK-VAE torch (s) | PK-VAE numpy reference (s) | env fast path (s) | "
             "truth / torch | truth / numpy | truth / fast |"),
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        rows.append(f"| {r['drug']} | {r['truth_s']:.4f} | {r['torch_s']:.4f} | {r['numpy_s']:.4f} | {r['fast_s']:.4f} | "
                    f"{r['truth_s'] / r['torch_s']:.1f}x | {r['truth_s'] / r['numpy_s']:.1f}x | "
                    f"{r['truth_s'] / r['fast_s']:.1f}x |")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patients", type=int, default=1000, help="patients per drug (default 1000)")
    p.add_argument("--intervals", type=int, default=10, help="dosing intervals (default 10)")
    p.add_argument("--repeats", type=int, default=3, help="timing repeats, best is kept (default 3)")
    args = p.parse_args(argv)
    if min(args.patients, args.intervals, args.repeats) < 1:
        p.error("--patients, --intervals and --repeats must be >= 1")
    print(f"{args.patients} patients x {args.intervals} intervals, best of {args.repeats}; "
          f"torch threads {torch.get_num_threads()}\n")
    from tqdm import tqdm

    results = [bench_drug(drug, args.patients, args.intervals, args.repeats)
               for drug in tqdm(shipped_drugs(), desc="drugs", leave=False)]
    print("\n".join(markdown_rows(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

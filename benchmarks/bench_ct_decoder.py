"""Speed of the continuous-time PK-VAE step against the interval-grid decoder, side by side.

    python benchmarks/bench_ct_decoder.py [--drug vancomycin] [--sizes 1,1024,4096] [--steps 10] [--envs]

One "patient-step" is what an environment does per dosing interval: give each of N patients a
dose and read its concentrations on the drug's 12-point recording grid. Compared in one run:

* grid decoder, fast path: ``DecoderStepper`` (float32 numpy, batch-invariant) as ``pk_envs`` runs it;
* CT PK-VAE: :class:`~vae_simulator.ct_simulator.CTPatientSimulator` (``give_doses`` then
  ``concentrations``: one GRU step and one head evaluation, float32 numpy and batch-invariant (``CTStepper``), doses at any times);
* ground truth, event driven: :class:`~vae_simulator.ct_simulator.GroundTruthEventSimulator`
  (re-solves each history; patients on one schedule together).

``--envs`` adds the environments themselves: ``PKDose/<Drug>-v0`` (interval-grid decoder) against
``-v1`` (the CT PK-VAE on the same schedule), single env steps/s and native vector env
patient-steps/s at each N, measured by ``bench_envs`` in the same run.

Absolute rates vary with machine load; the ratios, measured in the same run, are what to compare.
"""

from __future__ import annotations

import argparse

import _timing  # first: sets one BLAS thread before numpy is imported
import numpy as np
import torch

from pk_envs._common import batch_invariant
from vae_simulator.ct_simulator import CTPatientSimulator, GroundTruthEventSimulator
from vae_simulator.groundtruth import get_model
from vae_simulator.simulator import PKSimulator
from vae_simulator.vae.io import load_pretrained


def rates(drug: str, n: int, steps: int) -> dict[str, float]:
    truth = get_model(drug)
    rng = np.random.default_rng(0)
    grid = np.asarray(truth.interval_grid_h)
    tau = truth.interval_h
    dose = np.full(n, 0.5 * truth.dose_range_mg[1])
    infusion = np.full(n, truth.infusion_h)

    sim = PKSimulator(load_pretrained(drug)[0])
    stepper = batch_invariant(sim)
    patients = sim.sample_patients(n, rng)

    def grid_episode() -> int:
        state, constants = stepper.start(patients.covariates, patients.z)
        for _ in range(steps):
            _, _, state = stepper.step(state, constants, dose)
        return n * steps

    def event_episode(event_sim, event_patients):
        def run() -> int:
            state = event_sim.start(event_patients)
            for k in range(steps):
                t = k * tau
                state = event_sim.give_doses(state, np.full(n, t), dose, infusion)
                event_sim.concentrations(state, np.broadcast_to(t + grid, (n, grid.size)))
            return n * steps
        return run

    ct = CTPatientSimulator.pretrained(drug)
    truth_sim = GroundTruthEventSimulator(drug)
    out = {"grid decoder (DecoderStepper)": _timing.rate(grid_episode, 2, 1.0)}
    with torch.inference_mode():
        out["CT PK-VAE (CTPatientSimulator)"] = _timing.rate(event_episode(ct, ct.sample_patients(n, rng)), 2, 1.0)
    truth_n = min(n, 256)  # the ground truth re-solves whole histories: fewer patients
    if truth_n == n:
        out["ground truth (GroundTruthEventSimulator)"] = _timing.rate(
            event_episode(truth_sim, truth_sim.sample_patients(n, rng)), 1, 0.5)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--drug", default="vancomycin")
    p.add_argument("--sizes", default="1,1024,4096", help="patients per batch, comma-separated")
    p.add_argument("--steps", type=int, default=10, help="dosing intervals per episode (default 10)")
    p.add_argument("--envs", action="store_true", help="also time two versions of the drug's environment")
    p.add_argument("--versions", default="0,1",
                   help="the two env versions --envs compares (default 0,1; mycophenolate also has 2)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{args.drug}: patient-steps/s (dose + 12-point profile per interval), {args.steps} intervals")
    print(f"| {'N':>5} | {'path':<42} | {'patient-steps/s':>15} | {'vs grid decoder':>15} |")
    print(f"|{'-' * 7}|{'-' * 44}|{'-' * 17}|{'-' * 17}|")
    from tqdm import tqdm

    for n in tqdm(sizes, desc="batch sizes", leave=False):
        r = rates(args.drug, n, args.steps)
        base = r["grid decoder (DecoderStepper)"]
        for name, value in r.items():
            tqdm.write(f"| {n:>5} | {name:<42} | {value:>15,.0f} | {value / base:>15.2f} |")
    if args.envs:
        old, new = (int(v) for v in args.versions.split(","))
        env_rates(args.drug.title(), sizes, old, new)
    return 0


def env_rates(name: str, sizes: list[int], v_old: int = 0, v_new: int = 1) -> None:
    """Steps/s of two versions of one drug's id side by side (single env, then native vector env)."""
    from bench_envs import single_env_rate, vector_rate

    old, new = f"PKDose/{name}-v{v_old}", f"PKDose/{name}-v{v_new}"
    print(f"\n| environment | {old} | {new} | v{v_new} / v{v_old} |\n|---|---:|---:|---:|")
    a, b = single_env_rate(old, True, 1.0), single_env_rate(new, True, 1.0)
    print(f"| single env, steps/s | {a:,.0f} | {b:,.0f} | {b / a:.2f} |")
    for n in sizes:
        if n > 1:
            a, b = (vector_rate(i, n, "native")["patient_steps_per_s"] for i in (old, new))
            print(f"| native vector env N = {n:,}, patient-steps/s | {a:,.0f} | {b:,.0f} | {b / a:.2f} |")


if __name__ == "__main__":
    raise SystemExit(main())

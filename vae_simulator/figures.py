"""Figures of the ground-truth population for the README.

    python -m vae_simulator.figures --out docs/figures

writes ``groundtruth_profiles.png``: for every drug, 30 virtual patients under the standard dose
(thin lines), the population-typical patient (thick line) and the target window where the
target is a concentration, over the first intervals of a course.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from vae_simulator.covariates import Covariates
from vae_simulator.groundtruth import DRUGS, get_model

#: Intervals shown per drug: enough to see accumulation, few enough to see each profile's shape.
SHOWN_INTERVALS = {"vancomycin": 6, "phenytoin": 14, "mycophenolate": 4, "theophylline": 6,
                   "pembrolizumab": 4, "paclitaxel": 2, "carboplatin": 2}


def groundtruth_profiles(out: Path, n_patients: int = 30, seed: int = 0) -> Path:
    """Draw the standard-dose profiles of every drug into one PNG; returns its path."""
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    for ax, drug in zip(axes.ravel(), DRUGS):
        model = get_model(drug)
        k = SHOWN_INTERVALS[drug]
        rng = np.random.default_rng(seed)
        cov = Covariates.sample(n_patients, rng)
        params = model.sample_parameters(cov, rng)
        # dense over each dose's first 3 days, where short infusions peak; coarse after
        tau = model.interval_h
        within = np.union1d(np.linspace(0.0, min(tau, 72.0), 240), np.linspace(min(tau, 72.0), tau, 40))
        times = np.unique((tau * np.arange(k)[:, None] + within[None, :]).ravel())
        doses = np.repeat(model.standard_dose_mg(cov)[:, None], k, axis=1)
        conc = model.simulate(params, doses, times)
        typical = model.simulate(model.typical_parameters(cov.subset([0])), doses[:1], times)[0]
        unit_h = 24.0 if model.interval_h >= 24 else 1.0
        t_axis = times / unit_h
        ax.plot(t_axis, conc.T, color="tab:blue", alpha=0.25, lw=0.8)
        ax.plot(t_axis, typical, color="black", lw=2, label="typical patient")
        if model.target.metric in ("trough", "cavg", "peak"):
            ax.axhspan(model.target.low, model.target.high, color="tab:green", alpha=0.15,
                       label=f"target {model.target.metric}")
        ax.set_yscale("log")
        lo = max(model.lloq_mg_l / 2, np.percentile(conc[conc > 0], 1) if np.any(conc > 0) else 1e-3)
        ax.set_ylim(lo, conc.max() * 1.5)
        ax.set_title(f"{drug} ({model.route.replace('_', ' ')}, q{model.interval_h:g} h)", fontsize=10)
        ax.set_xlabel("time (days)" if unit_h == 24 else "time (h)")
        ax.set_ylabel("concentration (mg/L)")
        ax.legend(fontsize=7, loc="lower right")
    axes.ravel()[-1].axis("off")
    fig.suptitle(f"Ground-truth virtual patients under standard dosing ({n_patients} patients per drug, seed {seed})")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "groundtruth_profiles.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pkdose figures", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("docs/figures"), help="output folder (default docs/figures)")
    p.add_argument("--patients", type=int, default=30, help="patients per drug (default 30)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = p.parse_args(argv)
    if args.patients < 1:
        p.error(f"--patients must be >= 1, got {args.patients}")
    print(groundtruth_profiles(args.out, args.patients, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

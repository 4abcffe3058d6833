"""PNG figures of the validation report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: files only, no display
import matplotlib.pyplot as plt
import numpy as np

from vae_simulator.groundtruth.base import ExposureTarget
from vae_simulator.validation.mipd_study import MipdStudy
from vae_simulator.validation.profiles import CohortCheck

STRATEGY_LABELS = {"standard": "standard dose", "vae_mipd": "VAE-MIPD",
                   "true_model_map": "true-model MAP (reference)", "oracle": "oracle (true parameters)"}
STRATEGY_COLORS = {"standard": "tab:grey", "vae_mipd": "tab:blue", "true_model_map": "tab:purple",
                   "oracle": "tab:green"}
DPI = 110


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_vpc(check: CohortCheck, drug: str, lloq_mg_l: float, path: Path) -> Path:
    """Visual predictive check: observed 5/50/95th percentiles over the PK-VAE's shaded bands."""
    fig, ax = plt.subplots(figsize=(11, 4.5))
    t, sim, obs = check.times_h, check.simulated_pct, check.observed_pct
    ax.fill_between(t, sim[0], sim[2], color="tab:blue", alpha=0.25, label="PK-VAE 5-95th percentile")
    ax.plot(t, sim[1], color="tab:blue", lw=1.5, label="PK-VAE median")
    ax.plot(t, obs[1], color="black", lw=1.5, label="observed median (ground truth + error)")
    for row, label in ((0, "observed 5th / 95th"), (2, None)):
        ax.plot(t, obs[row], color="black", lw=1.0, ls="--", label=label)
    ax.axhline(lloq_mg_l, color="grey", lw=0.8, ls=":", label="LLOQ")
    ax.set_yscale("log")
    ax.set_xlabel("time since first dose (h)")
    ax.set_ylabel("concentration (mg/L)")
    ax.set_title(f"{drug}: visual predictive check, standard dosing\n"
                 f"{100 * check.outside_band:.1f}% of observations outside the simulated 5-95% band",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never hides data
    return _save(fig, path)


def plot_reconstruction(times_h: np.ndarray, true: np.ndarray, observed: np.ndarray, vae: np.ndarray,
                        one_cmt: np.ndarray, drug: str, lloq_mg_l: float, path: Path) -> Path:
    """Example patients ``(m, T)``: truth, noisy grid, PK-VAE and one-compartment reconstructions."""
    m = true.shape[0]
    fig, axes = plt.subplots(1, m, figsize=(3.6 * m, 3.4), squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.plot(times_h, true[i], color="black", lw=1.5, label="true")
        ax.plot(times_h, observed[i], "o", color="grey", ms=2.5, label="noisy observations")
        ax.plot(times_h, vae[i], color="tab:blue", lw=1.2, label="PK-VAE (full grid)")
        ax.plot(times_h, one_cmt[i], color="tab:orange", lw=1.2, ls="--", label="1-compartment fit")
        ax.axhline(lloq_mg_l, color="grey", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.3 * lloq_mg_l)
        ax.set_xlabel("time (h)")
        ax.set_title(f"patient {i + 1}", fontsize=9)
    axes[0][0].set_ylabel("concentration (mg/L)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{drug}: reconstruction of held-out multi-dose profiles", fontsize=10)
    return _save(fig, path)


def plot_mipd(study: MipdStudy, target: ExposureTarget, drug: str, path: Path) -> Path:
    """Distributions of the TRUE next-interval exposure per dosing strategy, with the target window."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    values = np.concatenate([study.exposure[s] for s in study.strategies])
    hi = np.percentile(values, 99.5)
    bins = np.linspace(0.0, max(hi, target.high * 1.2), 50)
    for name in study.strategies:
        label = f"{STRATEGY_LABELS[name]}: {100 * study.in_window[name]:.0f}% in window"
        ax.hist(np.clip(study.exposure[name], bins[0], bins[-1]), bins=bins, histtype="step", lw=1.6,
                color=STRATEGY_COLORS[name], label=label)
    ax.axvspan(target.low, target.high, color="tab:green", alpha=0.12, label="target window")
    ax.set_xlabel(f"true {target.metric} of dosing interval {study.interval + 2} (1-based) ({target.unit})")
    ax.set_ylabel("patients")
    ax.set_title(f"{drug}: one dosing decision after {study.n_samples} sample(s) of dosing interval "
                 f"{study.interval + 1}", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)

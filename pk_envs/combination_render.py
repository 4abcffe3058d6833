"""The course of a combination episode as an RGB image: neutrophils, tumour size and doses over time."""

from __future__ import annotations

import numpy as np

from pk_envs.combination_core import CYCLE_H, GRADE3_E9_L, GRADE4_E9_L
from pk_envs.rendering import figure_to_rgb, new_figure
from vae_simulator.groundtruth.pd.grading import PD_INCREASE, PR_DECREASE


def render_course(task, c, row: int) -> np.ndarray:
    """Row ``row``'s course so far: ANC, tumour SLD and doses over time (days) as ``uint8 (H, W, 3)``."""
    fig, (ax_anc, ax_sld, ax_dose) = new_figure(3, size_px=(720, 640))
    k, t = int(c.given[row]), task.pd_times_h
    starts_d = np.arange(task.n_cycles) * CYCLE_H / 24.0
    baseline_anc, baseline_sld = c.anc_params[row, 0], c.tumour_params[row, 0]
    days = np.concatenate([[0.0]] + [(j * CYCLE_H + t[1:]) / 24.0 for j in range(k)])
    anc = np.concatenate([[baseline_anc]] + [c.anc_course[row, j, 1:] for j in range(k)])
    sld = np.concatenate([[baseline_sld]] + [c.sld_course[row, j, 1:] for j in range(k)])
    ax_anc.plot(days, anc, color="tab:blue", lw=1.5, label="ANC (true)")
    if k:
        nadir_days = starts_d[:k] + t[c.anc_course[row, :k].argmin(axis=1)] / 24.0
        ax_anc.plot(nadir_days, c.nadir_obs_course[row, :k], "o", color="tab:orange", ms=4, label="nadir (observed)")
    for level, name, colour in ((GRADE3_E9_L, "grade 3", "tab:orange"), (GRADE4_E9_L, "grade 4", "tab:red")):
        ax_anc.axhline(level, ls="--", lw=1, color=colour, label=name)
    ax_anc.set_ylabel("ANC (1e9/L)")
    ax_anc.set_ylim(bottom=0)
    ax_sld.plot(days, sld, color="tab:purple", lw=1.5, label="SLD (true)")
    assessed = [j for j in range(k) if (j + 1) % task.assessment_every == 0 or j + 1 == task.n_cycles]
    ax_sld.plot([starts_d[j] + CYCLE_H / 24.0 for j in assessed], [c.sld_course[row, j, -1] for j in assessed],
                "s", color="k", ms=4, label="RECIST assessment")
    ax_sld.axhline((1.0 - PR_DECREASE) * baseline_sld, ls="--", lw=1, color="tab:green", label="PR (-30 %)")
    ax_sld.axhline((1.0 + PD_INCREASE) * c.sld_assessed[row, 1], ls="--", lw=1, color="tab:red",
                   label="PD (+20 % over nadir)")
    ax_sld.set_ylabel("tumour SLD (mm)")
    width = 0.35 * CYCLE_H / 24.0
    ax_dose.bar(starts_d[:k], c.doses[row, :k, 0], width=width, align="edge", color="tab:gray", label="paclitaxel")
    ax_dose.set_ylabel("paclitaxel (mg/m2)")
    ax_dose.set_ylim(0, 1.05 * task.actions.maximum[0])
    twin = ax_dose.twinx()
    twin.bar(starts_d[:k] + width, c.doses[row, :k, 1], width=width, align="edge", color="tab:cyan",
             label="carboplatin")
    twin.set_ylabel("carboplatin AUC (mg*min/mL)")
    twin.set_ylim(0, 1.05 * task.actions.maximum[1])
    ax_dose.set_xlabel("time (days)")
    ax_dose.set_xlim(0, task.n_cycles * CYCLE_H / 24.0)
    for ax in (ax_anc, ax_sld, ax_dose, twin):
        ax.legend(loc="upper right" if ax is not twin else "upper center", fontsize=7)
    fig.suptitle(f"paclitaxel + carboplatin q3w: cycle {k}/{task.n_cycles}, grade-4 cycles {c.grade4_events[row]}")
    return figure_to_rgb(fig)

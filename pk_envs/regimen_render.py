"""The course of a regimen episode as an RGB image: profile with levels, doses with exposure."""

from __future__ import annotations

import numpy as np

from pk_envs.rendering import figure_to_rgb, new_figure, plot_doses_and_exposure, plot_profile


def render_course(task, cohort, row: int) -> np.ndarray:
    """``uint8 (H, W, 3)``: true concentrations and drawn levels (top), doses and exposures (bottom)."""
    k, t = int(cohort.given[row]), task.target
    intervals = cohort.intervals_h[row, :k]
    starts = np.concatenate([[0.0], np.cumsum(intervals)[:-1]]) if k else np.zeros(0)
    times = (starts[:, None] + intervals[:, None] * task.fractions[None, :]).ravel()
    conc = cohort.profile_mg_l[row, :k].ravel()
    drawn = cohort.level_drawn[row, :k]
    fig, (top, bottom) = new_figure(2)
    window = (t.low, t.high) if t.metric in ("trough", "peak", "cavg") else None
    plot_profile(top, times, conc, label=task.drug, sample_times_h=(starts + intervals)[drawn],
                 samples_mg_l=cohort.level_mg_l[row, :k][drawn], window=window)
    width = float(intervals.min()) if k else 1.0
    plot_doses_and_exposure(bottom, starts, cohort.doses_mg[row, :k], width, dose_max_mg=task.dose_max_mg,
                            exposure=cohort.exposure[row, :k], window=(t.low, t.high),
                            exposure_label=f"{t.metric} ({t.unit})")
    bottom.set_xlim(0, task.spec.course_h)
    top.set_title(f"{task.drug} regimen: {k} doses, {int(drawn.sum())} levels, "
                  f"{float(cohort.time_h[row]):g} / {task.spec.course_h:g} h"
                  + (", serious toxicity event" if cohort.event[row] else ""))
    return figure_to_rgb(fig)

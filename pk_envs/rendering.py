"""Course plots as RGB arrays (``render_mode="rgb_array"``), drawn with matplotlib's Agg backend.

Figures are built with :class:`matplotlib.figure.Figure` and a private Agg canvas, not pyplot,
so rendering has no global state, needs no display and is safe in worker processes.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

WINDOW_COLOUR = "tab:green"


def new_figure(n_panels: int, size_px: tuple[int, int] = (720, 540), dpi: int = 100) -> tuple[Figure, list]:
    """A figure of ``n_panels`` stacked axes sharing the time axis."""
    fig = Figure(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_panels, 1, sharex=True, squeeze=False)[:, 0]
    return fig, list(axes)


def figure_to_rgb(fig: Figure) -> np.ndarray:
    """The rendered figure as a ``uint8`` array ``(H, W, 3)``."""
    fig.canvas.draw()
    return np.array(fig.canvas.buffer_rgba(), dtype=np.uint8)[..., :3].copy()


def plot_profile(ax, times_h: np.ndarray, conc_mg_l: np.ndarray, *, label: str,
                 sample_times_h: np.ndarray | None = None, samples_mg_l: np.ndarray | None = None,
                 window: tuple[float, float] | None = None) -> None:
    """True concentration profile, observed samples as dots and an optional concentration window."""
    ax.plot(times_h, conc_mg_l, color="tab:blue", lw=1.5, label=f"{label} (true)")
    if sample_times_h is not None and len(sample_times_h):
        ax.plot(sample_times_h, samples_mg_l, "o", color="tab:orange", ms=4, label="assays")
    if window is not None:
        ax.axhspan(*window, color=WINDOW_COLOUR, alpha=0.15, label="target window")
    ax.set_ylabel("concentration (mg/L)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=7)


def plot_doses_and_exposure(ax, dose_times_h: np.ndarray, doses_mg: np.ndarray, width_h: float, *,
                            dose_max_mg: float, exposure: np.ndarray, window: tuple[float, float],
                            exposure_label: str) -> None:
    """Doses as bars (left axis) and each interval's exposure against the window (right axis)."""
    ax.bar(dose_times_h, doses_mg, width=0.8 * width_h, align="edge", color="tab:gray", label="dose")
    ax.set_ylabel("dose (mg)")
    ax.set_ylim(0, 1.05 * dose_max_mg)
    twin = ax.twinx()
    twin.axhspan(*window, color=WINDOW_COLOUR, alpha=0.15)
    if len(exposure):
        twin.plot(dose_times_h + 0.5 * width_h, exposure, "s-", color="tab:red", ms=4)
    twin.set_ylabel(exposure_label, color="tab:red")
    twin.set_ylim(bottom=0)
    ax.set_xlabel("time (h)")

"""Shared machinery of the PD state-space models: input validation and a fast fixed-step RK4.

The PD models are driven by drug concentrations known on a time grid (from a PK model or
the learned PK simulator) and linearly interpolated between grid points. :func:`rk4_on_grid`
integrates ``dy/dt = rhs(t, y, u(t))`` over that grid, vectorised over patients, with every
grid point a step boundary: inside each grid interval the input is then exactly linear, so the
stages of one RK4 step see the true interpolated input, and the states at the grid times come
out without any output interpolation. Each grid interval is split into equal sub-steps no
longer than ``max_step_h``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from itertools import pairwise

import numpy as np

# rhs(t_h, y (m, n), u (k, n)) -> dy/dt (m, n): state-major, so each state is a contiguous row
# (several times faster than (n, m) column slices); u holds the k interpolated inputs at t_h.
Rhs = Callable[[float, np.ndarray, np.ndarray], np.ndarray]


def check_times(times_h, name: str = "times_h") -> np.ndarray:
    """A strictly increasing, finite, 1-D time grid (h) with at least 2 points."""
    times = np.asarray(times_h, dtype=float)
    if times.ndim != 1 or times.size < 2:
        raise ValueError(f"{name} must be a 1-D array of at least 2 times (h), got shape {times.shape}")
    if not np.all(np.isfinite(times)):
        raise ValueError(f"{name} must be finite, got {float(times[~np.isfinite(times)][0])!r}")
    if np.any(np.diff(times) <= 0):
        i = int(np.flatnonzero(np.diff(times) <= 0)[0])
        raise ValueError(f"{name} must be strictly increasing, got {times[i]:g} h followed by "
                         f"{times[i + 1]:g} h")
    return times


def check_concentrations(conc_umol_l, n: int, n_times: int, name: str) -> np.ndarray:
    """An ``(n, n_times)`` array of finite concentrations >= 0 (umol/L)."""
    conc = np.asarray(conc_umol_l, dtype=float)
    if conc.shape != (n, n_times):
        raise ValueError(f"{name} must have shape (n_patients, n_times) = ({n}, {n_times}), got {conc.shape}")
    bad = ~np.isfinite(conc) | (conc < 0)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{name}[{i}, {j}] = {float(conc[i, j])!r} umol/L is not allowed: "
                         f"concentrations must be finite and >= 0")
    return conc


def check_state(state, n_states: int, names: tuple[str, ...], lower: tuple[float, ...]) -> np.ndarray:
    """An ``(n, n_states)`` state array, finite, each column above its lower bound."""
    state = np.asarray(state, dtype=float)
    if state.ndim != 2 or state.shape[1] != n_states or state.shape[0] < 1:
        raise ValueError(f"state must have shape (n_patients, {n_states}) for {list(names)}, "
                         f"got {state.shape}")
    for j, (cname, lo) in enumerate(zip(names, lower)):
        col = state[:, j]
        bad = ~np.isfinite(col) | (col < lo)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"state {cname} of patient {i} is {float(col[i])!r}; "
                             f"allowed: finite and >= {lo:g}")
    return state


def check_parameter_arrays(values: dict[str, np.ndarray], positive: tuple[str, ...]) -> int:
    """Check per-patient parameter arrays: 1-D, equal length, finite, >= 0 (> 0 for ``positive``)."""
    arrays = [np.asarray(value) for value in values.values()]
    shape = arrays[0].shape if arrays else ()
    if len(shape) == 1 and shape[0] >= 1 and all(a.shape == shape for a in arrays):  # one vectorised check
        stacked = np.array(arrays, dtype=float)
        lowest = np.array([np.nextafter(0.0, 1.0) if name in positive else 0.0 for name in values])
        if np.all(stacked >= lowest[:, None]) and np.all(np.isfinite(stacked)):
            return shape[0]
    n = None  # some check fails: find the first bad value and name it
    for pname, value in values.items():
        arr = np.asarray(value)
        if arr.ndim != 1 or arr.size < 1:
            raise ValueError(f"parameter {pname} must be a non-empty 1-D array (one value per patient), "
                             f"got shape {arr.shape}")
        if n is None:
            n = arr.size
        elif arr.size != n:
            raise ValueError(f"parameter {pname} has {arr.size} values, expected {n}")
        lo_ok = arr > 0 if pname in positive else arr >= 0
        bad = ~np.isfinite(arr) | ~lo_ok
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            bound = "> 0" if pname in positive else ">= 0"
            raise ValueError(f"parameter {pname} of patient {i} is {float(arr[i])!r}; "
                             f"allowed: finite and {bound}")
    assert n is not None
    return n


def lognormal_iiv(typical: float, omega: float, iiv_scale: float, rng: np.random.Generator,
                  n: int) -> np.ndarray:
    """``typical * exp(iiv_scale * omega * eta)``, eta ~ N(0, 1); one draw per patient even if omega is 0."""
    return lognormal_from(typical, omega, iiv_scale, rng.standard_normal(n))


def lognormal_from(typical: float, omega: float, iiv_scale: float, eta: np.ndarray) -> np.ndarray:
    """``typical * exp(iiv_scale * omega * eta)`` of given standard normals ``eta`` (element-wise)."""
    return typical * np.exp(iiv_scale * omega * eta)


def check_iiv_scale(iiv_scale: float) -> float:
    if not np.isfinite(iiv_scale) or iiv_scale < 0:
        raise ValueError(f"iiv_scale must be a finite number >= 0, got {iiv_scale!r}")
    return float(iiv_scale)


def check_n(n) -> int:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"number of patients must be a positive integer, got {n!r}")
    return int(n)


def rk4_on_grid(rhs: Rhs, y0: np.ndarray, times_h: np.ndarray, inputs: np.ndarray,
                max_step_h: float) -> np.ndarray:
    """Classical RK4 over ``times_h`` with inputs linearly interpolated between grid points.

    Parameters
    ----------
    rhs: right-hand side ``rhs(t, y, u)`` on state-major ``y`` of shape ``(m, n)``.
    y0: ``(n, m)`` state at ``times_h[0]``.
    times_h: strictly increasing grid (h).
    inputs: ``(k, n, T)`` inputs on the grid.
    max_step_h: longest sub-step (h).

    Returns the ``(n, m, T)`` states at the grid times (the first equals ``y0``).
    """
    if not np.isfinite(max_step_h) or max_step_h <= 0:
        raise ValueError(f"max_step_h must be a finite number > 0, got {max_step_h!r}")
    n, m = y0.shape
    out = np.empty((n, m, times_h.size))
    out[:, :, 0] = y0
    y = y0.T.copy()  # updated in place below: never a view of the caller's y0
    stage, total = np.empty_like(y), np.empty_like(y)  # reused buffers: the same arithmetic, no allocations
    times = times_h.tolist()  # Python floats: the same IEEE arithmetic as numpy scalars, less overhead
    for i in range(len(times) - 1):
        t0, t1 = times[i], times[i + 1]
        width = t1 - t0
        n_sub = max(1, math.ceil(width / max_step_h - 1e-9))
        h = width / n_sub
        u0 = inputs[:, :, i]
        du_dt = (inputs[:, :, i + 1] - u0) / width  # the input is linear on [t0, t1]
        for s in range(n_sub):
            ts = t0 + s * h
            u_start = u0 + du_dt * (ts - t0)
            u_mid = u_start + du_dt * (0.5 * h)
            u_end = u_start + du_dt * h
            k1 = rhs(ts, y, u_start)
            k2 = rhs(ts + 0.5 * h, _axpy(0.5 * h, k1, y, stage), u_mid)
            k3 = rhs(ts + 0.5 * h, _axpy(0.5 * h, k2, y, stage), u_mid)
            k4 = rhs(ts + h, _axpy(h, k3, y, stage), u_end)
            # y + (h / 6) * (k1 + 2 k2 + 2 k3 + k4), evaluated in that order
            np.multiply(k2, 2.0, out=total)
            total += k1
            total += np.multiply(k3, 2.0, out=stage)
            total += k4
            y += np.multiply(total, h / 6.0, out=total)
        out[:, :, i + 1] = y.T
    return out


def _axpy(a: float, x: np.ndarray, y: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``y + a * x`` into ``out`` (``out`` must not be ``x`` or ``y``)."""
    np.multiply(x, a, out=out)
    out += y
    return out


def rk4_coupled(problems, times_h: np.ndarray, max_step_h: float) -> list[np.ndarray]:
    """Integrate independent models on one grid in a single :func:`rk4_on_grid` loop.

    ``problems``: ``(rhs, y0 (n, m_i), inputs (k_i, n, T))`` per model, as the models' ``problem``
    functions return them (``rhs(t, y, u, out)`` writes into ``out``). The RK4 stages are
    element-wise, so every model gets exactly the arithmetic of its own run (bit-identical results)
    at a fraction of the Python overhead per step. Returns each model's ``(n, m_i, T)`` states
    (views of one array).
    """
    state_bounds = np.cumsum([0] + [y0.shape[1] for _, y0, _ in problems])
    input_bounds = np.cumsum([0] + [inputs.shape[0] for _, _, inputs in problems])
    parts = [(rhs, slice(state_bounds[i], state_bounds[i + 1]), slice(input_bounds[i], input_bounds[i + 1]))
             for i, (rhs, _, _) in enumerate(problems)]

    def rhs(t: float, y: np.ndarray, u: np.ndarray) -> np.ndarray:
        dy = np.empty_like(y)
        for model_rhs, states, inputs in parts:
            model_rhs(t, y[states], u[inputs], out=dy[states])
        return dy

    y0 = np.concatenate([y0 for _, y0, _ in problems], axis=1)
    inputs = np.concatenate([inputs for _, _, inputs in problems], axis=0)
    states = rk4_on_grid(rhs, y0, times_h, inputs, max_step_h)
    return [states[:, s] for _, s, _ in parts]


def refine_grid(times_h, *conc, max_gap_h: float) -> tuple[np.ndarray, ...]:
    """Insert grid points so no gap exceeds ``max_gap_h``, concentrations linearly interpolated.

    The PD models report states only at grid times; a PK grid that is coarse late in the
    cycle (e.g. days 10 and 14) would miss the neutrophil nadir between them. Refining the
    grid this way changes nothing in the dynamics (the models interpolate linearly anyway).
    Returns ``(times, conc_1, conc_2, ...)`` with each ``conc_i`` of shape ``(n, T_new)``.
    """
    times = np.asarray(times_h, dtype=float)
    fine, index, weight = _refinement(times.shape, tuple(times.ravel().tolist()), float(max_gap_h))
    out = [fine.copy()]
    for c in conc:
        c = np.asarray(c, dtype=float)
        if c.ndim != 2 or c.shape[1] != times.size:
            raise ValueError(f"concentrations must have shape (n_patients, {times.size}), got {c.shape}")
        out.append(c[:, index] * (1.0 - weight) + c[:, index + 1] * weight)
    return tuple(out)


@functools.lru_cache(maxsize=32)
def _refinement(shape: tuple[int, ...], times_h: tuple[float, ...], max_gap_h: float):
    """The refined grid and each fine point's left coarse index and weight (cached: an environment
    refines the same grid every step)."""
    times = check_times(np.array(times_h).reshape(shape))
    if not np.isfinite(max_gap_h) or max_gap_h <= 0:
        raise ValueError(f"max_gap_h must be a finite number > 0, got {max_gap_h!r}")
    pieces = [times[:1]]
    for t0, t1 in pairwise(times):
        n_sub = max(1, int(np.ceil((t1 - t0) / max_gap_h - 1e-9)))
        pieces.append(t0 + (t1 - t0) * np.arange(1, n_sub + 1) / n_sub)
    fine = np.concatenate(pieces)
    fine[-1] = times[-1]
    index = np.clip(np.searchsorted(times, fine, side="right") - 1, 0, times.size - 2)
    weight = (fine - times[index]) / (times[index + 1] - times[index])
    for array in (fine, index, weight):
        array.setflags(write=False)
    return fine, index, weight

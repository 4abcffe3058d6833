"""The standard comparator: a one-compartment model fitted to each patient's profile.

Dose ``j`` (mg) is given at ``t_j = j * interval_h``; profiles are superposed analytically
(linear kinetics), with elimination rate ``k = CL / V``:

* IV infusion over ``T`` h (rate ``R = D / T``)::

      C(t) = sum_j R / CL * (1 - exp(-k * min(t - t_j, T))) * exp(-k * max(t - t_j - T, 0))

  (a bolus ``D / V * exp(-k (t - t_j))`` when ``T = 0``);
* oral, first-order absorption ``ka`` without lag, apparent ``CL/F`` and ``V/F`` (F = 1)::

      C(t) = sum_j D ka / (V (ka - k)) * (exp(-k (t - t_j)) - exp(-ka (t - t_j)))

Parameters (``CL`` L/h, ``V`` L, ``KA`` 1/h) are fitted per patient by
``scipy.optimize.least_squares`` on their logarithms, minimising the residuals of
``log(C + c0)`` with ``c0`` = LLOQ/2 (the PK-VAE's own scale); results reported below the
LLOQ are left out (Beal's M1). The start is the best point of a coarse grid around
non-compartmental guesses (CL from dose / AUC, V from the first peak), so the local solver
does not stall in a far-away valley.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

ROUTES = ("iv_infusion", "oral")
#: Coarse start grid: multiples of the NCA guesses (log-spaced) and absorption rates (1/h).
_GRID_FACTORS = np.exp(np.linspace(-2.5, 2.5, 11))
_KA_GRID_PER_H = np.exp(np.linspace(np.log(0.05), np.log(20.0), 8))
#: Bounds of the log-parameters around the start, wide enough never to bind in practice.
_LOG_BOUND = 8.0


@dataclass(frozen=True)
class OneCompartmentDesign:
    """Everything but the parameters: route, dosing schedule and the drug's assay."""

    route: str
    interval_h: float
    infusion_h: float
    lloq_mg_l: float

    def __post_init__(self) -> None:
        if self.route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}, got {self.route!r}")
        if not self.interval_h > 0 or not self.infusion_h >= 0:
            raise ValueError(f"need interval_h > 0 and infusion_h >= 0, got {self.interval_h}, "
                             f"{self.infusion_h}")

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return ("CL", "V") if self.route == "iv_infusion" else ("CL", "V", "KA")


def one_compartment_dose_response(dt_h, dose_mg, cl_l_h, v_l, infusion_h=0.0, ka_per_h=None) -> np.ndarray:
    """Concentration (mg/L) ``dt_h`` h after the start of one dose; exactly 0 for ``dt_h <= 0``.

    All arguments broadcast. IV when ``ka_per_h`` is None (a bolus where ``infusion_h == 0``, a
    zero-order infusion over ``infusion_h`` h otherwise); oral with first-order absorption
    ``ka_per_h`` (1/h), no lag, when it is given (``infusion_h`` then ignored). The formulas are
    those of the module docstring; doses superpose by summing this over them.
    """
    dt = np.asarray(dt_h, dtype=float)
    cl, v = np.asarray(cl_l_h, dtype=float), np.asarray(v_l, dtype=float)
    k_el = cl / v
    dtp = np.maximum(dt, 0.0)
    if ka_per_h is not None:
        ka = np.asarray(ka_per_h, dtype=float)
        # ka == k is a removable singularity; nudging ka by 1e-6 relative changes C by ~1e-6.
        ka = np.where(np.abs(ka - k_el) < 1e-6 * k_el, k_el * (1.0 + 1e-6), ka)
        part = dose_mg * ka / (v * (ka - k_el)) * (np.exp(-k_el * dtp) - np.exp(-ka * dtp))
    else:
        infused = np.asarray(infusion_h, dtype=float) > 0
        part = 0.0
        if np.any(infused):
            dur = np.where(infused, infusion_h, 1.0)
            during, post = np.minimum(dtp, dur), np.maximum(dtp - dur, 0.0)
            part = dose_mg / dur / cl * (1.0 - np.exp(-k_el * during)) * np.exp(-k_el * post)
        if not np.all(infused):
            part = np.where(infused, part, dose_mg / v * np.exp(-k_el * dtp))
    return np.where(dt > 0, part, 0.0)


def one_compartment_profile(design: OneCompartmentDesign, log_params: np.ndarray, doses_mg: np.ndarray,
                            times_h: np.ndarray) -> np.ndarray:
    """Concentrations (mg/L) ``(B, T)`` for ``B`` parameter sets.

    ``log_params (B, P)`` are log CL, log V (and log KA for oral); ``doses_mg`` is ``(K,)`` or
    ``(B, K)``; ``times_h (T,)`` in h from the first dose.
    """
    log_params = np.atleast_2d(np.asarray(log_params, dtype=float))
    cl, v = np.exp(log_params[:, 0:1]), np.exp(log_params[:, 1:2])
    ka = np.exp(log_params[:, 2:3]) if design.route == "oral" else None
    doses = np.atleast_2d(np.asarray(doses_mg, dtype=float))
    times = np.asarray(times_h, dtype=float)[None, :]
    out = np.zeros((log_params.shape[0], times.shape[1]))
    for j in range(doses.shape[1]):
        out += one_compartment_dose_response(times - j * design.interval_h, doses[:, j:j + 1], cl, v,
                                             design.infusion_h, ka)
    return np.maximum(out, 0.0)


def _start_guess(design: OneCompartmentDesign, doses: np.ndarray, times: np.ndarray,
                 obs: np.ndarray) -> np.ndarray:
    """Log-parameters from non-compartmental guesses refined on a coarse grid."""
    order = np.argsort(times)
    t, c = np.concatenate([[0.0], times[order]]), np.concatenate([[0.0], obs[order]])
    auc = max(float(np.sum(0.5 * (c[1:] + c[:-1]) * np.diff(t))), 1e-9)
    given = doses[np.arange(doses.size) * design.interval_h < t[-1]].sum()
    cl0 = max(given, 1e-9) / auc
    first = int(np.argmax(doses > 0)) if np.any(doses > 0) else 0
    in_first = (times > first * design.interval_h) & (times <= (first + 1) * design.interval_h)
    peak = obs[in_first].max() if in_first.any() else obs.max()
    v0 = max(doses[first], 1e-9) / max(peak, 1e-9)
    axes = [np.log(cl0 * _GRID_FACTORS), np.log(v0 * _GRID_FACTORS)]
    if design.route == "oral":
        axes.append(np.log(_KA_GRID_PER_H))
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))
    c0 = 0.5 * design.lloq_mg_l
    pred = one_compartment_profile(design, grid, doses, times)
    sse = ((np.log(pred + c0) - np.log(obs + c0)[None, :]) ** 2).sum(axis=1)
    return grid[int(np.argmin(sse))]


def fit_one_compartment(design: OneCompartmentDesign, doses_mg: np.ndarray, times_h: np.ndarray,
                        obs_mg_l: np.ndarray, blq: np.ndarray) -> np.ndarray:
    """Fitted log-parameters ``(P,)`` of one patient (see module doc).

    ``doses_mg (K,)``; ``times_h``, ``obs_mg_l``, ``blq`` ``(T,)``. Raises ValueError when fewer
    quantifiable observations than parameters remain.
    """
    doses = np.asarray(doses_mg, dtype=float)
    times, obs, blq = (np.asarray(a).ravel() for a in (times_h, obs_mg_l, blq))
    keep = ~blq.astype(bool)
    n_par = len(design.parameter_names)
    if keep.sum() < n_par:
        raise ValueError(f"only {int(keep.sum())} observations above the LLOQ; a one-compartment fit needs "
                         f">= {n_par}")
    times, obs = times[keep].astype(float), obs[keep].astype(float)
    c0 = 0.5 * design.lloq_mg_l
    log_obs = np.log(obs + c0)
    x0 = _start_guess(design, doses, times, obs)

    def residuals(x: np.ndarray) -> np.ndarray:
        return np.log(one_compartment_profile(design, x[None, :], doses, times)[0] + c0) - log_obs

    fit = least_squares(residuals, x0, bounds=(x0 - _LOG_BOUND, x0 + _LOG_BOUND), method="trf",
                        xtol=1e-10, ftol=1e-10, gtol=1e-10, max_nfev=400)
    return fit.x


def fit_population(design: OneCompartmentDesign, doses_mg: np.ndarray, times_h: np.ndarray,
                   obs_mg_l: np.ndarray, blq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fit each patient: ``doses (n, K)``, ``times (T,)``, ``obs``/``blq`` ``(n, T)``.

    Returns ``(log-parameters (n, P), fitted)`` where ``fitted`` is False for patients with
    too few quantifiable observations (their parameters are NaN).
    """
    n = doses_mg.shape[0]
    out = np.full((n, len(design.parameter_names)), np.nan)
    fitted = np.zeros(n, dtype=bool)
    for i in range(n):
        try:
            out[i] = fit_one_compartment(design, doses_mg[i], times_h, obs_mg_l[i], blq[i])
            fitted[i] = True
        except ValueError:
            continue
    return out, fitted

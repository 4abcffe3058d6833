"""Closed-form concentrations of linear compartment models under multi-dose regimens.

Linear models obey superposition: the concentration after a regimen is the sum of the
single-dose responses, each shifted to its dose time and scaled by its dose. The
single-dose responses are sums of exponentials (Gibaldi M, Perrier D. Pharmacokinetics,
2nd ed. Marcel Dekker, 1982, ch. 1-2), so any per-interval dose sequence is solved
exactly, vectorised over patients, without an ODE solver.

* :func:`one_compartment_oral` -- first-order absorption with a lag time (per patient),
  first-order elimination. The ``ka == ke`` limit is handled exactly.
* :func:`two_compartment_infusion` -- zero-order (constant-rate) infusion into the
  central compartment of a two-compartment model, during and after the infusion, from
  the macro-constants alpha and beta (:func:`two_compartment_macro_constants`).

Conventions: times in h, doses in mg, volumes in L, clearances in L/h, rate constants
in 1/h, concentrations in mg/L. A dose contributes nothing at its own dose time (the
trough convention of ``ode.integrate_regimen``: a sample at a dose time is pre-dose).
Doses are applied in a loop over dosing times; each step is an ``(n, T)`` array
operation, so memory stays ``O(n * T)`` whatever the number of doses.
"""

from __future__ import annotations

import numpy as np

from vae_simulator.groundtruth.base import DrugModel, Parameters

_SERIES_BELOW = 1e-6  # below this |x|, -expm1(-x)/x is evaluated by its Taylor series


def dose_times_h(interval_h: float, n_intervals: int) -> np.ndarray:
    """Times (h) of the ``n_intervals`` doses of a regimen: ``k * interval_h``."""
    if not np.isfinite(interval_h) or interval_h <= 0:
        raise ValueError(f"interval_h must be a finite number > 0, got {interval_h!r}")
    if n_intervals < 1:
        raise ValueError(f"n_intervals must be >= 1, got {n_intervals}")
    return interval_h * np.arange(n_intervals, dtype=float)


def _one_minus_exp_over_x(x: np.ndarray) -> np.ndarray:
    """``(1 - exp(-x)) / x`` for ``x >= 0``, exact at and near 0 (value 1)."""
    x = np.asarray(x, dtype=float)
    small = np.abs(x) < _SERIES_BELOW
    safe = np.where(small, 1.0, x)
    return np.where(small, 1.0 - 0.5 * x + x * x / 6.0, -np.expm1(-safe) / safe)


def bateman_kernel(rate_a: np.ndarray, rate_b: np.ndarray, tau_h: np.ndarray) -> np.ndarray:
    """Bateman kernel ``(exp(-b*tau) - exp(-a*tau)) / (a - b)`` (h), stable for ``a ~ b``, ``tau >= 0``.

    The expression is symmetric in ``a`` and ``b``; it is written as
    ``exp(-min*tau) * tau * (1 - exp(-|a-b|*tau)) / (|a-b|*tau)``, which neither cancels
    nor overflows, and tends to ``tau * exp(-a*tau)`` as ``a -> b``.
    """
    slow = np.minimum(rate_a, rate_b)
    gap = np.abs(rate_a - rate_b)
    return np.exp(-slow * tau_h) * tau_h * _one_minus_exp_over_x(gap * tau_h)


def _check_regimen(dose_times: np.ndarray, doses_mg: np.ndarray,
                   times_h: np.ndarray) -> tuple[np.ndarray, ...]:
    dose_times = np.asarray(dose_times, dtype=float)
    doses_mg = np.asarray(doses_mg, dtype=float)
    times_h = np.asarray(times_h, dtype=float)
    if doses_mg.ndim != 2:
        raise ValueError(f"doses_mg must have shape (n_patients, n_doses), got {doses_mg.shape}")
    if dose_times.shape != (doses_mg.shape[1],):
        raise ValueError(f"dose_times_h must hold one time per dose column ({doses_mg.shape[1]}), "
                         f"got shape {dose_times.shape}")
    if np.any(np.diff(dose_times) < 0):
        raise ValueError("dose_times_h must be sorted ascending")
    if times_h.ndim != 1 or np.any(np.diff(times_h) < 0):
        raise ValueError("times_h must be a sorted 1-D array")
    return dose_times, doses_mg, times_h


def _per_patient(value, n: int, name: str, positive: bool) -> np.ndarray:
    """Broadcast a parameter to ``(n, 1)``; it must be finite and > 0 (or >= 0)."""
    arr = np.broadcast_to(np.asarray(value, dtype=float), (n,))
    bad = ~np.isfinite(arr) | ((arr <= 0) if positive else (arr < 0))
    if bad.any():
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be finite and {bound}, got {arr[bad][0]!r}")
    return arr[:, None]


def _segment_bounds(dose_times: np.ndarray, times_h: np.ndarray) -> np.ndarray:
    """Index of the first sample after each dose time, plus ``T``: segment ``k`` holds the
    samples in ``(t_k, t_{k+1}]`` (a sample at a dose time is pre-dose)."""
    return np.append(np.searchsorted(times_h, dose_times, side="right"), times_h.size)


def _carry_state(dose_times: np.ndarray, delay_h: float) -> bool:
    """Whether each dose is fully delivered within its own interval (then the state is carried)."""
    return dose_times.size < 2 or bool(np.all(np.diff(dose_times) >= delay_h))


def one_compartment_oral(dose_times: np.ndarray, doses_mg: np.ndarray, ka_per_h, ke_per_h, v_l, tlag_h,
                         times_h: np.ndarray) -> np.ndarray:
    """Concentrations (mg/L) of a 1-compartment model with lagged first-order absorption.

    Each dose ``D`` given at ``t_k`` contributes, with ``tau = t - t_k - tlag``,
    ``D * ka / V * (exp(-ke*tau) - exp(-ka*tau)) / (ka - ke)`` for ``tau > 0`` and 0
    before; bioavailability is folded into ``V`` (apparent ``V/F``). The sum over doses is
    evaluated interval by interval, carrying the exact gut and central amounts from one
    dose time to the next, so the cost is ``O(n * T)`` whatever the number of doses
    (a direct sum over doses is used when a lag exceeds the dosing interval).

    Parameters
    ----------
    dose_times: ``(K,)`` sorted dose times (h).
    doses_mg: ``(n, K)`` doses (mg).
    ka_per_h, ke_per_h: absorption and elimination rate constants (1/h), scalars or ``(n,)``;
        ``ka == ke`` is allowed (the limit ``D*ka/V * tau * exp(-ka*tau)`` is used).
    v_l: apparent volume (L), scalar or ``(n,)``.
    tlag_h: absorption lag time (h), scalar or ``(n,)``, may differ between patients.
    times_h: ``(T,)`` sorted sample times (h).

    Returns ``(n, T)`` concentrations in mg/L.
    """
    dose_times, doses_mg, times_h = _check_regimen(dose_times, doses_mg, times_h)
    n = doses_mg.shape[0]
    v = _per_patient(v_l, n, "v_l", positive=True)
    ka = _per_patient(ka_per_h, n, "ka_per_h", positive=False)
    ke = _per_patient(ke_per_h, n, "ke_per_h", positive=False)
    tlag = _per_patient(tlag_h, n, "tlag_h", positive=False)

    def lagged_input(dose, since_dose_h):
        """Central amount (mg) from one dose ``since_dose_h`` after it was given."""
        tau = since_dose_h - tlag
        started = tau > 0
        kernel = bateman_kernel(ka, ke, np.where(started, tau, 0.0))
        return np.where(started, dose * ka * kernel, 0.0)

    conc = np.zeros((n, times_h.size))
    if not _carry_state(dose_times, float(tlag.max())):
        for k, t_dose in enumerate(dose_times):
            first = np.searchsorted(times_h, t_dose, side="right")
            conc[:, first:] += lagged_input(doses_mg[:, k:k + 1], times_h[None, first:] - t_dose) / v
        return conc
    bounds = _segment_bounds(dose_times, times_h)
    gut, central = np.zeros((n, 1)), np.zeros((n, 1))  # amounts (mg) at the current dose time
    for k, t_dose in enumerate(dose_times):
        dose = doses_mg[:, k:k + 1]
        since = times_h[None, bounds[k]:bounds[k + 1]] - t_dose
        carried = central * np.exp(-ke * since) + gut * ka * bateman_kernel(ka, ke, since)
        conc[:, bounds[k]:bounds[k + 1]] = (carried + lagged_input(dose, since)) / v
        if k + 1 < dose_times.size:
            step = dose_times[k + 1] - t_dose  # >= every lag, so this dose has reached the gut
            central = (central * np.exp(-ke * step) + gut * ka * bateman_kernel(ka, ke, step)
                       + lagged_input(dose, step))
            gut = gut * np.exp(-ka * step) + dose * np.exp(-ka * (step - tlag))
    return conc


def two_compartment_macro_constants(cl_l_h, v1_l, q_l_h, v2_l) -> dict[str, np.ndarray]:
    """Micro- and macro-constants (1/h) of a 2-compartment model with central elimination.

    ``k10 = CL/V1``, ``k12 = Q/V1``, ``k21 = Q/V2``; ``alpha > beta`` are the roots of
    ``s^2 - (k10+k12+k21) s + k10*k21``. ``beta`` is computed as ``k10*k21/alpha`` to avoid
    cancellation. The discriminant equals ``(k10+k12-k21)^2 + 4*k12*k21``, so ``alpha > beta``
    whenever ``Q > 0``. Returns arrays ``k10, k12, k21, alpha, beta`` and the
    central-concentration coefficients ``a_alpha = (alpha-k21)/(alpha-beta)``,
    ``a_beta = (k21-beta)/(alpha-beta)`` (they sum to 1) of the unit-dose response
    ``C(t) = (a_alpha*exp(-alpha*t) + a_beta*exp(-beta*t)) / V1``.
    """
    cl, v1, q, v2 = (np.asarray(a, dtype=float) for a in (cl_l_h, v1_l, q_l_h, v2_l))
    k10, k12, k21 = cl / v1, q / v1, q / v2
    total = k10 + k12 + k21
    root = np.sqrt((k10 + k12 - k21) ** 2 + 4.0 * k12 * k21)
    alpha = 0.5 * (total + root)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(alpha > 0, k10 * k21 / np.where(alpha > 0, alpha, 1.0), 0.0)
        spread = alpha - beta
        distinct = spread > 0
        a_alpha = np.where(distinct, (alpha - k21) / np.where(distinct, spread, 1.0), 1.0)
    return {"k10": k10, "k12": k12, "k21": k21, "alpha": alpha, "beta": beta,
            "a_alpha": a_alpha, "a_beta": 1.0 - a_alpha}


def two_compartment_infusion(dose_times: np.ndarray, doses_mg: np.ndarray, infusion_h: float, cl_l_h, v1_l,
                             q_l_h, v2_l, times_h: np.ndarray) -> np.ndarray:
    """Central concentrations (mg/L) of a 2-compartment model under constant-rate infusions.

    Dose ``D`` infused at rate ``R = D / infusion_h`` from ``t_k`` contributes, with
    ``tau = t - t_k > 0`` and ``s = min(tau, infusion_h)`` (time infused so far),
    ``R / V1 * sum_i a_i * exp(-lambda_i*(tau - s)) * (1 - exp(-lambda_i*s)) / lambda_i``
    over ``lambda_i in (alpha, beta)``: the during-infusion rise (``s = tau``) and the
    post-infusion decay (``s = infusion_h``) in one expression. ``(1-exp(-x))/x`` is
    evaluated stably, so ``CL = 0`` (``beta = 0``) is handled. ``infusion_h = 0`` gives
    IV boluses; ``infusion_h`` may also be ``(K,)``, one length per dose. Earlier doses are carried from dose time to dose time as the amplitudes of
    the two exponential modes, so the cost is ``O(n * T)`` whatever the number of doses
    (a direct sum over doses is used when an infusion outlasts the dosing interval).

    Parameters: ``dose_times`` ``(K,)`` sorted, h; ``doses_mg`` ``(n, K)`` mg; ``infusion_h`` h;
    ``cl_l_h``, ``q_l_h`` (L/h) and ``v1_l``, ``v2_l`` (L) scalars or ``(n,)``;
    ``times_h`` ``(T,)`` sorted. Returns ``(n, T)`` mg/L.
    """
    dose_times, doses_mg, times_h = _check_regimen(dose_times, doses_mg, times_h)
    infusion = np.broadcast_to(np.asarray(infusion_h, dtype=float), dose_times.shape)
    if not np.all(np.isfinite(infusion)) or np.any(infusion < 0):
        raise ValueError(f"infusion_h must be finite and >= 0, got {np.asarray(infusion_h).tolist()!r}")
    n = doses_mg.shape[0]
    cl = _per_patient(cl_l_h, n, "cl_l_h", positive=False)
    v1 = _per_patient(v1_l, n, "v1_l", positive=True)
    q = _per_patient(q_l_h, n, "q_l_h", positive=False)
    v2 = _per_patient(v2_l, n, "v2_l", positive=True)
    macro = two_compartment_macro_constants(cl, v1, q, v2)
    phases = ((macro["alpha"], macro["a_alpha"]), (macro["beta"], macro["a_beta"]))

    def mode_response(dose, lam, coef, since_dose_h, infusion_h):
        """One mode's concentration (mg/L) from one dose, ``since_dose_h`` ``(1, m)`` after its start.

        ``(1 - exp(-lam*s)) / lam = s * phi(lam*s)`` with ``phi(x) = (1-exp(-x))/x``: during the
        infusion the fraction ``s/infusion_h`` of the dose has been given, afterwards all of it,
        decaying since the end. Only samples during an infusion need ``phi`` elementwise.
        """
        since_dose_h = np.atleast_2d(since_dose_h)
        during = since_dose_h[0] < infusion_h
        out = np.empty((n, since_dose_h.shape[1]))
        scale = dose / v1 * coef
        after = since_dose_h[:, ~during] - infusion_h
        out[:, ~during] = scale * _one_minus_exp_over_x(lam * infusion_h) * np.exp(-lam * after)
        if during.any():
            infused = since_dose_h[:, during]
            out[:, during] = scale * (infused / infusion_h) * _one_minus_exp_over_x(lam * infused)
        return out

    conc = np.zeros((n, times_h.size))
    if not _carry_state(dose_times, float(infusion.max(initial=0.0))):
        for k, t_dose in enumerate(dose_times):
            first = np.searchsorted(times_h, t_dose, side="right")
            since = times_h[None, first:] - t_dose
            for lam, coef in phases:
                conc[:, first:] += mode_response(doses_mg[:, k:k + 1], lam, coef, since, infusion[k])
        return conc
    bounds = _segment_bounds(dose_times, times_h)
    amplitude = [np.zeros((n, 1)) for _ in phases]  # each mode's concentration at the current dose time
    for k, t_dose in enumerate(dose_times):
        dose = doses_mg[:, k:k + 1]
        since = times_h[None, bounds[k]:bounds[k + 1]] - t_dose
        step = dose_times[k + 1] - t_dose if k + 1 < dose_times.size else None
        for i, (lam, coef) in enumerate(phases):
            conc[:, bounds[k]:bounds[k + 1]] += (amplitude[i] * np.exp(-lam * since)
                                                  + mode_response(dose, lam, coef, since, infusion[k]))
            if step is not None:  # the infusion ended within this interval
                amplitude[i] = (amplitude[i] * np.exp(-lam * step)
                                + mode_response(dose, lam, coef, step, infusion[k]))
    return conc


class TwoCompartmentInfusionModel(DrugModel):
    """A :class:`DrugModel` whose ``_simulate`` is the closed-form 2-compartment infusion.

    Subclasses provide ``typical_parameters`` returning ``CL`` (L/h), ``V1`` (L), ``Q`` (L/h)
    and ``V2`` (L); each dose is infused over its own length from its dose time.
    """

    def _simulate(self, params: Parameters, doses_mg: np.ndarray, times_h: np.ndarray, dose_times_h: np.ndarray,
                  infusion_h: np.ndarray) -> np.ndarray:
        return two_compartment_infusion(dose_times_h, doses_mg, infusion_h, params["CL"], params["V1"],
                                        params["Q"], params["V2"], times_h)

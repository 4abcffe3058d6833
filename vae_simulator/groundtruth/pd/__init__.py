"""Pharmacodynamic ground truth of the paclitaxel + carboplatin (q3w) combination.

Resumable, vectorised state-space models driven by plasma concentrations (umol/L) given on
a time grid, so an environment can step one 21-day cycle at a time:

* :mod:`~vae_simulator.groundtruth.pd.friberg` -- neutrophils (Friberg 2002 myelosuppression,
  additive effects of the two drugs);
* :mod:`~vae_simulator.groundtruth.pd.tumour` -- NSCLC tumour size (Claret 2009 growth
  inhibition with resistance and an optional interaction);
* :mod:`~vae_simulator.groundtruth.pd.grading` -- CTCAE v5 neutropenia grades and RECIST 1.1;
* :mod:`~vae_simulator.groundtruth.pd.calibration` -- the derivation of the carboplatin slope and
  of the tumour kill rates from published trial figures (needs the PK models; re-run with
  ``python -m vae_simulator.groundtruth.pd.calibration``).

One cycle at a time (``n`` patients; concentrations in umol/L = mg/L / molar mass * 1000)::

    anc_params = friberg.FribergParameters.sample(n, rng)
    tum_params = tumour.TumourParameters.sample(n, rng)
    anc_state, tum_state = friberg.steady_state(anc_params), tumour.initial_state(tum_params)
    for k in range(n_cycles):
        # times: cycle start k*504 h first (the states refer to it), then the PK grid of the cycle
        times, c_pac, c_carbo = refine_grid(times_k, c_pac_k, c_carbo_k, max_gap_h=6.0)
        anc = friberg.simulate(anc_state, times, c_pac, c_carbo, anc_params)
        sld = tumour.simulate(tum_state, times, c_pac, c_carbo, tum_params)
        # or both at once, the same numbers at half the cost per step (what the environment runs):
        # anc, sld = simulate_both(anc_state, tum_state, times, c_pac, c_carbo, anc_params, tum_params)
        anc_state, tum_state = anc[:, :, -1], sld[:, :, -1]
        grade = grading.worst_neutropenia_grade(anc[:, friberg.CIRC])
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from vae_simulator.groundtruth.pd import friberg, grading, tumour
from vae_simulator.groundtruth.pd._compiled import kernel_parameters, rk4_chains_tumour, rk4_friberg_tumour
from vae_simulator.groundtruth.pd._statespace import refine_grid, rk4_coupled
from vae_simulator.groundtruth.pd.friberg import FribergParameters, FribergPopulation
from vae_simulator.groundtruth.pd.grading import Recist
from vae_simulator.groundtruth.pd.tumour import TumourParameters, TumourPopulation

__all__ = [
           "BACKENDS",
           "FribergParameters",
           "FribergPopulation",
           "Recist",
           "TumourParameters",
           "TumourPopulation",
           "friberg",
           "grading",
           "integrate_chains",
           "integrate_cycle",
           "refine_grid",
           "simulate_both",
           "tumour",
]


#: ``backend`` of :func:`simulate_both`
BACKENDS = ("compiled", "numpy")


def simulate_both(anc_state0: np.ndarray, tumour_state0: np.ndarray, times_h, conc_a_umol_l, conc_b_umol_l,
                  anc_params: FribergParameters, tumour_params: TumourParameters,
                  max_step_h: float = 4.0, backend: str = "compiled") -> tuple[np.ndarray, np.ndarray]:
    """:func:`friberg.simulate` and :func:`tumour.simulate` (same arguments) in one RK4 loop.

    ``backend="numpy"``: bit-identical to the two calls (the RK4 stages are element-wise) at about
    half the Python overhead per step. ``"compiled"`` (default): the same scheme compiled with
    numba (:mod:`~vae_simulator.groundtruth.pd._compiled`), equal to it within 1e-9 relative and
    about 50 times faster for one patient. Returns ``(anc (n, 5, T), sld (n, 4, T))``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    checked = [model.check_inputs(state0, times_h, conc_a_umol_l, conc_b_umol_l, params)
               for model, state0, params in ((friberg, anc_state0, anc_params), (tumour, tumour_state0, tumour_params))]
    (anc_state, conc_a, conc_b, times), tumour_state = checked[0], checked[1][0]
    if backend == "numpy":
        problems = [friberg.problem(anc_state, conc_a, conc_b, anc_params),
                    tumour.problem(tumour_state, conc_a, conc_b, tumour_params)]
        anc, sld = rk4_coupled(problems, times, max_step_h)
        return friberg.finish(anc), tumour.finish(sld)
    if not np.isfinite(max_step_h) or max_step_h <= 0:
        raise ValueError(f"max_step_h must be a finite number > 0, got {max_step_h!r}")
    raw = [np.stack([getattr(p, f.name) for f in fields(p)], axis=1) for p in (anc_params, tumour_params)]
    return integrate_cycle(anc_state, tumour_state, times, conc_a, conc_b, *raw, max_step_h)


def integrate_cycle(anc_state0: np.ndarray, tumour_state0: np.ndarray, times_h: np.ndarray, conc_a_umol_l: np.ndarray,
                    conc_b_umol_l: np.ndarray, anc_params: np.ndarray, tumour_params: np.ndarray,
                    max_step_h: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`simulate_both` (``backend="compiled"``, the same bits) without its input checks, for callers
    whose inputs are valid by construction (the combination environment: parameters validated when
    drawn, concentrations >= 0 from the PK models, states floored). Parameters are raw ``(n, 5)`` and
    ``(n, 7)`` arrays in :class:`FribergParameters` / :class:`TumourParameters` field order.

    A result that is not finite (which valid inputs never give) raises rather than propagating.
    """
    slope_a, slope_b = anc_params[:, 3], anc_params[:, 4]
    y_anc = anc_state0.copy()
    y_anc[:, 0] = np.log(np.maximum(anc_state0[:, 0], np.finfo(float).tiny))
    y_tumour = tumour_state0.copy()
    y_tumour[:, tumour.SIZE] = np.log(tumour_state0[:, tumour.SIZE])
    effect = slope_a[:, None] * conc_a_umol_l + slope_b[:, None] * conc_b_umol_l
    n, t = y_anc.shape[0], times_h.size
    anc, sld = np.empty((n, 5, t)), np.empty((n, 4, t))
    params = kernel_parameters(anc_params[:, None, :], tumour_params, friberg.FEEDBACK_CIRC_FLOOR_E9_L)
    rk4_friberg_tumour(y_anc, y_tumour, times_h, effect, conc_a_umol_l, conc_b_umol_l, params, float(max_step_h),
                       anc, sld)
    if not (np.isfinite(anc[:, :, -1]).all() and np.isfinite(sld[:, :, -1]).all()):
        raise FloatingPointError("the PD integration gave a non-finite state; its inputs were not valid")
    return friberg.finish(anc), tumour.finish(sld)


def integrate_chains(chain_states0: np.ndarray, tumour_state0: np.ndarray, times_h: np.ndarray,
                     conc_a_umol_l: np.ndarray, conc_b_umol_l: np.ndarray, chain_params: np.ndarray,
                     tumour_params: np.ndarray, max_step_h: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`integrate_cycle` for ``C`` Friberg chains at once (e.g. neutrophils and platelets, each
    with its own parameters and drug slopes) and the tumour, in one compiled RK4 loop.

    ``chain_states0 (n, C, 5)`` and ``chain_params (n, C, 5)`` (FribergParameters field order);
    returns ``(chains (n, C, 5, T), sld (n, 4, T))``. Unchecked, as :func:`integrate_cycle`.
    """
    slopes = chain_params[:, :, 3:5]
    y_chains = chain_states0.copy()
    y_chains[:, :, 0] = np.log(np.maximum(chain_states0[:, :, 0], np.finfo(float).tiny))
    y_tumour = tumour_state0.copy()
    y_tumour[:, tumour.SIZE] = np.log(tumour_state0[:, tumour.SIZE])
    effect = slopes[:, :, 0, None] * conc_a_umol_l[:, None, :] + slopes[:, :, 1, None] * conc_b_umol_l[:, None, :]
    n, n_chains, t = y_chains.shape[0], y_chains.shape[1], times_h.size
    chains, sld = np.empty((n, n_chains, 5, t)), np.empty((n, 4, t))
    params = kernel_parameters(chain_params, tumour_params, friberg.FEEDBACK_CIRC_FLOOR_E9_L)
    rk4_chains_tumour(y_chains, y_tumour, times_h, effect, conc_a_umol_l, conc_b_umol_l, params, float(max_step_h),
                      chains, sld)
    if not (np.isfinite(chains[..., -1]).all() and np.isfinite(sld[:, :, -1]).all()):
        raise FloatingPointError("the PD integration gave a non-finite state; its inputs were not valid")
    chains[:, :, 0, :] = np.exp(chains[:, :, 0, :])
    return chains, tumour.finish(sld)

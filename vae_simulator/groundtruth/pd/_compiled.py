"""The Friberg and tumour models' RK4, compiled with numba: what the combination environment runs.

:func:`rk4_friberg_tumour` integrates exactly the equations of :func:`friberg.problem
<vae_simulator.groundtruth.pd.friberg.problem>` and :func:`tumour.problem
<vae_simulator.groundtruth.pd.tumour.problem>` with the same scheme as
:func:`~vae_simulator.groundtruth.pd._statespace.rk4_on_grid` (classical RK4, every grid point a
step boundary, inputs linear between grid points, sub-steps no longer than ``max_step_h``, the
same order of operations). It differs from that numpy reference only in the last bits of ``exp``
and ``log`` (libm's instead of numpy's), within 1e-9 relative on every state (tested).

Each patient is integrated on its own (a ``prange`` over patients, the same compiled loop for one
patient or 4,096), so a patient's numbers never depend on the batch it is stepped in: a vector
environment equals N single ones bit for bit. Compiled once per machine (numba's on-disk cache).
Why compiled: the numpy RK4 pays ~2 x 700 right-hand-side calls of Python overhead per cycle,
90 % of a single combination environment's step.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _derivatives(y, u_e, u_a, u_b, prm, dy):
    """dy/dt of the 9 transformed states ``[ln Prol, Tr1, Tr2, Tr3, Circ, ln size, EA, EB, tau]``;
    ``prm = [ktr, ln Circ0, gamma, floor, kl, kd_a, kd_b, kd_ab, lambda, k_exposure]``."""
    ktr, log_circ0, gamma, floor, kl, kda, kdb, kdab, lam, kexp = \
        prm[0], prm[1], prm[2], prm[3], prm[4], prm[5], prm[6], prm[7], prm[8], prm[9]
    feedback = math.exp(gamma * (log_circ0 - math.log(max(y[4], floor))))
    dy[0] = ktr * ((1.0 - u_e) * feedback - 1.0)
    dy[1] = ktr * (math.exp(y[0]) - y[1])
    dy[2] = ktr * (y[1] - y[2])
    dy[3] = ktr * (y[2] - y[3])
    dy[4] = ktr * (y[3] - y[4])
    ea, eb = y[6], y[7]
    kill = max(kda * ea + kdb * eb + kdab * ea * eb, 0.0)
    dy[5] = kl - math.exp(-lam * y[8]) * kill
    dy[6] = kexp * (u_a - ea)
    dy[7] = kexp * (u_b - eb)
    dy[8] = 1.0


@njit(cache=True, parallel=True)
def rk4_friberg_tumour(anc0, tumour0, times, effect, conc_a, conc_b, params, max_step_h, anc_out, tumour_out):
    """Integrate ``n`` patients over ``times (T,)`` into ``anc_out (n, 5, T)`` and ``tumour_out (n, 4, T)``:
    one Friberg chain (v0's neutrophils). The same scheme and bits as :func:`rk4_chains_tumour` with
    ``C = 1`` (tested), kept as its own loop because scalar stage inputs measured 1.75x faster there.

    ``anc0 (n, 5)`` / ``tumour0 (n, 4)``: transformed initial states (``ln Prol``, ``ln size``
    first); ``effect``, ``conc_a``, ``conc_b`` ``(n, T)``: the Friberg drug effect and the two
    concentrations (umol/L) on the grid; ``params (n, 10)``: each patient's ``[ktr, ln Circ0,
    gamma, feedback floor, kl, kd_a, kd_b, kd_ab, lambda, k_exposure]`` (:func:`kernel_parameters`).
    """
    n, n_times = anc0.shape[0], times.shape[0]
    for p in prange(n):
        y = np.empty(9)
        stage, k1, k2, k3, k4 = np.empty(9), np.empty(9), np.empty(9), np.empty(9), np.empty(9)
        y[:5] = anc0[p]
        y[5:] = tumour0[p]
        anc_out[p, :, 0] = y[:5]
        tumour_out[p, :, 0] = y[5:]
        prm = params[p]
        for i in range(n_times - 1):
            t0, t1 = times[i], times[i + 1]
            width = t1 - t0
            n_sub = max(1, math.ceil(width / max_step_h - 1e-9))
            h = width / n_sub
            e0, a0, b0 = effect[p, i], conc_a[p, i], conc_b[p, i]
            de, da, db = (effect[p, i + 1] - e0) / width, (conc_a[p, i + 1] - a0) / width, \
                (conc_b[p, i + 1] - b0) / width
            for s in range(n_sub):
                ts = t0 + s * h
                es, as_, bs = e0 + de * (ts - t0), a0 + da * (ts - t0), b0 + db * (ts - t0)
                em, am, bm = es + de * (0.5 * h), as_ + da * (0.5 * h), bs + db * (0.5 * h)
                ee, ae, be = es + de * h, as_ + da * h, bs + db * h
                _derivatives(y, es, as_, bs, prm, k1)
                for j in range(9):
                    stage[j] = k1[j] * (0.5 * h) + y[j]
                _derivatives(stage, em, am, bm, prm, k2)
                for j in range(9):
                    stage[j] = k2[j] * (0.5 * h) + y[j]
                _derivatives(stage, em, am, bm, prm, k3)
                for j in range(9):
                    stage[j] = k3[j] * h + y[j]
                _derivatives(stage, ee, ae, be, prm, k4)
                for j in range(9):
                    total = k2[j] * 2.0
                    total += k1[j]
                    total += k3[j] * 2.0
                    total += k4[j]
                    y[j] += total * (h / 6.0)
            anc_out[p, :, i + 1] = y[:5]
            tumour_out[p, :, i + 1] = y[5:]


#: kernel parameters per Friberg chain (``ktr, ln Circ0, gamma, floor``; the tumour's six follow)
CHAIN_PARAMETERS = 4
CHAIN_STATES, TUMOUR_STATES = 5, 4


@njit(cache=True)
def _chain_derivatives(y, u_e, u_a, u_b, prm, n_chains, dy):
    """dy/dt of the transformed states: ``n_chains`` Friberg chains ``[ln Prol, Tr1, Tr2, Tr3, Circ]``
    then the tumour ``[ln size, EA, EB, tau]``; ``u_e (n_chains,)`` the chains' drug effects and
    ``prm = [ktr, ln Circ0, gamma, floor] x n_chains + [kl, kd_a, kd_b, kd_ab, lambda, k_exposure]``."""
    for c in range(n_chains):
        o, q = CHAIN_STATES * c, CHAIN_PARAMETERS * c
        ktr, log_circ0, gamma, floor = prm[q], prm[q + 1], prm[q + 2], prm[q + 3]
        feedback = math.exp(gamma * (log_circ0 - math.log(max(y[o + 4], floor))))
        dy[o] = ktr * ((1.0 - u_e[c]) * feedback - 1.0)
        dy[o + 1] = ktr * (math.exp(y[o]) - y[o + 1])
        dy[o + 2] = ktr * (y[o + 1] - y[o + 2])
        dy[o + 3] = ktr * (y[o + 2] - y[o + 3])
        dy[o + 4] = ktr * (y[o + 3] - y[o + 4])
    o, q = CHAIN_STATES * n_chains, CHAIN_PARAMETERS * n_chains
    kl, kda, kdb, kdab, lam, kexp = prm[q], prm[q + 1], prm[q + 2], prm[q + 3], prm[q + 4], prm[q + 5]
    ea, eb = y[o + 1], y[o + 2]
    kill = max(kda * ea + kdb * eb + kdab * ea * eb, 0.0)
    dy[o] = kl - math.exp(-lam * y[o + 3]) * kill
    dy[o + 1] = kexp * (u_a - ea)
    dy[o + 2] = kexp * (u_b - eb)
    dy[o + 3] = 1.0


@njit(cache=True, parallel=True)
def rk4_chains_tumour(chains0, tumour0, times, effect, conc_a, conc_b, params, max_step_h, chains_out, tumour_out):
    """Integrate ``n`` patients over ``times (T,)`` into ``chains_out (n, C, 5, T)`` and ``tumour_out (n, 4, T)``.

    ``chains0 (n, C, 5)`` / ``tumour0 (n, 4)``: transformed initial states (``ln Prol``, ``ln size``
    first) of ``C`` Friberg chains (neutrophils, platelets, ...) and the tumour; ``effect (n, C, T)``:
    each chain's drug effect, ``conc_a``, ``conc_b`` ``(n, T)``: the two concentrations (umol/L) on the
    grid; ``params (n, 4 C + 6)``: each patient's kernel row (:func:`kernel_parameters`).
    """
    n, n_chains, n_times = chains0.shape[0], chains0.shape[1], times.shape[0]
    n_states = CHAIN_STATES * n_chains + TUMOUR_STATES
    split = CHAIN_STATES * n_chains
    for p in prange(n):
        y = np.empty(n_states)
        stage, k1, k2, k3, k4 = np.empty(n_states), np.empty(n_states), np.empty(n_states), np.empty(n_states), \
            np.empty(n_states)
        e0, de, es, em, ee = np.empty(n_chains), np.empty(n_chains), np.empty(n_chains), np.empty(n_chains), \
            np.empty(n_chains)
        for c in range(n_chains):
            y[CHAIN_STATES * c:CHAIN_STATES * (c + 1)] = chains0[p, c]
            chains_out[p, c, :, 0] = chains0[p, c]
        y[split:] = tumour0[p]
        tumour_out[p, :, 0] = y[split:]
        prm = params[p]
        for i in range(n_times - 1):
            t0, t1 = times[i], times[i + 1]
            width = t1 - t0
            n_sub = max(1, math.ceil(width / max_step_h - 1e-9))
            h = width / n_sub
            for c in range(n_chains):
                e0[c] = effect[p, c, i]
                de[c] = (effect[p, c, i + 1] - e0[c]) / width
            a0, b0 = conc_a[p, i], conc_b[p, i]
            da, db = (conc_a[p, i + 1] - a0) / width, (conc_b[p, i + 1] - b0) / width
            for s in range(n_sub):
                ts = t0 + s * h
                for c in range(n_chains):
                    es[c] = e0[c] + de[c] * (ts - t0)
                    em[c] = es[c] + de[c] * (0.5 * h)
                    ee[c] = es[c] + de[c] * h
                as_, bs = a0 + da * (ts - t0), b0 + db * (ts - t0)
                am, bm = as_ + da * (0.5 * h), bs + db * (0.5 * h)
                ae, be = as_ + da * h, bs + db * h
                _chain_derivatives(y, es, as_, bs, prm, n_chains, k1)
                for j in range(n_states):
                    stage[j] = k1[j] * (0.5 * h) + y[j]
                _chain_derivatives(stage, em, am, bm, prm, n_chains, k2)
                for j in range(n_states):
                    stage[j] = k2[j] * (0.5 * h) + y[j]
                _chain_derivatives(stage, em, am, bm, prm, n_chains, k3)
                for j in range(n_states):
                    stage[j] = k3[j] * h + y[j]
                _chain_derivatives(stage, ee, ae, be, prm, n_chains, k4)
                for j in range(n_states):
                    total = k2[j] * 2.0
                    total += k1[j]
                    total += k3[j] * 2.0
                    total += k4[j]
                    y[j] += total * (h / 6.0)
            for c in range(n_chains):
                chains_out[p, c, :, i + 1] = y[CHAIN_STATES * c:CHAIN_STATES * (c + 1)]
            tumour_out[p, :, i + 1] = y[split:]


def kernel_parameters(chain_params: np.ndarray, tumour_params: np.ndarray, floor_e9_l: float) -> np.ndarray:
    """``(n, 4 C + 6)`` kernel rows from raw ``(n, C, 5)`` Friberg rows of ``C`` chains and ``(n, 7)``
    tumour rows (:class:`~vae_simulator.groundtruth.pd.friberg.FribergParameters` /
    :class:`~vae_simulator.groundtruth.pd.tumour.TumourParameters` field order)."""
    circ0, mtt, gamma = chain_params[:, :, 0], chain_params[:, :, 1], chain_params[:, :, 2]
    chains = np.stack([4.0 / mtt, np.log(circ0), gamma, np.full(circ0.shape, floor_e9_l)], axis=2)
    return np.column_stack([chains.reshape(len(chain_params), -1), tumour_params[:, 1:]])

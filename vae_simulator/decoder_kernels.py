"""The interval-grid decoder's step compiled with numba: what :class:`~vae_simulator.simulator.DecoderStepper` runs.

:func:`step_rows` computes, for each patient on its own, what the numpy reference
(:class:`~vae_simulator.simulator.NumpyDecoder` and :meth:`PKSimulator.step
<vae_simulator.simulator.PKSimulator.step>`) computes: the GRU cell on the interval's dose, the
head, the concentrations on the grid (mg/L, exactly 0 before the first dose) and the log-sigma
columns asked for. It equals the reference within float rounding (``tests/pk_envs/test_fast_paths.py``).

**Batch invariance by construction.** Every row runs the same compiled loop: each product
accumulates over its inputs in their order (``out[j] += x[k] * w[k, j]``, ``k = 0, 1, ...``), no
fast-math, so no reassociation and no fused multiply-adds the compiler could choose differently
for different batches. A patient's numbers are therefore the same alone, in any batch, at any
position and on any number of threads, without relying on a BLAS library's choice of kernels
(OpenBLAS picks its blocking by the batch size, which is why the earlier numpy fast path needed
one matrix-vector product per row). The loops over output units vectorise (SIMD lanes are
independent outputs, so that does not change a result either).

**Precision.** The products run in the network's dtype (float32 in the environments, the
precision the PK-VAEs were trained in); each elementwise step (gates, ``tanh``, SiLU) is evaluated
in float64 and stored in the dtype (float32 networks with :func:`_tanh`'s rational approximation,
float64 ones with libm's); concentrations and log-sigma are float64.

**Why compiled.** A single environment is a batch of one, where numpy spent ~127 us per step on
~30 small calls; the compiled step takes 30-43 us (measured, docs/speed.md). Large batches run on every core
(``prange`` over chunks of patients). Compiled once per machine (numba's on-disk cache).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

#: Batches at least this large are split over the cores; smaller ones run on the calling thread
#: (the same loop per row either way, so the same bits).
PARALLEL_ROWS = 256
#: Rows per parallel task (their scratch buffers are allocated once per task).
ROWS_PER_TASK = 64


@njit(cache=True)
def _affine(x, w, b, out):
    """``out = x @ w + b`` for one row: each ``out[j]`` accumulates ``x[k] * w[k, j]`` for ``k = 0, 1, ...`` in
    order, then adds ``b[j]``. Four inputs per pass over the outputs (the same additions in the same
    order as one at a time, so the same bits: tested), which halves the loads and stores of ``out``."""
    n_in, n_out = w.shape
    for j in range(n_out):
        out[j] = 0.0
    k = 0
    while k + 4 <= n_in:
        x0, x1, x2, x3 = x[k], x[k + 1], x[k + 2], x[k + 3]
        w0, w1, w2, w3 = w[k], w[k + 1], w[k + 2], w[k + 3]
        for j in range(n_out):
            out[j] = (((out[j] + x0 * w0[j]) + x1 * w1[j]) + x2 * w2[j]) + x3 * w3[j]
        k += 4
    while k < n_in:
        xk, wk = x[k], w[k]
        for j in range(n_out):
            out[j] += xk * wk[j]
        k += 1
    for j in range(n_out):
        out[j] += b[j]


#: |x| beyond which :func:`_tanh` is +-1 in float32 (Eigen's clamp)
TANH_CLAMP = 7.90531110763549805


@njit(cache=True)
def _tanh(x, exact):
    """libm's tanh if ``exact`` (float64 networks), else the rational approximation of Eigen's ``generic_fast_tanh_float`` (degree 13 / 6 on
    ``|x| <= 7.905``), evaluated in float64: within 3.5 float32 ulps of tanh (max relative error
    2.4e-7, measured on 2 million points of [-12, 12]), arithmetic only, ~5x faster than libm's tanh."""
    if exact:
        return math.tanh(x)
    x = min(max(x, -TANH_CLAMP), TANH_CLAMP)
    x2 = x * x
    p = x2 * -2.76076847742355e-16 + 2.00018790482477e-13
    p = x2 * p + -8.60467152213735e-11
    p = x2 * p + 5.12229709037114e-08
    p = x2 * p + 1.48572235717979e-05
    p = x2 * p + 6.37261928875436e-04
    p = x2 * p + 4.89352455891786e-03
    q = x2 * 1.19825839466702e-06 + 1.18534705686654e-04
    q = x2 * q + 2.26843463243900e-03
    q = x2 * q + 4.89352518554385e-03
    return x * p / q


#: Below this, :func:`_sigmoid` is ``e^x / (1 + e^x)`` from libm's exp: the tanh form would lose the
#: tail's relative precision there (1 + tanh(x / 2) cancels)
SIGMOID_TAIL = -8.0


@njit(cache=True)
def _sigmoid(x, exact):
    if exact:
        return 1.0 / (1.0 + math.exp(-x))
    if x < SIGMOID_TAIL:
        e = math.exp(x)
        return e / (1.0 + e)
    return 0.5 * (1.0 + _tanh(0.5 * x, False))


@njit(cache=True)
def _silu_inplace(a, exact):
    for j in range(a.shape[0]):
        v = float(a[j])
        a[j] = v * _sigmoid(v, exact)


@njit(cache=True)
def _head_rest(a, w_mid, b_mid, w_last, b_last, a2, out, exact):
    """A head after its first affine map ``a``: SiLU, the hidden layers (SiLU each), the output layer into ``out``."""
    _silu_inplace(a, exact)
    for layer in range(w_mid.shape[0]):
        _affine(a, w_mid[layer], b_mid[layer], a2)
        _silu_inplace(a2, exact)
        a[:] = a2
    _affine(a, w_last, b_last, out)


@njit(cache=True)
def _row(i, state, constants, dose, doses_mg, w_hh, b_hh, w_ih_dose, w0_h, w0_dose, w_mid, b_mid, w_last, b_last,
         params, new_state, conc, log_sigma, h, gh, a, a2, out, exact):
    """Patient ``i``: the GRU cell, the head, concentrations and log-sigma (module docstring)."""
    hidden, grid = h.shape[0], conc.shape[1]
    min_log_sigma, y_scale, y_shift, c0 = params[0], params[1], params[2], params[3]
    for k in range(hidden):
        h[k] = state[i, k]  # float64 state -> the network's dtype
    d = dose[i]
    _affine(h, w_hh, b_hh, gh)
    # gates r, u: sigmoid((d * w_ih_dose + const) + gh); written over gh's first 2H entries
    for j in range(2 * hidden):
        gi = d * w_ih_dose[j]
        gi += constants[i, j]
        g = float(gi + gh[j])
        gh[j] = _sigmoid(g, exact)
    for j in range(hidden):
        r, u = gh[j], gh[hidden + j]
        gi = d * w_ih_dose[2 * hidden + j]
        gi += constants[i, 2 * hidden + j]
        pre = r * gh[2 * hidden + j]  # the network's dtype, in the reference's order
        pre += gi
        candidate = _tanh(float(pre), exact)
        a2[j] = (1.0 - u) * candidate + u * h[j]  # the new GRU state, in the dtype
    for j in range(hidden):
        new_state[i, j] = a2[j]
    _affine(a2, w0_h, constants[i, 3 * hidden:], a)  # + the patient's [z] projection and bias
    for j in range(hidden):
        a[j] += d * w0_dose[j]
    _head_rest(a, w_mid, b_mid, w_last, b_last, a2, out, exact)
    dosed = max(state[i, hidden], 1.0 if doses_mg[i] > 0 else 0.0)
    new_state[i, hidden] = dosed
    for j in range(grid):
        c = math.exp(float(out[j]) * y_scale + y_shift) - c0
        conc[i, j] = max(c, 0.0) if dosed > 0 else 0.0  # never dosed: exactly 0 (as PKVAE.decode)
    for j in range(log_sigma.shape[1]):
        x = float(out[grid + j]) - min_log_sigma
        log_sigma[i, j] = min_log_sigma + max(x, 0.0) + math.log1p(math.exp(-abs(x)))  # softplus


@njit(cache=True)
def _step_serial(state, constants, dose, doses_mg, w_hh, b_hh, w_ih_dose, w0_h, w0_dose, w_mid, b_mid, w_last,
                 b_last, params, new_state, conc, log_sigma, exact):
    hidden = w0_h.shape[0]
    h, gh = np.empty(hidden, w_hh.dtype), np.empty(3 * hidden, w_hh.dtype)
    a, a2, out = np.empty(hidden, w_hh.dtype), np.empty(hidden, w_hh.dtype), np.empty(b_last.shape[0], w_hh.dtype)
    for i in range(state.shape[0]):
        _row(i, state, constants, dose, doses_mg, w_hh, b_hh, w_ih_dose, w0_h, w0_dose, w_mid, b_mid, w_last, b_last,
             params, new_state, conc, log_sigma, h, gh, a, a2, out, exact)


@njit(cache=True, parallel=True)
def _step_parallel(state, constants, dose, doses_mg, w_hh, b_hh, w_ih_dose, w0_h, w0_dose, w_mid, b_mid, w_last,
                   b_last, params, new_state, conc, log_sigma, exact):
    n, hidden = state.shape[0], w0_h.shape[0]
    for task in prange((n + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        h, gh = np.empty(hidden, w_hh.dtype), np.empty(3 * hidden, w_hh.dtype)
        a, a2 = np.empty(hidden, w_hh.dtype), np.empty(hidden, w_hh.dtype)
        out = np.empty(b_last.shape[0], w_hh.dtype)
        for i in range(task * ROWS_PER_TASK, min(n, (task + 1) * ROWS_PER_TASK)):
            _row(i, state, constants, dose, doses_mg, w_hh, b_hh, w_ih_dose, w0_h, w0_dose, w_mid, b_mid, w_last,
                 b_last, params, new_state, conc, log_sigma, h, gh, a, a2, out, exact)


def stack_hidden_layers(layers: list, hidden: int, dtype, owner: str) -> tuple[np.ndarray, np.ndarray]:
    """A head's hidden ``(w (H, H), b (H,))`` layers as the kernels take them: ``(L, H, H)`` and ``(L, H)``
    (``L`` may be 0); TypeError naming ``owner`` for a layer of another shape."""
    if any(w.shape != (hidden, hidden) for w, _ in layers):
        raise TypeError(f"{owner} needs the head's hidden layers to be {hidden} x {hidden}, got "
                        f"{[w.shape for w, _ in layers]}")
    if not layers:
        return np.zeros((0, hidden, hidden), dtype), np.zeros((0, hidden), dtype)
    return (np.ascontiguousarray(np.stack([w for w, _ in layers]), dtype=dtype),
            np.ascontiguousarray(np.stack([b for _, b in layers]), dtype=dtype))


def step_rows(state: np.ndarray, constants: np.ndarray, doses_mg: np.ndarray, dose_scaled: np.ndarray,
              weights: tuple, params: np.ndarray, n_sigma: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One interval for ``n`` patients: ``(conc (n, G) mg/L, log_sigma (n, n_sigma), new state (n, H + 1))``.

    ``state (n, H + 1)`` float64 (GRU state, dosed-yet flag); ``constants (n, 4H)`` and ``dose_scaled (n,)``
    (dose / dose_max) in the network's dtype; ``doses_mg (n,)`` float64, already checked; ``weights`` as
    :class:`~vae_simulator.simulator.DecoderStepper` holds them; ``params`` ``[min_log_sigma, y_scale,
    y_shift, c0_mg_l]`` float64.
    """
    n, grid = state.shape[0], weights[-1].shape[0] - n_sigma
    new_state, conc, log_sigma = np.empty_like(state), np.empty((n, grid)), np.empty((n, n_sigma))
    kernel = _step_parallel if n >= PARALLEL_ROWS else _step_serial
    kernel(state, constants, dose_scaled, doses_mg, *weights, params, new_state, conc, log_sigma,
           constants.dtype == np.float64)
    return conc, log_sigma, new_state


# ---------------------------------------------------------------------------- the continuous-time decoder
# The same construction for :class:`~vae_simulator.ct_stepper.CTStepper`: the event GRU (one dose per
# patient) and the head at any query times after the last dose, one compiled loop per patient.


@njit(cache=True)
def _phi(s_h, inv_tau, inv_interval, log_time, out, at):
    """Time features of ``s_h`` h at ``out[at:]``: ``exp(-s / tau_i)``, ``log1p(s / interval)`` (s >= 0), then,
    if ``log_time`` is ``(offset h, tau_min h, log span)`` (empty: none), ``log((s + offset) / tau_min) / span``."""
    s = max(s_h, 0.0)
    for m in range(inv_tau.shape[0]):
        out[at + m] = math.exp(-s * inv_tau[m])
    out[at + inv_tau.shape[0]] = math.log1p(s * inv_interval)
    if log_time.shape[0] > 0:
        out[at + inv_tau.shape[0] + 1] = math.log((s + log_time[0]) / log_time[1]) / log_time[2]


@njit(cache=True)
def _give_row(i, carry, gap_h, amount_scaled, infusion_scaled, given, w_ih_u, w_hh, b_hh, inv_tau, inv_interval,
              log_time, out, u, h, gi, gh, exact):
    hidden = h.shape[0]
    for j in range(carry.shape[1]):
        out[i, j] = carry[i, j]
    if not given[i]:
        return
    u[0], u[1] = amount_scaled[i], infusion_scaled[i]
    _phi(gap_h[i], inv_tau, inv_interval, log_time, u, 2)
    for k in range(hidden):
        h[k] = carry[i, k]
    _affine(u, w_ih_u, carry[i, hidden:4 * hidden], gi)  # + the patient's [z, x] projection and bias
    _affine(h, w_hh, b_hh, gh)
    for j in range(hidden):
        r = _sigmoid(float(gi[j] + gh[j]), exact)
        update = _sigmoid(float(gi[hidden + j] + gh[hidden + j]), exact)
        candidate = _tanh(float(gi[2 * hidden + j]) + r * float(gh[2 * hidden + j]), exact)
        out[i, j] = (1.0 - update) * candidate + update * float(h[j])


@njit(cache=True)
def _give_serial(carry, gap_h, amount_scaled, infusion_scaled, given, w_ih_u, w_hh, b_hh, inv_tau, inv_interval,
                 log_time, out, exact):
    hidden = w_hh.shape[0]
    u, h = np.empty(w_ih_u.shape[0], carry.dtype), np.empty(hidden, carry.dtype)
    gi, gh = np.empty(3 * hidden, carry.dtype), np.empty(3 * hidden, carry.dtype)
    for i in range(carry.shape[0]):
        _give_row(i, carry, gap_h, amount_scaled, infusion_scaled, given, w_ih_u, w_hh, b_hh, inv_tau, inv_interval,
                  log_time, out, u, h, gi, gh, exact)


@njit(cache=True, parallel=True)
def _give_parallel(carry, gap_h, amount_scaled, infusion_scaled, given, w_ih_u, w_hh, b_hh, inv_tau, inv_interval,
                   log_time, out, exact):
    n, hidden = carry.shape[0], w_hh.shape[0]
    for task in prange((n + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        u, h = np.empty(w_ih_u.shape[0], carry.dtype), np.empty(hidden, carry.dtype)
        gi, gh = np.empty(3 * hidden, carry.dtype), np.empty(3 * hidden, carry.dtype)
        for i in range(task * ROWS_PER_TASK, min(n, (task + 1) * ROWS_PER_TASK)):
            _give_row(i, carry, gap_h, amount_scaled, infusion_scaled, given, w_ih_u, w_hh, b_hh, inv_tau,
                      inv_interval, log_time, out, u, h, gi, gh, exact)


def give_events(carry: np.ndarray, gap_h: np.ndarray, amount_scaled: np.ndarray, infusion_scaled: np.ndarray,
                given: np.ndarray, weights: tuple, time_params: tuple) -> np.ndarray:
    """The carry ``(n, 5H)`` after one event per patient (rows not ``given`` copied unchanged).

    ``gap_h (n,)`` h since the previous event (float64); ``amount_scaled``, ``infusion_scaled`` ``(n,)`` in
    the carry's dtype; ``weights`` ``(w_ih_u, w_hh, b_hh)``; ``time_params`` ``(inv_tau, 1 / interval_h,
    log_time)`` (see :func:`_phi`).
    """
    out = np.empty_like(carry)
    kernel = _give_parallel if carry.shape[0] >= PARALLEL_ROWS else _give_serial
    kernel(carry, gap_h, amount_scaled, infusion_scaled, given, *weights, *time_params, out, carry.dtype == np.float64)
    return out


@njit(cache=True)
def _head_row(i, carry, since_h, clock_h, last_scaled, infusion_h, w0_h, w0_f, w_mid, b_mid, w_last, b_last,
              inv_tau, inv_interval, log_time, duration_scale, y_shift, y_scale, cap, centres, clock, conc, h, first,
              feats, a, a2, out, exact):
    hidden, n_phi = h.shape[0], inv_tau.shape[0] + 1 + min(log_time.shape[0], 1)
    n_base = 2 + 2 * n_phi
    for k in range(hidden):
        h[k] = carry[i, k]
    _affine(h, w0_h, carry[i, 4 * hidden:], first)  # + the patient's [z] projection and bias
    d_e = float(infusion_h[i])
    for t in range(since_h.shape[1]):
        s = max(since_h[i, t], 0.0)
        feats[0] = last_scaled[i]
        _phi(s, inv_tau, inv_interval, log_time, feats, 1)
        _phi(s - d_e, inv_tau, inv_interval, log_time, feats, 1 + n_phi)
        feats[1 + 2 * n_phi] = min(s, d_e) / duration_scale
        if centres.shape[0] > 0:  # ClockFeatures: centres (cos, sin), (kappa, period h)
            angle = (clock_h[i, t] % clock[1]) * (2.0 * math.pi / clock[1])
            cos_a, sin_a = math.cos(angle), math.sin(angle)
            for k in range(centres.shape[0]):
                x = clock[0] * (cos_a * centres[k, 0] + sin_a * centres[k, 1] - 1.0)
                # below -88 float32's exp is 0 or subnormal: the bump is too far to count
                feats[n_base + k] = math.exp(x) if x > CLOCK_EXP_FLOOR else 0.0
        _affine(feats, w0_f, first, a)
        _head_rest(a, w_mid, b_mid, w_last, b_last, a2, out, exact)
        conc[i, t] = math.exp(min(y_shift + y_scale * float(out[0]), cap))


@njit(cache=True)
def _head_serial(carry, since_h, clock_h, last_scaled, infusion_h, w0_h, w0_f, w_mid, b_mid, w_last, b_last, inv_tau,
                 inv_interval, log_time, duration_scale, y_shift, y_scale, cap, centres, clock, conc, exact):
    hidden, dt = w0_h.shape[0], carry.dtype
    h, first, a, a2 = np.empty(hidden, dt), np.empty(hidden, dt), np.empty(hidden, dt), np.empty(hidden, dt)
    feats, out = np.empty(w0_f.shape[0], dt), np.empty(w_last.shape[1], dt)
    for i in range(carry.shape[0]):
        _head_row(i, carry, since_h, clock_h, last_scaled, infusion_h, w0_h, w0_f, w_mid, b_mid, w_last, b_last,
                  inv_tau, inv_interval, log_time, duration_scale, y_shift, y_scale, cap, centres, clock, conc, h,
                  first, feats, a, a2, out, exact)


@njit(cache=True, parallel=True)
def _head_parallel(carry, since_h, clock_h, last_scaled, infusion_h, w0_h, w0_f, w_mid, b_mid, w_last, b_last,
                   inv_tau, inv_interval, log_time, duration_scale, y_shift, y_scale, cap, centres, clock, conc, exact):
    n, hidden, dt = carry.shape[0], w0_h.shape[0], carry.dtype
    for task in prange((n + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        h, first, a, a2 = np.empty(hidden, dt), np.empty(hidden, dt), np.empty(hidden, dt), np.empty(hidden, dt)
        feats, out = np.empty(w0_f.shape[0], dt), np.empty(w_last.shape[1], dt)
        for i in range(task * ROWS_PER_TASK, min(n, (task + 1) * ROWS_PER_TASK)):
            _head_row(i, carry, since_h, clock_h, last_scaled, infusion_h, w0_h, w0_f, w_mid, b_mid, w_last, b_last,
                      inv_tau, inv_interval, log_time, duration_scale, y_shift, y_scale, cap, centres, clock, conc,
                      h, first, feats, a, a2, out, exact)


#: exponent below which a clock bump is 0 (float32's exp underflows there; the far bumps are skipped)
CLOCK_EXP_FLOOR = -88.0


def head_concentrations(carry: np.ndarray, since_h: np.ndarray, last_scaled: np.ndarray, infusion_h: np.ndarray,
                        weights: tuple, params: tuple, clock_h: np.ndarray | None = None,
                        clock: tuple = (np.zeros((0, 2)), 0.0, 1.0)) -> np.ndarray:
    """Concentrations ``(n, T)`` mg/L float64 at ``since_h (n, T)`` h after each patient's last dose.

    ``last_scaled (n,)``: that dose / dose_max (carry dtype); ``infusion_h (n,)`` its infusion length
    (float64); ``weights`` ``(w0_h, w0_f, w_mid (L, H, H), b_mid (L, H), w_last (H, 1), b_last (1,))`` (the
    first layer's bias is in the carry's head constants); ``params`` ``(inv_tau, 1 / interval_h, log_time,
    duration_scale_h, y_shift, y_scale, log-concentration cap)``. Models with clock features
    (:class:`~vae_simulator.vae.ct_model.ClockFeatures`): ``clock = ([cos c_k, sin c_k] (K, 2) of the
    centres, kappa, period h)`` and ``clock_h (n, T)``, the query times on the data's clock (h). The
    kernel takes ``cos(t - c) = cos t cos c + sin t sin c``: two trigonometric calls per query, not K.
    """
    conc = np.empty(since_h.shape)
    centres, kappa, period = clock
    if centres.shape[0] and (clock_h is None or clock_h.shape != since_h.shape):
        raise ValueError(f"a model with clock features needs the query times on the clock, shape {since_h.shape}")
    clock_h = np.zeros((1, 1)) if clock_h is None else np.asarray(clock_h, dtype=float)
    kernel = _head_parallel if carry.shape[0] >= PARALLEL_ROWS else _head_serial
    kernel(carry, since_h, clock_h, last_scaled, infusion_h, *weights, *params, centres,
           np.array([kappa, period], dtype=float), conc, carry.dtype == np.float64)
    return conc

"""The continuous-time decoder's event step and head outside torch: fast and batch-invariant.

:class:`~vae_simulator.ct_simulator.CTPatientSimulator` advances patients one dose at a time and
reads concentrations off the state after the last dose. This module does that arithmetic outside
torch, reorganised as the interval-grid decoder's :class:`~vae_simulator.simulator.DecoderStepper`:

* the GRU input and the head's first layer take ``[z, x]`` (GRU) and ``z`` (head), fixed per
  patient, so they are projected once (:meth:`CTStepper.start`, the ``constants``); a dose adds
  its own small projection;
* an event and the head at the query times are one compiled loop per patient
  (:func:`~vae_simulator.decoder_kernels.give_events`, :func:`~vae_simulator.decoder_kernels.head_concentrations`;
  :meth:`CTStepper.start`'s products are :func:`~vae_simulator.simulator.rowwise_matmul`), so a
  patient's numbers do not depend on who else is in the batch: a vector environment equals N
  single ones bit for bit;
* float32, the precision the decoder was trained in; concentrations are returned in float64.

Results equal the torch decoder over the whole history (:class:`~vae_simulator.vae.ct_model.CTDecoder`)
within float32 rounding (``tests/vae_simulator/test_ct_simulator.py``).
"""

from __future__ import annotations

import numpy as np
import torch

from vae_simulator.decoder_kernels import give_events, head_concentrations, stack_hidden_layers
from vae_simulator.simulator import rowwise_matmul
from vae_simulator.vae.ct_model import CTPKVAE

#: log-concentration cap of :meth:`CTPKVAE.concentration` (keeps exp finite)
LOG_CONC_CAP = 20.0


class CTStepper:
    """Numpy copy of a :class:`CTPKVAE` decoder (weights read once; the model is left untouched)."""

    def __init__(self, model: CTPKVAE, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        cfg, dec = model.cfg, model.decoder
        self.hidden, self.latent_dim = int(cfg.hidden), int(cfg.latent_dim)

        def cast(t: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=self.dtype)

        norm = model.normalizer
        self.cov_mean, self.cov_std = norm.cov_mean.numpy().astype(float), norm.cov_std.numpy().astype(float)
        self.cov_log = norm.cov_log.numpy() > 0
        self.y_shift, self.y_scale = float(norm.y_shift), float(norm.y_scale)
        self.inv_tau = model.phi.inv_tau.numpy().astype(self.dtype)
        self.interval_h = float(model.phi.interval_h)
        self.dose_max_mg, self.duration_scale_h = float(cfg.dose_max_mg), float(cfg.duration_scale_h)

        self.init_w, self.init_b = cast(dec.init.weight.T), cast(dec.init.bias)
        phi = model.phi
        # (offset h, tau_min h, log span) of TimeFeatures' log-time feature; empty for models without it
        self.log_time = np.array([phi.log_offset_h, phi.log_min_h, phi.log_span] if phi.log_time else [], dtype=float)
        n_u = 2 + phi.size  # scaled amount, scaled length, phi(gap)
        w_ih = cast(dec.gru.weight_ih_l0.T)  # (n_u + zx, 3H), gates r, z, n as torch orders them
        self.w_ih_u, self.w_ih_zx = np.ascontiguousarray(w_ih[:n_u]), np.ascontiguousarray(w_ih[n_u:])
        self.b_ih, self.w_hh, self.b_hh = cast(dec.gru.bias_ih_l0), cast(dec.gru.weight_hh_l0.T), cast(dec.gru.bias_hh_l0)
        linears = [m for m in dec.head if isinstance(m, torch.nn.Linear)]
        w0 = cast(linears[0].weight.T)
        h, d = self.hidden, self.latent_dim
        self.w0_h, self.w0_z, self.w0_f = (np.ascontiguousarray(w0[:h]), np.ascontiguousarray(w0[h:h + d]),
                                           np.ascontiguousarray(w0[h + d:]))
        self.b0 = cast(linears[0].bias)
        self.rest = [(cast(m.weight.T), cast(m.bias)) for m in linears[1:]]
        (w_last, b_last), middle = self.rest[-1], self.rest[:-1]
        if w_last.shape != (h, 1):
            raise TypeError(f"CTStepper needs a head with one output, got a last layer of {w_last.shape}")
        w_mid, b_mid = stack_hidden_layers(middle, h, self.dtype, "CTStepper")
        self._head_weights = (self.w0_h, self.w0_f, w_mid, b_mid, w_last, b_last)
        inv_tau = self.inv_tau.astype(float)
        self._time_params = (inv_tau, 1.0 / self.interval_h, self.log_time)
        self._head_params = (inv_tau, 1.0 / self.interval_h, self.log_time, self.duration_scale_h, self.y_shift, self.y_scale,
                             LOG_CONC_CAP)
        clock = dec.clock
        #: whether the head reads the time of day (ClockFeatures): concentrations then need clock times
        self.has_clock = clock is not None
        # the kernel's (cos, sin) of the bump centres, computed once here rather than at every step
        centres = clock.centres.numpy().astype(float) if clock is not None else np.zeros(0)
        self._clock = (np.ascontiguousarray(np.stack([np.cos(centres), np.sin(centres)], axis=1)),
                       float(clock.kappa) if clock is not None else 0.0,
                       clock.period_h if clock is not None else 1.0)

    # ------------------------------------------------------------------ pieces
    def scale_covariates(self, covariates: np.ndarray) -> np.ndarray:
        """Covariates ``(n, C)`` as the model's normaliser scales them (float64)."""
        cov = np.asarray(covariates, dtype=float)
        logged = np.where(self.cov_log, np.log(np.maximum(cov, 1e-6)), cov)
        return (logged - self.cov_mean) / self.cov_std

    @property
    def carry_width(self) -> int:
        """Columns of a patient's carry: GRU state (H), GRU constants (3H), head constants (H)."""
        return 5 * self.hidden

    # ------------------------------------------------------------------ the decoder
    def start(self, covariates: np.ndarray, z: np.ndarray) -> np.ndarray:
        """The carry ``(n, 5H)`` before any dose: ``[h_0, W_ih_zx [z, x] + b_ih, W0_z z + b0]``."""
        zx = np.concatenate([np.asarray(z, dtype=float), self.scale_covariates(covariates)], axis=1).astype(self.dtype)
        h0 = np.tanh(rowwise_matmul(zx, self.init_w) + self.init_b)
        gru_const = rowwise_matmul(zx, self.w_ih_zx) + self.b_ih
        head_const = rowwise_matmul(zx[:, :self.latent_dim], self.w0_z) + self.b0
        return np.concatenate([h0, gru_const, head_const], axis=1)

    def give(self, carry: np.ndarray, gap_h: np.ndarray, amount_mg: np.ndarray, infusion_h: np.ndarray,
             given: np.ndarray) -> np.ndarray:
        """The carry after one event per patient (``gap_h`` since the previous one; rows not ``given`` unchanged)."""
        dt = self.dtype
        return give_events(np.ascontiguousarray(carry, dtype=dt), np.asarray(gap_h, dtype=float),
                           np.asarray(amount_mg, dtype=dt) / dt.type(self.dose_max_mg),
                           np.asarray(infusion_h, dtype=dt) / dt.type(self.duration_scale_h),
                           np.asarray(given, dtype=bool), (self.w_ih_u, self.w_hh, self.b_hh), self._time_params)

    def concentrations(self, carry: np.ndarray, since_h: np.ndarray, last_mg: np.ndarray,
                       last_infusion_h: np.ndarray, clock_h: np.ndarray | None = None) -> np.ndarray:
        """Concentrations (mg/L, float64, ``(n, T)``) ``since_h (n, T)`` h after each patient's last dose;
        ``clock_h (n, T)``: the same queries on the clock (h from the first dose), for models with
        clock features (:attr:`has_clock`)."""
        dt = self.dtype
        return head_concentrations(np.ascontiguousarray(carry, dtype=dt), np.asarray(since_h, dtype=float),
                                   np.asarray(last_mg, dtype=dt) / dt.type(self.dose_max_mg),
                                   np.asarray(last_infusion_h, dtype=float), self._head_weights, self._head_params,
                                   clock_h=clock_h, clock=self._clock)

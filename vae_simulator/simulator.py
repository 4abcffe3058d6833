"""The PK-VAE as a patient simulator: the small interface the environments use.

:class:`PKSimulator` wraps a trained decoder in an autograd-free float64 numpy
implementation (:class:`NumpyDecoder`, tested equal to the torch model) that steps one
dosing interval at a time for a batch of patients, carrying each patient's state::

    sim = PKSimulator.from_pretrained("vancomycin")
    patients = sim.sample_patients(64, rng)          # covariates + latent z from the fitted population
    state = sim.initial_state(patients)
    conc, log_sigma, state = sim.step(state, patients, doses_mg)   # (64, G) mg/L on sim.grid_h
    observed = sim.observe(conc, log_sigma, rng)     # noisy assay results, mg/L

Doses outside the range the decoder was trained on are refused, not extrapolated, and so are
pinned latents outside the fitted population (:meth:`PKSimulator.latent_bounds`). The simulator
implements :class:`vae_simulator.interface.PatientSimulator`, the contract with the environments.

That is the reference path. The environments step :class:`DecoderStepper`, the same function
reorganised for speed (per-patient inputs projected once per episode, float32 network, a compiled
step whose per-patient arithmetic does not depend on the batch, :mod:`vae_simulator.decoder_kernels`);
it equals the reference within float rounding (``tests/pk_envs/test_fast_paths.py``).
"""

from __future__ import annotations

import functools

import numpy as np

from vae_simulator.covariates import Covariates, draw_covariate_row
from vae_simulator.decoder_kernels import stack_hidden_layers, step_rows
from vae_simulator.groundtruth import get_model
from vae_simulator.groundtruth.base import ExposureTarget
from vae_simulator.interface import LATENT_RANGE_SD, AdultCovariates, NormalSource, Patients, check_patients

#: The reference cohort of :meth:`PKSimulator.latent_bounds`: this many adults, drawn with this seed.
REFERENCE_PATIENTS, REFERENCE_SEED = 4096, 20240


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


class NumpyDecoder:
    """Float64 numpy twin of :class:`vae_simulator.vae.model.Decoder` and its scaling."""

    def __init__(self, model):
        state = {k: v.detach().cpu().double().numpy() for k, v in model.state_dict().items()}
        cfg = model.cfg
        self.cfg = cfg
        self.cov_mean, self.cov_std, self.cov_log = state["normalizer.cov_mean"], state["normalizer.cov_std"], \
            state["normalizer.cov_log"] > 0
        self.y_shift, self.y_scale = float(state["normalizer.y_shift"]), float(state["normalizer.y_scale"])
        self.init_w, self.init_b = state["decoder.init.weight"].T.copy(), state["decoder.init.bias"]
        self.w_ih, self.b_ih = state["decoder.cell.weight_ih"].T.copy(), state["decoder.cell.bias_ih"]
        self.w_hh, self.b_hh = state["decoder.cell.weight_hh"].T.copy(), state["decoder.cell.bias_hh"]
        linear_keys = sorted({k.rsplit(".", 1)[0] for k in state if k.startswith("decoder.head.")},
                             key=lambda k: int(k.split(".")[-1]))
        self.head = [(state[f"{k}.weight"].T.copy(), state[f"{k}.bias"]) for k in linear_keys]

    def scale_covariates(self, cov: np.ndarray) -> np.ndarray:
        logged = np.where(self.cov_log, np.log(np.maximum(cov, 1e-6)), cov)
        return (logged - self.cov_mean) / self.cov_std

    def initial_state(self, z: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.tanh(np.concatenate([z, x], axis=1) @ self.init_w + self.init_b)

    def step(self, h: np.ndarray, z: np.ndarray, x: np.ndarray, dose_scaled: np.ndarray):
        """One interval; ``dose_scaled`` is ``(n, 1)`` dose / dose_max. Returns mean y, log sigma, state."""
        hidden = h.shape[1]
        gi = np.concatenate([z, x, dose_scaled], axis=1) @ self.w_ih + self.b_ih
        gh = h @ self.w_hh + self.b_hh
        r = _sigmoid(gi[:, :hidden] + gh[:, :hidden])
        u = _sigmoid(gi[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
        cand = np.tanh(gi[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
        h = (1.0 - u) * cand + u * h
        out = np.concatenate([h, z, dose_scaled], axis=1)
        for i, (w, b) in enumerate(self.head):
            out = out @ w + b
            if i < len(self.head) - 1:
                out = _silu(out)
        grid = self.cfg.grid_size
        mean, raw = out[:, :grid], out[:, grid:]
        log_sigma = self.cfg.min_log_sigma + _softplus(raw - self.cfg.min_log_sigma)
        return mean, log_sigma, h

    def to_conc(self, y: np.ndarray) -> np.ndarray:
        """Scaled log-concentration -> mg/L (never negative)."""
        return np.maximum(np.exp(y * self.y_scale + self.y_shift) - self.cfg.c0_mg_l, 0.0)


def rowwise_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` as one BLAS matrix-vector product per row: each row's result is bit-identical
    whatever the batch it is computed in.

    BLAS matrix-matrix kernels choose blockings and summation orders by the batch size (OpenBLAS
    gives a row computed in a batch of 3 other last bits than in a batch of 4); a stack of
    ``(1, K) @ (K, H)`` products runs the same matrix-vector kernel on every row. At 4096 rows it
    costs about 2x a batched matrix product and 5x less than ``np.einsum`` (measured on the
    2-core machine); at one row it is the fastest product numpy has.
    """
    return np.matmul(np.ascontiguousarray(x)[:, None, :], w)[:, 0, :]


class DecoderStepper:
    """The decoder's interval step as the environments run it: fast and batch-invariant.

    Computes what :meth:`PKSimulator.initial_state` and :meth:`PKSimulator.step` compute (the
    reference path), reorganised for speed:

    * the GRU input and the first head layer take ``[z, x, dose]``; the ``z, x`` part is fixed
      per patient, so it is projected once per episode (:meth:`start`, the ``constants``) and a
      step adds only ``dose * w_dose``;
    * the step is one compiled loop per patient (:func:`vae_simulator.decoder_kernels.step_rows`;
      :meth:`start`'s products are :func:`rowwise_matmul`), so a patient's numbers do not depend on
      who else is in the batch (a vector environment equals N single ones bit for bit), and large
      batches use every core;
    * the last layer computes only the mean and the log-sigma columns ``sigma_index`` asked for;
    * ``dtype``: arithmetic precision of the network's products (float64 default; float32 is the
      precision the decoder was trained in and what the environments run). Concentrations are
      always computed in float64 from the network's output.

    Results equal the reference within float rounding (``tests/pk_envs/test_fast_paths.py``: relative
    1e-10 in float64; float32 as close as the torch decoder is to the reference, 2e-5).
    The state layout is the reference's: the GRU state, then the 'dosed yet' flag.
    """

    def __init__(self, sim: PKSimulator, sigma_index=None, dtype=np.float64):
        dec, cfg = sim.decoder, sim.cfg
        if not isinstance(dec, NumpyDecoder) or len(dec.head) < 2:
            raise TypeError(f"DecoderStepper needs a NumpyDecoder with a head of >= 2 layers, got {type(dec).__name__}")
        self.sim, self.dtype = sim, np.dtype(dtype)
        hidden, n_z, grid = int(cfg.hidden), int(cfg.latent_dim), int(cfg.grid_size)
        self.hidden, self.grid_size = hidden, grid
        self.sigma_index = np.arange(grid) if sigma_index is None else np.asarray(sigma_index, dtype=int).reshape(-1)
        if self.sigma_index.size and (self.sigma_index.min() < 0 or self.sigma_index.max() >= grid):
            raise ValueError(f"sigma_index must hold grid indices in [0, {grid - 1}], got {self.sigma_index}")

        def cast(a):
            return np.ascontiguousarray(a, dtype=self.dtype)

        self.init_w, self.init_b = cast(dec.init_w), cast(dec.init_b)
        self.w_ih_zx, self.b_ih, self.w_ih_dose = cast(dec.w_ih[:-1]), cast(dec.b_ih), cast(dec.w_ih[-1])
        self.w_hh, self.b_hh = cast(dec.w_hh), cast(dec.b_hh)
        (w_first, b_first), *middle, (w_last, b_last) = dec.head
        self.w0_h, self.w0_z = cast(w_first[:hidden]), cast(w_first[hidden:hidden + n_z])
        self.w0_dose, self.b0 = cast(w_first[hidden + n_z]), cast(b_first)
        self.middle = [(cast(w), cast(b)) for w, b in middle]
        columns = np.concatenate([np.arange(grid), grid + self.sigma_index])
        self.w_last, self.b_last = cast(w_last[:, columns]), cast(b_last[columns])
        self.min_log_sigma = float(cfg.min_log_sigma)
        self.dose_max_mg = float(cfg.dose_max_mg)
        w_mid, b_mid = stack_hidden_layers(self.middle, hidden, self.dtype, "DecoderStepper")
        #: the compiled step's weights, in :func:`~vae_simulator.decoder_kernels.step_rows`'s order
        self.weights = (self.w_hh, self.b_hh, self.w_ih_dose, self.w0_h, self.w0_dose, w_mid, b_mid,
                        self.w_last, self.b_last)
        self.output_params = np.array([self.min_log_sigma, sim.decoder.y_scale, sim.decoder.y_shift, cfg.c0_mg_l])

    @property
    def constants_size(self) -> int:
        """Width of a patient's ``constants`` row: GRU input part (3 x hidden), head part (hidden)."""
        return 4 * self.hidden

    def start(self, covariates: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(n, C)`` covariates and ``(n, d)`` latents (validated by the caller) -> the state before the
        first dose ``(n, hidden + 1)`` float64 and the patients' ``constants`` ``(n, 4 hidden)`` in ``dtype``."""
        x = self.sim.decoder.scale_covariates(covariates)
        zx = np.concatenate([z, x], axis=1).astype(self.dtype)
        h = np.tanh(rowwise_matmul(zx, self.init_w) + self.init_b)
        state = np.concatenate([h, np.zeros((h.shape[0], 1), h.dtype)], axis=1).astype(float)
        constants = np.concatenate([rowwise_matmul(zx, self.w_ih_zx) + self.b_ih,
                                    rowwise_matmul(zx[:, :z.shape[1]], self.w0_z) + self.b0], axis=1)
        return state, constants

    def step(self, state: np.ndarray, constants: np.ndarray, doses_mg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Give each patient one interval's dose (``(n,)`` mg, checked against the trained range).

        Returns concentrations ``(n, G)`` mg/L, log-sigma ``(n, len(sigma_index))`` on those grid
        points and the new state, as :meth:`PKSimulator.step` (float64 arrays); computed by the
        compiled, batch-invariant :func:`vae_simulator.decoder_kernels.step_rows`.
        """
        doses = self.sim.check_doses(doses_mg)
        n = state.shape[0]
        if doses.shape[0] != n or constants.shape[0] != n:
            raise ValueError(f"{n} states but {doses.shape[0]} doses and {constants.shape[0]} constants")
        if state.shape[1:] != (self.hidden + 1,) or constants.shape[1:] != (self.constants_size,):
            raise ValueError(f"states must be (n, {self.hidden + 1}) and constants (n, {self.constants_size}), got "
                             f"{state.shape} and {constants.shape}")
        dose = (doses / self.dose_max_mg).astype(self.dtype)
        return step_rows(np.ascontiguousarray(state, dtype=float), np.ascontiguousarray(constants, dtype=self.dtype),
                         doses, dose, self.weights, self.output_params, self.sigma_index.size)


class PKSimulator(AdultCovariates):
    """Batched, stateful patient simulator on a trained PK-VAE decoder (see module doc); a
    :class:`~vae_simulator.interface.PatientSimulator`."""

    def __init__(self, model, manifest: dict | None = None):
        self.decoder = NumpyDecoder(model)
        self.cfg = model.cfg
        self.manifest = manifest or {}
        self.drug_model = get_model(self.cfg.drug)
        self.drug = self.cfg.drug
        self.grid_h = np.asarray(self.drug_model.interval_grid_h, dtype=float)
        self.interval_h = float(self.cfg.interval_h)
        self.dose_range_mg = (float(self.drug_model.dose_range_mg[0]), float(self.cfg.dose_max_mg))
        self.latent_dim = int(self.cfg.latent_dim)
        self.target: ExposureTarget = self.drug_model.target
        pop = model.population
        self.latent_weight = pop.weight.detach().double().numpy()
        self.latent_bias = pop.bias.detach().double().numpy()
        self.latent_chol = pop.chol.detach().double().numpy()
        self.max_held_intervals = None  # trained on courses with held doses anywhere

    @classmethod
    def from_pretrained(cls, drug: str) -> PKSimulator:
        """The simulator on the decoder shipped with the package for ``drug``."""
        from vae_simulator.vae.io import load_pretrained

        model, manifest = load_pretrained(drug)
        return cls(model, manifest)

    @property
    def max_intervals(self) -> int:
        """The decoder's training horizon: intervals a patient may be stepped."""
        return int(self.cfg.max_intervals)

    def typical_latent(self, covariates: np.ndarray) -> np.ndarray:
        """The population-typical latent of patients with these covariates, ``(n, d)``."""
        return self.decoder.scale_covariates(np.atleast_2d(covariates)) @ self.latent_weight.T + self.latent_bias

    def sample_patients(self, n: int, rng: np.random.Generator, iiv_scale: float = 1.0) -> Patients:
        """New patients: covariates from the adult population, latent from the fitted population.

        ``z = typical_latent(x) + iiv_scale * L e``, ``e ~ N(0, I)``, where ``L`` is the Cholesky
        factor of the latent population's covariance (:class:`~vae_simulator.vae.model.LatentPopulation`);
        ``iiv_scale`` 0 gives population-typical patients, 1 the population as learned.
        """
        if not np.isfinite(iiv_scale) or iiv_scale < 0:
            raise ValueError(f"iiv_scale must be a finite number >= 0, got {iiv_scale!r}")
        # one patient (an environment's reset): the scalar draw, same numbers as Covariates.sample(1, rng)
        cov = draw_covariate_row(rng)[None, :] if n == 1 else Covariates.sample(n, rng).as_array()
        eps = rng.standard_normal((n, self.latent_dim))
        return Patients(covariates=cov, z=self.typical_latent(cov) + iiv_scale * eps @ self.latent_chol.T)

    def latent_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(d,)`` lowest and highest latent :meth:`make_patients` accepts: the fitted population's
        mean +- :data:`~vae_simulator.interface.LATENT_RANGE_SD` SDs in each dimension.

        The population is ``typical_latent(x) + L e`` over the covariates ``x`` of a fixed adult
        cohort (:data:`REFERENCE_PATIENTS`, :data:`REFERENCE_SEED`): variance of the typical latents
        plus ``diag(L L^T)``. Not conditional on a patient's covariates on purpose: the fitted
        regression is ill-conditioned (BSA is a function of weight and height), so covariates off
        the Du Bois relation give typical latents far from every patient the decoder was trained on.
        """
        return self._latent_bounds

    @functools.cached_property
    def _latent_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        reference = Covariates.sample(REFERENCE_PATIENTS, np.random.default_rng(REFERENCE_SEED)).as_array()
        typical = self.typical_latent(reference)
        sd = np.sqrt(typical.var(axis=0) + np.sum(self.latent_chol ** 2, axis=1))
        mean = typical.mean(axis=0)
        low, high = mean - LATENT_RANGE_SD * sd, mean + LATENT_RANGE_SD * sd
        low.setflags(write=False)
        high.setflags(write=False)
        return low, high

    def make_patients(self, covariates: np.ndarray, z: np.ndarray, *, check_range: bool = True) -> Patients:
        """Pinned patients: covariates ``(C,)`` with z ``(d,)`` (one patient) or ``(n, C)`` with ``(n, d)``.

        Refuses (ValueError naming the value and the allowed range) covariates outside their
        physiological ranges, a z of another shape, a z not finite and, with ``check_range``, a z
        outside :meth:`latent_bounds`.
        """
        return check_patients(self.drug, covariates, z, self.latent_bounds(), check_range=check_range)

    @property
    def state_size(self) -> int:
        """Width of a patient's state array: the decoder's GRU state plus the 'dosed yet' flag."""
        return int(self.cfg.hidden) + 1

    def initial_state(self, patients: Patients) -> np.ndarray:
        """Each patient's state before the first dose: the decoder's GRU state, then a 'dosed yet' flag."""
        x = self.decoder.scale_covariates(patients.covariates)
        h = self.decoder.initial_state(patients.z, x)
        return np.concatenate([h, np.zeros((h.shape[0], 1))], axis=1)

    def stepper(self, sigma_index=None, dtype=np.float64) -> DecoderStepper:
        """The environments' fast path of :meth:`step` (:class:`DecoderStepper`)."""
        return DecoderStepper(self, sigma_index=sigma_index, dtype=dtype)

    def check_doses(self, doses_mg) -> np.ndarray:
        """Doses as a flat float array; ValueError for one outside the trained range."""
        return check_dose_range(self.drug, doses_mg, self.dose_range_mg, "the range the PK-VAE was trained on")

    def step(self, state: np.ndarray, patients: Patients, doses_mg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Give each patient one interval's dose: ``(conc mg/L (n, G), log sigma (n, G), new state)``."""
        doses = self.check_doses(doses_mg)
        if doses.shape[0] != len(patients) or state.shape[0] != len(patients):
            raise ValueError(f"{len(patients)} patients but {doses.shape[0]} doses and {state.shape[0]} states")
        x = self.decoder.scale_covariates(patients.covariates)
        dosed = np.maximum(state[:, -1:], (doses > 0)[:, None])
        mean, log_sigma, h = self.decoder.step(state[:, :-1], patients.z, x, (doses / self.cfg.dose_max_mg)[:, None])
        conc = np.where(dosed > 0, self.decoder.to_conc(mean), 0.0)  # never dosed: exactly 0 (as PKVAE.decode)
        return conc, log_sigma, np.concatenate([h, dosed], axis=1)

    def observe(self, conc_mg_l: np.ndarray, log_sigma: np.ndarray, rng: NormalSource,
                noise_scale: float = 1.0) -> np.ndarray:
        """Noisy assay results from the decoder's learned noise (mg/L, >= 0)."""
        if not np.isfinite(noise_scale) or noise_scale < 0:
            raise ValueError(f"noise_scale must be a finite number >= 0, got {noise_scale!r}")
        d = self.decoder
        y = (np.log(conc_mg_l + self.cfg.c0_mg_l) - d.y_shift) / d.y_scale
        return d.to_conc(y + noise_scale * np.exp(log_sigma) * rng.standard_normal(y.shape))

    def concentration_at(self, profile_mg_l: np.ndarray, start_mg_l: np.ndarray, times_h) -> np.ndarray:
        """Concentrations at ``times_h`` within the interval by log-linear interpolation of the grid.

        ``start_mg_l`` is each patient's concentration at the interval start (the last grid
        value of the previous interval, 0 before the first dose).
        """
        return interpolate_interval(self.grid_h, self.interval_h, self.cfg.c0_mg_l, profile_mg_l, start_mg_l,
                                    times_h)


def check_dose_range(drug: str, doses_mg, dose_range_mg: tuple[float, float], what: str) -> np.ndarray:
    """Doses (mg) as a flat float array; ValueError naming the first outside ``dose_range_mg`` (``what``)."""
    doses = np.asarray(doses_mg, dtype=float).reshape(-1)
    lo, hi = dose_range_mg
    bad = ~np.isfinite(doses) | (doses < lo) | (doses > hi)
    if bad.any():
        raise ValueError(f"{drug}: dose {float(doses[bad][0]):g} mg is outside {what}, "
                         f"[{lo:g}, {hi:g}] mg; it does not extrapolate")
    return doses


def interpolate_interval(grid_h: np.ndarray, interval_h: float, c0_mg_l: float, profile_mg_l: np.ndarray,
                         start_mg_l: np.ndarray, times_h) -> np.ndarray:
    """``(n, T)`` mg/L at ``times_h`` within an interval by linear interpolation of ``log(c + c0)``
    between the ``(n,)`` start and the ``(n, G)`` profile on ``grid_h`` (h)."""
    times = tuple(np.asarray(times_h, dtype=float).reshape(-1).tolist())
    j, w = _interpolation(tuple(grid_h.tolist()), interval_h, times)
    values = np.concatenate([start_mg_l[:, None], profile_mg_l], axis=1)
    if 2 * j.size < values.shape[1]:  # few times: take logs of the grid values needed only (same numbers)
        low, high = np.log(values[:, j] + c0_mg_l), np.log(values[:, j + 1] + c0_mg_l)
    else:
        values = np.log(values + c0_mg_l)
        low, high = values[:, j], values[:, j + 1]
    logc = low * (1 - w) + high * w
    return np.maximum(np.exp(logc) - c0_mg_l, 0.0)


@functools.lru_cache(maxsize=64)
def _interpolation(grid_h: tuple[float, ...], interval_h: float, times_h: tuple[float, ...]):
    """Left grid index (0 = the interval start) and weight of each time on ``[0, *grid_h]`` (cached: the
    environments ask for the same sampling times every step)."""
    times = np.array(times_h)
    if np.any(times < 0) or np.any(times > interval_h):
        raise ValueError(f"times_h must lie within the interval [0, {interval_h:g}] h")
    grid = np.concatenate([[0.0], grid_h])
    j = np.clip(np.searchsorted(grid, times, side="right") - 1, 0, grid.size - 2)
    w = (times - grid[j]) / (grid[j + 1] - grid[j])
    j.setflags(write=False), w.setflags(write=False)  # shared by every caller through the cache
    return j, w

"""The PK-VAE as a patient simulator: the small interface the environments use.

:class:`PKSimulator` wraps a trained decoder in an autograd-free float64 numpy
implementation (:class:`NumpyDecoder`, tested equal to the torch model) that steps one
dosing interval at a time for a batch of patients, carrying each patient's state::

    sim = PKSimulator.from_pretrained("vancomycin")
    patients = sim.sample_patients(64, rng)          # covariates + latent z from the fitted population
    state = sim.initial_state(patients)
    conc, log_sigma, state = sim.step(state, patients, doses_mg)   # (64, G) mg/L on sim.grid_h
    observed = sim.observe(conc, log_sigma, rng)     # noisy assay results, mg/L

Doses outside the range the decoder was trained on are refused, not extrapolated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vae_simulator.covariates import COVARIATE_NAMES, Covariates
from vae_simulator.groundtruth import get_model
from vae_simulator.groundtruth.base import ExposureTarget


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


@dataclass(frozen=True)
class Patients:
    """A batch of virtual patients: covariates ``(n, C)`` in :data:`COVARIATE_NAMES` order, latent ``(n, d)``."""

    covariates: np.ndarray
    z: np.ndarray

    def __len__(self) -> int:
        return int(self.z.shape[0])


class PKSimulator:
    """Batched, stateful patient simulator on a trained PK-VAE decoder (see module doc)."""

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
        self.covariate_names = COVARIATE_NAMES
        pop = model.population
        self.latent_weight = pop.weight.detach().double().numpy()
        self.latent_bias = pop.bias.detach().double().numpy()
        self.latent_chol = pop.chol.detach().double().numpy()

    @classmethod
    def from_pretrained(cls, drug: str) -> PKSimulator:
        """The simulator on the decoder shipped with the package for ``drug``."""
        from vae_simulator.vae.io import load_pretrained

        model, manifest = load_pretrained(drug)
        return cls(model, manifest)

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
        cov = Covariates.sample(n, rng).as_array()
        eps = rng.standard_normal((n, self.latent_dim))
        return Patients(covariates=cov, z=self.typical_latent(cov) + iiv_scale * eps @ self.latent_chol.T)

    def make_patients(self, covariates: np.ndarray, z: np.ndarray) -> Patients:
        """Pinned patients; checks shapes and physiological covariate ranges."""
        covariates = np.atleast_2d(np.asarray(covariates, dtype=float))
        z = np.atleast_2d(np.asarray(z, dtype=float))
        Covariates.from_array(covariates)  # validates ranges, names the bad value
        if z.shape != (covariates.shape[0], self.latent_dim):
            raise ValueError(f"latent z must have shape ({covariates.shape[0]}, {self.latent_dim}), got {z.shape}")
        if not np.all(np.isfinite(z)):
            raise ValueError("latent z must be finite")
        return Patients(covariates=covariates, z=z)

    @property
    def state_size(self) -> int:
        """Width of a patient's state array: the decoder's GRU state plus the 'dosed yet' flag."""
        return int(self.cfg.hidden) + 1

    def initial_state(self, patients: Patients) -> np.ndarray:
        """Each patient's state before the first dose: the decoder's GRU state, then a 'dosed yet' flag."""
        x = self.decoder.scale_covariates(patients.covariates)
        h = self.decoder.initial_state(patients.z, x)
        return np.concatenate([h, np.zeros((h.shape[0], 1))], axis=1)

    def check_doses(self, doses_mg) -> np.ndarray:
        doses = np.asarray(doses_mg, dtype=float).reshape(-1)
        lo, hi = self.dose_range_mg
        bad = ~np.isfinite(doses) | (doses < lo) | (doses > hi)
        if bad.any():
            raise ValueError(f"{self.drug}: dose {float(doses[bad][0]):g} mg is outside the range the PK-VAE "
                             f"was trained on, [{lo:g}, {hi:g}] mg; it does not extrapolate")
        return doses

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

    def observe(self, conc_mg_l: np.ndarray, log_sigma: np.ndarray, rng: np.random.Generator,
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
        times_h = np.atleast_1d(np.asarray(times_h, dtype=float))
        if np.any(times_h < 0) or np.any(times_h > self.interval_h):
            raise ValueError(f"times_h must lie within the interval [0, {self.interval_h:g}] h")
        grid = np.concatenate([[0.0], self.grid_h])
        values = np.log(np.concatenate([start_mg_l[:, None], profile_mg_l], axis=1) + self.cfg.c0_mg_l)
        j = np.clip(np.searchsorted(grid, times_h, side="right") - 1, 0, grid.size - 2)
        w = (times_h - grid[j]) / (grid[j + 1] - grid[j])
        logc = values[:, j] * (1 - w) + values[:, j + 1] * w
        return np.maximum(np.exp(logc) - self.cfg.c0_mg_l, 0.0)

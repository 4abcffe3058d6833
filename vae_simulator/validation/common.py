"""Shared pieces of the validation: the PK-VAE in numpy, held-out cohorts and clinic samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vae_simulator.covariates import Covariates
from vae_simulator.exposure import interval_exposure
from vae_simulator.groundtruth import DrugModel
from vae_simulator.inference import Samples
from vae_simulator.population import PopulationData
from vae_simulator.vae.model import PKVAE

#: Patients decoded per torch call (bounds memory for posterior-predictive draws).
DECODE_BATCH = 16384


def decode_numpy(model: PKVAE, z: np.ndarray, cov: np.ndarray,
                 doses_mg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decoder mean and log-sigma of the scaled log-concentration, ``(n, K, G)`` float64 each."""
    means, log_sigmas = [], []
    with torch.no_grad():
        for s in range(0, z.shape[0], DECODE_BATCH):
            mean, log_sigma = model.decode(torch.as_tensor(z[s:s + DECODE_BATCH], dtype=torch.float32),
                                           torch.as_tensor(cov[s:s + DECODE_BATCH], dtype=torch.float32),
                                           torch.as_tensor(doses_mg[s:s + DECODE_BATCH], dtype=torch.float32))
            means.append(mean.double().numpy())
            log_sigmas.append(log_sigma.double().numpy())
    return np.concatenate(means), np.concatenate(log_sigmas)


def y_to_conc(model: PKVAE, y: np.ndarray) -> np.ndarray:
    """Scaled log-concentration -> mg/L (float64, >= 0)."""
    n = model.normalizer
    return np.maximum(np.exp(y * float(n.y_scale) + float(n.y_shift)) - model.cfg.c0_mg_l, 0.0)


def decode_profile(model: PKVAE, z: np.ndarray, cov: np.ndarray, doses_mg: np.ndarray) -> np.ndarray:
    """The decoder's median profile (mg/L), ``(n, K, G)``."""
    return y_to_conc(model, decode_numpy(model, z, cov, doses_mg)[0])


def latent_population(model: PKVAE, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The PK-VAE's latent population given covariates: mean ``(n, d)`` and Cholesky factor ``(d, d)``.

    ``z | x ~ N(mean, L L^T)`` as fitted after training (:class:`~vae_simulator.vae.model.LatentPopulation`);
    N(0, I) for a model whose population was not fitted.
    """
    with torch.no_grad():
        x = model.normalizer.covariates(torch.as_tensor(cov, dtype=torch.float32))
        mean = model.population.mean(x).double().numpy()
    return mean, model.population.chol.detach().double().numpy()


def sample_latent_population(model: PKVAE, cov: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """New patients' latents ``(n, d)`` drawn from the latent population given their covariates."""
    mean, chol = latent_population(model, cov)
    return mean + rng.standard_normal(mean.shape) @ chol.T


def population_is_fitted(model: PKVAE) -> bool:
    """Whether the model carries a fitted latent population (else it is the N(0, I) prior)."""
    pop = model.population
    return bool(pop.weight.abs().sum() > 0 or pop.bias.abs().sum() > 0
                or not torch.equal(pop.chol, torch.eye(pop.chol.shape[0])))


def report_like_assay(conc_mg_l: np.ndarray, lloq_mg_l: float) -> np.ndarray:
    """Results below the LLOQ reported as LLOQ/2, as the ground truth's assay does."""
    return np.where(conc_mg_l < lloq_mg_l, 0.5 * lloq_mg_l, conc_mg_l)


def params_dict(truth: DrugModel, params: np.ndarray) -> dict[str, np.ndarray]:
    """A ``(n, P)`` parameter array (PopulationData order) as the model's dict."""
    return {name: params[:, i].astype(float) for i, name in enumerate(truth.parameter_names)}


def monitoring_indices(truth: DrugModel) -> list[int]:
    """The clinic's peak and trough: first and last scheduled monitoring time (one if only one)."""
    m = len(truth.monitoring_times_h)
    return sorted({0, m - 1})


def clinic_samples(data: PopulationData, truth: DrugModel, interval: int) -> Samples:
    """Peak and trough samples of ``interval`` from the data set's clinic samples.

    A missing sample is replaced by the noisy grid observation nearest to its scheduled time.
    """
    idx = monitoring_indices(truth)
    times = data.sample_time_h[:, interval, idx].astype(float)
    conc = data.sample_conc[:, interval, idx].astype(float)
    blq = data.sample_blq[:, interval, idx].copy()
    missing = data.sample_missing[:, interval, idx]
    grid = np.asarray(data.grid_h, dtype=float)
    for col, m in enumerate(idx):
        g = int(np.argmin(np.abs(grid - truth.monitoring_times_h[m])))
        rows = missing[:, col]
        times[rows, col] = interval * data.interval_h + grid[g]
        conc[rows, col] = data.conc_obs[rows, interval, g]
        blq[rows, col] = data.blq[rows, interval, g]
    return Samples(times_h=times, conc_mg_l=conc, blq=blq.astype(bool), mask=np.ones_like(blq, dtype=bool))


@dataclass(frozen=True)
class Cohort:
    """Held-out patients under given doses: true profiles and noisy assay results ``(n, K, G)``."""

    covariates: np.ndarray
    params: dict[str, np.ndarray]
    doses_mg: np.ndarray
    conc_true: np.ndarray
    conc_obs: np.ndarray


def standard_dose_cohort(truth: DrugModel, n_patients: int, n_intervals: int,
                         rng: np.random.Generator) -> Cohort:
    """New patients on the label/guideline dose every interval, observed with residual error."""
    cov = Covariates.sample(n_patients, rng)
    params = truth.sample_parameters(cov, rng)
    doses = np.repeat(truth.standard_dose_mg(cov)[:, None], n_intervals, axis=1)
    conc = truth.simulate_intervals(params, doses)
    obs, _ = truth.sample_observations(conc, rng)
    return Cohort(covariates=cov.as_array(), params=params, doses_mg=doses, conc_true=conc, conc_obs=obs)


def exposure_of(truth: DrugModel, conc: np.ndarray, metric: str | None = None,
                first_start_mg_l: np.ndarray | None = None) -> np.ndarray:
    """Per-interval exposure ``(n, K)`` of profiles ``(n, K, G)``; the drug's target metric by default."""
    target = truth.target
    return interval_exposure(conc, truth.interval_grid_h, metric or target.metric, target.threshold_mg_l,
                             first_start_mg_l)


def true_last_interval_exposure(truth: DrugModel, params: dict[str, np.ndarray], doses_mg: np.ndarray,
                                metric: str | None = None) -> np.ndarray:
    """Ground-truth exposure ``(n,)`` of the last interval of ``doses_mg (n, k)``.

    Simulates only the last interval's grid and its starting concentration (the solvers
    still integrate the history; analytic models are cheaper this way).
    """
    last = doses_mg.shape[1] - 1
    start = last * truth.interval_h
    times = np.concatenate([[start], start + np.asarray(truth.interval_grid_h, dtype=float)])
    conc = truth.simulate(params, doses_mg, times)
    return exposure_of(truth, conc[:, None, 1:], metric, first_start_mg_l=conc[:, 0])[:, 0]

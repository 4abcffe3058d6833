"""Full-profile sections: reconstruction (PK-VAE and one-compartment), VPC and latent-prior check.

* Reconstruction: the encoder sees a patient's whole noisy multi-dose profile; the
  decoder's median profile at the posterior mean is scored against the TRUE profile.
  The one-compartment comparator is fitted to the same noisy profile.
* Cohort under standard dosing: the ground truth with residual error against the PK-VAE
  with ``z`` drawn from its latent population for the same covariates and doses (visual
  predictive check; the population is N(0, I) unless fitted after training), and the
  percentiles of each interval's AUC and Cmax (latent population check).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vae_simulator.groundtruth import DrugModel
from vae_simulator.inference import Samples, encode
from vae_simulator.population import PopulationData
from vae_simulator.vae.model import PKVAE
from vae_simulator.validation.common import (
    Cohort,
    decode_numpy,
    decode_profile,
    exposure_of,
    report_like_assay,
    sample_latent_population,
    y_to_conc,
)
from vae_simulator.validation.metrics import log_rmse, median_ape, population_percentiles
from vae_simulator.validation.one_compartment import (
    OneCompartmentDesign,
    fit_population,
    one_compartment_profile,
)

#: VPC percentiles (%).
VPC_PERCENTILES = (5.0, 50.0, 95.0)


@dataclass(frozen=True)
class Reconstruction:
    """Accuracy of predicted full profiles against the true ones (concentrations > LLOQ)."""

    median_ape: float
    log_rmse: float
    n_patients: int
    n_points: int


def score_profiles(pred: np.ndarray, true: np.ndarray, truth: DrugModel) -> Reconstruction:
    """Median APE and log-RMSE (offset LLOQ/2) of predicted vs true profiles ``(n, ...)``."""
    lloq = truth.lloq_mg_l
    return Reconstruction(median_ape=median_ape(pred, true, lloq),
                          log_rmse=log_rmse(pred, true, lloq, 0.5 * lloq), n_patients=int(pred.shape[0]),
                          n_points=int(np.sum(true > lloq)))


def grid_times(data: PopulationData) -> np.ndarray:
    """All recording times (h from the first dose) of the data set's ``K`` intervals, ``(K*G,)``."""
    k = data.doses_mg.shape[1]
    return (data.interval_h * np.arange(k)[:, None] + np.asarray(data.grid_h)[None, :]).ravel()


def vae_reconstruction(model: PKVAE, data: PopulationData, chunk: int = 256) -> np.ndarray:
    """PK-VAE profiles ``(n, K, G)`` (mg/L) from each patient's full noisy grid (posterior mean z)."""
    n = data.doses_mg.shape[0]
    times = grid_times(data)
    cov, doses = data.covariates.astype(float), data.doses_mg.astype(float)
    mu = []
    for s in range(0, n, chunk):  # chunks bound the encoder's (patients x observations x hidden) memory
        rows = slice(s, min(s + chunk, n))
        m = rows.stop - rows.start
        samples = Samples(times_h=np.tile(times, (m, 1)),
                          conc_mg_l=data.conc_obs[rows].reshape(m, -1).astype(float),
                          blq=data.blq[rows].reshape(m, -1).astype(bool),
                          mask=np.ones((m, times.size), dtype=bool))
        mu.append(encode(model, cov[rows], doses[rows], samples)[0])
    return decode_profile(model, np.concatenate(mu), cov, doses)


def one_compartment_design(truth: DrugModel) -> OneCompartmentDesign:
    """The standard comparator for the drug's route (IV infusion or oral first-order absorption)."""
    return OneCompartmentDesign(route=truth.route, interval_h=float(truth.interval_h),
                                infusion_h=float(truth.infusion_h), lloq_mg_l=float(truth.lloq_mg_l))


def one_compartment_reconstruction(truth: DrugModel, data: PopulationData,
                                   n_fit: int) -> tuple[np.ndarray, np.ndarray]:
    """Profiles ``(m, K, G)`` of the one-compartment fit of the first ``n_fit`` patients.

    Returns ``(profiles, fitted index)``; patients with too few quantifiable results are left out.
    """
    design = one_compartment_design(truth)
    m = min(n_fit, data.doses_mg.shape[0])
    obs = data.conc_obs[:m].reshape(m, -1).astype(float)
    blq = data.blq[:m].reshape(m, -1)
    doses = data.doses_mg[:m].astype(float)
    log_params, fitted = fit_population(design, doses, grid_times(data), obs, blq)
    index = np.flatnonzero(fitted)
    pred = one_compartment_profile(design, log_params[index], doses[index], grid_times(data))
    return pred.reshape(index.size, *data.conc_true.shape[1:]), index


@dataclass(frozen=True)
class CohortCheck:
    """VPC and latent-prior check of a standard-dose cohort.

    ``times_h (K*G,)``; ``observed_pct`` / ``simulated_pct`` ``(3, K*G)`` (5th, 50th, 95th
    percentile over patients, mg/L); ``outside_band`` the fraction of observations outside the
    simulated 5-95% band (about 0.10 when the model is right). ``true_pct`` / ``vae_pct``:
    metric -> ``(5, K)`` percentiles (5, 25, 50, 75, 95) of per-interval AUC (mg*h/L) and
    Cmax (mg/L) of the true profiles and of the PK-VAE median profiles of population-sampled latents.
    """

    times_h: np.ndarray
    observed_pct: np.ndarray
    simulated_pct: np.ndarray
    outside_band: float
    true_pct: dict[str, np.ndarray]
    vae_pct: dict[str, np.ndarray]

    def ratio(self, metric: str) -> np.ndarray:
        """PK-VAE / truth percentile ratios ``(5, K)``."""
        return self.vae_pct[metric] / np.maximum(self.true_pct[metric], 1e-300)


def cohort_check(model: PKVAE, truth: DrugModel, cohort: Cohort, rng: np.random.Generator) -> CohortCheck:
    """Compare the cohort's ground truth with the PK-VAE's latent population (see module doc)."""
    n, k, _g = cohort.conc_true.shape
    z = sample_latent_population(model, cohort.covariates, rng)
    mean, log_sigma = decode_numpy(model, z, cohort.covariates, cohort.doses_mg)
    vae_median = y_to_conc(model, mean)
    vae_obs = report_like_assay(y_to_conc(model, mean + np.exp(log_sigma) * rng.standard_normal(mean.shape)),
                                truth.lloq_mg_l)
    observed = cohort.conc_obs.reshape(n, -1)
    simulated = vae_obs.reshape(n, -1)
    obs_pct = np.percentile(observed, VPC_PERCENTILES, axis=0)
    sim_pct = np.percentile(simulated, VPC_PERCENTILES, axis=0)
    outside = float(np.mean((observed < sim_pct[0]) | (observed > sim_pct[-1])))
    true_pct, vae_pct = {}, {}
    for metric in ("auc_interval", "peak"):
        true_pct[metric] = population_percentiles(exposure_of(truth, cohort.conc_true, metric))
        vae_pct[metric] = population_percentiles(exposure_of(truth, vae_median, metric))
    times = (truth.interval_h * np.arange(k)[:, None] + np.asarray(truth.interval_grid_h)[None, :]).ravel()
    return CohortCheck(times_h=times, observed_pct=obs_pct, simulated_pct=sim_pct, outside_band=outside,
                       true_pct=true_pct, vae_pct=vae_pct)

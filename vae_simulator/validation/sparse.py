"""Sparse-data sections: next-interval prediction from two clinic samples, and calibration.

The MIPD situation: a clinic measured the peak and trough of dosing interval ``j`` (0-based)
and knows the covariates and all doses up to interval ``j + 1``. From these the PK-VAE
predicts interval ``j + 1``:

* prediction: ``z`` from the encoder (posterior mean), refined by MAP on the decoder; the
  exposure of interval ``j + 1`` (the drug's target metric, AUC and trough) is scored
  against the truth (within +-20 %). The population-typical prediction (the latent
  population's mean given the covariates, no samples) shows what the samples add; MAP with the
  TRUE model (:mod:`.reference_map`) shows what the exact model's Bayesian estimate makes of the
  same samples (a reference).
* calibration: posterior predictive draws (``z`` from the encoder's posterior, plus the
  decoder's learned noise) give a 90 % prediction interval for each noisy grid observation
  of interval ``j + 1``; its coverage of the held-out observations should be near 90 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vae_simulator.groundtruth import DrugModel
from vae_simulator.inference import Samples, encode, map_refine
from vae_simulator.population import PopulationData
from vae_simulator.vae.model import PKVAE
from vae_simulator.validation.common import (
    clinic_samples,
    decode_numpy,
    decode_profile,
    exposure_of,
    latent_population,
    true_last_interval_exposure,
    y_to_conc,
)
from vae_simulator.validation.metrics import coverage, fraction_within, prediction_interval
from vae_simulator.validation.reference_map import reference_reason, true_model_map

#: Predictors compared on sparse data: population-typical, encoder mean, encoder + MAP; and the
#: reference, MAP with the true ground-truth model (see :mod:`.reference_map`; absent when too slow).
PREDICTORS = ("typical", "encoder", "map")
REFERENCE = "true_model_map"
REL_TOL = 0.2
#: Metrics that are concentrations (mg/L), scored only where the truth is above the LLOQ.
CONCENTRATION_METRICS = ("trough", "peak")


def prediction_metrics(truth: DrugModel) -> tuple[str, ...]:
    """The drug's target metric first, then interval AUC and trough when not already it."""
    metrics = [truth.target.metric]
    for extra in ("auc_interval", "trough"):
        # auc24 and cavg are AUC rescaled: the interval AUC would add nothing
        redundant = extra == "auc_interval" and truth.target.metric in ("auc24", "cavg")
        if extra not in metrics and not redundant:
            metrics.append(extra)
    return tuple(metrics)


@dataclass(frozen=True)
class SparsePrediction:
    """Fractions within +-20 % of the true next-interval exposure: ``within[metric][predictor]``.

    Concentration metrics count only patients whose true value is above the LLOQ (NaN if none).
    """

    interval: int
    n_patients: int
    n_samples: int
    within: dict[str, dict[str, float]]


def check_interval(data: PopulationData, interval: int) -> None:
    k = data.doses_mg.shape[1]
    if not 0 <= interval <= k - 2:
        raise ValueError(f"sample interval j={interval} needs 0 <= j <= K-2 = {k - 2} "
                         f"(interval j+1 is predicted)")


def _history(data: PopulationData, interval: int,
             index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Covariates and doses up to interval j+1 (the predicted one) of the selected patients."""
    index = np.arange(data.doses_mg.shape[0]) if index is None else index
    return data.covariates[index].astype(float), data.doses_mg[index, :interval + 2].astype(float)


def _subset(samples: Samples, index: np.ndarray) -> Samples:
    return Samples(times_h=samples.times_h[index], conc_mg_l=samples.conc_mg_l[index], blq=samples.blq[index],
                   mask=samples.mask[index])


def sparse_prediction(model: PKVAE, truth: DrugModel, data: PopulationData, interval: int,
                      map_steps: int = 60) -> SparsePrediction:
    """Score next-interval predictions (see module doc); patients with a held dose j+1 are left out."""
    check_interval(data, interval)
    index = np.flatnonzero(data.doses_mg[:, interval + 1] > 0)
    if index.size == 0:
        raise ValueError(f"no patient with a dose in interval {interval + 1} to predict")
    cov, doses = _history(data, interval, index)
    samples = _subset(clinic_samples(data, truth, interval), index)
    mu, _ = encode(model, cov, doses, samples)
    z = {"typical": latent_population(model, cov)[0], "encoder": mu,
         "map": map_refine(model, mu, cov, doses, samples, steps=map_steps)}
    true_profile = data.conc_true[index, :interval + 2].astype(float)
    reference = None
    if reference_reason(truth.name) is None:
        reference = true_model_map(truth, cov, doses[:, :-1], samples)
    within: dict[str, dict[str, float]] = {}
    for metric in prediction_metrics(truth):
        true_exp = exposure_of(truth, true_profile, metric)[:, -1]
        # a relative error of a concentration below the LLOQ means nothing: score measurable ones only
        scored = (true_exp > truth.lloq_mg_l if metric in CONCENTRATION_METRICS
                  else np.ones(true_exp.shape, dtype=bool))
        predicted = {name: exposure_of(truth, decode_profile(model, z[name], cov, doses), metric)[:, -1]
                     for name in PREDICTORS}
        if reference is not None:
            predicted[REFERENCE] = true_last_interval_exposure(truth, reference, doses, metric)
        within[metric] = {name: fraction_within(pred[scored], true_exp[scored], REL_TOL) if scored.any()
                          else float("nan") for name, pred in predicted.items()}
    return SparsePrediction(interval=interval, n_patients=int(index.size),
                            n_samples=int(samples.mask.shape[1]), within=within)


@dataclass(frozen=True)
class Calibration:
    """Coverage of the posterior-predictive interval of interval j+1's noisy observations (> LLOQ)."""

    level: float
    coverage: float
    n_observations: int
    n_draws: int


def calibration(model: PKVAE, truth: DrugModel, data: PopulationData, interval: int, rng: np.random.Generator,
                n_draws: int = 200, level: float = 0.9) -> Calibration:
    """Posterior-predictive coverage (see module doc), drawing ``n_draws`` per patient."""
    check_interval(data, interval)
    if n_draws < 2:
        raise ValueError(f"n_draws must be >= 2, got {n_draws}")
    cov, doses = _history(data, interval)
    mu, sd = encode(model, cov, doses, clinic_samples(data, truth, interval))
    observed = data.conc_obs[:, interval + 1].astype(float)
    keep = ~data.blq[:, interval + 1]
    n = cov.shape[0]
    # Draws in blocks of patients so that memory stays bounded: (draws, patients, G).
    block = max(1, 20000 // n_draws)
    lower, upper = np.empty_like(observed), np.empty_like(observed)
    for s in range(0, n, block):
        rows = slice(s, min(s + block, n))
        m = rows.stop - rows.start
        d = mu.shape[1]
        z = (mu[rows][None] + sd[rows][None] * rng.standard_normal((n_draws, m, d))).reshape(-1, d)
        mean, log_sigma = decode_numpy(model, z, np.tile(cov[rows], (n_draws, 1)),
                                       np.tile(doses[rows], (n_draws, 1)))
        y = mean[:, -1] + np.exp(log_sigma[:, -1]) * rng.standard_normal(mean[:, -1].shape)
        lower[rows], upper[rows] = prediction_interval(y_to_conc(model, y).reshape(n_draws, m, -1), level)
    if not keep.any():
        raise ValueError(f"no observation above the LLOQ in interval {interval + 1} to calibrate against")
    return Calibration(level=level, coverage=coverage(lower[keep], upper[keep], observed[keep]),
                       n_observations=int(keep.sum()), n_draws=n_draws)

"""Fitting the latent population of a trained PK-VAE (see :class:`~vae_simulator.vae.model.LatentPopulation`).

Each training patient is encoded from its full noisy profile, giving a posterior
``N(mu_i, diag(s_i^2))``. The population is the mixture of these posteriors; it is approximated by
one Gaussian conditional on the scaled covariates ``x``: the mean is the least-squares regression
``mu ~ W x + b`` and the covariance is that of the regression residuals plus the mean posterior
variance (the moments of the mixture).
"""

from __future__ import annotations

import numpy as np
import torch

from vae_simulator.population import PopulationData
from vae_simulator.vae.data import TrainingTensors
from vae_simulator.vae.model import PKVAE


@torch.no_grad()
def encode_full_profiles(model: PKVAE, data: PopulationData, batch_size: int = 1024):
    """Posterior means and SDs of every patient of ``data`` given its whole noisy profile."""
    tensors = TrainingTensors(data, model)
    mus, sds = [], []
    for start in range(0, tensors.n, batch_size):
        index = np.arange(start, min(tensors.n, start + batch_size))
        mask = torch.zeros(len(index), tensors.pool_tokens.shape[1], dtype=torch.bool)
        mask[:, :tensors.n_grid] = True
        b = tensors.batch(index, mask)
        mu, logvar = model.encode(b["tokens"], b["interval_index"], b["mask"], b["doses_mg"], b["cov"])
        mus.append(mu)
        sds.append(torch.exp(0.5 * logvar))
    return torch.cat(mus).double(), torch.cat(sds).double()


@torch.no_grad()
def fit_latent_population(model: PKVAE, data: PopulationData) -> dict[str, float]:
    """Fit ``model.population`` on ``data`` in place; returns summary numbers for the manifest."""
    mu, sd = encode_full_profiles(model, data)
    x = model.normalizer.covariates(torch.as_tensor(data.covariates, dtype=torch.float32)).double()
    return fit_population_moments(model.population, x, mu, sd)


@torch.no_grad()
def fit_population_moments(population, x: torch.Tensor, mu: torch.Tensor, sd: torch.Tensor) -> dict[str, float]:
    """Fit a :class:`~vae_simulator.vae.model.LatentPopulation` in place from posterior means and SDs
    ``(n, d)`` and scaled covariates ``x (n, C)`` (module docstring); returns summary numbers."""
    x, mu, sd = x.double(), mu.double(), sd.double()
    design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    # gelsd (SVD), not the default gelsy: on this design (BSA nearly a function of WT and HT,
    # condition number ~1e6) gelsy's column pivoting gives different bits from run to run
    coef = torch.linalg.lstsq(design, mu, driver="gelsd").solution  # (C + 1, d)
    resid = mu - design @ coef
    cov = resid.T @ resid / max(len(mu) - design.shape[1], 1) + torch.diag((sd ** 2).mean(0))
    population.weight.copy_(coef[:-1].T.float())
    population.bias.copy_(coef[-1].float())
    population.chol.copy_(torch.linalg.cholesky(cov).float())
    return {"latent_mean_norm": float(coef[-1].norm()), "latent_sd_min": float(cov.diagonal().sqrt().min()),
            "latent_sd_max": float(cov.diagonal().sqrt().max()),
            "latent_r2_on_covariates": float(1 - resid.var(0).sum() / mu.var(0).sum())}

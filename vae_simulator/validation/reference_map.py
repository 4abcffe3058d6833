"""Reference: Bayesian MAP estimation with the TRUE ground-truth model.

What could any method predict from the same two noisy samples? This is the classical
MAP-Bayesian TDM estimate, but with the exact structural model, the exact covariate model,
the exact IIV prior and the exact residual error: a reference for the PK-VAE on sparse data
(only the samples' noise limits it), not a competitor and not a strict bound.

Per patient, with ``eta`` the log-deviations of the parameters that have IIV (omega > 0)::

    minimise  sum_i ((y_i - C_i(eta)) / sd_i)^2 + sum_p (eta_p / omega_p)^2

with ``sd_i = sqrt((prop_cv * y_i)^2 + add_sd^2)`` (the combined residual error, weighted at the
observation so the problem is least squares), a result reported below the LLOQ penalised only
where the prediction exceeds the LLOQ. Solved by Levenberg-Marquardt, vectorised over patients
(forward-difference Jacobian: one model evaluation per parameter and iteration).
"""

from __future__ import annotations

import numpy as np

from vae_simulator.covariates import Covariates
from vae_simulator.groundtruth import DrugModel
from vae_simulator.inference import Samples

#: Ground truths too slow for the iterative fit (one evaluation of a cohort takes seconds).
SLOW_GROUND_TRUTH = {"paclitaxel": "its stiff ODE takes ~3 s per evaluation of the cohort"}
#: |eta| is kept within this many omegas (the tails of the population, as sampled).
ETA_LIMIT_OMEGAS = 5.0
_FD_STEP = 1e-4


def reference_reason(drug: str) -> str | None:
    """Why the true-model MAP reference is not computed for ``drug`` (None when it is)."""
    return SLOW_GROUND_TRUTH.get(drug)


def true_model_map(truth: DrugModel, covariates: np.ndarray, doses_mg: np.ndarray, samples: Samples,
                   n_iter: int = 20) -> dict[str, np.ndarray]:
    """MAP individual parameters ``name -> (n,)`` given the samples and the doses so far.

    ``doses_mg (n, k)`` must cover every sample time (samples within ``(0, k * interval_h]``).
    """
    n = doses_mg.shape[0]
    samples.check(n, doses_mg.shape[1] * truth.interval_h)
    typical = truth.typical_parameters(Covariates.from_array(covariates))
    names = [p for p in truth.parameter_names if truth.iiv_omega.get(p, 0.0) > 0]
    omega = np.array([truth.iiv_omega[p] for p in names])
    times, index = np.unique(np.where(samples.mask, samples.times_h, samples.times_h[samples.mask].min()),
                             return_inverse=True)
    index = index.reshape(samples.times_h.shape)
    y, blq, weight = samples.conc_mg_l, samples.blq & samples.mask, samples.mask.astype(float)
    res = truth.residual
    sd = np.sqrt((res.prop_cv * np.where(blq, truth.lloq_mg_l, y)) ** 2 + res.add_sd_mg_l ** 2
                 + (0.01 * truth.lloq_mg_l) ** 2)  # a tiny floor keeps purely proportional errors finite

    def residuals(eta: np.ndarray) -> np.ndarray:
        params = dict(typical)
        for i, p in enumerate(names):
            params[p] = typical[p] * np.exp(eta[:, i])
        conc = np.take_along_axis(truth.simulate(params, doses_mg, times), index, axis=1)
        above_lloq = np.maximum(conc - truth.lloq_mg_l, 0.0)
        r_obs = np.where(blq, above_lloq, y - conc) / sd * weight
        return np.concatenate([r_obs, eta / omega], axis=1)

    eta = np.zeros((n, len(names)))
    r = residuals(eta)
    cost = (r ** 2).sum(axis=1)
    damping = np.full(n, 1e-2)
    limit = ETA_LIMIT_OMEGAS * omega
    for _ in range(n_iter):
        jac = np.stack([(residuals(eta + _FD_STEP * np.eye(len(names))[p]) - r) / _FD_STEP
                        for p in range(len(names))], axis=-1)  # (n, R, P)
        jtj = np.einsum("nrp,nrq->npq", jac, jac)
        grad = np.einsum("nrp,nr->np", jac, r)
        diag = np.einsum("npp->np", jtj) + 1e-9
        step = np.linalg.solve(jtj + damping[:, None, None] * np.eye(len(names)) * diag[:, None, :],
                               -grad[..., None])[..., 0]
        trial = np.clip(eta + step, -limit, limit)
        r_trial = residuals(trial)
        cost_trial = (r_trial ** 2).sum(axis=1)
        better = cost_trial < cost
        eta[better], r[better], cost[better] = trial[better], r_trial[better], cost_trial[better]
        damping = np.where(better, damping / 3.0, damping * 4.0).clip(1e-9, 1e9)
    params = dict(typical)
    for i, p in enumerate(names):
        params[p] = typical[p] * np.exp(eta[:, i])
    return params

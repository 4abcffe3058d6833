"""The MIPD study: one dosing decision, judged on the ground truth.

A held-out cohort receives the label/guideline dose in intervals ``0..j``; the clinic
samples the peak and trough of interval ``j`` (the drug's first and last monitoring times,
with the published residual error). The dose of interval ``j + 1`` is then chosen three ways:

(a) standard: the label/guideline dose again;
(b) VAE-MIPD: ``z`` from the encoder + MAP on the two samples, then
    :func:`vae_simulator.dosing.optimise_next_dose` on the PK-VAE simulator;
(c) true-model MAP (a reference): classical Bayesian dosing with the exact ground-truth model,
    its parameters estimated from the same samples (:mod:`.reference_map`), then dosed as (d);
(d) oracle: the dose that puts the patient's TRUE exposure (ground-truth model, true
    parameters) at the middle of the target window, found by a safeguarded secant search
    (Illinois method) on the exposure, which rises monotonically with the dose.

Each dose is scored by the TRUE exposure of interval ``j + 1``: the fraction of patients in
the target window, and the fraction above the toxic threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vae_simulator.covariates import Covariates
from vae_simulator.dosing import DoseTarget, optimise_next_dose
from vae_simulator.groundtruth import DrugModel
from vae_simulator.inference import Samples, encode, map_refine
from vae_simulator.simulator import PKSimulator
from vae_simulator.vae.model import PKVAE
from vae_simulator.validation.common import monitoring_indices, true_last_interval_exposure
from vae_simulator.validation.metrics import fraction_in_window
from vae_simulator.validation.reference_map import reference_reason, true_model_map

#: Dosing strategies in report order; "true_model_map" is left out where the reference is too slow.
STRATEGIES = ("standard", "vae_mipd", "true_model_map", "oracle")


@dataclass(frozen=True)
class MipdStudy:
    """Per strategy (keys of :data:`STRATEGIES` that were run): doses (mg) and TRUE exposures
    ``(n,)`` of interval j+1, and their scores."""

    interval: int
    n_samples: int
    doses_mg: dict[str, np.ndarray]
    exposure: dict[str, np.ndarray]
    in_window: dict[str, float]
    toxic: dict[str, float]

    @property
    def strategies(self) -> tuple[str, ...]:
        """The strategies run, in report order."""
        return tuple(s for s in STRATEGIES if s in self.doses_mg)


@dataclass(frozen=True)
class MipdCohort:
    """Patients of the study: covariates ``(n, C)``, true parameters, doses of intervals 0..j ``(n, j+1)``."""

    covariates: np.ndarray
    params: dict[str, np.ndarray]
    doses_mg: np.ndarray


def mipd_cohort(truth: DrugModel, n_patients: int, interval: int,
                rng: np.random.Generator) -> tuple[MipdCohort, Samples]:
    """New patients on the standard dose for intervals 0..j, with peak and trough samples of interval j."""
    cov = Covariates.sample(n_patients, rng)
    params = truth.sample_parameters(cov, rng)
    doses = np.repeat(truth.standard_dose_mg(cov)[:, None], interval + 1, axis=1)
    scheduled = np.asarray(truth.monitoring_times_h, dtype=float)[monitoring_indices(truth)]
    times = interval * truth.interval_h + scheduled
    obs, blq = truth.sample_observations(truth.simulate(params, doses, times), rng)
    samples = Samples(times_h=np.tile(times, (n_patients, 1)), conc_mg_l=obs, blq=blq,
                      mask=np.ones(obs.shape, dtype=bool))
    return MipdCohort(covariates=cov.as_array(), params=params, doses_mg=doses), samples


def vae_mipd_doses(model: PKVAE, cohort: MipdCohort, samples: Samples, target: DoseTarget,
                   map_steps: int = 60) -> np.ndarray:
    """VAE-MIPD: encoder + MAP on the samples, then the dose grid search on the decoder."""
    cov, history = cohort.covariates, cohort.doses_mg
    mu, _ = encode(model, cov, history, samples)
    z = map_refine(model, mu, cov, history, samples, steps=map_steps)
    sim = PKSimulator(model)
    patients = sim.make_patients(cov, z)
    state = sim.initial_state(patients)
    conc = np.zeros((len(patients), sim.grid_h.size))
    for k in range(history.shape[1]):
        conc, _, state = sim.step(state, patients, history[:, k])
    doses, _ = optimise_next_dose(sim, patients, state, conc[:, -1], target)
    return doses


def secant_root(exposure_at: Callable[[np.ndarray, np.ndarray], np.ndarray], lo: float, hi: float,
                goal: float, n: int, rel_tol: float = 1e-3, max_iter: int = 40) -> np.ndarray:
    """Per-patient dose in ``[lo, hi]`` with ``exposure_at(doses, index) == goal`` (clipped at the ends).

    ``exposure_at`` must rise with the dose; the Illinois variant of regula falsi keeps the
    root bracketed and converges superlinearly (in one step for linear kinetics).
    """
    all_idx = np.arange(n)
    a, b = np.full(n, float(lo)), np.full(n, float(hi))
    fa = exposure_at(a, all_idx) - goal
    fb = exposure_at(b, all_idx) - goal
    dose = np.where(fb <= 0, hi, np.where(fa >= 0, lo, np.nan))
    active = np.flatnonzero(np.isnan(dose))
    for _ in range(max_iter):
        if active.size == 0:
            break
        c = (a[active] * fb[active] - b[active] * fa[active]) / (fb[active] - fa[active])
        fc = exposure_at(c, active) - goal
        done = np.abs(fc) <= rel_tol * abs(goal)
        dose[active[done]] = c[done]
        same_side = fc * fb[active] > 0
        # Root between a and c: move b to c and halve fa (Illinois) when b stayed on one side.
        fa[active] = np.where(same_side, fa[active] * 0.5, fb[active])
        a[active] = np.where(same_side, a[active], b[active])
        b[active], fb[active] = c, fc
        active = active[~done]
    dose[active] = b[active]
    return dose


def oracle_doses(truth: DrugModel, cohort: MipdCohort, target: DoseTarget,
                 params: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """The dose that hits the window's middle on the ground-truth model with ``params``.

    With the patients' true parameters (the default) this is the oracle; with estimated ones,
    model-based dosing with the exact structural model.
    """
    history = cohort.doses_mg
    params_all = cohort.params if params is None else params

    def exposure_at(doses: np.ndarray, index: np.ndarray) -> np.ndarray:
        params = {k: v[index] for k, v in params_all.items()}
        full = np.concatenate([history[index], doses[:, None]], axis=1)
        return true_last_interval_exposure(truth, params, full, target.metric)

    lo, hi = truth.dose_range_mg
    return secant_root(exposure_at, lo, hi, target.value, history.shape[0])


def mipd_study(model: PKVAE, truth: DrugModel, n_patients: int, interval: int,
               rng: np.random.Generator) -> MipdStudy:
    """Run the study (see module doc) on ``n_patients`` new patients."""
    if n_patients < 1:
        raise ValueError(f"n_patients must be >= 1, got {n_patients}")
    cohort, samples = mipd_cohort(truth, n_patients, interval, rng)
    target = DoseTarget.from_exposure_target(truth.target)
    doses = {"standard": cohort.doses_mg[:, -1].copy(),
             "vae_mipd": vae_mipd_doses(model, cohort, samples, target)}
    if reference_reason(truth.name) is None:
        estimated = true_model_map(truth, cohort.covariates, cohort.doses_mg, samples)
        doses["true_model_map"] = oracle_doses(truth, cohort, target, estimated)
    doses["oracle"] = oracle_doses(truth, cohort, target)
    exposure = {name: true_last_interval_exposure(truth, cohort.params,
                                                  np.concatenate([cohort.doses_mg, d[:, None]], axis=1))
                for name, d in doses.items()}
    t = truth.target
    return MipdStudy(interval=interval, n_samples=int(samples.mask.shape[1]), doses_mg=doses,
                     exposure=exposure,
                     in_window={k: fraction_in_window(v, t.low, t.high) for k, v in exposure.items()},
                     toxic={k: float(np.mean(v > t.toxic_above)) for k, v in exposure.items()})

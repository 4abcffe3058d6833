"""Model-based dosing baselines on the PK-VAE: MIPD (the clinical state of the art) and the oracle.

Both follow each patient's course through the Gymnasium API only (``info`` after every step:
``covariates``, ``interval``, ``dose_mg``, ``samples_mg_l``, ``sample_missing``; the oracle also
reads the true latent ``info["z"]``) and pick the next dose with the decoder-based optimiser
:func:`vae_simulator.dosing.optimise_next_dose`: the dose whose predicted exposure of the next
interval is closest to the centre of the therapeutic window (its geometric centre, where the
environments' efficacy peaks; e.g. AUC24 490 mg*h/L for vancomycin's 400-600).

- :class:`MIPDPolicy`: model-informed precision dosing as Bayesian TDM software does it. Before
  any result, the a-priori dose for the patient's covariates (the latent population's typical
  ``z``); afterwards the PK-VAE encoder's posterior mean of ``z`` from every assay so far
  (optionally refined by MAP on the decoder, ``map_steps``), then the dose optimiser.
- :class:`OraclePolicy`: the same optimiser with the patient's true latent: an upper reference
  (it still doses in practical steps and aims at the window's centre).

Doses are searched on the environment's dose levels (discrete ids), or for continuous ids on the
vial grid of the drug (``coarse_step_mg``, e.g. 250 mg for vancomycin), refined around the best
coarse dose in ``coarse_step_mg / 5`` steps. Single-drug ids only. On ``-v1`` ids (patients from
the continuous-time PK-VAE, ``env.decoder == "continuous"``) both use that decoder and its encoder,
and never recommend holding a dose (the decoder refuses holds beyond its trained gap).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from agents.baselines import check_env_id
from agents.config import env_family
from vae_simulator.ct_interval import CTIntervalSimulator
from vae_simulator.ct_mipd import map_refine as ct_map_refine
from vae_simulator.ct_mipd import posterior as ct_posterior
from vae_simulator.dosing import DoseTarget, optimise_next_dose
from vae_simulator.events import DosingEvents
from vae_simulator.inference import Samples, encode, map_refine
from vae_simulator.simulator import PKSimulator
from vae_simulator.vae.io import load_pretrained

#: Fine candidates around the coarse optimum: +-1 coarse step in fifths.
REFINE_POINTS = 11


class _DecoderDosing:
    """Shared machinery: per-patient histories from ``info`` and the decoder-based dose search."""

    def __init__(self, env_id: str, **env_kwargs: Any):
        self.env_id = check_env_id(env_id)
        if env_family(env_id) != "single":
            raise ValueError(f"{type(self).__name__} doses single-drug ids; {env_id!r} is not one "
                             "(combination ids have StandardDosingPolicy and learned agents)")
        env = gym.make(env_id, **env_kwargs).unwrapped
        self.env = env
        self.drug = env.drug
        # the policy's model is the PK-VAE the patients come from (v0: interval-grid, v1/v2: continuous-time
        # releases 1/2)
        self.continuous = env.decoder.startswith("continuous") or env.decoder == "table"
        if env.decoder == "table":  # PKDose/Custom-v0: a PK-VAE learnt from a table, the env's own
            self.sim = env.simulator
            self.model = self.sim.ct.model
        elif self.continuous:
            self.sim = CTIntervalSimulator(drug=self.drug, release=env.decoder_release)
            self.model = self.sim.ct.model
        else:
            self.model, _ = load_pretrained(self.drug)
            self.sim = PKSimulator(self.model)
        # the envs' efficacy peaks at the window's log-centre, so that is where the optimiser aims
        self.target = DoseTarget.from_exposure_target(env.target, centre="geometric")
        self.interval_h = env.interval_h
        self.monitor_h = env.monitoring_times_h
        levels = env.dose_levels_mg
        self.discrete = env.action_space.shape == ()
        self.levels_mg = levels if self.discrete else None
        self.dose_max_mg = float(levels.max())
        self.coarse_step_mg = env.dose_step_mg
        self.horizon = int(self.sim.max_intervals)
        self.reset(0)

    def reset(self, num_envs: int) -> None:
        """Forget every course (called by the evaluator before a new batch of patients)."""
        m = self.monitor_h.size
        self._doses = np.zeros((num_envs, self.horizon))
        self._assays = np.zeros((num_envs, self.horizon, m))
        self._missing = np.ones((num_envs, self.horizon, m), dtype=bool)

    def _record(self, n: int, infos: dict[str, Any]) -> np.ndarray:
        """Store the step just taken (from ``infos``); returns each patient's intervals given."""
        if self._doses.shape[0] != n:
            self.reset(n)
        given = np.asarray(infos["interval"], dtype=int)
        self._doses[given == 0], self._missing[given == 0] = 0.0, True  # a new course
        if "dose_mg" in infos:
            stepped = np.asarray(infos.get("_dose_mg", np.ones(n, bool))) & (given > 0)
            rows, k = np.flatnonzero(stepped), given[stepped] - 1
            self._doses[rows, k] = np.asarray(infos["dose_mg"])[rows]
            self._assays[rows, k] = np.asarray(infos["samples_mg_l"])[rows]
            self._missing[rows, k] = np.asarray(infos["sample_missing"])[rows]
        return given

    def _latent(self, rows: np.ndarray, k: int, infos: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, observations: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        n = len(observations)
        given = self._record(n, infos)
        covariates = np.asarray(infos["covariates"], dtype=float)
        doses = np.zeros(n)
        for k in np.unique(given):  # patients at the same interval share one batched search
            rows = np.flatnonzero(given == k)
            if k >= self.horizon:
                continue  # a finished course; its action is ignored
            z = self._latent(rows, int(k), infos)
            doses[rows] = self._best_doses(covariates[rows], z, self._doses[rows, :k])
        return np.asarray([self.env.doses_to_action(float(mg)) for mg in doses])

    def _best_doses(self, covariates: np.ndarray, z: np.ndarray, history_mg: np.ndarray) -> np.ndarray:
        """Replay the course on the decoder, then search the next dose (mg)."""
        patients = self.sim.make_patients(covariates, z)
        state = self.sim.initial_state(patients)
        start = np.zeros(len(patients))
        for j in range(history_mg.shape[1]):
            conc, _, state = self.sim.step(state, patients, history_mg[:, j])
            start = conc[:, -1]
        if self.discrete:
            levels = self.levels_mg if self.sim.max_held_intervals is None else self.levels_mg[self.levels_mg > 0]
            return optimise_next_dose(self.sim, patients, state, start, self.target, candidates_mg=levels)[0]
        step = self.coarse_step_mg
        # a simulator that limits holds (the continuous-time PK-VAE) is never asked for one
        first = 0.0 if self.sim.max_held_intervals is None else step
        coarse = np.append(np.arange(first, self.dose_max_mg, step), self.dose_max_mg)
        best, _ = optimise_next_dose(self.sim, patients, state, start, self.target, candidates_mg=coarse)
        fine = best[:, None] + np.linspace(-step, step, REFINE_POINTS)[None, :]
        fine = np.clip(fine, first, self.dose_max_mg)
        return optimise_next_dose(self.sim, patients, state, start, self.target, candidates_mg=fine)[0]

    def _samples_so_far(self, rows: np.ndarray, k: int) -> Samples:
        """All assays of intervals 0..k-1 of ``rows`` as padded :class:`Samples` (missing ones masked)."""
        times = (np.arange(k)[:, None] * self.interval_h + self.monitor_h[None, :]).reshape(-1)
        conc = self._assays[rows, :k].reshape(len(rows), -1)
        mask = ~self._missing[rows, :k].reshape(len(rows), -1)
        return Samples(times_h=np.broadcast_to(times, conc.shape).copy(), conc_mg_l=conc,
                       blq=np.zeros(conc.shape, dtype=bool), mask=mask)


class MIPDPolicy(_DecoderDosing):
    """Model-informed precision dosing: PK-VAE encoder (optionally + MAP) and the decoder's optimiser.

    Args:
        env_id: a single-drug PKDose id (continuous or ``-Discrete``).
        map_steps: Adam steps of MAP refinement of the encoder's estimate on the decoder (0: the
            encoder's posterior mean alone, the amortised inference the VAE was trained for;
            MAP costs a full decoder pass per step and patient).
        **env_kwargs: constructor arguments of the evaluated environment.
    """

    def __init__(self, env_id: str, map_steps: int = 0, **env_kwargs: Any):
        if isinstance(map_steps, bool) or not isinstance(map_steps, (int, np.integer)) or map_steps < 0:
            raise ValueError(f"map_steps must be an integer >= 0, got {map_steps!r}")
        self.map_steps = int(map_steps)
        super().__init__(env_id, **env_kwargs)

    def _latent(self, rows: np.ndarray, k: int, infos: dict[str, Any]) -> np.ndarray:
        covariates = np.asarray(infos["covariates"], dtype=float)[rows]
        if k == 0:
            return self.sim.typical_latent(covariates)  # a-priori dosing from covariates
        history, samples = self._doses[rows, :k], self._samples_so_far(rows, k)
        if not samples.mask.any(axis=1).all():  # no result yet for some: their prior
            z = self.sim.typical_latent(covariates)
            seen = samples.mask.any(axis=1)
            if seen.any():
                z[seen] = self._latent(rows[seen], k, infos)
            return z
        if self.continuous:
            return self._ct_latent(covariates, history, samples)
        z, _ = encode(self.model, covariates, history, samples)
        if self.map_steps:
            z = map_refine(self.model, z, covariates, history, samples, steps=self.map_steps)
        return z

    def _ct_latent(self, covariates: np.ndarray, history_mg: np.ndarray, samples: Samples) -> np.ndarray:
        """The continuous-time encoder (and MAP) on the doses given (held ones are no events); an
        assay that reads LLOQ/2 is the environment's below-LLOQ report, so it is censored (M3)."""
        given = [np.flatnonzero(row > 0) for row in history_mg]
        events = DosingEvents.from_lists([list(i * self.interval_h) for i in given],
                                         [list(row[i]) for row, i in zip(history_mg, given)],
                                         [[self.sim.infusion_h] * i.size for i in given])
        blq = samples.mask & (samples.conc_mg_l == 0.5 * self.sim.ct.lloq_mg_l)
        ct_samples = (samples.times_h, samples.conc_mg_l, blq, samples.mask)
        z, _ = ct_posterior(self.model, covariates, events, ct_samples)
        if self.map_steps:
            z = ct_map_refine(self.model, z, covariates, events, ct_samples, steps=self.map_steps)
        return np.clip(z, *self.sim.latent_bounds())

    def __repr__(self) -> str:
        return f"MIPDPolicy({self.env_id!r}, map_steps={self.map_steps})"


class OraclePolicy(_DecoderDosing):
    """The decoder-based optimiser with each patient's true latent ``info["z"]`` (an upper reference).

    Args:
        env_id: a single-drug PKDose id (continuous or ``-Discrete``).
        **env_kwargs: constructor arguments of the evaluated environment.
    """

    def _latent(self, rows: np.ndarray, k: int, infos: dict[str, Any]) -> np.ndarray:
        return np.asarray(infos["z"], dtype=float)[rows]

    def __repr__(self) -> str:
        return f"OraclePolicy({self.env_id!r})"

"""Model-based baselines of the regimen ids: MIPD with a fixed sampling budget, and the oracle.

Both follow each patient's course through the Gymnasium API (``info`` after every step:
``time_h``, ``dose_mg``, ``interval_h``, ``infusion_h``, ``level_drawn``, ``level_mg_l``,
``level_blq``, ``covariates``; the oracle also reads the true latent ``info["z"]``) and the
public helpers of :class:`~pk_envs.regimen.RegimenEnv` (``interval_options_h``,
``doses_to_action``, ``infusion_h``, ``target``). At each dose they choose the dose AND the
interval whose predicted exposure of the coming interval, on the drug's continuous-time PK-VAE
(the simulator's own model: a best case for model-based dosing), is closest to the therapeutic
window's geometric centre, where the environments' efficacy peaks.

- :class:`MIPDRegimenPolicy`: Bayesian TDM as a clinic runs it. A-priori dosing from the
  covariates (the fitted latent population's mean) until the first level; then the PK-VAE
  encoder's posterior mean of ``z`` from every level so far and the dosing events, optionally
  refined by MAP on the decoder (``map_steps``). Levels are drawn at the doses ``level_doses``
  (default the 2nd and 4th: two troughs per course).
- :class:`OraclePolicy`-like :class:`OracleRegimenPolicy`: the same optimiser with the patient's
  true latent, no levels (an upper reference of the optimiser, not of the task).

Doses are searched on the drug's practical step (``env.dose_step_mg``), holding included.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from agents.baselines import check_env_id
from agents.config import env_family
from vae_simulator.ct_mipd import map_refine, posterior
from vae_simulator.ct_simulator import CTPatientSimulator
from vae_simulator.dosing import DoseTarget
from vae_simulator.events import DosingEvents
from vae_simulator.exposure import profile_exposure

#: Points per interval of the optimiser's exposure integral (the environment uses 48).
SEARCH_POINTS = 24
#: A query this long after a dose reads the profile just after it (a query at the dose time is pre-dose).
JUST_AFTER_H = 1e-6


class _RegimenDosing:
    """Per-patient histories from ``info`` and the dose-and-interval search on the CT PK-VAE."""

    def __init__(self, env_id: str, **env_kwargs: Any):
        self.env_id = check_env_id(env_id)
        if env_family(env_id) != "regimen":
            raise ValueError(f"{type(self).__name__} doses regimen ids (PKDose/<Drug>-Regimen-v0); {env_id!r} is not one")
        env = gym.make(env_id, **env_kwargs).unwrapped
        self.env, self.drug = env, env.drug
        # the env's own decoder release (a given simulator: the latest shipped one)
        self.sim = CTPatientSimulator.pretrained(self.drug, env.decoder_release)
        self.target = DoseTarget.from_exposure_target(env.target, centre="geometric")
        self.intervals_h = env.interval_options_h
        self.doses_mg = np.append(np.arange(0.0, env.dose_max_mg, env.dose_step_mg), env.dose_max_mg)
        self.reset(0)

    def reset(self, num_envs: int) -> None:
        """Forget every course (called by the evaluator before a new batch of patients)."""
        self._doses: list[list[tuple[float, float, float]]] = [[] for _ in range(num_envs)]
        self._levels: list[list[tuple[float, float, bool]]] = [[] for _ in range(num_envs)]

    def _record(self, n: int, infos: dict[str, Any]) -> np.ndarray:
        """Store the step just taken; returns each patient's doses given."""
        if len(self._doses) != n:
            self.reset(n)
        given = np.asarray(infos["doses_given"], dtype=int)
        stepped = np.asarray(infos.get("_dose_mg", np.zeros(n, bool))) & (given > 0) if "dose_mg" in infos \
            else np.zeros(n, bool)
        for i in range(n):
            if given[i] == 0:
                self._doses[i], self._levels[i] = [], []
            elif stepped[i]:
                end, tau = float(infos["time_h"][i]), float(infos["interval_h"][i])
                if infos["dose_mg"][i] > 0:
                    self._doses[i].append((end - tau, float(infos["dose_mg"][i]), float(infos["infusion_h"][i])))
                if infos["level_drawn"][i]:
                    self._levels[i].append((end, float(infos["level_mg_l"][i]), bool(infos["level_blq"][i])))
        return given

    def _events(self, rows: np.ndarray) -> DosingEvents:
        lists = [[[d[j] for d in self._doses[i]] for i in rows] for j in range(3)]
        return DosingEvents.from_lists(*lists)

    def _latent(self, rows: np.ndarray, covariates: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def _draw(self, given: np.ndarray) -> np.ndarray:
        return np.zeros(given.shape, dtype=bool)

    def __call__(self, observations: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        n = len(observations)
        given = self._record(n, infos)
        now = np.asarray(infos["time_h"], dtype=float)
        dose, tau = np.zeros(n), np.full(n, self.intervals_h[0])
        live = np.flatnonzero(now < self.env.course_h - 1e-9)  # a finished course's action is ignored
        if live.size:
            covariates = np.asarray(infos["covariates"], dtype=float)[live]
            z = np.clip(self._latent(live, covariates, infos), self.sim.latent_low, self.sim.latent_high)
            dose[live], tau[live] = self.best_regimens(covariates, z, self._events(live), now[live])
        draw = self._draw(given)
        return np.stack([self.env.doses_to_action(dose[i], tau[i], bool(draw[i])) for i in range(n)])

    def best_regimens(self, covariates: np.ndarray, z: np.ndarray, events: DosingEvents,
                      now_h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per patient the (dose mg, interval h) whose next-interval exposure is nearest the target's centre."""
        n = len(now_h)
        state = self.sim.start(self.sim.make_patients(covariates, z))
        for j in range(events.max_events):  # replay each patient's doses (0 mg: none, where it has fewer)
            has = events.mask[:, j]
            state = self.sim.give_doses(state, np.where(has, events.times_h[:, j], 0.0),
                                        np.where(has, events.amounts_mg[:, j], 0.0), events.infusion_h[:, j])
        candidates = [(d, t) for t in self.intervals_h for d in self.doses_mg]
        rows = np.repeat(np.arange(n), len(candidates))
        dose = np.tile([c[0] for c in candidates], n)
        tau = np.tile([c[1] for c in candidates], n)
        grown = self.sim.give_doses(state.take(rows), now_h[rows], dose, self.env.infusion_h(dose))
        duration = np.minimum(tau, self.env.course_h - now_h[rows])
        # a hold cannot run past the trained gap: the environment cuts the interval there
        gap_end = np.where(np.isnan(grown.last_h), np.inf, grown.last_h + self.sim.limits.max_gap_h)
        duration = np.minimum(duration, gap_end - now_h[rows])
        valid = np.flatnonzero(duration > 10 * JUST_AFTER_H)
        fractions = np.arange(SEARCH_POINTS + 1) / SEARCH_POINTS
        query = now_h[rows[valid], None] + np.maximum(duration[valid, None] * fractions[None, :], JUST_AFTER_H)
        exposure = np.zeros(rows.size)
        conc = self.sim.concentrations(grown.take(valid), query)
        exposure[valid] = profile_exposure(conc, duration[valid], self.target.metric, self.target.threshold_mg_l)
        miss = np.abs(np.log(np.maximum(exposure, 1e-12)) - np.log(self.target.value)).reshape(n, len(candidates))
        best = np.argmin(miss, axis=1)  # ties: the shortest interval, then the smallest dose
        return np.array([candidates[b][0] for b in best]), np.array([candidates[b][1] for b in best])


class MIPDRegimenPolicy(_RegimenDosing):
    """Bayesian MIPD of dose and interval with levels drawn before the doses ``level_doses`` (1-based).

    Args:
        env_id: a regimen id, e.g. ``"PKDose/Vancomycin-Regimen-v0"`` (continuous or ``-Discrete``).
        level_doses: a trough is drawn at the end of the interval of these doses (default the 2nd
            and 4th: two levels per course, the sampling budget).
        **env_kwargs: constructor arguments of the evaluated environment.
    """

    def __init__(self, env_id: str, level_doses: tuple[int, ...] = (2, 4), map_steps: int = 0, **env_kwargs: Any):
        if not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1 for k in level_doses):
            raise ValueError(f"level_doses must be dose numbers >= 1, got {level_doses!r}")
        if isinstance(map_steps, bool) or not isinstance(map_steps, (int, np.integer)) or map_steps < 0:
            raise ValueError(f"map_steps must be an integer >= 0, got {map_steps!r}")
        self.level_doses, self.map_steps = tuple(int(k) for k in level_doses), int(map_steps)
        super().__init__(env_id, **env_kwargs)

    def _draw(self, given: np.ndarray) -> np.ndarray:
        return np.isin(given + 1, self.level_doses)

    def _latent(self, rows: np.ndarray, covariates: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        z = self.sim.typical_latent(covariates)
        seen = np.array([len(self._levels[i]) > 0 for i in rows], dtype=bool)
        if seen.any():
            picked = rows[seen]
            s = max(len(self._levels[i]) for i in picked)
            times, conc = np.ones((picked.size, s)), np.zeros((picked.size, s))
            blq, mask = np.zeros((picked.size, s), bool), np.zeros((picked.size, s), bool)
            for r, i in enumerate(picked):
                for j, (t, value, below) in enumerate(self._levels[i]):
                    times[r, j], conc[r, j], blq[r, j], mask[r, j] = t, value, below, True
                times[r, len(self._levels[i]):] = self._levels[i][-1][0]  # padding: a valid, masked time
            samples, events = (times, conc, blq, mask), self._events(picked)
            z[seen], _ = posterior(self.sim.model, covariates[seen], events, samples)
            if self.map_steps:
                z[seen] = map_refine(self.sim.model, z[seen], covariates[seen], events, samples, steps=self.map_steps)
        return z

    def __repr__(self) -> str:
        return f"MIPDRegimenPolicy({self.env_id!r}, level_doses={self.level_doses}, map_steps={self.map_steps})"


class OracleRegimenPolicy(_RegimenDosing):
    """The dose-and-interval optimiser with each patient's true latent ``info["z"]``; no levels."""

    def _latent(self, rows: np.ndarray, covariates: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        return np.asarray(infos["z"], dtype=float)[rows]

    def __repr__(self) -> str:
        return f"OracleRegimenPolicy({self.env_id!r})"

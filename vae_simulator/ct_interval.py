"""The continuous-time PK-VAE behind the interval contract, so the fixed-schedule ids run on it.

:class:`CTIntervalSimulator` implements :class:`~vae_simulator.interface.PatientSimulator` (one
dose at the start of every ``interval_h``, concentrations on the drug's recording grid) on the
continuous-time decoder of :mod:`vae_simulator.ct_simulator`. It is what the ``-v1`` single-drug
environments step: the same task as ``-v0``, with the patient simulated by the decoder that
answers for any regimen (the interval-grid decoder of ``-v0`` stays, for results published on it).

Per interval it runs one event step of the decoder's GRU (the dose, ``0`` mg = held and no event)
and one head evaluation on the grid, through :class:`~vae_simulator.ct_stepper.CTStepper`: float32
and batch-invariant, so a vector environment equals N single ones bit for bit. A patient's state
row is ``[GRU state (H), dosed yet (0/1), h since the last dose at the interval's start, that dose
mg, the interval's start on the clock (h from the first interval)]``; its constants are the
decoder's per-patient projections (``4H``).

Two things differ from the interval-grid decoder, both from what the decoder was trained on:

* **Holds.** The decoder knows gaps between doses up to its longest trained gap
  (``limits.max_gap_h``: two of the longest clinical intervals plus jitter, e.g. 100 h for
  vancomycin, 28 h for mycophenolate). :attr:`CTIntervalSimulator.max_held_intervals` consecutive
  held doses after the first dose fit inside it; one more is refused with a ValueError (the
  environments end the episode there, truncated, rather than ask).
* **Residual error.** The decoder's error is proportional + additive on the linear scale (the
  assay's own model). ``step`` returns as ``log_sigma`` the log of that SD (mg/L) at each grid
  point; :meth:`~CTIntervalSimulator.observe` draws ``c + noise_scale * sd(c) * e`` from the
  sample's own concentration (one normal per sample: the sum of the two error terms is one
  normal) and reports results below the LLOQ as LLOQ/2, as the ground truth does (Beal's M5).
"""

from __future__ import annotations

import numpy as np

from vae_simulator.covariates import Covariates, draw_covariate_row
from vae_simulator.ct_simulator import CTPatientSimulator
from vae_simulator.groundtruth import get_model
from vae_simulator.groundtruth.base import ExposureTarget
from vae_simulator.interface import AdultCovariates, NormalSource, Patients, check_patients
from vae_simulator.simulator import check_dose_range, interpolate_interval

#: c0 (mg/L) of the log-linear interpolation between grid points: far below every drug's LLOQ
INTERPOLATION_C0_MG_L = 1e-3


class CTIntervalStepper:
    """:class:`~vae_simulator.interface.PatientStepper` of a :class:`CTIntervalSimulator`."""

    def __init__(self, sim: CTIntervalSimulator, sigma_index=None):
        self.sim, self.core = sim, sim.ct.stepper
        self.dtype = self.core.dtype
        self.sigma_index = np.arange(sim.grid_h.size) if sigma_index is None else np.asarray(sigma_index)
        self.query_h = sim.grid_h.astype(self.dtype)[None, :]

    @property
    def constants_size(self) -> int:
        return 4 * self.core.hidden

    def start(self, covariates: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        carry = self.core.start(covariates, z)
        h = self.core.hidden
        state = np.zeros((carry.shape[0], h + 4))
        state[:, :h] = carry[:, :h]
        return state, np.ascontiguousarray(carry[:, h:])

    def step(self, state: np.ndarray, constants: np.ndarray,
             doses_mg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sim, h = self.sim, self.core.hidden
        doses = check_dose_range(sim.drug, doses_mg, sim.dose_range_mg, "the range the continuous-time PK-VAE "
                                 "was trained on")
        if doses.shape[0] != state.shape[0] or constants.shape[0] != state.shape[0]:
            raise ValueError(f"{state.shape[0]} states but {doses.shape[0]} doses and {constants.shape[0]} constants")
        dosed, since, last_mg = state[:, h] > 0, state[:, h + 1], state[:, h + 2]
        given = doses > 0
        sim.check_hold(dosed & ~given, since)
        infusion = np.full(doses.shape, sim.infusion_h)
        carry = np.concatenate([state[:, :h].astype(self.dtype), constants], axis=1)
        carry = self.core.give(carry, np.where(dosed, since, 0.0), doses, infusion, given)
        since = np.where(given, 0.0, since)
        last_mg = np.where(given, doses, last_mg)
        dosed = dosed | given
        clock_h = state[:, h + 3]
        conc = self.core.concentrations(carry, since[:, None] + self.query_h, last_mg, infusion,
                                        clock_h=clock_h[:, None] + self.query_h if self.core.has_clock else None)
        conc = np.where(dosed[:, None], conc, 0.0)
        new = np.concatenate([carry[:, :h].astype(float), dosed[:, None], (since + sim.interval_h)[:, None],
                              last_mg[:, None], (clock_h + sim.interval_h)[:, None]], axis=1)
        return conc, sim.log_residual_sd(conc[:, self.sigma_index]), new


class CTIntervalSimulator(AdultCovariates):
    """A :class:`CTPatientSimulator` stepped one fixed dosing interval at a time (module docstring).

    Args:
        ct: the continuous-time PK-VAE (default: the shipped one of ``drug``).
        drug: the drug, when ``ct`` is not given.
        release: which shipped release of ``drug``'s decoder, when ``ct`` is not given (None: the latest).
        drug_model: the schedule and clinic settings (``target``, ``interval_h``,
            ``interval_grid_h``, ``dose_range_mg``, ``infusion_h``, ``monitoring_times_h``, label
            dose); default the drug's published model. A model learnt from a table has none
            published: :class:`vae_simulator.byod.simulator.TableIntervalSimulator` gives its own.
    """

    def __init__(self, ct: CTPatientSimulator | None = None, *, drug: str | None = None, drug_model=None,
                 release: int | None = None):
        if ct is None:
            if drug is None:
                raise ValueError("give a continuous-time simulator or a drug")
            ct = CTPatientSimulator.pretrained(drug, release)
        elif drug is not None and drug != ct.drug:
            raise ValueError(f"drug {drug!r} does not match the simulator's drug {ct.drug!r}")
        truth = get_model(ct.drug) if drug_model is None else drug_model
        self.ct, self.drug, self.drug_model = ct, ct.drug, truth
        #: the shipped decoder release the patients come from (None: a decoder given by the caller)
        self.release: int | None = ct.release
        self.target: ExposureTarget = truth.target
        self.interval_h = float(truth.interval_h)
        self.grid_h = np.asarray(truth.interval_grid_h, dtype=float)
        self.dose_range_mg = (float(truth.dose_range_mg[0]), float(ct.limits.dose_max_mg))
        self.latent_dim = int(ct.model.cfg.latent_dim)
        self.latent_chol = ct.latent_chol
        lo, hi = ct.limits.infusion_range_h
        self.infusion_h = float(np.clip(truth.infusion_h, lo, hi))  # the label's, as the -v0 decoder was trained
        self.max_gap_h = float(ct.limits.max_gap_h)
        #: consecutive held doses after a dose that stay within the trained gap
        self.max_held_intervals = int(np.floor(self.max_gap_h / self.interval_h + 1e-9)) - 1
        self.manifest = {"decoder": "continuous-time PK-VAE", "drug": self.drug}

    @property
    def max_intervals(self) -> int:
        """Intervals within the decoder's trained horizon after the first dose."""
        return int(np.floor(self.ct.limits.horizon_h / self.interval_h + 1e-9))

    @property
    def state_size(self) -> int:
        return self.ct.stepper.hidden + 4

    def typical_latent(self, covariates: np.ndarray) -> np.ndarray:
        return self.ct.typical_latent(np.atleast_2d(covariates))

    def latent_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The fitted population's mean +- ``LATENT_RANGE_SD`` marginal SDs per dimension."""
        return self.ct.latent_low, self.ct.latent_high

    def sample_patients(self, n: int, rng: np.random.Generator, iiv_scale: float = 1.0) -> Patients:
        """Adult covariates and ``z = typical_latent(x) + iiv_scale * L e`` (within :meth:`latent_bounds`)."""
        if not np.isfinite(iiv_scale) or iiv_scale < 0:
            raise ValueError(f"iiv_scale must be a finite number >= 0, got {iiv_scale!r}")
        cov = self.draw_covariates(n, rng)
        eps = rng.standard_normal((n, self.latent_dim))
        z = self.typical_latent(cov) + iiv_scale * eps @ self.latent_chol.T
        return Patients(covariates=cov, z=np.clip(z, *self.latent_bounds()))

    def draw_covariates(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, C)`` covariates of new patients: the adult population of :mod:`vae_simulator.covariates`."""
        return draw_covariate_row(rng)[None, :] if n == 1 else Covariates.sample(n, rng).as_array()

    def make_patients(self, covariates: np.ndarray, z: np.ndarray, *, check_range: bool = True) -> Patients:
        return check_patients(self.drug, covariates, z, self.latent_bounds(), check_range=check_range)

    def stepper(self, sigma_index=None, dtype=np.float32) -> CTIntervalStepper:
        """The batch-invariant step (float32, the decoder's precision, whatever ``dtype`` asks)."""
        return CTIntervalStepper(self, sigma_index)

    def initial_state(self, patients: Patients) -> np.ndarray:
        state, _ = self.stepper().start(patients.covariates, patients.z)
        return state

    def step(self, state: np.ndarray, patients: Patients, doses_mg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One interval with doses ``(n,)`` mg (0 = held): concentrations and log residual SD ``(n, G)``, new state."""
        stepper = self.stepper()
        _, constants = stepper.start(patients.covariates, patients.z)
        return stepper.step(state, constants, doses_mg)

    def check_hold(self, holding: np.ndarray, since_h: np.ndarray) -> None:
        """ValueError when a held interval would run past the longest trained gap after the last dose."""
        beyond = holding & (since_h + self.interval_h > self.max_gap_h + 1e-9)
        if beyond.any():
            i = int(np.flatnonzero(beyond)[0])
            raise ValueError(f"{self.drug}: patient {i}: holding this dose would leave "
                             f"{since_h[i] + self.interval_h:g} h since the last one, beyond the longest gap "
                             f"the continuous-time PK-VAE was trained on ({self.max_gap_h:g} h; at most "
                             f"{self.max_held_intervals} held doses in a row)")

    def log_residual_sd(self, conc_mg_l: np.ndarray) -> np.ndarray:
        """Log of the learned residual SD (mg/L) at true concentrations ``conc_mg_l``."""
        prop, add = self.ct.residual_error
        return 0.5 * np.log((prop * np.asarray(conc_mg_l, dtype=float)) ** 2 + add ** 2)

    def observe(self, conc_mg_l: np.ndarray, log_sigma: np.ndarray, rng: NormalSource,
                noise_scale: float = 1.0) -> np.ndarray:
        """Assay results (mg/L, >= 0): ``c + noise_scale * sd(c) * e``, below the LLOQ reported as LLOQ/2.

        The SD is recomputed from ``conc_mg_l`` (``log_sigma`` is the grid's, kept by the contract);
        ``noise_scale = 0`` returns the true concentrations (no assay, so no LLOQ).
        """
        if not np.isfinite(noise_scale) or noise_scale < 0:
            raise ValueError(f"noise_scale must be a finite number >= 0, got {noise_scale!r}")
        conc = np.asarray(conc_mg_l, dtype=float)
        sd = np.exp(self.log_residual_sd(conc))
        result = conc + noise_scale * sd * rng.standard_normal(conc.shape)
        if noise_scale == 0:
            return result  # the true concentrations, as every simulator's observe gives them
        lloq = self.ct.lloq_mg_l
        return np.where(result < lloq, 0.5 * lloq, result)

    def concentration_at(self, profile_mg_l: np.ndarray, start_mg_l: np.ndarray, times_h) -> np.ndarray:
        """Concentrations at ``times_h`` in the interval, log-linear between grid points (as ``-v0``)."""
        return interpolate_interval(self.grid_h, self.interval_h, INTERPOLATION_C0_MG_L, profile_mg_l, start_mg_l,
                                    times_h)

"""The mechanistic ground-truth PK models as patient simulators, one 21-day cycle at a time.

:class:`GroundTruthCycleSimulator` implements :class:`~vae_simulator.interface.PatientSimulator`
on the published model of a drug (:mod:`vae_simulator.groundtruth`) instead of a PK-VAE
decoder. The combination environment runs on it with ``simulators="groundtruth"``
(paclitaxel, Crombag 2019; carboplatin, Zandvliet 2008): to check the environment's design
without trained weights, and to measure how far the learned patient is from the one it imitates.

The patient's "latent" ``z`` is the vector of standard-normal random effects of the model's
parameters that carry inter-individual variability (in the model's parameter order), so
``z ~ N(0, I)`` gives exactly the published population; :meth:`~GroundTruthCycleSimulator.latent_bounds`
are +- :data:`~vae_simulator.interface.LATENT_RANGE_SD` in every dimension.

Approximation (ours, as in ``vae_simulator.groundtruth.pd.calibration``): each cycle starts
from an empty body, which holds for drugs given every 3 weeks. Paclitaxel falls below 1e-4
umol/L by the end of a 504-h cycle in every patient simulated there (median 5e-13), carboplatin
far lower, so the carry-over neglected is orders of magnitude below any concentration with an
effect. It does not hold for drugs that accumulate over their interval (vancomycin q12h): do
not step those here. The ODE solver batches patients, so (unlike the decoder) a patient's
trajectory may differ in the last digits with the batch it is simulated in.
"""

from __future__ import annotations

import numpy as np

from vae_simulator.covariates import Covariates, draw_covariate_row
from vae_simulator.groundtruth import get_model
from vae_simulator.groundtruth.base import ExposureTarget
from vae_simulator.interface import LATENT_RANGE_SD, AdultCovariates, NormalSource, Patients, check_patients
from vae_simulator.simulator import check_dose_range, interpolate_interval

#: Cycles a ground-truth patient can be stepped (no training horizon limits it).
MAX_CYCLES = 1000


class GroundTruthCycleSimulator(AdultCovariates):
    """The ground-truth model of ``drug`` as a :class:`~vae_simulator.interface.PatientSimulator`
    (module docstring).

    ``step`` returns the true concentrations (mg/L) on the drug's ``interval_grid_h`` and the log
    of the model's proportional residual error as ``log_sigma``; ``observe`` applies that error
    on the log scale of ``c + c0`` (``c0`` = half the assay's LLOQ, mg/L). The state is the
    number of cycles given, ``(n, 1)``.
    """

    def __init__(self, drug: str):
        model = get_model(drug)
        self.drug_model, self.drug = model, drug
        self.grid_h = np.asarray(model.interval_grid_h, dtype=float)
        self.interval_h = float(model.interval_h)
        self.dose_range_mg = (float(model.dose_range_mg[0]), float(model.dose_range_mg[1]))
        #: model parameters with inter-individual variability, in the order of z
        self.iiv_names = tuple(p for p in model.parameter_names if model.iiv_omega.get(p, 0.0) > 0)
        self.latent_dim = len(self.iiv_names)
        self.target: ExposureTarget = model.target
        self.c0_mg_l = 0.5 * float(model.lloq_mg_l)
        self.manifest = {"ground_truth": model.source}
        self.latent_chol = np.eye(self.latent_dim)  # z are the published random effects in SD units
        self.max_held_intervals = None  # the published model holds for any course
        bound = np.full(self.latent_dim, LATENT_RANGE_SD)
        self._bounds = (-bound, bound)

    @property
    def max_intervals(self) -> int:
        return MAX_CYCLES

    @property
    def state_size(self) -> int:
        return 1

    def typical_latent(self, covariates: np.ndarray) -> np.ndarray:
        """The typical patient has all random effects at 0: ``(n, d)`` zeros."""
        return np.zeros((np.atleast_2d(covariates).shape[0], self.latent_dim))

    def latent_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """+- :data:`~vae_simulator.interface.LATENT_RANGE_SD` random-effect SDs in every dimension."""
        return self._bounds[0].copy(), self._bounds[1].copy()

    def sample_patients(self, n: int, rng: np.random.Generator, iiv_scale: float = 1.0) -> Patients:
        """Adults with random effects ``iiv_scale * e``, ``e ~ N(0, I)`` (the draws of PKSimulator.sample_patients)."""
        if not np.isfinite(iiv_scale) or iiv_scale < 0:
            raise ValueError(f"iiv_scale must be a finite number >= 0, got {iiv_scale!r}")
        cov = draw_covariate_row(rng)[None, :] if n == 1 else Covariates.sample(n, rng).as_array()
        eps = rng.standard_normal((n, self.latent_dim))
        return Patients(covariates=cov, z=self.typical_latent(cov) + iiv_scale * eps)

    def make_patients(self, covariates: np.ndarray, z: np.ndarray, *, check_range: bool = True) -> Patients:
        """Pinned patients, checked as :meth:`PKSimulator.make_patients <vae_simulator.simulator.PKSimulator.make_patients>`."""
        return check_patients(self.drug, covariates, z, self.latent_bounds(), check_range=check_range)

    def initial_state(self, patients: Patients) -> np.ndarray:
        """No cycle given yet: ``(n, 1)`` zeros."""
        return np.zeros((len(patients), 1))

    def parameters(self, patients: Patients) -> dict[str, np.ndarray]:
        """Individual PK parameters: typical values (covariates) x exp(omega * z)."""
        params = self.drug_model.typical_parameters(Covariates.from_array(patients.covariates))
        for j, name in enumerate(self.iiv_names):
            params[name] = params[name] * np.exp(self.drug_model.iiv_omega[name] * patients.z[:, j])
        return params

    def check_doses(self, doses_mg) -> np.ndarray:
        """Doses as a flat float array; ValueError for one outside ``dose_range_mg``."""
        return check_dose_range(self.drug, doses_mg, self.dose_range_mg, "the range of the ground-truth simulator")

    def step(self, state: np.ndarray, patients: Patients, doses_mg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One cycle's true profile on ``grid_h`` (mg/L), from an empty body (module docstring)."""
        doses = self.check_doses(doses_mg)
        if doses.shape[0] != len(patients) or state.shape[0] != len(patients):
            raise ValueError(f"{len(patients)} patients but {doses.shape[0]} doses and {state.shape[0]} states")
        conc = np.zeros((len(patients), self.grid_h.size))
        given = doses > 0
        if given.any():  # the ODE is the expensive part; a held dose gives no drug
            sub = Patients(patients.covariates[given], patients.z[given])
            conc[given] = self.drug_model.simulate(self.parameters(sub), doses[given, None], self.grid_h)
        log_sigma = np.full_like(conc, np.log(self.drug_model.residual.prop_cv))
        return conc, log_sigma, state + 1.0

    def concentration_at(self, profile_mg_l: np.ndarray, start_mg_l: np.ndarray, times_h) -> np.ndarray:
        """Concentrations (mg/L) at ``times_h`` within the cycle, log-linear between grid points
        (as :meth:`PKSimulator.concentration_at <vae_simulator.simulator.PKSimulator.concentration_at>`)."""
        return interpolate_interval(self.grid_h, self.interval_h, self.c0_mg_l, profile_mg_l, start_mg_l, times_h)

    def observe(self, conc_mg_l: np.ndarray, log_sigma: np.ndarray, rng: NormalSource,
                noise_scale: float = 1.0) -> np.ndarray:
        """Noisy assay results (mg/L, >= 0): ``log(c + c0)`` plus ``noise_scale * sigma * e``."""
        if not np.isfinite(noise_scale) or noise_scale < 0:
            raise ValueError(f"noise_scale must be a finite number >= 0, got {noise_scale!r}")
        log_c = np.log(np.asarray(conc_mg_l, dtype=float) + self.c0_mg_l)
        noisy = log_c + noise_scale * np.exp(log_sigma) * rng.standard_normal(log_c.shape)
        return np.maximum(np.exp(noisy) - self.c0_mg_l, 0.0)

    def stepper(self, sigma_index=None, dtype=np.float64) -> GroundTruthStepper:
        """The :class:`GroundTruthStepper` of this simulator (``dtype`` is ignored: no network)."""
        return GroundTruthStepper(self, sigma_index=sigma_index)


class GroundTruthStepper:
    """The :class:`~vae_simulator.interface.PatientStepper` of a :class:`GroundTruthCycleSimulator`.

    A patient's ``constants`` are its covariates and ``z`` (what the model's parameters come from);
    a step is :meth:`GroundTruthCycleSimulator.step` with the log-sigma columns ``sigma_index``.
    """

    dtype = np.dtype(float)

    def __init__(self, sim: GroundTruthCycleSimulator, sigma_index=None):
        self.sim = sim
        grid = sim.grid_h.size
        self.sigma_index = np.arange(grid) if sigma_index is None else np.asarray(sigma_index, dtype=int).reshape(-1)
        if self.sigma_index.size and (self.sigma_index.min() < 0 or self.sigma_index.max() >= grid):
            raise ValueError(f"sigma_index must hold grid indices in [0, {grid - 1}], got {self.sigma_index}")
        self.constants_size = len(sim.covariate_names) + sim.latent_dim

    def start(self, covariates: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The state before the first dose ``(n, 1)`` and the patients' constants ``[covariates, z]``."""
        return np.zeros((covariates.shape[0], 1)), np.concatenate([covariates, z], axis=1)

    def step(self, state: np.ndarray, constants: np.ndarray, doses_mg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One cycle of the ground-truth model, as :meth:`GroundTruthCycleSimulator.step`."""
        n_cov = len(self.sim.covariate_names)
        conc, log_sigma, state = self.sim.step(state, Patients(constants[:, :n_cov], constants[:, n_cov:]), doses_mg)
        return conc, log_sigma[:, self.sigma_index], state

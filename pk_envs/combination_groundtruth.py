"""The mechanistic ground-truth PK models behind the PK-VAE's interface, one 21-day cycle at a time.

:class:`GroundTruthCycleSimulator` lets the combination environment run on the published
paclitaxel (Crombag 2019) and carboplatin (Zandvliet 2008) models instead of their PK-VAE
decoders: to check the environment's design without trained weights, and to measure how
far the learned patient is from the one it imitates (``simulators="groundtruth"``).

The patient's "latent" ``z`` is the vector of standard-normal random effects of the
model's parameters that carry inter-individual variability (in the model's parameter
order), so ``z ~ N(0, I)`` gives exactly the published population.

Approximation (ours, as in ``vae_simulator.groundtruth.pd.calibration``): each cycle starts
from an empty body. Paclitaxel falls below 1e-4 umol/L by the end of a 504-h cycle in every
patient simulated there (median 5e-13), carboplatin far lower, so the carry-over neglected
is orders of magnitude below any concentration with an effect. The ODE solver batches
patients, so (unlike the decoder) a patient's trajectory may differ in the last digits with
the batch it is simulated in.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from vae_simulator.covariates import COVARIATE_NAMES, Covariates
from vae_simulator.groundtruth import get_model
from vae_simulator.simulator import Patients, PKSimulator

#: Cycles a ground-truth patient can be stepped (no training horizon limits it).
MAX_CYCLES = 1000


class GroundTruthCycleSimulator(PKSimulator):
    """A :class:`PKSimulator` whose "decoder" is the ground-truth model of ``drug`` (module docstring).

    Implements the parts of the interface the environments use: ``drug``, ``grid_h``,
    ``interval_h``, ``dose_range_mg``, ``latent_dim``, ``cfg.max_intervals``,
    ``sample_patients``, ``make_patients``, ``initial_state``, ``step``, ``concentration_at``.
    ``step`` returns the true concentrations (mg/L) and the log of the model's proportional
    residual error as ``log_sigma``. The state is the number of cycles given, ``(n, 1)``.
    """

    def __init__(self, drug: str):  # no decoder: PKSimulator.__init__ is deliberately not called
        model = get_model(drug)
        self.drug_model, self.drug, self.decoder = model, drug, None
        self.grid_h = np.asarray(model.interval_grid_h, dtype=float)
        self.interval_h = float(model.interval_h)
        self.dose_range_mg = (float(model.dose_range_mg[0]), float(model.dose_range_mg[1]))
        self.iiv_names = tuple(p for p in model.parameter_names if model.iiv_omega.get(p, 0.0) > 0)
        self.latent_dim = len(self.iiv_names)
        self.target, self.covariate_names = model.target, COVARIATE_NAMES
        self.cfg = SimpleNamespace(drug=drug, c0_mg_l=0.5 * model.lloq_mg_l, interval_h=self.interval_h,
                                   max_intervals=MAX_CYCLES, dose_max_mg=self.dose_range_mg[1],
                                   latent_dim=self.latent_dim)
        self.manifest = {"ground_truth": model.source}
        self.latent_chol = np.eye(self.latent_dim)  # z are the published random effects in SD units

    @property
    def state_size(self) -> int:
        return 1

    def typical_latent(self, covariates: np.ndarray) -> np.ndarray:
        """The typical patient has all random effects at 0."""
        return np.zeros((np.atleast_2d(covariates).shape[0], self.latent_dim))

    def initial_state(self, patients: Patients) -> np.ndarray:
        return np.zeros((len(patients), 1))

    def parameters(self, patients: Patients) -> dict[str, np.ndarray]:
        """Individual PK parameters: typical values (covariates) x exp(omega * z)."""
        params = self.drug_model.typical_parameters(Covariates.from_array(patients.covariates))
        for j, name in enumerate(self.iiv_names):
            params[name] = params[name] * np.exp(self.drug_model.iiv_omega[name] * patients.z[:, j])
        return params

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


class GroundTruthStepper:
    """The :class:`~vae_simulator.simulator.DecoderStepper` interface over a :class:`GroundTruthCycleSimulator`,
    so the environment steps decoders and ground-truth models alike.

    A patient's ``constants`` are its covariates and ``z`` (what the model's parameters come from).
    """

    dtype = np.dtype(float)

    def __init__(self, sim: GroundTruthCycleSimulator):
        self.sim = sim
        self.constants_size = len(sim.covariate_names) + sim.latent_dim

    def start(self, covariates: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The state before the first dose and the patients' constants, ``[covariates, z]``."""
        return np.zeros((covariates.shape[0], 1)), np.concatenate([covariates, z], axis=1)

    def step(self, state: np.ndarray, constants: np.ndarray, doses_mg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One cycle of the ground-truth model, as :meth:`GroundTruthCycleSimulator.step`."""
        n_cov = len(self.sim.covariate_names)
        return self.sim.step(state, Patients(constants[:, :n_cov], constants[:, n_cov:]), doses_mg)


"""Shared fixtures: a minimal one-compartment IV-bolus-like model to test the contract."""

from __future__ import annotations

import numpy as np
import pytest

from vae_simulator.covariates import Covariates
from vae_simulator.groundtruth.base import DrugModel, ExposureTarget, ResidualError


class OneCompartmentInfusion(DrugModel):
    """1-compartment model with a short infusion, solved in closed form (test double of the contract)."""

    name = "test-1cmt"
    route = "iv_infusion"
    interval_h = 12.0
    infusion_h = 1.0
    infusion_range_h = (0.5, 2.0)
    dose_range_mg = (0.0, 2000.0)
    interval_grid_h = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0])
    monitoring_times_h = (2.0, 11.5)
    lloq_mg_l = 0.5
    residual = ResidualError(prop_cv=0.1, add_sd_mg_l=0.5)
    iiv_omega = {"CL": 0.3, "V": 0.2}
    target = ExposureTarget("auc24", 400, 600, 600, "mg*h/L", "test")

    def typical_parameters(self, cov):
        return {"CL": 4.0 * (cov.CRCL / 100.0) ** 0.7, "V": 0.7 * cov.WT}

    def standard_dose_mg(self, cov):
        return np.clip(15.0 * cov.WT, *self.dose_range_mg)

    def _simulate(self, params, doses_mg, times_h, dose_times_h, infusion_h):
        k = (params["CL"] / params["V"])[:, None]
        out = np.zeros((doses_mg.shape[0], times_h.size))
        for j in range(doses_mg.shape[1]):
            rate = doses_mg[:, j:j + 1] / infusion_h[j]
            dt = times_h[None, :] - dose_times_h[j]
            during = np.clip(dt, 0, infusion_h[j])
            after = np.clip(dt - infusion_h[j], 0, None)
            out += rate / (params["CL"][:, None]) * (1 - np.exp(-k * during)) * np.exp(-k * after)
        return out


@pytest.fixture
def toy_model() -> OneCompartmentInfusion:
    return OneCompartmentInfusion()


@pytest.fixture
def cohort() -> Covariates:
    return Covariates.sample(50, np.random.default_rng(123))


@pytest.fixture
def toy_registered(monkeypatch):
    """Register the test model as drug 'test-1cmt' for code that looks drugs up by name."""
    from vae_simulator import groundtruth

    monkeypatch.setitem(groundtruth._REGISTRY, OneCompartmentInfusion.name,
                        (OneCompartmentInfusion.__module__, "OneCompartmentInfusion"))
    return OneCompartmentInfusion()


#: covariates of the virtual vancomycin table of :func:`virtual_table`
VIRTUAL_COVARIATES = "AGE,SEX:cat,WT,HT,SCR"


@pytest.fixture(scope="session")
def virtual_table(tmp_path_factory):
    """A NONMEM table of 60 virtual vancomycin patients (2-4 samples each) and its true concentrations."""
    from vae_simulator.byod import examples

    path = tmp_path_factory.mktemp("byod") / "virtual.csv"
    rows, truth = examples.virtual_rows("vancomycin", 60, seed=3)
    examples._write(rows, list(rows[0]), path)
    examples._write(truth, ["ID", "TIME", "CTRUE"], path.with_suffix(".truth.csv"))
    return path


@pytest.fixture(scope="session")
def trained(virtual_table, tmp_path_factory):
    """A small PK-VAE learnt from :func:`virtual_table` (6 epochs: a fast model, not a good one)."""
    from vae_simulator.byod.train import train_on_table

    out = tmp_path_factory.mktemp("run")
    return train_on_table(virtual_table, VIRTUAL_COVARIATES, name="vtest", out_dir=out, lloq_mg_l=2.0, epochs=6, prior="none",
                          progress=False)


#: cycles of the toy q3w courses (the combination's six)
TOY_Q3W_CYCLES = 6


class ToyQ3W(OneCompartmentInfusion):
    """The conftest toy drug on a 3-weekly schedule (the combination cycle)."""

    name = "test-q3w"
    interval_h = 504.0
    infusion_h = 3.0
    interval_grid_h = np.array([0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 24.0, 48.0, 96.0, 168.0, 336.0, 504.0])
    monitoring_times_h = (3.0, 24.0)


@pytest.fixture(scope="session")
def toy_sims():
    """Two untrained PK-VAEs (``PKSimulator``) of the toy q3w drug, standing in for paclitaxel and carboplatin."""
    import torch

    from vae_simulator import groundtruth
    from vae_simulator.population import simulate_dataset
    from vae_simulator.simulator import PKSimulator
    from vae_simulator.vae.train import TrainSettings, build_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(groundtruth._REGISTRY, ToyQ3W.name, (__name__, "ToyQ3W"))
        data = simulate_dataset(ToyQ3W.name, 64, TOY_Q3W_CYCLES, seed=3, progress=False)
        sims = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            sims.append(PKSimulator(build_model(data, TrainSettings(latent_dim=3, hidden=16))))
    return sims[0], sims[1]

"""The one-compartment prior for small tables: its virtual patients, pretraining and fine-tuning."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import VIRTUAL_COVARIATES as COVARIATES

from vae_simulator.byod.prior import (
    PRIOR_COPIES,
    fit_prior_population,
    prior_copies,
    prior_records,
    record_weights_kg,
)
from vae_simulator.byod.reference import predict_1cmt
from vae_simulator.byod.table import CovariateEncoder, parse_covariate_specs, read_clinic_table
from vae_simulator.byod.train import main as train_main
from vae_simulator.byod.train import table_regimen_data, train_on_table

LLOQ = 2.0


@pytest.fixture(scope="module")
def table_data(virtual_table):
    table = read_clinic_table(virtual_table, parse_covariate_specs(COVARIATES), lloq_mg_l=LLOQ)
    encoder = CovariateEncoder.fit(table)
    cov = encoder.transform(table)
    data = table_regimen_data(table, cov, encoder.names, "vtest")
    weights = record_weights_kg(table, encoder.names, cov)
    index = np.arange(len(table))
    return data, index, weights, fit_prior_population(data, index, "iv", weights, LLOQ)


def test_copies_aim_at_the_virtual_cohort_size():
    assert prior_copies(47) == PRIOR_COPIES
    assert prior_copies(785) == 3
    assert prior_copies(100_000) == 1


def test_virtual_patients_are_the_fitted_population_on_the_records_own_doses(table_data):
    data, index, weights, pop = table_data
    sub = index[:10]
    typical = replace(pop, omega_sd=np.full_like(pop.omega_sd, 1e-9), sigma_prop=1e-9, sigma_add_mg_l=1e-9)
    virtual = prior_records(typical, data, sub, weights[sub], LLOQ, copies=3, seed=0)
    assert len(virtual) == 30
    rep = np.repeat(sub, 3)
    np.testing.assert_array_equal(virtual.dose_mg, data.dose_mg[rep])
    np.testing.assert_array_equal(virtual.covariates, data.covariates[rep])
    # own samples plus the extra ones, all inside the record's span from first dose to last sample
    assert (virtual.obs_mask.sum(1) == data.obs_mask[rep].sum(1) + 4).all()
    first = np.where(data.dose_mask[rep], data.dose_time_h[rep], np.inf).min(1)
    last = np.where(data.obs_mask[rep], data.obs_time_h[rep], -np.inf).max(1)
    t = np.where(virtual.obs_mask, virtual.obs_time_h, np.nan)
    assert (np.nanmin(t, 1) >= first - 1e-9).all() and (np.nanmax(t, 1) <= last + 1e-9).all()
    expected = predict_1cmt(pop, virtual.events, virtual.obs_time_h, np.zeros((30, pop.omega_sd.size)),
                            weight_kg=np.repeat(weights[sub], 3))
    quantified = virtual.obs_mask & ~virtual.blq
    np.testing.assert_allclose(virtual.conc_obs[quantified], expected[quantified], rtol=1e-6)
    assert (expected[virtual.blq] < LLOQ).all()


def test_virtual_samples_are_censored_not_negative_and_reproducible(table_data):
    data, index, weights, pop = table_data
    noisy = replace(pop, sigma_prop=0.8)
    a = prior_records(noisy, data, index, weights, LLOQ, copies=5, seed=4)
    b = prior_records(noisy, data, index, weights, LLOQ, copies=5, seed=4)
    c = prior_records(noisy, data, index, weights, LLOQ, copies=5, seed=5)
    np.testing.assert_array_equal(a.conc_obs, b.conc_obs)
    assert not np.array_equal(a.conc_obs, c.conc_obs)
    quantified = a.obs_mask & ~a.blq
    assert a.blq.any() and (a.conc_obs[quantified] >= LLOQ).all() and np.isfinite(a.conc_obs).all()
    unsampled = replace(data, obs_mask=data.obs_mask.copy())
    unsampled.obs_mask[0] = False  # a record without samples (a quinidine occasion) is not copied
    skipped = prior_records(pop, unsampled, index, weights, LLOQ, copies=2)
    assert len(skipped) == 2 * (len(index) - 1)
    np.testing.assert_array_equal(skipped.dose_mg[:2], data.dose_mg[[1, 1]])
    unsampled.obs_mask[:] = False
    with pytest.raises(ValueError, match="no training record has a sample after its first dose"):
        prior_records(pop, unsampled, index, weights, LLOQ)
    with pytest.raises(ValueError, match="copies must be >= 1, got 0"):
        prior_records(pop, data, index, weights, LLOQ, copies=0)


def test_pretrain_then_finetune_records_the_prior_and_resumes(virtual_table, tmp_path):
    kw = {"name": "vprior", "out_dir": tmp_path, "lloq_mg_l": LLOQ, "epochs": 2, "prior": "1cmt",
          "prior_epochs": 2, "progress": False}
    run = train_on_table(virtual_table, COVARIATES, **kw)
    assert (tmp_path / "prior" / "checkpoint.pt").is_file() and (tmp_path / "checkpoint.pt").is_file()
    options = json.loads(run.manifest_path.read_text())["data"]["options"]
    assert options["prior"] == "1cmt" and options["route"] == "iv"
    again = train_on_table(virtual_table, COVARIATES, resume=True, **kw)
    for key, value in run.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[key], value, rtol=0, atol=0)
    plain = train_on_table(virtual_table, COVARIATES, name="vprior", out_dir=tmp_path / "plain", lloq_mg_l=LLOQ,
                           epochs=2, prior="none", progress=False)
    assert any(not torch.equal(plain.model.state_dict()[k], v) for k, v in run.model.state_dict().items())
    with pytest.raises(ValueError, match=r"prior must be one of \('none', '1cmt'\), got 'ode'"):
        train_on_table(virtual_table, COVARIATES, name="x", out_dir=tmp_path / "x", lloq_mg_l=LLOQ, prior="ode")


def test_cli_refuses_an_unknown_prior(virtual_table, capsys):
    with pytest.raises(SystemExit):
        train_main(["--data", str(virtual_table), "--prior", "2cmt"])
    assert "invalid choice: '2cmt'" in capsys.readouterr().err

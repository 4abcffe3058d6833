"""Baselines and learning on the regimen ids: standard regimen, MIPD with a sampling budget, oracle, PPO."""

import numpy as np
import pytest

from agents.baselines import StandardDosingPolicy
from agents.config import hyperparameters
from agents.evaluate import evaluate_policy
from agents.regimen_policies import MIPDRegimenPolicy, OracleRegimenPolicy
from agents.report import baseline_policies
from agents.training import RunConfig, train

VANCO = "PKDose/Vancomycin-Regimen-v0"


@pytest.fixture(scope="module")
def results():
    kw = {"n_patients": 40, "seed": 500, "num_envs": 40}
    return {name: evaluate_policy(VANCO, policy, policy_name=name, **kw)
            for name, policy in [("standard", StandardDosingPolicy(VANCO)), ("mipd", MIPDRegimenPolicy(VANCO)),
                                 ("oracle", OracleRegimenPolicy(VANCO))]}


def test_the_standard_regimen_is_the_label_dose_at_the_label_interval_without_levels(results):
    standard = results["standard"].per_patient
    assert np.all(standard["levels_drawn"] == 0)
    # a full q12h course of 20 doses unless AKI ended it
    assert np.all((standard["steps"] == 20) | (standard["serious_event"] == 1))


def test_mipd_draws_its_budget_and_beats_standard_dosing(results):
    mipd, standard = results["mipd"].per_patient, results["standard"].per_patient
    finished = mipd["steps"] >= 4
    assert np.all(mipd["levels_drawn"][finished] == 2)
    assert mipd["in_window_fraction"].mean() > standard["in_window_fraction"].mean() + 0.1
    assert mipd["return"].mean() > standard["return"].mean()


def test_the_oracle_keeps_nearly_every_hour_in_the_window(results):
    oracle = results["oracle"].per_patient
    assert oracle["in_window_fraction"].mean() > 0.9
    assert oracle["return"].mean() > results["mipd"].per_patient["return"].mean()


def test_regimen_baselines_refuse_other_ids_and_bad_budgets():
    with pytest.raises(ValueError, match="doses regimen ids"):
        MIPDRegimenPolicy("PKDose/Vancomycin-v0")
    with pytest.raises(ValueError, match="level_doses"):
        MIPDRegimenPolicy(VANCO, level_doses=(0,))


def test_the_report_lists_regimen_baselines_and_fixed_actions_fit_multidiscrete_spaces():
    policies = baseline_policies("PKDose/Phenytoin-Regimen-Discrete-v0")
    assert {"standard dosing", "MIPD, 2 levels (CT PK-VAE encoder)", "oracle (true latent)"} <= set(policies)
    result = evaluate_policy("PKDose/Phenytoin-Regimen-Discrete-v0", policies["maximum dose"], n_patients=3,
                             num_envs=3)
    assert result.per_patient["serious_event"].mean() == 1.0  # 800 mg q24h: phenytoin toxicity


def test_ppo_trains_on_a_regimen_id(tmp_path):
    assert hyperparameters("ppo", VANCO)["gamma"] == 0.97
    config = RunConfig(algo="ppo", env_id=VANCO, total_timesteps=1024, n_envs=4, eval_freq=0, checkpoint_freq=0,
                       hyperparameters={"n_steps": 64, "batch_size": 64, "n_epochs": 1})
    model = train(config, tmp_path / "run", progress_bar=False)
    assert model.num_timesteps >= 1024 and (tmp_path / "run" / "final_model.zip").is_file()

"""The combination study's oracle and the policy distillation, on small ground-truth cohorts."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import pk_envs  # noqa: F401
from agents import combination_study, distill
from agents.evaluate import evaluate_policy

GT = {"simulators": "groundtruth"}


def test_oracle_tries_every_constant_regimen_on_the_same_patient_and_picks_the_best():
    seeds = [combination_study.STUDY_SEED + i for i in range(6)]
    out = combination_study.oracle_outcomes(seeds, GT, batch_patients=4, progress=False)
    assert out["objective_response"].shape == (6, 25) and out["levels"].shape == (25, 2)
    # regimen (0, 0) is no drug: never a response, never a serious adverse event
    hold = int(np.flatnonzero((out["levels"] == 0).all(axis=1))[0])
    assert np.all(out["objective_response"][:, hold] == 0) and np.all(out["serious_adverse_event"][:, hold] == 0)
    # the same constant regimen through evaluate_policy on the same seeds gives the same outcomes
    full = int(np.flatnonzero((out["levels"] == 1.0).all(axis=1))[0])
    env = gym.make(combination_study.ENV_ID, **GT).unwrapped
    action = env.doses_to_action(175.0, 6.0)
    result = evaluate_policy(combination_study.ENV_ID, lambda o, i: np.tile(action, (len(o), 1)), n_patients=6,
                             seed=seeds[0], env_kwargs=GT, num_envs=3)
    np.testing.assert_array_equal(result.per_patient["objective_response"], out["objective_response"][:, full])
    np.testing.assert_array_equal(result.per_patient["serious_adverse_event"], out["serious_adverse_event"][:, full])
    tumour = np.zeros(6)
    greedy = combination_study.oracle_result(out, 0.0, tumour)
    cautious = combination_study.oracle_result(out, 10.0, tumour)
    assert greedy.per_patient["objective_response"].sum() == out["objective_response"].max(axis=1).sum()
    assert cautious.per_patient["serious_adverse_event"].sum() == 0  # holding is always available
    rows = combination_study.goal_rows([greedy, cautious], result, result)
    assert len(rows) == 4 and rows[2].startswith("| oracle (constant regimen, lambda=0)")


def test_doses_after_the_first_response_are_counted_from_the_cycle_after_it():
    """A policy that halves both doses once a response is recorded: the evaluation's after-response
    figures hold exactly the halved cycles, checked against a hand-stepped single env per patient."""
    env = gym.make(combination_study.ENV_ID, **GT)
    full, half = env.unwrapped.doses_to_action(175.0, 6.0), env.unwrapped.doses_to_action(87.5, 3.0)

    def halve_after_response(observations, infos):
        responded = np.isin(infos.get("best_response", np.full(len(observations), 4)), (0, 1))
        return np.where(responded[:, None], half, full).astype(np.float32)

    seed, n = combination_study.STUDY_SEED, 12
    result = evaluate_policy(combination_study.ENV_ID, halve_after_response, n_patients=n, seed=seed,
                             env_kwargs=GT, num_envs=4)
    p = result.per_patient
    for i in range(n):
        env.reset(seed=seed + i)
        responded, after, paclitaxel_after = False, 0, 0.0
        while True:
            _, _, terminated, truncated, info = env.step(half if responded else full)
            after += responded
            paclitaxel_after += info["paclitaxel_mg_m2"] if responded else 0.0
            responded = responded or int(info["best_response"]) in (0, 1)
            if terminated or truncated:
                break
        assert p["cycles_after_response"][i] == after
        assert p["paclitaxel_after_response_mg_m2"][i] == pytest.approx(paclitaxel_after)
    assert p["objective_response"].sum() > 0 and p["cycles_after_response"].sum() > 0
    assert np.all(p["cycles_after_response"][p["objective_response"] == 0] == 0)
    rows = combination_study.dose_rows([result])
    cells = [c.strip() for c in rows[2].split("|")[1:-1]]
    assert float(cells[4]) == pytest.approx(87.5, rel=0.02) and float(cells[5]) == pytest.approx(3.0, rel=0.02)


def test_study_command_refuses_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        combination_study.main(["--patients", "3", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        combination_study.main(["--seed", "-5", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        combination_study.main(["--policy", f"x={tmp_path / 'missing.zip'}", "--out", str(tmp_path)])
    assert combination_study.parse_policy("PPO w=1=runs/a/best_model.zip") == ("PPO w=1", "runs/a/best_model.zip")


def test_distilled_tree_recovers_a_rule_on_one_feature():
    env = gym.make(distill.ENV_ID, **GT).unwrapped
    names = env.observation_names
    anc = names.index("anc_baseline")
    high, low = env.doses_to_action(175.0, 6.0), env.doses_to_action(140.0, 4.8)

    def rule(observations, infos):
        return np.where(observations[:, anc:anc + 1] > 4.0, high, low).astype(np.float32)

    decisions = distill.record_decisions(rule, 60, env_kwargs=GT, batch=30)
    assert decisions["names"] == names and decisions["obs"].shape[1] == len(names)
    assert set(np.unique(decisions["cycle"])) <= set(range(1, 7)) and decisions["cycle"].min() == 1
    result = distill.distill(decisions, max_depth=2)
    assert result["fidelity"] == [1.0, 1.0]
    assert result["trees"][0].tree_.feature[0] == anc  # the root split is the rule's feature
    path = distill.decision_path(result["trees"][0], decisions["obs"][0], names)
    assert path.startswith("anc_baseline")
    lines = distill.report(decisions, result, n_patients_shown=2)
    assert "Fidelity on held-out patients" in lines[0] and any(line.startswith("| 3000") for line in lines)

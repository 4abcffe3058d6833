"""The informed-regimen policy of the combination study: its training simulation, its decisions, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import pk_envs  # noqa: F401
from agents import combination_study, informed_regimen
from agents.evaluate import evaluate_policy
from agents.informed_regimen import (
    START_LEVELS,
    InformedRegimenPolicy,
    OutcomeModels,
    fit_informed_regimens,
    regimen_levels,
    simulate_stage,
)

GT = {"simulators": "groundtruth"}
ENV_ID = combination_study.ENV_ID


def test_stage_outcomes_are_those_of_the_start_then_each_regimen_on_the_same_patients():
    out = simulate_stage(50, None, seed=informed_regimen.FIT_SEED, env_kwargs=GT, batch_patients=25, progress=False)
    levels = regimen_levels()
    assert out.response.shape == (len(out.observations), 25) and len(out.observations) <= 50
    assert np.all(out.observations[:, gym.make(ENV_ID, **GT).unwrapped.observation_names.index("cycle_fraction")] > 0)
    env = gym.make(ENV_ID, **GT).unwrapped
    start = env.doses_to_action(*(np.array(START_LEVELS) * [175.0, 6.0]))
    j = int(np.flatnonzero((levels == [1.0, 1.0]).all(axis=1))[0])
    then = env.doses_to_action(175.0, 6.0)

    def start_then_standard(observations, infos):
        first = observations[:, env.observation_names.index("cycle_fraction")] <= 0
        return np.where(first[:, None], start, then).astype(np.float32)

    result = evaluate_policy(ENV_ID, start_then_standard, n_patients=50, seed=informed_regimen.FIT_SEED,
                             env_kwargs=GT, num_envs=10)
    # patients whose course ended in cycle 1 are left out of the training outcomes
    open_after_cycle1 = result.per_patient["steps"] > 1
    assert open_after_cycle1.sum() == len(out.observations)
    np.testing.assert_array_equal(out.response[:, j], result.per_patient["objective_response"][open_after_cycle1])
    np.testing.assert_array_equal(out.serious[:, j], result.per_patient["serious_adverse_event"][open_after_cycle1])
    hold = int(np.flatnonzero((levels == 0).all(axis=1))[0])  # no drug after cycle 1: fewer events than full doses
    assert out.serious[:, hold].sum() <= out.serious[:, j].sum()


def test_policy_starts_fixed_then_holds_the_regimen_its_models_rank_best():
    """Decisions before cycles 2, 3 and 5 (informed_regimen.DECISION_CYCLES), the regimen held in between."""
    policy = fit_informed_regimens([0.3], n_stages=3, n_patients=60, env_kwargs=GT, progress=False)[0.3]
    assert len(policy.stages) == 3 and isinstance(policy.stages[0], OutcomeModels)
    assert informed_regimen.DECISION_CYCLES == (2, 3, 5)
    env = gym.make(ENV_ID, **GT).unwrapped
    regimens = np.stack([env.doses_to_action(*(row * [175.0, 6.0])) for row in regimen_levels()])
    start = env.doses_to_action(*(np.array(START_LEVELS) * [175.0, 6.0]))
    n = 8
    envs = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", **GT)
    obs, infos = envs.reset(seed=7)
    policy.reset(n)
    action = policy(obs, infos)
    np.testing.assert_array_equal(action, np.tile(start, (n, 1)))
    running, held = np.ones(n, bool), None
    stage_before = {2: 0, 3: 1, 5: 2}
    for cycle in range(2, 7):  # the action for this cycle, from the observation after the one before
        obs, _, terminated, truncated, infos = envs.step(action)
        running &= ~(terminated | truncated)
        action = policy(obs, infos)
        if cycle in stage_before:
            p_response, p_serious = policy.stages[stage_before[cycle]].predict(obs)
            expected = regimens[np.argmax(p_response - 0.3 * p_serious, axis=1)]
            np.testing.assert_array_equal(action[running], expected[running])
            held = action.copy()
        else:
            np.testing.assert_array_equal(action[running], held[running])
    assert running.sum() >= 2


def test_a_missing_scikit_learn_is_named_with_its_extra(monkeypatch):
    out = informed_regimen.StageOutcomes(np.zeros((4, 3)), np.zeros((4, 2)), np.zeros((4, 2)), np.zeros((2, 2)))
    monkeypatch.setitem(__import__("sys").modules, "sklearn.linear_model", None)
    with pytest.raises(ImportError, match=r"needs scikit-learn: pip install -e '\.\[study\]'"):
        OutcomeModels(out)


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="lam must be finite and >= 0"):
        InformedRegimenPolicy([], -0.1, ENV_ID, GT)
    with pytest.raises(ValueError, match="n_patients must be >= 50"):
        simulate_stage(10, env_kwargs=GT, progress=False)
    with pytest.raises(ValueError, match="at most 3 stages"):
        InformedRegimenPolicy([None] * 4, 0.2, ENV_ID, GT)
    with pytest.raises(ValueError, match="n_stages must be in 1..3"):
        fit_informed_regimens([0.2], n_stages=0, env_kwargs=GT)
    for bad in (["--informed-lambdas", "-1"], ["--informed-stages", "0"], ["--informed-stages", "4"],
                ["--informed-patients", "10"]):
        with pytest.raises(SystemExit):
            combination_study.main([*bad, "--out", str(tmp_path)])

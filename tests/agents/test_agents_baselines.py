"""Baseline policies and the cohort evaluation (agents.baselines, agents.evaluate).

Small seeded cohorts (20-40 patients) keep the file fast; the orderings tested hold with wide
margins on those cohorts (README reward check: vancomycin standard 5.9 +- 0.7 vs no drug -0.03).
"""

from __future__ import annotations

import numpy as np
import pytest

from agents import (
    EvaluationResult,
    FixedDosePolicy,
    RandomPolicy,
    SB3Policy,
    StandardDosingPolicy,
    bootstrap_ci,
    evaluate_policy,
    markdown_header,
)

VANCO = "PKDose/Vancomycin-v0"
COMBO = "PKDose/PaclitaxelCarboplatin-v0"


@pytest.fixture(scope="module")
def vanco_standard() -> EvaluationResult:
    return evaluate_policy(VANCO, StandardDosingPolicy(VANCO), n_patients=40, seed=0, num_envs=20)


def assert_same(a: EvaluationResult, b: EvaluationResult) -> None:
    assert a.per_patient.keys() == b.per_patient.keys()
    for key in a.per_patient:
        np.testing.assert_array_equal(a.per_patient[key], b.per_patient[key], err_msg=key)
    assert a.metrics == b.metrics


def test_same_seed_same_metrics_and_batching_does_not_matter(vanco_standard):
    """Patient i is seed + i whatever the batch size, so the cohort and every figure are fixed by the seed."""
    again = evaluate_policy(VANCO, StandardDosingPolicy(VANCO), n_patients=40, seed=0, num_envs=20)
    assert_same(vanco_standard, again)
    rebatched = evaluate_policy(VANCO, StandardDosingPolicy(VANCO), n_patients=40, seed=0, num_envs=15)
    assert_same(vanco_standard, rebatched)  # 15 does not divide 40: the padded last batch is discarded
    other = evaluate_policy(VANCO, StandardDosingPolicy(VANCO), n_patients=40, seed=1000, num_envs=20)
    assert not np.array_equal(other.per_patient["cumulative_dose_mg"], vanco_standard.per_patient["cumulative_dose_mg"])


def test_standard_dosing_beats_no_drug_on_vancomycin(vanco_standard):
    none = evaluate_policy(VANCO, FixedDosePolicy(-1.0), n_patients=40, seed=0, num_envs=20)
    std, nil = vanco_standard.metrics, none.metrics
    assert std["return"].low > nil["return"].high  # non-overlapping 95 % CIs
    assert std["in_window_fraction"].mean > 0.2 and nil["in_window_fraction"].mean == 0.0
    assert nil["cumulative_dose_mg"].mean == 0.0
    # label doses of adults are 500-3000 mg per 12 h, so at least 500 mg per interval given
    assert std["cumulative_dose_mg"].mean > 500.0 * std["steps"].mean
    for result in (vanco_standard, none):
        assert set(result.per_patient["serious_event"]) <= {0.0, 1.0}
        np.testing.assert_allclose(result.per_patient["return"], result.per_patient["return_efficacy"]
                                   + result.per_patient["return_neg_toxicity"], rtol=1e-9, atol=1e-9)
        assert np.all((result.per_patient["steps"] >= 1) & (result.per_patient["steps"] <= 20))


def test_bootstrap_ci_contains_mean_and_shrinks():
    rng = np.random.default_rng(0)
    small, large = bootstrap_ci({"x": rng.normal(size=50)}), bootstrap_ci({"x": rng.normal(size=800)})
    for est in (small["x"], large["x"]):
        assert est.low < est.mean < est.high
    # width ~ 2 * 1.96 / sqrt(n): 0.55 at 50 patients, 0.14 at 800
    assert (large["x"].high - large["x"].low) < 0.5 * (small["x"].high - small["x"].low)
    assert 0.4 < small["x"].high - small["x"].low < 0.7


def test_cis_of_an_evaluation_contain_their_means_and_shrink(vanco_standard):
    for est in vanco_standard.metrics.values():
        assert est.low <= est.mean <= est.high
    fewer = evaluate_policy(VANCO, StandardDosingPolicy(VANCO), n_patients=10, seed=0, num_envs=10)
    width = {k: r.metrics["return"].high - r.metrics["return"].low for k, r in (("10", fewer), ("40", vanco_standard))}
    assert width["40"] < width["10"]


def test_combination_conventional_vs_no_drug():
    conventional = evaluate_policy(COMBO, StandardDosingPolicy(COMBO), n_patients=30, seed=0, num_envs=15)
    none = evaluate_policy(COMBO, FixedDosePolicy([-1.0, -1.0]), n_patients=30, seed=0, num_envs=15)
    c, n = conventional.metrics, none.metrics
    assert n["grade4_neutropenia"].mean == 0.0 and n["cumulative_paclitaxel_mg_m2"].mean == 0.0
    assert c["grade4_neutropenia"].mean > 0.0  # calibrated grade 3-4 rates are substantial
    assert c["progression"].mean < n["progression"].mean
    assert c["return"].mean > n["return"].mean
    # conventional cycle 1 is 175 mg/m2 + AUC 6, later cycles at most that
    per_cycle = conventional.per_patient["cumulative_paclitaxel_mg_m2"] / conventional.per_patient["steps"]
    assert np.all((per_cycle > 104.0) & (per_cycle < 175.0 + 1e-3))
    assert set(conventional.per_patient["objective_response"]) <= {0.0, 1.0}


def test_discrete_standard_dose_is_the_nearest_level():
    policy = StandardDosingPolicy("PKDose/Vancomycin-Discrete-v0")
    actions = policy(np.zeros((3, 17)), {"standard_dose_mg": np.array([0.0, 1130.0, 9999.0])})
    assert actions.tolist() == [0, 5, 12]  # 250-mg levels 0..3000 mg
    continuous = StandardDosingPolicy(VANCO)(np.zeros((2, 17)), {"standard_dose_mg": np.array([0.0, 1500.0])})
    np.testing.assert_allclose(continuous, [[-1.0], [0.0]], atol=1e-6)  # dose = (a + 1) / 2 * 3000 mg


def test_random_policy_is_seeded_and_in_bounds():
    import gymnasium as gym
    box = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    a, b = RandomPolicy(box, seed=3)(np.zeros((50, 5)), {}), RandomPolicy(box, seed=3)(np.zeros((50, 5)), {})
    np.testing.assert_array_equal(a, b)
    assert a.shape == (50, 2) and a.dtype == np.float32 and np.all(np.abs(a) <= 1.0)
    levels = RandomPolicy(gym.spaces.Discrete(13), seed=0)(np.zeros((200, 5)), {})
    assert levels.shape == (200,) and levels.min() >= 0 and levels.max() <= 12
    dose_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    r1 = evaluate_policy(VANCO, RandomPolicy(dose_space, seed=1), n_patients=8, num_envs=8)
    r2 = evaluate_policy(VANCO, RandomPolicy(dose_space, seed=1), n_patients=8, num_envs=8)
    assert_same(r1, r2)


def test_sb3_adapter_and_user_callables_run():
    import gymnasium as gym
    from stable_baselines3 import PPO
    model = PPO("MlpPolicy", gym.make(VANCO), n_steps=64, batch_size=64, seed=0, device="cpu")  # untrained
    result = evaluate_policy(VANCO, SB3Policy(model), n_patients=8, num_envs=8)
    assert np.all(np.isfinite(result.per_patient["return"]))
    user = evaluate_policy(VANCO, lambda obs, infos: np.zeros((len(obs), 1), np.float32), n_patients=8, num_envs=8,
                           policy_name="half dose")
    header, row = markdown_header(["return", "in_window_fraction"]), user.to_markdown_rows(["return", "in_window_fraction"])
    assert header[0].count("|") == row[0].count("|") == 5 and row[0].startswith("| half dose | PKDose/Vancomycin-v0 |")


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"'PKDose/Nope-v0'.*PKDose/Vancomycin-v0"):
        evaluate_policy("PKDose/Nope-v0", FixedDosePolicy(0.0))
    with pytest.raises(ValueError, match="n_patients"):
        evaluate_policy(VANCO, FixedDosePolicy(0.0), n_patients=0)
    with pytest.raises(ValueError, match=r"shape \(4, 2\).*\(4, 1\)"):
        evaluate_policy(VANCO, FixedDosePolicy([0.0, 0.0]), n_patients=4, num_envs=4)
    with pytest.raises(ValueError, match="callable"):
        evaluate_policy(VANCO, "standard")
    with pytest.raises(ValueError, match="finite"):
        FixedDosePolicy(float("nan"))
    with pytest.raises(ValueError, match="predict"):
        SB3Policy(object())
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_policy(VANCO, FixedDosePolicy(0.0), n_patients=2, num_envs=2).to_markdown_rows(["nope"])

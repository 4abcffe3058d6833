"""PaclitaxelCarboplatin-v1, the multimodal patient: API, determinism, exact batching, the added PD
(platelets, neuropathy, febrile neutropenia, tumour types, delays), the clinical rules, bad input.

Mechanics run on the toy q3w PK-VAEs of ``test_combination_env`` and on the ground-truth PK; the
calibrated constants are checked against the published figures they were fitted to.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import TOY_Q3W_CYCLES as CYCLES
from gymnasium.utils.env_checker import check_env

import pk_envs
from pk_envs.combination_core import OBS
from pk_envs.combination_v1 import PaclitaxelCarboplatinV1Env
from pk_envs.combination_v1_core import (
    MAX_DELAY_WEEKS,
    OBS_NAMES_V1,
    OBS_V1,
    REWARD_HIGH_V1,
    REWARD_LOW_V1,
    adaptive_doses,
    conventional_doses_v1,
)
from pk_envs.combination_v1_vector import PaclitaxelCarboplatinV1VectorEnv
from pk_envs.rewards import ENDPOINT_REWARD_HIGH, ENDPOINT_REWARD_LOW, RESPONSE_BONUS, multimodal_objectives
from vae_simulator.covariates import draw_covariate_row
from vae_simulator.groundtruth.pd import adverse_events, calibration_v1, tumour_types
from vae_simulator.groundtruth.pd.grading import thrombocytopenia_grade
from vae_simulator.groundtruth.pd.patient_features import FEATURE_NAMES, check_features, draw_features

V1, MO_V1, DISCRETE_V1 = "PKDose/PaclitaxelCarboplatin-v1", "PKDose/PaclitaxelCarboplatin-MO-v1", \
    "PKDose/PaclitaxelCarboplatin-Discrete-v1"
INFO_KEYS = ("anc_nadir_observed", "platelet_nadir_observed", "neuropathy_grade", "febrile_neutropenia",
             "delay_weeks", "serious_adverse_event", "tumour_size_mm")


def rollout(env, seed, actions, options=None):
    obs, info = env.reset(seed=seed, options=options)
    out = {"obs": [obs], "reward": [], **{k: [] for k in INFO_KEYS}}
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out["obs"].append(obs), out["reward"].append(reward)
        for k in INFO_KEYS:
            out[k].append(info[k])
        if terminated or truncated:
            break
    return {k: np.array(v) for k, v in out.items()}


def test_ids_spaces_and_checker(toy_sims):
    for env_id in (V1, MO_V1, DISCRETE_V1):
        assert env_id in pk_envs.COMBINATION_IDS
    env = gym.make(V1, simulators=toy_sims)
    assert env.observation_space.shape == (len(OBS_NAMES_V1),) == (32,)
    assert OBS_NAMES_V1[:17] == tuple(OBS) and env.spec.max_episode_steps == CYCLES
    check_env(env.unwrapped, skip_render_check=True)
    mo = gym.make(MO_V1, simulators=toy_sims)
    np.testing.assert_allclose(mo.unwrapped.reward_space.low, REWARD_LOW_V1.astype(np.float32))
    np.testing.assert_allclose(mo.unwrapped.reward_space.high, REWARD_HIGH_V1.astype(np.float32))
    assert gym.make(DISCRETE_V1, simulators=toy_sims).action_space == gym.spaces.Discrete(25)


def test_seeded_episodes_are_reproducible_and_pinning_keeps_the_other_draws(toy_sims):
    env = gym.make(V1, simulators=toy_sims)
    actions = np.random.default_rng(0).uniform(-1, 1, (CYCLES, 2)).astype(np.float32)
    first, again = rollout(env, 5, actions), rollout(env, 5, actions)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    _, info = env.reset(seed=5)
    code = int(info["tumour_type"])
    options = {"covariates": info["covariates"], "z_paclitaxel": info["z_paclitaxel"],
               "z_carboplatin": info["z_carboplatin"], "tumour_type": tumour_types.TUMOUR_TYPES[code],
               "features": info["features"]}
    pinned = rollout(env, 5, actions, options)
    for key in first:
        np.testing.assert_array_equal(pinned[key], first[key])
    changed = dict(options, features=np.array([1.0, 1.0, 0.0, 2.0, 0.0, 0.0]))
    obs, info = env.reset(seed=5, options=changed)
    assert obs[OBS_V1["genotyped"]] == 1 and obs[OBS_V1["cyp2c8_star3_carrier"]] == 1 and obs[OBS_V1["ecog"]] == 2
    np.testing.assert_array_equal(obs[:OBS_V1["tumour_nsclc"]], first["obs"][0][:OBS_V1["tumour_nsclc"]])


def test_vector_env_equals_sync_vector_env_bit_for_bit(toy_sims):
    n, seed = 4, 21
    envs = gym.make_vec(V1, num_envs=n, simulators=toy_sims)
    assert isinstance(envs, PaclitaxelCarboplatinV1VectorEnv)
    singles = gym.vector.SyncVectorEnv([lambda: PaclitaxelCarboplatinV1Env(toy_sims) for _ in range(n)])
    np.testing.assert_array_equal(envs.reset(seed=seed)[0], singles.reset(seed=seed)[0])
    rng = np.random.default_rng(3)
    ended = 0
    for _ in range(2 * CYCLES + 2):
        actions = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        out_v, out_s = envs.step(actions), singles.step(actions)
        for a, b in zip(out_v[:4], out_s[:4]):
            np.testing.assert_array_equal(a, np.asarray(b, dtype=a.dtype))
        for key in INFO_KEYS:
            if key in out_v[4]:
                np.testing.assert_array_equal(out_v[4][key], out_s[4][key])
        ended += int(np.sum(out_v[2] | out_v[3]))
    assert ended >= n
    obs = envs.reset(seed=seed)[0]
    np.testing.assert_array_equal(envs.unwrapped.adaptive_action(obs),
                                  np.stack([PaclitaxelCarboplatinV1Env(toy_sims).adaptive_action(o) for o in obs]))


def test_tumour_types_and_sex_are_drawn_and_checked(toy_sims):
    env = gym.make(V1, simulators=toy_sims)
    codes, sexes = [], []
    for seed in range(1000):
        _, info = env.reset(seed=seed)
        codes.append(int(info["tumour_type"]))
        sexes.append(info["covariates"][1])
    codes, sexes = np.array(codes), np.array(sexes)
    np.testing.assert_allclose(np.bincount(codes, minlength=3) / 1000, tumour_types.TUMOUR_TYPE_PROPORTIONS, atol=0.04)
    assert np.all(sexes[codes > 0] == 0) and 0.3 < sexes[codes == 0].mean() < 0.7
    only = gym.make(V1, simulators=toy_sims, tumour_types_drawn="ovarian")
    assert {int(only.reset(seed=s)[1]["tumour_type"]) for s in range(20)} == {1}
    with pytest.raises(ValueError, match=r"unknown tumour type 'breast'; modelled types: \['nsclc', 'ovarian'"):
        env.reset(seed=0, options={"tumour_type": "breast"})
    with pytest.raises(ValueError, match="unknown tumour type 'lung'"):
        gym.make(V1, simulators=toy_sims, tumour_types_drawn=("lung",))
    male = draw_covariate_row(np.random.default_rng(0), sex=1.0)
    with pytest.raises(ValueError, match="a ovarian patient must be female"):
        env.reset(seed=0, options={"tumour_type": "ovarian", "covariates": male})
    with pytest.raises(ValueError, match="feature ecog must be 0, 1 or 2"):
        env.reset(seed=0, options={"features": [1, 0, 0, 3, 0, 0]})
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(seed=0, options={"genome": 1})
    with pytest.raises(ValueError, match="compiled PD only"):
        gym.make(V1, simulators=toy_sims, pd_backend="numpy")


def test_delays_follow_the_retreatment_rule_and_can_be_turned_off():
    env = gym.make(V1, simulators="groundtruth", noise_scale=0.0)
    delays_seen = 0
    for seed in range(12):
        obs, _ = env.reset(seed=seed)
        for _ in range(CYCLES):
            anc21, plt21 = obs[OBS["anc_day21_last_cycle"]], 100.0 * obs[OBS_V1["platelets_day21_last_cycle"]]
            first = obs[OBS["cycle_fraction"]] == 0
            obs, _, terminated, truncated, info = env.step(np.ones(2, np.float32))  # maximal doses
            weeks = int(info["delay_weeks"])
            assert 0 <= weeks <= MAX_DELAY_WEEKS
            if first or (anc21 >= 1.5 and plt21 >= 100.0):  # recovered counts (exact, noise 0): no delay
                assert weeks == 0
            else:
                assert weeks >= 1
            delays_seen += weeks
            if terminated or truncated:
                break
    assert delays_seen > 0
    off = gym.make(V1, simulators="groundtruth", cycle_delays=False)
    off.reset(seed=0)
    assert all(int(off.step(np.ones(2, np.float32))[4]["delay_weeks"]) == 0 for _ in range(3))


def test_extreme_and_random_actions_never_give_nan_or_negative_values(toy_sims):
    env = gym.make(V1, simulators=toy_sims)
    rng = np.random.default_rng(0)
    for seed in range(4):
        env.reset(seed=seed)
        for _ in range(CYCLES):
            action = np.ones(2, np.float32) if seed % 2 else rng.uniform(-1, 1, 2).astype(np.float32)
            obs, reward, terminated, truncated, info = env.step(action)
            assert np.all(np.isfinite(obs)) and np.isfinite(reward) and env.observation_space.contains(obs)
            assert info["platelet_nadir"] >= 0 and info["anc_nadir"] >= 0
            if terminated or truncated:
                break


def test_objectives_add_every_serious_adverse_event():
    base = multimodal_objectives([0.1], [0], [0.0], [False], [0], [False], [0], [0], [False])
    assert base[0, 1] == 0.0
    responded = multimodal_objectives([0.1], [0], [0.0], [False], [0], [False], [0], [0], [True])
    assert responded[0, 0] - base[0, 0] == pytest.approx(RESPONSE_BONUS) and responded[0, 1] == 0.0
    for extra in ({"platelet_grade": [4]}, {"febrile": [True]}, {"neuropathy_after": [3]}):
        args = {"platelet_grade": [0], "febrile": [False], "neuropathy_before": [0], "neuropathy_after": [0], **extra}
        worse = multimodal_objectives([0.1], [0], [0.0], [False], args["platelet_grade"], args["febrile"],
                                      args["neuropathy_before"], args["neuropathy_after"], [False])
        assert worse[0, 0] == base[0, 0] and worse[0, 1] == pytest.approx(-1.0)
    # neuropathy is charged when it worsens, once
    assert multimodal_objectives([0.0], [0], [0.0], [False], [0], [False], [3], [3], [False])[0, 1] == 0.0


def test_endpoint_rewards_sum_to_the_study_endpoints_and_leave_the_dynamics_alone():
    """``reward_objectives="endpoints"``: each episode's return is exactly [responded, -had an SAE], the
    quantities the study counts, and everything but the reward equals the shaped env's."""
    n = 24
    shaped = gym.make_vec(MO_V1, num_envs=n, simulators="groundtruth")
    endpoints = gym.make_vec(MO_V1, num_envs=n, simulators="groundtruth", reward_objectives="endpoints")
    np.testing.assert_array_equal(endpoints.unwrapped.reward_space.low, ENDPOINT_REWARD_LOW.astype(np.float32))
    np.testing.assert_array_equal(endpoints.unwrapped.reward_space.high, ENDPOINT_REWARD_HIGH.astype(np.float32))
    obs_s, obs_e = shaped.reset(seed=40)[0], endpoints.reset(seed=40)[0]
    np.testing.assert_array_equal(obs_s, obs_e)
    returns, done = np.zeros((n, 2)), np.zeros(n, bool)
    responded, serious = np.zeros(n), np.zeros(n)
    rng = np.random.default_rng(1)
    while not done.all():
        actions = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        out_s, out_e = shaped.step(actions), endpoints.step(actions)
        np.testing.assert_array_equal(out_s[0], out_e[0])
        assert not np.array_equal(out_s[1], out_e[1])
        rewards, terminated, truncated, info = out_e[1:]
        assert np.all((rewards[:, 0] >= 0) & (rewards[:, 0] <= 1) & (rewards[:, 1] >= -1) & (rewards[:, 1] <= 0))
        returns += np.where(done[:, None], 0.0, rewards)
        ending = ~done & (terminated | truncated)
        responded = np.where(ending, np.isin(info["best_response"], (0, 1)), responded)
        serious = np.where(ending, info["any_serious_adverse_event"], serious)
        done |= ending
    assert 0 < serious.sum() < n and responded.sum() > 0, (serious.sum(), responded.sum())
    np.testing.assert_array_equal(returns[:, 0], responded)
    np.testing.assert_array_equal(-returns[:, 1], serious)
    with pytest.raises(ValueError, match="reward_objectives must be one of"):
        gym.make(V1, simulators="groundtruth", reward_objectives="binary")


def test_clinical_rules_on_hand_made_observations():
    obs = np.zeros((4, len(OBS_NAMES_V1)), np.float32)
    obs[:, OBS["cycle_fraction"]] = 1 / 6
    obs[:, OBS["paclitaxel_last_rel"]], obs[:, OBS["carboplatin_last_rel"]] = 175 / 225, 6 / 7.5
    obs[:, OBS["anc_baseline"]], obs[:, OBS_V1["platelets_baseline"]] = 4.0, 2.5  # platelets in 1e11/L
    obs[:, OBS["anc_nadir_last_cycle"]], obs[:, OBS_V1["platelets_nadir_last_cycle"]] = 1.2, 1.5
    obs[1, OBS["anc_nadir_last_cycle"]] = 0.3                 # grade 4 neutropenia
    obs[2, OBS_V1["platelets_nadir_last_cycle"]] = 0.4        # 40e9/L: grade 3 thrombocytopenia
    obs[3, OBS_V1["neuropathy_grade"]] = 3                    # severe neuropathy
    pac, carbo = conventional_doses_v1(obs)
    np.testing.assert_allclose(pac, [175, 140, 175, 140])
    np.testing.assert_allclose(carbo, [6, 4.8, 4.8, 6])
    pac, carbo = adaptive_doses(obs)
    np.testing.assert_allclose(pac, [210, 140, 210, 140])  # escalates after a mild nadir
    np.testing.assert_allclose(carbo, [7.2, 4.8, 4.8, 7.2])
    obs[:, OBS["cycle_fraction"]] = 0
    obs[0, OBS["anc_baseline"]] = 1.8
    np.testing.assert_allclose(adaptive_doses(obs)[0], [140, 175, 175, 175])  # low baseline ANC: start 80 %
    np.testing.assert_allclose(conventional_doses_v1(obs)[0], 175)


def test_adverse_event_models_and_features():
    np.testing.assert_array_equal(thrombocytopenia_grade([200, 140, 70, 45, 20]), [0, 1, 2, 3, 4])
    s = adverse_events.neuropathy_sensitivity([0.0, 0.0], [0, 1])
    assert s[1] / s[0] == pytest.approx(adverse_events.CYP2C8_STAR3_NEUROPATHY_HR)
    damage = adverse_events.neuropathy_damage([0.0, 0.9], [0.01, 0.01], [20.0, 20.0])
    np.testing.assert_array_equal(adverse_events.neuropathy_grade(damage), [0, 3])
    p = adverse_events.febrile_probability([0.0, 3.0, 10.0])
    assert p[0] == 0 and 0 < p[1] < p[2] < 1
    with pytest.raises(ValueError, match="grade4_days must be finite and >= 0"):
        adverse_events.febrile_probability([-1.0])
    rows = np.stack([draw_features(np.random.default_rng(i)) for i in range(2000)])
    assert rows.shape == (2000, len(FEATURE_NAMES))
    assert 0.2 < rows[:, 1].mean() < 0.29 and 0.45 < rows[:, 0].mean() < 0.55  # CYP2C8*3 carriers, genotyped
    np.testing.assert_array_equal(check_features(rows[0]), rows[0])


def test_shipped_constants_reproduce_the_published_figures_they_were_calibrated_to():
    """A smaller cohort than the calibration's (2000), so within sampling error of the targets."""
    out = calibration_v1.calibrate(n=300, seed=7)
    assert out["platelet_mtt_h"] == pytest.approx(287.0, rel=0.15)
    assert out["thrombocytopenia_grade3_7_cycles"] == pytest.approx(0.12, abs=0.01)
    assert out["neuropathy_s_typical_per_h"] == pytest.approx(adverse_events.NEUROPATHY_S_TYPICAL_PER_H, rel=0.3)
    assert out["febrile_hazard_per_grade4_day"] == pytest.approx(adverse_events.FEBRILE_HAZARD_PER_GRADE4_DAY,
                                                                 rel=0.4)
    for name in ("ovarian", "endometrial"):
        assert out[f"{name}_kill_per_cycle"] == pytest.approx(tumour_types.KILL_PER_CYCLE[name], rel=0.3)
        assert out[f"{name}_orr"] == pytest.approx(tumour_types.TARGET_ORR[name], abs=0.02)

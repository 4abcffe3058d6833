"""Paclitaxel + carboplatin combination environment: API checks, determinism, exact vector batching,
reward design, bad input.

Mechanics are tested on two (untrained, deterministic) PK-VAEs of a toy one-compartment drug with a
3-weekly schedule, so they do not depend on the shipped weights; the PD conversion uses the real
drugs' molar masses. The reward design is tested on the mechanistic ground-truth PK (always) and on
the shipped PK-VAEs when their weights exist at test time, and on hand-made outcomes.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import mo_gymnasium as mo_gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import pk_envs  # noqa: F401  (registers the single-drug ids and the shared namespace)
from pk_envs.combination import PaclitaxelCarboplatinEnv
from pk_envs.combination_core import REWARD_HIGH, REWARD_LOW
from pk_envs.combination_registration import register_combination_envs
from pk_envs.combination_vector import PaclitaxelCarboplatinVectorEnv
from pk_envs.rewards import GRADE_COST, PROGRESSION_PENALTY, RESPONSE_PER_LN, combination_objectives
from pk_envs.single_drug_core import has_shipped_weights
from vae_simulator.covariates import Covariates
from vae_simulator.groundtruth_simulator import GroundTruthCycleSimulator
from vae_simulator.population import simulate_dataset
from vae_simulator.simulator import DecoderStepper, PKSimulator
from vae_simulator.vae.train import TrainSettings, build_model

IDS = register_combination_envs()
SCALAR_ID, MO_ID, DISCRETE_ID = IDS[:3]  # v0
CYCLES = 6
SHIPPED = all(has_shipped_weights(d) for d in ("paclitaxel", "carboplatin"))


def rollout(env, seed: int, actions, options=None) -> dict[str, np.ndarray]:
    obs, info = env.reset(seed=seed, options=options)
    out = {"obs": [obs], "reward": [], "anc_obs": [], "auc": [], "size": []}
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out["obs"].append(obs), out["reward"].append(reward), out["anc_obs"].append(info["anc_nadir_observed"])
        out["auc"].append(info["auc_paclitaxel_umol_h_l"]), out["size"].append(info["tumour_size_mm"])
        if terminated or truncated:
            break
    return {k: np.array(v) for k, v in out.items()}


# ----------------------------------------------------------------------------- API
def test_ids_spaces_and_info(toy_sims):
    assert IDS == ["PKDose/PaclitaxelCarboplatin-v0", "PKDose/PaclitaxelCarboplatin-MO-v0",
                   "PKDose/PaclitaxelCarboplatin-Discrete-v0", "PKDose/PaclitaxelCarboplatin-v1",
                   "PKDose/PaclitaxelCarboplatin-MO-v1", "PKDose/PaclitaxelCarboplatin-Discrete-v1"]
    assert all(gym.spec(i).max_episode_steps == CYCLES for i in IDS)
    env = gym.make(SCALAR_ID, simulators=toy_sims)
    assert env.action_space == gym.spaces.Box(-1, 1, (2,), np.float32)
    assert env.observation_space.shape == (17,) and env.observation_space.dtype == np.float32
    assert gym.make(DISCRETE_ID, simulators=toy_sims).action_space == gym.spaces.Discrete(25)
    mo = gym.make(MO_ID, simulators=toy_sims).unwrapped
    assert mo.reward_dim == 2 and mo.reward_space.shape == (2,)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info["cycle"] == 0 and info["recist"] == -1
    obs, reward, _terminated, truncated, info = env.step(env.unwrapped.conventional_action(obs))
    assert isinstance(reward, float) and not truncated
    for key in ("neutropenia_grade", "grade4", "grade4_events", "auc_paclitaxel_umol_h_l", "auc_carboplatin_umol_h_l",
                "anc_nadir", "tumour_size_mm", "recist", "z_paclitaxel", "z_carboplatin", "covariates"):
        assert key in info
    assert info["paclitaxel_mg_m2"] == pytest.approx(175.0) and info["carboplatin_auc"] == pytest.approx(6.0)
    cov = Covariates.from_array(info["covariates"][None, :])
    assert info["paclitaxel_mg"] == pytest.approx(175.0 * cov.BSA[0])
    assert info["carboplatin_mg"] == pytest.approx(6.0 * (min(cov.CRCL[0], 125.0) + 25.0))  # Calvert
    assert reward == pytest.approx(info["response"] - info["toxicity"])


@pytest.mark.parametrize("source", ["toy"] + (["shipped PK-VAEs"] if SHIPPED else []))
def test_gymnasium_and_sb3_checkers_pass(toy_sims, source):
    kwargs = {"simulators": toy_sims} if source == "toy" else {}
    for env_id in (SCALAR_ID, DISCRETE_ID):
        check_env(gym.make(env_id, **kwargs).unwrapped, skip_render_check=True)
        sb3_check_env(gym.make(env_id, **kwargs), warn=True)
    # the vector-reward id passes too; the checker's only complaint is the (MO-Gymnasium) array reward
    with pytest.warns(UserWarning, match="reward returned by `step\\(\\)` must be a float"):
        check_env(gym.make(MO_ID, **kwargs).unwrapped, skip_render_check=True)


def test_mo_gymnasium_wrappers_work_on_the_vector_reward_id(toy_sims):
    env = mo_gym.wrappers.MORecordEpisodeStatistics(gym.make(MO_ID, simulators=toy_sims), gamma=1.0)
    weighted = mo_gym.wrappers.LinearReward(gym.make(MO_ID, simulators=toy_sims), weight=np.array([0.7, 0.3]))
    env.reset(seed=3)
    weighted.reset(seed=3)
    total, done = np.zeros(2), False
    while not done:
        action = np.array([0.3, 0.4], np.float32)
        _obs, reward, terminated, truncated, info = env.step(action)
        _, scalar, _, _, winfo = weighted.step(action)
        assert reward.shape == (2,) and reward.dtype == np.float32 and env.unwrapped.reward_space.contains(reward)
        assert scalar == pytest.approx(0.7 * reward[0] + 0.3 * reward[1], rel=1e-6)
        np.testing.assert_array_equal(winfo["vector_reward"], reward)
        total += reward
        done = terminated or truncated
    np.testing.assert_allclose(info["episode"]["r"], total, rtol=1e-6)
    assert info["episode"]["l"] == info["cycle"]


def test_render_returns_an_rgb_course_plot(toy_sims):
    env = gym.make(SCALAR_ID, simulators=toy_sims, render_mode="rgb_array")
    env.reset(seed=1)
    first = env.render()
    for _ in range(3):
        env.step(np.array([0.5, 0.5], np.float32))
    image = env.render()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.shape == first.shape
    assert not np.array_equal(image, first) and image.std() > 10  # the course is drawn
    with pytest.warns(UserWarning, match="render_mode"):
        assert PaclitaxelCarboplatinEnv(toy_sims).render() is None
    envs = PaclitaxelCarboplatinVectorEnv(2, toy_sims, render_mode="rgb_array")
    envs.reset(seed=1)
    images = envs.render()
    assert len(images) == 2 and all(i.shape == first.shape for i in images)
    np.testing.assert_array_equal(images[0], first)  # the same patient (seed 1) before any cycle
    with pytest.raises(ValueError, match="render_mode must be None or one of"):
        PaclitaxelCarboplatinEnv(toy_sims, render_mode="human")


# ----------------------------------------------------------------------------- randomness
def test_seeded_episodes_are_reproducible_and_steps_draw_nothing(toy_sims):
    env = gym.make(SCALAR_ID, simulators=toy_sims)
    actions = np.random.default_rng(0).uniform(-1, 1, (CYCLES, 2)).astype(np.float32)
    first, again, other = rollout(env, 7, actions), rollout(env, 7, actions), rollout(env, 8, actions)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["obs"][0], other["obs"][0])
    env.reset(seed=7)
    state = env.unwrapped.np_random.bit_generator.state
    env.step(actions[0])
    assert env.unwrapped.np_random.bit_generator.state == state
    # pinning the patient leaves every other draw (PD parameters, ANC assay noise) unchanged
    _, info = env.reset(seed=7)
    pinned = rollout(env, 7, actions, options={k: info[k] for k in ("covariates", "z_paclitaxel", "z_carboplatin")})
    for key in first:
        np.testing.assert_array_equal(pinned[key], first[key])
    moved = rollout(env, 7, actions, options={"z_paclitaxel": np.full(3, 2.0)})
    assert not np.array_equal(moved["auc"], first["auc"])
    np.testing.assert_array_equal(moved["obs"][0], first["obs"][0])  # same covariates and baseline counts


def test_compiled_pd_gives_the_numpy_reference_course(toy_sims):
    actions = np.random.default_rng(1).uniform(-1, 1, (CYCLES, 2)).astype(np.float32)
    compiled = rollout(gym.make(SCALAR_ID, simulators=toy_sims), 3, actions)
    reference = rollout(gym.make(SCALAR_ID, simulators=toy_sims, pd_backend="numpy"), 3, actions)
    for key in compiled:
        np.testing.assert_allclose(compiled[key], reference[key], rtol=1e-9, atol=1e-12, err_msg=key)


@pytest.mark.filterwarnings("ignore:.*was clipped")
@pytest.mark.parametrize("kwargs", [{}, {"discrete": True, "vector_reward": True, "noise_scale": 2.0}])
def test_vector_env_reproduces_single_envs_exactly_with_one_decoder_call_per_drug(toy_sims, kwargs, monkeypatch):
    n, seed, steps = 4, 11, 2 * CYCLES + 3
    envs = gym.make_vec(SCALAR_ID, num_envs=n, simulators=toy_sims, assessment_every=1, **kwargs)
    assert isinstance(envs, PaclitaxelCarboplatinVectorEnv)
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP and envs.max_episode_steps == CYCLES
    sync = mo_gym.wrappers.vector.MOSyncVectorEnv if kwargs.get("vector_reward") else gym.vector.SyncVectorEnv
    singles = sync([lambda: PaclitaxelCarboplatinEnv(toy_sims, assessment_every=1, **kwargs) for _ in range(n)])
    obs_v, _ = envs.reset(seed=seed)
    obs_s, _ = singles.reset(seed=seed)
    np.testing.assert_array_equal(obs_v, obs_s)
    calls, decoder_steps = [], 0
    original, original_fast = PKSimulator.step, DecoderStepper.step
    monkeypatch.setattr(PKSimulator, "step", lambda self, *a: calls.append(self.drug) or original(self, *a))
    monkeypatch.setattr(DecoderStepper, "step", lambda self, *a: calls.append(self) or original_fast(self, *a))
    rng = np.random.default_rng(5)
    ended = 0
    for _ in range(steps):
        if kwargs.get("discrete"):
            actions = rng.integers(0, 25, n)
        else:
            actions = rng.uniform(-1.2, 1.2, (n, 2)).astype(np.float32)  # some are clipped
        calls.clear()
        out_v = envs.step(actions)
        assert len(calls) <= 2  # one decoder call per drug for all patients
        decoder_steps += len(calls)
        out_s = singles.step(actions)
        for a, b in zip(out_v[:4], out_s[:4]):
            np.testing.assert_array_equal(a, np.asarray(b, dtype=a.dtype))
        for key in ("anc_nadir_observed", "auc_carboplatin_umol_h_l", "tumour_size_mm", "clip_count", "z_carboplatin"):
            assert (key in out_v[4]) == (key in out_s[4])
            if key not in out_v[4]:  # every sub-environment was being reset
                continue
            np.testing.assert_array_equal(out_v[4][f"_{key}"], out_s[4][f"_{key}"])
            np.testing.assert_array_equal(out_v[4][key], out_s[4][key])
        ended += int(np.sum(out_v[2] | out_v[3]))
    assert ended >= n  # episodes ended and were reset inside the comparison
    assert decoder_steps >= steps  # the count above saw the decoder (2 per step but on reset-only steps)


# ----------------------------------------------------------------------------- reward design
def test_reward_formula_on_hand_made_outcomes():
    """Objectives of hand-made cycles: typical untreated growth (Claret KL 0.003/day: ln ratio -0.063
    per cycle, no neutropenia, progression found at the 2nd assessment), conventional dosing (net
    shrinkage ln 0.01, grade 3) and maximal dosing (ln 0.03, grade 4 lasting 5 days every cycle)."""
    r = combination_objectives([0.1, -0.1, 0.0], [0, 4, 3], [0.0, 7.0, 0.0], [False, True, False])
    np.testing.assert_allclose(r[:, 0], [RESPONSE_PER_LN * 0.1, -RESPONSE_PER_LN * 0.1 - PROGRESSION_PENALTY, 0.0])
    np.testing.assert_allclose(r[:, 1], [0.0, -2.0, -GRADE_COST[3]])  # grade 4 for 7 days doubles its cost
    assert np.all(np.diff([combination_objectives(0.0, g, 0.0, False)[1] for g in range(5)]) <= 0)
    extreme = combination_objectives([50.0, -50.0], [4, 4], [21.0, 21.0], [False, True])
    assert np.all(extreme >= REWARD_LOW) and np.all(extreme <= REWARD_HIGH)

    def episode(ln_ratio, grade, days, progression_at=None):
        cycles = CYCLES if progression_at is None else progression_at
        pd = np.arange(1, cycles + 1) == progression_at
        return combination_objectives(np.full(cycles, ln_ratio), np.full(cycles, grade), np.full(cycles, days),
                                      pd).sum(axis=0) @ np.ones(2)

    conventional, nothing, maximal = episode(0.01, 3, 0.0), episode(-0.063, 0, 0.0, 4), episode(0.03, 4, 5.0)
    assert conventional > nothing and conventional > maximal
    with pytest.raises(ValueError, match="CTCAE grades 0-4"):
        combination_objectives(0.0, 5, 0.0, False)
    with pytest.raises(ValueError, match="must be finite"):
        combination_objectives(np.nan, 1, 0.0, False)


def episode_returns(envs, policy, n_steps: int) -> np.ndarray:
    """Each sub-environment's return of its first episode (later, autoreset episodes are ignored)."""
    obs, _ = envs.reset(seed=0)
    total, alive = np.zeros(envs.num_envs), np.ones(envs.num_envs, dtype=bool)
    for _ in range(n_steps):
        obs, reward, terminated, truncated, _ = envs.step(policy(obs))
        total += np.where(alive, reward, 0.0)
        alive &= ~(terminated | truncated)
    assert not alive.any()
    return total


@pytest.mark.parametrize("simulators", ["groundtruth"] + (["shipped PK-VAEs"] if SHIPPED else []))
def test_conventional_dosing_beats_no_drug_and_maximal_doses(simulators):
    """50 seeded patients, 6 cycles, same patients for every regimen (paired): holding both drugs lets
    tumours progress, the maximal doses (225 mg/m2 + AUC 7.5) cause long grade 4 neutropenia; the
    conventional regimen (175 mg/m2 + AUC 6, -20 % after grade 4) must score better than both on
    average, by more than 2 paired standard errors (ground truth, 200 patients: by 2.5 +- 0.3 and
    2.9 +- 0.3)."""
    n = 50
    envs = gym.make_vec(SCALAR_ID, num_envs=n, simulators=None if simulators != "groundtruth" else simulators)
    conventional = episode_returns(envs, envs.conventional_action, CYCLES)
    for name, action in (("no drug", -1.0), ("maximal doses", 1.0)):
        other = episode_returns(envs, lambda obs, a=action: np.full((n, 2), a, np.float32), CYCLES)
        gain = conventional - other
        assert gain.mean() > 2.0 * gain.std() / np.sqrt(n), (name, conventional.mean(), other.mean())


# ----------------------------------------------------------------------------- bad input
def test_bad_actions_raise_or_are_clipped_and_counted(toy_sims):
    env = PaclitaxelCarboplatinEnv(toy_sims)
    env.reset(seed=0)
    for bad, match in (([np.nan, 0.0], "not finite"), ([0.0, np.inf], "not finite"),
                       ([0.0, 0.0, 0.0], r"shape \(2,\)"), (0.5, r"shape \(2,\)"), ("x", "numeric")):
        with pytest.raises(ValueError, match=match):
            env.step(bad)
    with pytest.warns(UserWarning, match="clipped"):
        _, _, _, _, info = env.step(np.array([3.0, -7.0]))
    assert info["clip_count"] == 1 and info["paclitaxel_mg_m2"] == 225.0 and info["carboplatin_auc"] == 0.0
    discrete = PaclitaxelCarboplatinEnv(toy_sims, discrete=True)
    discrete.reset(seed=0)
    for bad in (25, -1, 1.5, True, [1, 2]):
        with pytest.raises(ValueError, match="index"):
            discrete.step(bad)
    _, _, _, _, info = discrete.step(18)
    assert (info["paclitaxel_mg_m2"], info["carboplatin_auc"]) == pytest.approx((175.0, 6.0))
    with pytest.raises(RuntimeError, match="reset"):
        PaclitaxelCarboplatinEnv(toy_sims).step(np.zeros(2))


@pytest.mark.parametrize("kwargs, match", [
    ({"n_cycles": 0}, r"n_cycles must be an integer \[1, 6\], got 0"),
    ({"n_cycles": 7}, r"n_cycles must be an integer \[1, 6\], got 7"),
    ({"assessment_every": 3, "n_cycles": 2}, r"assessment_every must be an integer \[1, 2\], got 3"),
    ({"noise_scale": -0.1}, r"noise_scale must be a finite number >= 0, got -0.1"),
    ({"iiv_scale": np.nan}, r"iiv_scale must be a finite number >= 0, got nan"),
    ({"reward_weights": (1.0, -1.0)}, r"reward_weights must be 2 finite numbers >= 0"),
    ({"reward_weights": (0.0, 0.0)}, r"not both 0"),
    ({"reward_weights": "equal"}, r"reward_weights must be 2 finite numbers >= 0, .* got 'equal'"),
    ({"interaction": np.inf}, r"interaction must be None or a finite number"),
    ({"pd_backend": "scipy"}, r"pd_backend must be one of \('compiled', 'numpy'\), got 'scipy'"),
])
def test_invalid_arguments_name_the_value(toy_sims, kwargs, match):
    with pytest.raises(ValueError, match=match):
        PaclitaxelCarboplatinEnv(toy_sims, **kwargs)


def test_invalid_simulators_and_options(toy_sims, toy_registered):
    with pytest.raises(ValueError, match="'groundtruth' or a pair"):
        PaclitaxelCarboplatinEnv("vae")
    with pytest.raises(ValueError, match="pair"):
        PaclitaxelCarboplatinEnv(toy_sims[:1])
    data = simulate_dataset(toy_registered.name, 32, 2, seed=0, progress=False)
    twelve_hourly = PKSimulator(build_model(data, TrainSettings(latent_dim=3, hidden=8)))
    with pytest.raises(ValueError, match="steps 12-h intervals; the combination cycle is 504 h"):
        PaclitaxelCarboplatinEnv((toy_sims[0], twelve_hourly))
    env = PaclitaxelCarboplatinEnv(toy_sims)
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(seed=0, options={"z": np.zeros(3)})
    with pytest.raises(ValueError, match=r"latent z must have shape \(3,\)"):
        env.reset(seed=0, options={"z_carboplatin": np.zeros(4)})
    with pytest.raises(ValueError, match="covariate WT=10 kg"):
        env.reset(seed=0, options={"covariates": [50, 1, 10, 170, 1.8, 1.0, 90]})


def test_extreme_and_random_actions_never_give_nan_or_negative_values(toy_sims):
    n = 6
    envs = PaclitaxelCarboplatinVectorEnv(n, toy_sims)
    obs, _ = envs.reset(seed=3)
    rng = np.random.default_rng(0)
    patterns = [np.ones((n, 2)), -np.ones((n, 2)), np.tile([1.0, -1.0], (n, 1)), np.tile([-1.0, 1.0], (n, 1))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the clipping warning
        for step in range(4 * CYCLES):
            actions = patterns[step % 4] if step < 2 * CYCLES else rng.uniform(-5, 5, (n, 2))
            obs, reward, _, _, info = envs.step(actions.astype(np.float32))
            assert envs.observation_space.contains(obs) and np.all(np.isfinite(reward))
            for key in ("anc_nadir", "anc_nadir_observed", "auc_paclitaxel_umol_h_l", "auc_carboplatin_umol_h_l",
                        "tumour_size_mm", "grade4_days", "paclitaxel_mg", "carboplatin_mg"):
                if key not in info:  # every sub-environment was being reset
                    continue
                value = info[key][info[f"_{key}"]]
                assert np.all(np.isfinite(value)) and np.all(value >= 0), key
    state = envs._cohort
    assert np.all(state.anc_course >= 0) and np.all(state.sld_course >= 0)


# ----------------------------------------------------------------------------- ground-truth adapter
def test_ground_truth_adapter_maps_z_to_the_published_random_effects():
    sim = GroundTruthCycleSimulator("carboplatin")
    cov = Covariates.sample(3, np.random.default_rng(0))
    typical = sim.make_patients(cov.as_array(), np.zeros((3, sim.latent_dim)))
    params = sim.parameters(typical)
    for name, value in sim.drug_model.typical_parameters(cov).items():
        np.testing.assert_allclose(params[name], value)
    conc, _, state = sim.step(sim.initial_state(typical), typical, np.array([0.0, 300.0, 600.0]))
    expected = sim.drug_model.simulate({k: v[1:] for k, v in params.items()}, np.array([[300.0], [600.0]]),
                                       sim.grid_h)
    np.testing.assert_allclose(conc[1:], expected)
    assert np.all(conc[0] == 0) and np.all(state == 1)
    assert sim.iiv_names == ("CL", "V1", "Q", "V2")

"""Single-drug dosing environments: API checks, determinism, exact vector batching, reward design.

Mechanics are tested on a PK-VAE of the toy one-compartment drug (conftest), so they do not
depend on trained weights; the registered ids are tested for every drug whose PK-VAE is
shipped, and for the others the clear missing-weights error is tested instead.
"""

from __future__ import annotations

import itertools
import warnings

import gymnasium as gym
import mo_gymnasium as mo_gym
import numpy as np
import pytest
import torch
from conftest import OneCompartmentInfusion
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import pk_envs
from pk_envs.registration import SINGLE_DRUG_VARIANTS, env_id
from pk_envs.rewards import LogisticRisk
from pk_envs.single_drug_core import SPECS, DrugSpec, has_shipped_weights, load_simulator
from pk_envs.single_drug_vector import SingleDrugVectorEnv
from vae_simulator import groundtruth
from vae_simulator.groundtruth import SINGLE_DRUGS
from vae_simulator.population import simulate_dataset
from vae_simulator.simulator import PKSimulator
from vae_simulator.vae.train import TRAIN_INTERVALS, TrainSettings, build_model

TOY_ID = "PKDose/ToyDrug-v0"
TOY_HORIZON = 6
#: a frequent stochastic event for the toy drug, so that episodes also end by termination
TOY_SPEC = DrugSpec("Toy", 2000.0, 250.0, TOY_HORIZON, "toy injury",
                    event_risk=LogisticRisk.through((300.0, 0.5), (600.0, 0.95), course_h=24.0))


@pytest.fixture(scope="module")
def toy_sim():
    """An (untrained, deterministic) PK-VAE of the toy drug, registered while the module runs."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(groundtruth._REGISTRY, OneCompartmentInfusion.name,
                   (OneCompartmentInfusion.__module__, "OneCompartmentInfusion"))
        mp.setitem(SPECS, OneCompartmentInfusion.name, TOY_SPEC)
        data = simulate_dataset(OneCompartmentInfusion.name, 120, TOY_HORIZON, seed=3, progress=False)
        torch.manual_seed(0)
        sim = PKSimulator(build_model(data, TrainSettings(latent_dim=3, hidden=32)))
        gym.register(TOY_ID, entry_point="pk_envs.single_drug:SingleDrugEnv",
                     vector_entry_point="pk_envs.single_drug_vector:SingleDrugVectorEnv",
                     max_episode_steps=TOY_HORIZON, kwargs={"drug": None})
        yield sim
        del gym.registry[TOY_ID]


@pytest.fixture
def no_event(monkeypatch):
    """The toy drug without its frequent toxicity event (episodes run the whole course)."""
    monkeypatch.setitem(SPECS, OneCompartmentInfusion.name, DrugSpec("Toy", 2000.0, 250.0, TOY_HORIZON))


def rollout(env, seed: int, actions: np.ndarray, options=None):
    """Observations, rewards and info doses of one episode under fixed actions."""
    obs, _ = env.reset(seed=seed, options=options)
    out = {"obs": [obs], "reward": [], "dose": [], "samples": []}
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out["obs"].append(obs), out["reward"].append(reward), out["dose"].append(info["dose_mg"])
        out["samples"].append(info["samples_mg_l"])
        if terminated or truncated:
            break
    return {k: np.array(v) for k, v in out.items()}


def test_same_seed_gives_the_same_episode_and_other_seeds_differ(toy_sim):
    env = gym.make(TOY_ID, simulator=toy_sim, noise_scale=1.5, missing_prob=0.3)
    actions = np.random.default_rng(0).uniform(-1, 1, (TOY_HORIZON, 1)).astype(np.float32)
    first, again, other = rollout(env, 7, actions), rollout(env, 7, actions), rollout(env, 8, actions)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["obs"][0], other["obs"][0])  # another patient
    # pinning the patient keeps the episode's noise draws: same patient + seed -> same samples
    _, info = env.reset(seed=7)
    pinned = rollout(env, 7, actions, options={"covariates": info["covariates"], "z": info["z"]})
    np.testing.assert_array_equal(pinned["samples"], first["samples"])


def assert_vector_env_equals_single_envs(env_id_: str, n: int, steps: int, **kwargs) -> tuple[int, int]:
    """Step make_vec's native env and n gym.make envs (seeds seed + i) with the same random actions;
    every observation, reward, termination and truncation must be bit-identical. Returns the
    numbers of terminations and truncations seen."""
    seed = 11
    envs = gym.make_vec(env_id_, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    assert isinstance(envs, SingleDrugVectorEnv)
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    singles = [gym.make(env_id_, **kwargs) for _ in range(n)]
    rng = np.random.default_rng(5)
    obs_v, _ = envs.reset(seed=seed)
    np.testing.assert_array_equal(obs_v, np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(singles)]))
    done = np.zeros(n, dtype=bool)
    n_terminated = n_truncated = 0
    for _ in range(steps):
        if kwargs.get("discrete"):
            actions = rng.integers(0, envs.single_action_space.n, n)
        else:
            actions = rng.uniform(-1.2, 1.2, (n, 1)).astype(np.float32)  # some are clipped
        obs_v, rew_v, term_v, trunc_v, info_v = envs.step(actions)
        singles_out, doses = [], []
        for i, env in enumerate(singles):
            if done[i]:  # NEXT_STEP autoreset: this step only resets
                singles_out.append((env.reset()[0], np.zeros_like(rew_v[i]), False, False))
            else:
                obs, reward, terminated, truncated, info = env.step(actions[i])
                singles_out.append((obs, reward, terminated, truncated))
                doses.append(info["dose_mg"])
        obs_s, rew_s, term_s, trunc_s = (np.stack([np.asarray(o[j]) for o in singles_out]) for j in range(4))
        np.testing.assert_array_equal(obs_v, obs_s)
        np.testing.assert_array_equal(rew_v, rew_s.astype(rew_v.dtype))
        np.testing.assert_array_equal(term_v, term_s)
        np.testing.assert_array_equal(trunc_v, trunc_s)
        np.testing.assert_array_equal(info_v["_dose_mg"], ~done)
        np.testing.assert_array_equal(info_v["dose_mg"][~done], doses)
        n_terminated, n_truncated = n_terminated + term_v.sum(), n_truncated + trunc_v.sum()
        done = term_v | trunc_v
    return n_terminated, n_truncated


@pytest.mark.parametrize("kwargs", [{"noise_scale": 2.0, "missing_prob": 0.25},
                                    {"discrete": True, "vector_reward": True, "full_observation": True}])
def test_vector_env_reproduces_single_envs_exactly(toy_sim, kwargs):
    n_terminated, n_truncated = assert_vector_env_equals_single_envs(TOY_ID, 5, 3 * TOY_HORIZON + 2,
                                                                     simulator=toy_sim, **kwargs)
    assert n_terminated > 0 and n_truncated > 0  # both ways of ending and the autoreset were exercised


def _check_all(env: gym.Env, scalar: bool) -> None:
    """Gymnasium's checker (render included) and, for scalar rewards, SB3's; failures only, not advice."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning but these two fails the test
        warnings.filterwarnings("ignore", message=".*reward returned by `step\\(\\)` must be a float.*")
        warnings.filterwarnings("ignore", message=".*Not able to test alternative render modes.*")
        check_env(env.unwrapped)
        if scalar:
            sb3_check_env(env.unwrapped, warn=True)


@pytest.mark.parametrize("variant", list(SINGLE_DRUG_VARIANTS))
def test_checkers_pass_on_every_variant_of_the_toy_drug(toy_sim, variant):
    kwargs = SINGLE_DRUG_VARIANTS[variant]
    _check_all(gym.make(TOY_ID, simulator=toy_sim, render_mode="rgb_array", **kwargs),
               scalar=not kwargs.get("vector_reward"))


def test_registry_lists_every_drug_and_variant_with_its_course():
    # v0 and v1 for every drug, v2 for mycophenolate (the one drug with a second decoder release)
    assert len(pk_envs.SINGLE_DRUG_IDS) == len(SINGLE_DRUGS) * len(SINGLE_DRUG_VARIANTS) * 2 + 5 == 55
    assert set(SINGLE_DRUGS) <= set(SPECS)
    for drug, variant, (version, decoder) in itertools.product(SINGLE_DRUGS, SINGLE_DRUG_VARIANTS,
                                                               [(0, "interval"), (1, "continuous")]):
        spec = gym.spec(env_id(SPECS[drug].name, variant, version))
        assert spec.kwargs["drug"] == drug and spec.kwargs["decoder"] == decoder
        assert spec.vector_entry_point is not None
        assert spec.max_episode_steps == SPECS[drug].course_intervals <= TRAIN_INTERVALS[drug]
        assert SPECS[drug].dose_max_mg <= groundtruth.get_model(drug).dose_range_mg[1]
    assert gym.spec("PKDose/Vancomycin-v0").max_episode_steps == 20  # 10 days of q12h
    with pytest.raises(gym.error.Error, match="Aspirin"):
        gym.make("PKDose/Aspirin-v0")


def _episode_returns(envs, policy: str, steps: int) -> np.ndarray:
    """Scalar return of each sub-env's first episode under a constant policy (0 mg, max, label dose)."""
    _, info = envs.reset(seed=2024)
    task = envs.unwrapped.task
    if policy == "zero":
        actions = np.full((envs.num_envs, 1), -1.0, np.float32)
    elif policy == "max":
        actions = np.ones((envs.num_envs, 1), np.float32)
    else:
        actions = np.stack([task.actions.from_doses(d) for d in info["standard_dose_mg"]])
    total, alive = np.zeros(envs.num_envs), np.ones(envs.num_envs, dtype=bool)
    for _ in range(steps):
        obs, reward, terminated, truncated, info = envs.step(actions)
        assert envs.observation_space.contains(obs) and np.all(np.isfinite(reward))
        assert np.all(info["conc_mg_l"] >= 0) and np.all(np.isfinite(info["conc_mg_l"]))
        total += np.where(alive, reward, 0.0)
        alive &= ~(terminated | truncated)
    return total


@pytest.mark.parametrize("version", [0, 1])
@pytest.mark.parametrize("drug", SINGLE_DRUGS)
def test_registered_ids_pass_checkers_and_reward_prefers_label_dose(drug, version):
    """Needs the drug's shipped PK-VAE; without it, making the env must say so clearly."""
    name = SPECS[drug].name

    def env_id_v(drug_name: str, variant: str = "") -> str:
        return env_id(drug_name, variant, version)

    if version == 0 and not has_shipped_weights(drug):
        with pytest.raises(FileNotFoundError, match=f"no shipped PK-VAE for '{drug}'.*pkdose vae --drug {drug}"):
            gym.make(env_id_v(name))
        return
    for variant, kwargs in SINGLE_DRUG_VARIANTS.items():
        env = gym.make(env_id_v(name, variant), render_mode="rgb_array")
        _check_all(env, scalar=not kwargs.get("vector_reward"))
    mo = mo_gym.wrappers.LinearReward(mo_gym.wrappers.MORecordEpisodeStatistics(gym.make(env_id_v(name, "-MO"))),
                                      weight=np.array([1.0, 1.0]))
    mo.reset(seed=0)
    while True:
        *_, terminated, truncated, info = mo.step(np.zeros(1, np.float32))
        if terminated or truncated:
            break
    assert info["episode"]["r"].shape == (2,) and info["episode"]["l"] >= 1
    assert_vector_env_equals_single_envs(env_id_v(name, "-Hard"), 3, 4)  # exact batching with the real decoder
    # reward design: over 50 patients the label dose beats holding the drug and the maximum dose
    envs = gym.make_vec(env_id_v(name), num_envs=50, vectorization_mode="vector_entry_point")
    horizon = envs.unwrapped.horizon
    returns = {p: _episode_returns(envs, p, horizon).mean() for p in ("zero", "max", "standard")}
    assert returns["standard"] > returns["zero"] and returns["standard"] > returns["max"], returns


def test_mo_gymnasium_wrappers_work_on_vector_rewards(toy_sim):
    env = gym.make(TOY_ID, simulator=toy_sim, vector_reward=True)
    assert env.unwrapped.reward_dim == 2 and env.unwrapped.reward_space.shape == (2,)
    stats = mo_gym.wrappers.MORecordEpisodeStatistics(env, gamma=0.9)
    linear = mo_gym.wrappers.LinearReward(stats, weight=np.array([1.0, 0.5]))
    linear.reset(seed=3)
    done, total = False, np.zeros(2)
    while not done:
        _, reward, terminated, truncated, info = linear.step(np.array([0.3], np.float32))
        assert isinstance(reward, float | np.floating)
        np.testing.assert_allclose(reward, info["vector_reward"] @ np.array([1.0, 0.5]), rtol=1e-6)
        assert env.unwrapped.reward_space.contains(info["vector_reward"])
        total += info["vector_reward"]
        done = terminated or truncated
    np.testing.assert_allclose(info["episode"]["r"], total, rtol=1e-5)
    # the batched environment with MO-Gymnasium's vector statistics wrapper
    envs = mo_gym.wrappers.vector.MORecordEpisodeStatistics(
        SingleDrugVectorEnv(3, simulator=toy_sim, vector_reward=True))
    envs.reset(seed=0)
    returns, fresh, finished = np.zeros((3, 2)), np.zeros(3, dtype=bool), 0
    for _ in range(2 * TOY_HORIZON):
        _, rewards, terminated, truncated, infos = envs.step(np.zeros((3, 1), np.float32))
        assert rewards.shape == (3, 2) and rewards.dtype == np.float32
        returns = np.where(fresh[:, None], 0.0, returns) + rewards
        fresh = terminated | truncated
        if fresh.any():
            np.testing.assert_array_equal(infos["_episode"], fresh)
            np.testing.assert_allclose(infos["episode"]["r"][fresh], returns[fresh], rtol=1e-5)
            finished += fresh.sum()
    assert finished >= 3


def test_scalar_reward_is_the_weighted_objective_sum(toy_sim):
    env = gym.make(TOY_ID, simulator=toy_sim, reward_weights=(2.0, 0.5))
    env.reset(seed=1)
    _, reward, *_, info = env.step(np.array([0.9], np.float32))
    efficacy, neg_toxicity = info["objectives"]
    assert isinstance(reward, float) and reward == pytest.approx(2.0 * efficacy + 0.5 * neg_toxicity)
    assert 0 <= efficacy <= 1 and info["toxicity"] == -neg_toxicity >= 0


@pytest.mark.parametrize("kwargs, message", [
    ({"noise_scale": -1.0}, r"noise_scale must be a finite number >= 0, got -1.0"),
    ({"noise_scale": float("nan")}, r"noise_scale must be a finite number >= 0"),
    ({"missing_prob": 1.0}, r"missing_prob must lie in \[0, 1\), got 1.0"),
    ({"iiv_scale": -0.5}, r"iiv_scale must be a finite number >= 0"),
    ({"n_intervals": 0}, r"n_intervals must be an integer \[1, 6\], got 0"),
    ({"n_intervals": 7}, r"n_intervals must be an integer \[1, 6\], got 7"),  # beyond the trained horizon
    ({"dose_history": 0}, r"dose_history must be an integer \[1, 64\]"),
    ({"reward_weights": (1.0, -1.0)}, r"reward_weights must be 2 finite numbers >= 0"),
    ({"reward_weights": (1.0,)}, r"reward_weights must be 2 finite numbers"),
    ({"render_mode": "human"}, r"render_mode must be None or one of \['rgb_array'\], got 'human'"),
    ({"drug": "vancomycin"}, r"drug 'vancomycin' does not match the simulator's drug 'test-1cmt'"),
])
def test_invalid_arguments_raise_clear_errors(toy_sim, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pk_envs.SingleDrugEnv(simulator=toy_sim, **kwargs)


def test_unknown_or_combination_drugs_are_refused():
    for drug in ("aspirin", "paclitaxel"):
        with pytest.raises(ValueError, match=f"unknown single drug '{drug}'; single-drug environments exist for "
                                             "vancomycin, phenytoin"):
            pk_envs.SingleDrugEnv(drug)
    with pytest.raises(ValueError, match="simulator must be a PKSimulator"):
        pk_envs.SingleDrugEnv(simulator="vancomycin")


def test_missing_weights_give_a_clear_error(monkeypatch, tmp_path):
    from vae_simulator.vae import io

    monkeypatch.setattr(io, "shipped_weights_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="no shipped PK-VAE for 'mycophenolate'.*pkdose vae"):
        load_simulator.__wrapped__("mycophenolate")  # uncached: the process may hold the shipped one


def test_bad_actions_and_options_raise_and_out_of_range_actions_are_clipped(toy_sim, no_event):
    env = pk_envs.SingleDrugEnv(simulator=toy_sim)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(1, np.float32))
    env.reset(seed=0)
    for action, message in [(np.array([np.nan]), "action nan is not finite"),
                            (np.array([np.inf]), "action inf is not finite"),
                            (np.zeros(2), r"action must be a \(1,\) array .* got shape \(2,\)"),
                            ("a lot", "action must be numeric")]:
        with pytest.raises(ValueError, match=message):
            env.step(action)
    with pytest.warns(UserWarning, match="outside \\[-1, 1\\] was clipped"):
        _, _, _, _, info = env.step(np.array([5.0]))
    assert info["clipped"] and info["clip_count"] == 1 and info["dose_mg"] == 2000.0
    _, _, _, _, info = env.step(np.array([-3.0]))  # warned once only
    assert info["clip_count"] == 2 and info["dose_mg"] == 0.0
    assert env.reset(seed=0)[1]["clip_count"] == 0

    discrete = pk_envs.SingleDrugEnv(simulator=toy_sim, discrete=True)
    discrete.reset(seed=0)
    assert discrete.action_space.n == 9  # 0, 250, ..., 2000 mg
    for action in (9, -1, 0.5, np.array([1, 2])):
        with pytest.raises(ValueError, match=r"dose level index in \[0, 8\]|integer index"):
            discrete.step(action)
    assert discrete.step(np.int64(4))[4]["dose_mg"] == 1000.0
    assert discrete.dose_to_action(1100.0) == 4 and env.dose_to_action(500.0)[0] == pytest.approx(-0.5)

    for options, message in [({"weight": 70}, r"unknown reset option\(s\) \['weight'\]"),
                             ({"z": [0.0, 0.0]}, r"latent z must have shape \(3,\)"),
                             ({"covariates": [50, 1, 70, 175, 1.85, 1.0, 900]}, "CRCL=900")]:
        with pytest.raises(ValueError, match=message):
            env.reset(seed=0, options=options)
    _, info = env.reset(seed=0, options={"z": [3.0, -1.0, 0.5]})
    np.testing.assert_array_equal(info["z"], [3.0, -1.0, 0.5])


@pytest.mark.parametrize("policy", ["random", "max", "zero", "alternating"])
def test_observations_and_rewards_stay_finite_in_bounds_whatever_the_doses(toy_sim, policy):
    env = gym.make(TOY_ID, simulator=toy_sim, full_observation=True, noise_scale=3.0, missing_prob=0.5,
                   iiv_scale=3.0)
    rng = np.random.default_rng(0)
    space, reward_space = env.observation_space, env.unwrapped.task.reward_space
    for episode in range(4):
        obs, _ = env.reset(seed=episode)
        assert space.contains(obs)
        for k in range(TOY_HORIZON):
            action = {"random": rng.uniform(-1, 1, 1), "max": [1.0], "zero": [-1.0],
                      "alternating": [(-1.0) ** k]}[policy]
            obs, reward, terminated, truncated, info = env.step(np.asarray(action, np.float32))
            assert space.contains(obs) and np.all(np.isfinite(obs)), obs
            assert np.isfinite(reward) and reward_space.contains(info["objectives"].astype(np.float32))
            assert np.all(info["conc_mg_l"] >= 0) and np.all(info["samples_mg_l"] >= 0)
            if terminated or truncated:
                break


def test_render_returns_the_course_as_an_rgb_image(toy_sim, no_event):
    env = gym.make(TOY_ID, simulator=toy_sim, render_mode="rgb_array", missing_prob=0.3)
    env.reset(seed=0)
    before = env.render()
    for _ in range(3):
        env.step(np.array([0.5], np.float32))
    after = env.render()
    assert after.dtype == np.uint8 and after.ndim == 3 and after.shape[2] == 3 and after.shape == before.shape
    assert not np.array_equal(before, after)  # the course is drawn
    silent = gym.make(TOY_ID, simulator=toy_sim)
    silent.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert silent.render() is None
    images = SingleDrugVectorEnv(2, simulator=toy_sim, render_mode="rgb_array")
    images.reset(seed=0)
    assert len(images.render()) == 2


def test_vector_env_pins_patients_and_accepts_seed_lists(toy_sim):
    envs = SingleDrugVectorEnv(3, simulator=toy_sim)
    _, info = envs.reset(seed=[4, 5, 6])
    single = pk_envs.SingleDrugEnv(simulator=toy_sim)
    np.testing.assert_array_equal(info["covariates"][1], single.reset(seed=5)[1]["covariates"])
    z = np.arange(9.0).reshape(3, 3) / 10
    _, info = envs.reset(seed=0, options={"covariates": info["covariates"], "z": z})
    np.testing.assert_array_equal(info["z"], z)
    _, info = envs.reset(seed=0, options={"z": [1.0, 1.0, 1.0]})  # one patient latent for all
    np.testing.assert_array_equal(info["z"], np.ones((3, 3)))
    with pytest.raises(ValueError, match="a list of 3 seeds, got 2"):
        envs.reset(seed=[1, 2])
    with pytest.raises(ValueError, match=r"action must be an \(3, 1\) or \(3,\) array"):
        envs.step(np.zeros((2, 1), np.float32))

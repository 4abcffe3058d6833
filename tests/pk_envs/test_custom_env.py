"""PKDose/Custom-v0: the single-drug environment on a PK-VAE learnt from a user's table."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import pk_envs
from agents.baselines import StandardDosingPolicy
from agents.evaluate import evaluate_policy
from agents.model_based import MIPDPolicy, OraclePolicy
from agents.training import RunConfig
from vae_simulator.byod.simulator import TableIntervalSimulator, exposure_target, interval_grid_h

TARGET = "auc24:400-600"


@pytest.fixture(scope="module")
def manifest(trained):
    return trained.manifest_path


def _make(manifest, env_id="PKDose/Custom-v0", **kwargs):
    return gym.make(env_id, weights=str(manifest), target=TARGET, intervals_h=(12,), **kwargs)


def test_registered_and_passes_the_env_checker(manifest):
    assert "PKDose/Custom-v0" in pk_envs.CUSTOM_IDS and "PKDose/Custom-MO-v0" in pk_envs.CUSTOM_IDS
    env = _make(manifest)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert env.unwrapped.covariate_names == ("AGE", "SEX=0", "SEX=1", "WT", "HT", "SCR")
    assert env.unwrapped.decoder == "table" and env.unwrapped.interval_h == 12.0
    # the model's horizon, in 12-h intervals, is the course
    sim = env.unwrapped.simulator
    assert env.unwrapped.task.horizon == int(sim.ct.limits.horizon_h // 12) >= 1


def test_new_patients_are_training_records_with_latents_from_the_population(manifest):
    rows = np.asarray(json.loads(manifest.read_text())["data"]["covariate_rows"])
    env = _make(manifest)
    latents = []
    for seed in range(30):
        _, info = env.reset(seed=seed)
        assert np.any(np.all(rows == info["covariates"], axis=1)), seed
        latents.append(info["z"])
    latents = np.array(latents)
    assert latents.std(axis=0).min() > 0.05  # patients differ, not one typical patient


def test_a_course_is_simulated_and_reproducible(manifest):
    def run(seed):
        env = _make(manifest)
        obs, info = env.reset(seed=seed)
        out = [obs]
        done = False
        while not done:
            obs, reward, term, trunc, info = env.step(np.array([-0.2], np.float32))
            assert np.isfinite(reward) and np.all(info["conc_mg_l"] >= 0) and info["exposure"] > 0
            out.append(obs)
            done = term or trunc
        return np.array(out)

    first, again, other = run(4), run(4), run(5)
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_vector_env_equals_sync_vector_env(manifest):
    kwargs = {"weights": str(manifest), "target": TARGET, "intervals_h": 12}
    native = gym.make_vec("PKDose/Custom-v0", num_envs=3, vectorization_mode="vector_entry_point", **kwargs)
    sync = gym.make_vec("PKDose/Custom-v0", num_envs=3, vectorization_mode="sync", **kwargs)
    assert np.array_equal(native.reset(seed=7)[0], sync.reset(seed=7)[0])
    rng = np.random.default_rng(0)
    for _ in range(40):  # past the course's end: autoreset included
        action = rng.uniform(-0.6, 1, (3, 1)).astype(np.float32)
        a, b = native.step(action), sync.step(action)
        for x, y in zip(a[:4], b[:4]):
            assert np.array_equal(x, y)


def test_mo_variant_and_discrete_levels(manifest):
    env = _make(manifest, "PKDose/Custom-MO-v0")
    env.reset(seed=0)
    reward = env.step(np.array([0.0], np.float32))[1]
    assert reward.shape == (2,) and 0 <= reward[0] <= 1 and reward[1] <= 0
    env = _make(manifest, "PKDose/Custom-Discrete-v0", dose_range_mg=(0, 3000), dose_step_mg=500)
    assert np.array_equal(env.unwrapped.dose_levels_mg, np.arange(0, 3001, 500.0))


def test_refusals_name_the_value_and_the_allowed_range(manifest, tmp_path):
    with pytest.raises(ValueError, match="needs weights"):
        gym.make("PKDose/Custom-v0")
    with pytest.raises(ValueError, match="one dosing interval"):
        _make(manifest).unwrapped.__class__(weights=str(manifest), target=TARGET, intervals_h=(8, 12))
    sim = TableIntervalSimulator(manifest, TARGET)
    limits = sim.ct.limits
    with pytest.raises(ValueError, match=r"dose_range_mg\[1\] = .* outside the doses the table showed"):
        TableIntervalSimulator(manifest, TARGET, dose_range_mg=(0, limits.dose_max_mg * 2))
    with pytest.raises(ValueError, match="interval_h = .* outside the gaps"):
        TableIntervalSimulator(manifest, TARGET, interval_h=limits.max_gap_h + 1)
    with pytest.raises(ValueError, match=r"monitoring_times_h must be increasing times in \(0, 12\] h"):
        TableIntervalSimulator(manifest, TARGET, interval_h=12, monitoring_times_h=(2, 13))
    with pytest.raises(ValueError, match="unknown metric"):
        TableIntervalSimulator(manifest, "auc48:1-2")
    with pytest.raises(ValueError, match="toxic_above"):
        TableIntervalSimulator(manifest, TARGET, toxic_above=500)
    env = _make(manifest)
    cov = env.unwrapped.simulator.covariate_rows[0].copy()
    cov[3] = 500.0  # WT far beyond the training records
    with pytest.raises(ValueError, match=r"covariate WT = 500 .* outside its allowed range"):
        env.reset(seed=0, options={"covariates": cov})
    old = json.loads(manifest.read_text())
    del old["data"]["covariate_rows"]
    legacy = manifest.parent / "legacy.json"
    legacy.write_text(json.dumps(old))
    with pytest.raises(ValueError, match="no training covariate rows"):
        TableIntervalSimulator(legacy, TARGET)


def test_target_parsing_and_grid():
    t = exposure_target("trough:10-20", toxic_above=25)
    assert (t.metric, t.low, t.high, t.toxic_above, t.unit) == ("trough", 10, 20, 25, "mg/L")
    assert exposure_target("time_above@4:8-12").threshold_mg_l == 4
    grid = interval_grid_h(12.0)
    assert grid[-1] == 12.0 and grid.size == 48 and np.allclose(np.diff(grid), 0.25)


def test_baselines_and_training_config_on_a_table_model(manifest):
    kwargs = {"weights": str(manifest), "target": TARGET, "intervals_h": [12]}
    with pytest.raises(ValueError, match="needs env_options weights"):
        RunConfig(env_id="PKDose/Custom-v0")
    config = RunConfig(env_id="PKDose/Custom-v0", env_options=kwargs, reward_weights=(1, 2))
    assert config.env_kwargs == {**kwargs, "reward_weights": [1.0, 2.0]}
    results = {name: evaluate_policy("PKDose/Custom-v0", policy, n_patients=12, seed=1_000_000, n_bootstrap=100,
                                     env_kwargs=kwargs)
               for name, policy in [("standard", StandardDosingPolicy("PKDose/Custom-v0", **kwargs)),
                                    ("oracle", OraclePolicy("PKDose/Custom-v0", **kwargs)),
                                    ("mipd", MIPDPolicy("PKDose/Custom-v0", **kwargs))]}
    # the oracle optimises each dose on the patient's own simulator: it cannot do worse than a fixed dose
    assert results["oracle"].metrics["return"].mean >= results["standard"].metrics["return"].mean
    assert np.isfinite(results["mipd"].metrics["return"].mean)

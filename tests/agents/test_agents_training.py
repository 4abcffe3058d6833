"""PPO/SAC training end to end: tiny runs, safe save/load, resume, evaluation determinism, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import train as main_command
from agents.baselines import SB3Policy
from agents.checkpoints import load_agent
from agents.evaluate import evaluate_policy
from agents.training import RunConfig, latest_checkpoint, parse_reward_weights, train

ENV = "PKDose/Phenytoin-v0"
TINY = {"ppo": {"n_steps": 32, "batch_size": 64, "n_epochs": 2}, "sac": {"learning_starts": 64, "batch_size": 32}}


def tiny_config(algo: str, steps: int = 256, **kw) -> RunConfig:
    settings = {"n_envs": 4, "eval_freq": 128, "eval_patients": 4, "checkpoint_freq": 128, **kw}
    return RunConfig(algo=algo, env_id=ENV, total_timesteps=steps, hyperparameters=dict(TINY[algo]), **settings)


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_tiny_run_saves_a_policy_that_loads_back_identically(algo, tmp_path):
    model = train(tiny_config(algo), tmp_path, progress_bar=False)
    assert model.num_timesteps >= 256
    for name in ("run.json", "final_model.zip", "final_model.json", "best_model.zip", "evaluations.npz"):
        assert (tmp_path / name).is_file(), name
    assert any((tmp_path / "tensorboard").rglob("events.out.tfevents*"))
    loaded, meta = load_agent(tmp_path / "final_model", expected_env_id=ENV, expected_algo=algo)
    assert meta["num_timesteps"] == model.num_timesteps
    obs = np.random.default_rng(0).uniform(0, 1, (16, model.observation_space.shape[0])).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_same_seed_same_policy(tmp_path):
    a = train(tiny_config("ppo", eval_freq=0, checkpoint_freq=0), tmp_path / "a", progress_bar=False)
    b = train(tiny_config("ppo", eval_freq=0, checkpoint_freq=0), tmp_path / "b", progress_bar=False)
    obs = np.random.default_rng(1).uniform(0, 1, (8, a.observation_space.shape[0])).astype(np.float32)
    np.testing.assert_array_equal(a.predict(obs, deterministic=True)[0], b.predict(obs, deterministic=True)[0])


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_resume_continues_a_killed_run_from_its_checkpoint(algo, tmp_path):
    train(tiny_config(algo, steps=256), tmp_path, progress_bar=False)
    for suffix in (".zip", ".json"):  # killed before the end: no final model
        (tmp_path / "final_model").with_suffix(suffix).unlink()
    checkpoint = latest_checkpoint(tmp_path)
    steps_done = json.loads(checkpoint.with_suffix(".json").read_text())["num_timesteps"]
    assert 0 < steps_done < 512
    if algo == "sac":
        assert checkpoint.with_suffix(".replay.npz").is_file()
        saved_rewards = np.load(checkpoint.with_suffix(".replay.npz"))["rewards"]
    resumed = train(tiny_config(algo, steps=512), tmp_path, resume=True, progress_bar=False)
    assert resumed.num_timesteps >= 512
    if algo == "sac":  # the replay buffer came back: its old transitions are still there
        n_saved = steps_done // 4
        np.testing.assert_array_equal(resumed.replay_buffer.rewards[:n_saved], saved_rewards[:n_saved])


def test_evaluation_of_a_trained_policy_is_deterministic(tmp_path):
    model = train(tiny_config("ppo", eval_freq=0, checkpoint_freq=0), tmp_path, progress_bar=False)
    kw = {"n_patients": 10, "seed": 1_000_000, "n_bootstrap": 100}
    a = evaluate_policy(ENV, SB3Policy(model), num_envs=5, **kw)
    b = evaluate_policy(ENV, SB3Policy(model), num_envs=5, **kw)
    for key, values in a.per_patient.items():
        np.testing.assert_array_equal(values, b.per_patient[key], err_msg=key)


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="unknown algorithm 'dqn'"):
        RunConfig(algo="dqn")
    with pytest.raises(ValueError, match="unknown environment id"):
        RunConfig(env_id="PKDose/Aspirin-v0")
    with pytest.raises(ValueError, match="2 numbers"):
        RunConfig(reward_weights="1,2,3")
    with pytest.raises(ValueError, match="not both 0"):
        parse_reward_weights("0,0")
    with pytest.raises(ValueError, match="must be numbers"):
        parse_reward_weights("a,b")
    with pytest.raises(ValueError, match="vector reward"):
        RunConfig(env_id="PKDose/Phenytoin-MO-v0")
    with pytest.raises(ValueError, match="SAC needs continuous actions"):
        RunConfig(algo="sac", env_id="PKDose/Phenytoin-Discrete-v0")
    with pytest.raises(ValueError, match="total_timesteps must be an integer >= 1"):
        RunConfig(total_timesteps=0)


def test_foreign_corrupt_and_unsafe_checkpoints_are_refused(tmp_path):
    train(tiny_config("ppo", eval_freq=0, checkpoint_freq=0), tmp_path, progress_bar=False)
    agent = tmp_path / "final_model.zip"
    with pytest.raises(ValueError, match="trained on 'PKDose/Phenytoin-v0', not 'PKDose/Vancomycin-v0'"):
        load_agent(agent, expected_env_id="PKDose/Vancomycin-v0")
    with pytest.raises(ValueError, match="holds a PPO agent, not SAC"):
        load_agent(agent, expected_algo="sac")
    with pytest.raises(ValueError, match="cannot resume it as SAC"):
        train(tiny_config("sac"), tmp_path, resume=True, progress_bar=False)
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(tiny_config("ppo"), tmp_path, progress_bar=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(tiny_config("ppo"), tmp_path / "nowhere", resume=True, progress_bar=False)
    corrupt = tmp_path / "corrupt.zip"
    shutil.copy(agent, corrupt)
    shutil.copy(agent.with_suffix(".json"), corrupt.with_suffix(".json"))
    with corrupt.open("r+b") as f:
        f.seek(100)
        f.write(b"garbage")
    with pytest.raises(ValueError, match="SHA-256"):
        load_agent(corrupt)
    orphan = tmp_path / "orphan.zip"
    shutil.copy(agent, orphan)
    with pytest.raises(ValueError, match="no sidecar"):
        load_agent(orphan)


def test_main_command_writes_a_report(tmp_path, capsys):
    out = tmp_path / "run"
    code = main_command.main(["--env", ENV, "--timesteps", "128", "--eval-patients", "4", "--n-envs", "4",
                              "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    for name in ("PPO (this run)", "standard dosing", "MIPD (PK-VAE encoder)", "oracle (true latent)", "random"):
        assert name in printed
    for name in ("report.md", "results.json", "dose_trajectories.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert set(results["standard dosing"]) >= {"return", "in_window_fraction", "toxic_exposure"}


def test_main_command_bad_input(tmp_path, capsys):
    assert main_command.main(["--algo", "dqn"]) == 2
    assert "unknown algorithm 'dqn'" in capsys.readouterr().err
    assert main_command.main(["--reward-weights", "1"]) == 2
    assert "2 numbers" in capsys.readouterr().err
    assert main_command.main(["--resume", "--out", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err

"""Command lines: the main job, data generation, and their bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import train
from agents import main_job
from vae_simulator.generate import main as generate_main
from vae_simulator.groundtruth import DRUGS
from vae_simulator.population import PopulationData, simulate_dataset

ROOT = Path(__file__).resolve().parents[2]


def test_population_summary_prints_every_drug(capsys):
    assert train.main(["population", "--patients", "4", "--intervals", "2"]) == 0
    out = capsys.readouterr().out
    for drug in DRUGS:
        assert drug in out
    assert "in window" in out


def test_population_summary_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        train.main(["population", "--patients", "0"])
    result = subprocess.run([sys.executable, "train.py", "nonsense"], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 2 and "unknown command 'nonsense'" in result.stderr


def test_generate_writes_a_reproducible_file(tmp_path, capsys):
    assert generate_main(["--drug", "vancomycin", "--patients", "30", "--intervals", "3", "--seed", "5",
                          "--out", str(tmp_path), "--no-progress"]) == 0
    path = tmp_path / "vancomycin_n30_k3_s5.npz"
    data = PopulationData.from_npz(path)
    assert data.conc_true.shape == (30, 3, len(data.grid_h)) and data.sample_conc.shape[:2] == (30, 3)
    assert np.all(data.conc_obs >= 0) and np.all(np.isfinite(data.sample_conc))
    assert np.all(data.sample_conc[data.sample_missing] == 0)
    again = simulate_dataset("vancomycin", 30, 3, seed=5, progress=False)
    np.testing.assert_array_equal(again.conc_true.astype(np.float32), data.conc_true)
    np.testing.assert_array_equal(again.sample_time_h.astype(np.float32), data.sample_time_h)
    other = simulate_dataset("vancomycin", 30, 3, seed=6, progress=False)
    assert not np.array_equal(other.covariates, again.covariates)
    assert "vancomycin" in capsys.readouterr().out


def test_dataset_does_not_depend_on_how_many_patients_come_after():
    # chunks have their own random streams: the first 500 patients are the same in a larger set
    small = simulate_dataset("theophylline", 500, 2, seed=1, progress=False)
    large = simulate_dataset("theophylline", 700, 2, seed=1, progress=False)
    np.testing.assert_array_equal(small.conc_obs, large.conc_obs[:500])


def test_generate_rejects_bad_input(tmp_path):
    with pytest.raises(SystemExit, match="unknown drug 'aspirin'"):
        generate_main(["--drug", "aspirin", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="n_patients must be a positive integer, got 0"):
        simulate_dataset("vancomycin", 0, 3, seed=0, progress=False)
    with pytest.raises(ValueError, match=r"missing_prob must be in \[0, 1\), got 1.5"):
        simulate_dataset("vancomycin", 3, 3, seed=0, missing_prob=1.5, progress=False)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.ones(3))
    with pytest.raises(ValueError, match="not a pkdose population file, missing arrays"):
        PopulationData.from_npz(foreign)
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not a readable pkdose population file"):
        PopulationData.from_npz(tmp_path / "broken.npz")


def test_env_options_of_the_main_job(capsys):
    args = main_job.parse_args(["--weights", "m.json", "--target", "trough:10-20", "--env-option", "intervals_h=[12]",
                             "--env-option", "dose_step_mg=250"])
    assert main_job.env_options(args) == {"weights": "m.json", "target": "trough:10-20", "intervals_h": [12],
                                       "dose_step_mg": 250}
    with pytest.raises(ValueError, match="is not KEY=VALUE"):
        main_job.env_options(main_job.parse_args(["--env-option", "intervals_h"]))
    # a table model's id without its weights is refused before any training, with the reason
    assert train.main(["--env", "PKDose/Custom-v0", "--timesteps", "10"]) == 2
    assert "needs env_options weights" in capsys.readouterr().err


def test_pkdose_front_door_lists_and_runs_every_command(capsys):
    import importlib

    from agents import cli

    assert cli.main(["--help"]) == 0
    listing = capsys.readouterr().out
    for name, (module, _) in cli.COMMANDS.items():
        assert f"  {name} " in listing
        assert callable(importlib.import_module(module).main), module
    assert "  bench " in listing
    with pytest.raises(SystemExit) as done:
        cli.main(["generate", "--help"])
    assert done.value.code == 0 and "usage: pkdose generate" in capsys.readouterr().out
    assert cli.main(["population", "--patients", "2", "--intervals", "1"]) == 0
    assert "vancomycin" in capsys.readouterr().out
    assert cli.main(["nonsense"]) == 2 and "unknown command 'nonsense'" in capsys.readouterr().err
    assert cli.main(["bench", "--help"]) == 0 and "combination" in capsys.readouterr().out
    assert cli.main(["bench", "nope"]) == 2 and "unknown benchmark 'nope'" in capsys.readouterr().err


def test_train_py_is_the_main_job_shim(capsys):
    with pytest.raises(SystemExit) as done:
        train.main(["--help"])
    assert done.value.code == 0 and "usage: python train.py" in capsys.readouterr().out


def test_the_main_job_trains_ppo_with_its_faster_settings_and_restores_torch_threads(tmp_path, capsys):
    """PPO on a single-drug id without --n-envs: agents.config.MAIN_JOB_PPO_SINGLE (64 x 32, minibatch 1024)."""
    import json

    import torch

    from agents.config import MAIN_JOB_PPO_SINGLE

    threads = torch.get_num_threads()
    out = tmp_path / "run"
    assert main_job.main(["--timesteps", "2048", "--eval-patients", "2", "--out", str(out), "--no-progress"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["n_envs"] == MAIN_JOB_PPO_SINGLE["n_envs"] == 64
    assert run["hyperparameters"]["n_steps"] * run["n_envs"] == 2048  # the same transitions per update
    assert run["hyperparameters"]["batch_size"] == 1024
    assert torch.get_num_threads() == threads
    assert "(64 patients in parallel)" in capsys.readouterr().out
    # an explicit --n-envs keeps the family's defaults
    assert main_job.main(["--timesteps", "256", "--n-envs", "2", "--eval-patients", "2", "--out", str(tmp_path / "two"),
                          "--no-progress"]) == 0
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run["n_envs"] == 2 and run["hyperparameters"]["n_steps"] == 128 and run["hyperparameters"]["batch_size"] == 512

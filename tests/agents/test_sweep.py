"""Sweeps on Ray Tune: the config is checked before anything starts, trials are idempotent, a killed
sweep resumes without redoing finished trials, a failing trial is retried and reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents.sweep import check_address, check_results_dir, run_trial
from agents.sweep_config import Trial, load_sweep_config, parse_sweep_config

ROOT = Path(__file__).resolve().parents[2]
TINY = {"name": "tiny", "algorithms": ["ppo"], "envs": ["PKDose/Vancomycin-v0"], "seeds": [0, 1],
        "eval_patients": 8, "baselines": False, "timesteps": {"ppo": 256}, "n_envs": {"ppo": 4},
        "hyperparameters": {"ppo": {"n_steps": 64, "batch_size": 128}}}


def write_toml(path: Path, config: dict) -> Path:
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v)

    lines = [f"{k} = {value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for table, body in ((k, v) for k, v in config.items() if isinstance(v, dict)):
        flat = {k: v for k, v in body.items() if not isinstance(v, dict)}
        lines += [f"[{table}]", *(f"{json.dumps(k)} = {value(v)}" for k, v in flat.items())]
        for sub, inner in ((k, v) for k, v in body.items() if isinstance(v, dict)):
            lines += [f"[{table}.{json.dumps(sub)}]", *(f"{json.dumps(k)} = {value(v)}" for k, v in inner.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_shipped_configs_parse_into_their_trials():
    smoke = load_sweep_config(ROOT / "configs" / "smoke.toml")
    assert [t.kind for t in smoke.trials()].count("agent") == len(smoke.envs) * len(smoke.seeds)
    for name in ("leaderboard.toml", "leaderboard_cpu.toml"):
        board = load_sweep_config(ROOT / "configs" / name)
        names = [t.name for t in board.trials()]
        assert len(names) == len(set(names)) == len(board.envs) * (1 + 3 * 5)
        assert len(board.seeds) == 5 and "recurrent_ppo" in board.algorithms


def test_per_env_budgets_override_the_algorithm_budget():
    config = parse_sweep_config({**TINY, "envs": ["PKDose/Vancomycin-v0", "PKDose/Phenytoin-v0"],
                                 "timesteps": {"ppo": 256, "PKDose/Phenytoin-v0": {"ppo": 512}}})
    budgets = {(t.env_id, t.seed): t.timesteps for t in config.trials()}
    assert budgets[("PKDose/Vancomycin-v0", 0)] == 256 and budgets[("PKDose/Phenytoin-v0", 1)] == 512


@pytest.mark.parametrize("change, message", [
    ({"envs": ["PKDose/Nope-v0"]}, "unknown environment id 'PKDose/Nope-v0'"),
    ({"algorithms": ["ppo", "dqn"]}, "unknown algorithm(s) ['dqn']"),
    ({"timesteps": {"ppo": 0}}, "timesteps.ppo must be an integer >= 1"),
    ({"timesteps": {}}, "[timesteps] has no budget for 'ppo'"),
    ({"algorithms": ["sac"], "timesteps": {"sac": 10}, "hyperparameters": {}, "n_envs": {},
      "envs": ["PKDose/Vancomycin-Discrete-v0"]}, "SAC needs continuous actions"),
    ({"envs": ["PKDose/Vancomycin-MO-v0"]}, "has a vector reward"),
    ({"seeds": [0, 1_000_000]}, "seeds must be integers in [0, 1,000,000)"),
    ({"seeds": []}, "seeds must be a non-empty list"),
    ({"budget": 3}, "unknown key(s) ['budget']"),
    ({"reward_weights": {"PKDose/Vancomycin-v0": [1, -1]}}, "reward weights must be finite, >= 0"),
    ({"eval_patients": 0}, "eval_patients must be an integer >= 1"),
])
def test_bad_configs_are_refused_naming_the_problem(change, message):
    with pytest.raises(ValueError) as err:
        parse_sweep_config({**TINY, **change}, source="my.toml")
    assert message in str(err.value) and str(err.value).startswith("my.toml: ")


def test_every_problem_is_reported_at_once():
    with pytest.raises(ValueError) as err:
        parse_sweep_config({**TINY, "envs": ["PKDose/Nope-v0"], "algorithms": ["dqn"], "timesteps": {"ppo": 0}})
    assert "unknown algorithm" in str(err.value) and "unknown environment id" in str(err.value)


def test_invalid_toml_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ValueError, match="bad.toml is not valid TOML"):
        load_sweep_config(bad)


def test_a_results_directory_of_another_config_is_refused(tmp_path):
    config = parse_sweep_config(TINY)
    (tmp_path / "sweep.json").write_text(json.dumps({"name": "other", "fingerprint": "0" * 64, "trials": {}}))
    with pytest.raises(ValueError, match="holds the results of another sweep config"):
        check_results_dir(config, tmp_path)
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and holds no sweep.json"):
        check_results_dir(config, stranger)


def test_object_storage_results_are_refused_before_any_trial(tmp_path):
    from agents.sweep import run_sweep

    with pytest.raises(ValueError, match="object storage .* is not supported yet"):
        run_sweep(parse_sweep_config(TINY), "s3://bucket/results")


def test_an_unreachable_ray_address_fails_before_any_trial():
    with pytest.raises(ConnectionError, match="cannot reach the Ray cluster at '127.0.0.1:1'"):
        check_address("127.0.0.1:1")
    with pytest.raises(ValueError, match="is not host:port"):
        check_address("nowhere")
    check_address(None)  # local Ray: nothing to check


def test_a_trial_runs_once_then_returns_its_saved_evaluation(tmp_path):
    trial = parse_sweep_config(TINY).trials()[0]
    first = run_trial(trial, tmp_path)
    saved = tmp_path / "trials" / trial.name / "evaluation.json"
    stamp = saved.stat().st_mtime_ns
    assert run_trial(trial, tmp_path) == first and saved.stat().st_mtime_ns == stamp
    payload = json.loads(saved.read_text())
    assert Trial.from_json(payload["trial"]) == trial
    assert len(payload["results"][0]["per_patient"]["in_window_fraction"]) == trial.eval_patients


def _evaluations(results: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (results / "trials").glob("*/evaluation.json")}


def test_a_killed_sweep_resumes_without_redoing_finished_trials(tmp_path):
    config = write_toml(tmp_path / "tiny.toml", TINY)
    results = tmp_path / "results"
    command = [sys.executable, "-m", "agents.sweep", str(config), "--results", str(results), "--max-concurrent", "1"]
    first = subprocess.Popen([*command, "--no-leaderboard"], cwd=ROOT, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not _evaluations(results) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)  # killed mid-sweep: one trial done, the other not
    first.wait()
    done = _evaluations(results)
    assert len(done) == 1
    finished = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    after = _evaluations(results)
    assert len(after) == 2
    name = next(iter(done))
    assert after[name] == done[name]  # not redone
    state = json.loads((results / "sweep.json").read_text())
    assert set(state["trials"].values()) == {"TERMINATED"}
    board = json.loads((results / "leaderboard.json").read_text())
    (row,) = board["envs"]["PKDose/Vancomycin-v0"]["rows"]
    assert row["policy"] == "PPO" and row["runs"] == 2


def test_a_failing_trial_is_retried_then_reported_and_the_others_finish(tmp_path):
    import ray

    from agents.sweep import run_sweep

    config = parse_sweep_config({**TINY, "seeds": [0], "algorithms": ["ppo", "recurrent_ppo"],
                                 "timesteps": {"ppo": 256, "recurrent_ppo": 256},
                                 "hyperparameters": {"ppo": TINY["hyperparameters"]["ppo"],
                                                     "recurrent_ppo": {"batch_size": 1}}})  # SB3 refuses 1
    try:
        states = run_sweep(config, tmp_path, max_concurrent=2, verbose=0)
    finally:
        ray.shutdown()
    assert states == {"ppo-Vancomycin-v0-seed0": "TERMINATED", "recurrent_ppo-Vancomycin-v0-seed0": "ERROR"}
    tune_dir = next((tmp_path / "tune").glob("recurrent_ppo-*"))
    assert "Failure # 2" in (tune_dir / "error.txt").read_text()  # retried once, then given up
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert saved["trials"] == states and "invalid values" in saved["errors"]["recurrent_ppo-Vancomycin-v0-seed0"]


def test_the_single_run_path_needs_no_ray():
    code = ("import sys; sys.modules['ray'] = None; sys.modules['rliable'] = None\n"
            "import agents.main_job, agents.training, agents.sweep_config, agents.benchmark\n"
            "from agents.sweep import main\n"
            "assert main(['configs/smoke.toml', '--results', sys.argv[1]]) == 2\n")
    done = subprocess.run([sys.executable, "-c", code, "/nonexistent/results"], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'sweeps need Ray Tune: pip install -e ".[sweep]"' in done.stderr

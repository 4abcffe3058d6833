"""The leaderboard: rows on one cohort, scores normalised to standard dosing (0) and the oracle (1),
rliable aggregates, and a user's policy evaluated into the same rows."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from agents.leaderboard import aggregate, env_rows, load_entries, main, write_leaderboard
from agents.sweep import run_trial
from agents.sweep_config import Trial

SINGLE, COMBINATION = "PKDose/Vancomycin-v0", "PKDose/PaclitaxelCarboplatin-v1"
PATIENTS = 8
TINY_PPO = {"n_steps": 64, "batch_size": 128}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("leaderboard")
    for env in (SINGLE, COMBINATION):
        run_trial(Trial("baselines", env, eval_patients=PATIENTS), root)
        for seed in (0, 1):
            run_trial(Trial("agent", env, "ppo", seed, 256, None, TINY_PPO, 4, PATIENTS), root)
    return root


@pytest.fixture
def board(results, tmp_path):
    copy = tmp_path / "board"
    shutil.copytree(results, copy)
    return copy


def by_policy(rows):
    return {r["policy"]: r for r in rows}


def test_standard_dosing_scores_0_and_the_oracle_1_on_every_env(results):
    for env, entries in load_entries(results).items():
        rows = by_policy(env_rows(env, entries))
        assert rows["standard dosing"]["normalised"][0] == 0.0
        oracle = rows.get("oracle (true latent)") or rows["oracle (best constant regimen)"]
        assert oracle["normalised"][0] == pytest.approx(1.0)
        assert rows["PPO"]["runs"] == 2 and len(rows["PPO"]["normalised_runs"]) == 2


def test_an_agent_row_is_the_mean_over_its_seeds(results):
    entries = load_entries(results)[SINGLE]
    row = by_policy(env_rows(SINGLE, entries))["PPO"]
    seed_means = [r.per_patient["in_window_fraction"].mean() for r in entries["PPO"].runs]
    assert row["main"][0] == pytest.approx(np.mean(seed_means))
    assert row["main"][1] <= row["main"][0] <= row["main"][2]


def test_the_aggregate_is_rliables_iqm_over_the_policies_on_every_env(results):
    from rliable import metrics

    tables = {env: env_rows(env, e) for env, e in load_entries(results).items()}
    groups = aggregate(tables, reps=200)
    everywhere = groups["all envs"]
    assert set(everywhere["envs"]) == {SINGLE, COMBINATION}
    assert "MIPD (PK-VAE encoder)" not in everywhere["policies"]  # single drug only
    assert "MIPD (PK-VAE encoder)" in groups["single-drug envs"]["policies"]
    assert everywhere["policies"]["oracle"]["IQM"][0] == pytest.approx(1.0)  # both oracles count as one
    scores = everywhere["scores"]["PPO"]
    assert scores.shape == (2, 2)
    assert everywhere["policies"]["PPO"]["IQM"][0] == pytest.approx(metrics.aggregate_iqm(scores))


def test_write_leaderboard_writes_tables_json_and_figures(board):
    written = {p.name for p in write_leaderboard(board, reps=100)}
    assert {"leaderboard.md", "leaderboard.json", "aggregate_all.png", "performance_profile_all.png",
            "learning_curves.png"} <= written
    payload = json.loads((board / "leaderboard.json").read_text())
    assert payload["format"] == "pkdose-leaderboard/1"
    assert payload["envs"][COMBINATION]["toxicity"] == "serious_adverse_event"
    text = (board / "leaderboard.md").read_text()
    assert "## Aggregate over all envs" in text and "| PPO | agent | 2 |" in text
    assert any("published +23.4 % / -18.7 %" in g for g in payload["goals"])
    assert any(g.startswith(f"{SINGLE}: best agent PPO") for g in payload["goals"])


def test_a_user_factory_joins_the_table_and_equals_the_baseline_it_wraps(board):
    # StandardDosingPolicy(env_id) is a factory: the row must be standard dosing's, to the last bit
    assert main(["--results", str(board), "--reps", "100", "--policy", "mine=agents.baselines:StandardDosingPolicy"]) == 0
    payload = json.loads((board / "leaderboard.json").read_text())
    for env in (SINGLE, COMBINATION):
        rows = by_policy(payload["envs"][env]["rows"])
        assert rows["mine"]["kind"] == "user" and rows["mine"]["main"] == rows["standard dosing"]["main"]
        assert rows["mine"]["normalised"][0] == 0.0
    assert "mine" in payload["aggregate"]["all envs"]["policies"]


def test_an_sb3_zip_is_evaluated_on_its_own_env_only(board):
    agent = next((board / "trials").glob("ppo-Vancomycin-v0-seed0")) / "run" / "final_model.zip"
    assert main(["--results", str(board), "--reps", "100", "--policy", f"zip agent={agent}"]) == 0
    assert [p.name for p in (board / "user" / "zip agent").iterdir()] == ["Vancomycin-v0.json"]
    rows = by_policy(json.loads((board / "leaderboard.json").read_text())["envs"][SINGLE]["rows"])
    assert rows["zip agent"]["runs"] == 1


@pytest.mark.parametrize("spec, message", [
    ("x=nowhere_module:make", "cannot import 'nowhere_module:make'"),
    ("x=agents.baselines:NoSuchFactory", "cannot import"),
    ("x=agents.baselines", "must be module:factory"),
    ("no-equals-sign", "must be NAME=module:factory"),
    ("bad/name=agents.baselines:StandardDosingPolicy", "must be letters, digits"),
])
def test_bad_policy_specs_are_refused(board, capsys, spec, message):
    assert main(["--results", str(board), "--policy", spec]) == 2
    assert message in capsys.readouterr().err


def test_a_corrupt_evaluation_file_is_named(board, capsys):
    (board / "trials" / "ppo-Vancomycin-v0-seed1" / "evaluation.json").write_text("{not json")
    assert main(["--results", str(board), "--reps", "100"]) == 2
    assert "ppo-Vancomycin-v0-seed1/evaluation.json is not a pkdose evaluation file" in capsys.readouterr().err


def test_an_empty_results_directory_says_what_to_run(tmp_path, capsys):
    assert main(["--results", str(tmp_path)]) == 2
    assert "run 'pkdose sweep' first" in capsys.readouterr().err


def test_a_factory_may_return_an_sb3_model(board, tmp_path, monkeypatch):
    run = board / "trials" / "ppo-Vancomycin-v0-seed0" / "run"
    agent = run / "best_model.zip" if (run / "best_model.zip").is_file() else run / "final_model.zip"
    (tmp_path / "my_agents.py").write_text(
        "from agents.checkpoints import load_agent\n"
        f"def make(env_id):\n    return load_agent({str(agent)!r})[0]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from agents.leaderboard import load_user_policy

    policy = load_user_policy("my_agents:make", SINGLE)
    from agents.evaluate import evaluate_policy

    mine = evaluate_policy(SINGLE, policy, n_patients=PATIENTS, seed=1_000_000, num_envs=PATIENTS)
    saved = json.loads((board / "trials" / "ppo-Vancomycin-v0-seed0" / "evaluation.json").read_text())
    # the very model the sweep evaluated, on the same cohort and batch: the same figures
    assert mine.per_patient["in_window_fraction"].tolist() == saved["results"][0]["per_patient"]["in_window_fraction"]


def test_an_env_where_standard_dosing_is_at_the_ceiling_is_not_normalised():
    from agents.evaluate import EvaluationResult, bootstrap_ci
    from agents.leaderboard import MIN_GAP, Entry

    def result(name, attainment):
        per_patient = {"in_window_fraction": np.full(10, attainment), "toxic_exposure": np.zeros(10)}
        return EvaluationResult(SINGLE, name, 10, 1_000_000, per_patient, bootstrap_ci(per_patient, 100))

    for gap, normalised in ((MIN_GAP / 2, False), (MIN_GAP * 2, True)):
        entries = {name: Entry(name, kind, [result(name, value)]) for name, kind, value in
                   (("standard dosing", "baseline", 0.9), ("oracle (true latent)", "baseline", 0.9 + gap),
                    ("PPO", "agent", 0.9 + gap / 2))}
        rows = by_policy(env_rows(SINGLE, entries))
        assert (rows["PPO"]["normalised"] is not None) == normalised
        if normalised:
            assert rows["PPO"]["normalised"][0] == pytest.approx(0.5)
        assert not aggregate({SINGLE: list(rows.values())}, reps=100) or normalised


def test_the_aggregate_intervals_are_reproducible_and_leave_numpys_global_stream_alone(results):
    tables = {env: env_rows(env, e) for env, e in load_entries(results).items()}
    np.random.seed(123)
    expected_next = np.random.random()
    np.random.seed(123)
    first = aggregate(tables, reps=200)["all envs"]["policies"]
    assert np.random.random() == expected_next
    second = aggregate(tables, reps=200)["all envs"]["policies"]
    assert first == second and first["PPO"]["IQM"][1] < first["PPO"]["IQM"][2]

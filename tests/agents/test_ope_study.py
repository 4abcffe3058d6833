"""The OPE ground-truth study on a real env: deterministic, honest about on-policy data, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from agents.offline.collect import collect_episodes
from agents.offline.policies import ClinicianPolicy
from agents.offline.study import (
    ESTIMATORS,
    compact_table,
    estimate_all,
    main,
    summarise,
    target_policies,
    true_value,
)

ENV = "PKDose/Phenytoin-v0"


@pytest.fixture(scope="module")
def logged():
    return collect_episodes(ENV, ClinicianPolicy(ENV, seed=0), 30, seed=10_000_000)


def test_estimates_on_a_real_env_are_deterministic(logged):
    policy = target_policies(ENV)["standard + N(0, 0.1)"]
    a, b = estimate_all(logged, policy, seed=0), estimate_all(logged, policy, seed=0)
    assert set(a) == set(ESTIMATORS)
    for name in ESTIMATORS:
        np.testing.assert_array_equal(np.array(a[name]), np.array(b[name]), err_msg=name)


def test_on_policy_importance_weights_are_one(logged):
    """Target == behaviour: every IS-family estimate is the logged mean return, ESS = n."""
    estimates = estimate_all(logged, ClinicianPolicy(ENV, seed=0), seed=0)
    for name in ("IS", "WIS", "PDIS", "WPDIS"):
        assert estimates[name][0] == pytest.approx(logged.returns().mean(), rel=1e-9), name
        assert estimates[name][3] == pytest.approx(logged.n_episodes), name


def test_summary_counts_coverage_and_failures():
    rows = [{"env": ENV, "target": "t", "size": 10, "repeat": r, "estimator": "IS", "truth": 1.0,
             "estimate": est, "low": est - 0.5, "high": est + 0.5, "ess": 3.0}
            for r, est in enumerate([1.2, 2.0, np.nan])]
    (s,) = summarise(rows)
    assert s["bias"] == pytest.approx(0.6) and s["coverage"] == pytest.approx(0.5) and s["failed"] == 1


def test_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        main(["--envs", "PKDose/Phenytoin-Discrete-v0"])
    assert "discrete actions" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--repeats", "1"])
    with pytest.raises(SystemExit):
        main(["--truth-replays", "0"])
    assert "--truth-replays must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--agent", "no/such/agent.zip"])
    assert "no agent archive at no/such/agent.zip" in capsys.readouterr().err
    with pytest.raises(ValueError, match="replays must be an integer >= 1, got 0"):
        true_value(ENV, target_policies(ENV)["uniform random"], 2, 5, replays=0)


@pytest.fixture(scope="module")
def untrained_agent(tmp_path_factory):
    """A PPO archive of ENV (untrained: the study needs its deterministic action, not its quality)."""
    import gymnasium as gym
    from stable_baselines3 import PPO

    from agents.checkpoints import save_agent

    model = PPO("MlpPolicy", gym.make(ENV), n_steps=32, batch_size=32, seed=0, device="cpu")
    return save_agent(model, tmp_path_factory.mktemp("agent") / "agent.zip", algo="ppo", env_id=ENV,
                      env_kwargs={}, hyperparameters={"n_steps": 32, "batch_size": 32})


def test_a_trained_agent_joins_the_targets_of_its_env_only(untrained_agent, logged):
    targets = target_policies(ENV, [untrained_agent])
    assert list(targets)[-2:] == ["PPO agent + N(0, 0.1)", "uniform random"]  # nearest to farthest
    assert "PPO agent + N(0, 0.1)" not in target_policies("PKDose/PaclitaxelCarboplatin-v0", [untrained_agent])
    agent = targets["PPO agent + N(0, 0.1)"]
    p = agent.action_prob(logged.observations[:, 0], {}, logged.actions[:, 0])
    assert p.shape == (logged.n_episodes,) and np.all(np.isfinite(p)) and np.all(p >= 0)


def test_compact_table_has_one_row_per_target_and_estimator():
    rows = [{"env": ENV, "target": t, "size": n, "repeat": r, "estimator": e, "truth": 1.0, "estimate": 1.0 + r / 10,
             "low": 0.5, "high": 1.5, "ess": float(n)}
            for t in ("a", "b") for n in (10, 100) for r in range(2) for e in ("IS", "FQE")]
    table = compact_table(summarise(rows)).splitlines()
    assert table[0].count("RMSE n=") == 2 and "ESS n=100" in table[0]
    assert len(table) == 2 + 4  # header, rule, (2 targets x 2 estimators)
    assert table[2].startswith("| Phenytoin-v0 | a | 1.00 | IS | 0.07 | 0.07 | 100% | 100% | 100 |")


def test_agent_of_another_env_is_refused(untrained_agent, capsys):
    with pytest.raises(SystemExit):
        main(["--envs", "PKDose/PaclitaxelCarboplatin-v0", "--agent", str(untrained_agent)])
    assert "was trained on 'PKDose/Phenytoin-v0'" in capsys.readouterr().err


def test_true_value_replays_average_independent_action_noise():
    """One replay is a single on-policy run; more average runs whose action noise differs (and the
    logging seeds 0, 1, ... are never among the truth's)."""
    from agents.offline.study import TRUTH_SEED

    policy = target_policies(ENV)["standard + N(0, 0.3)"]
    runs = [collect_episodes(ENV, _with_seed(policy, TRUTH_SEED + j), 20, seed=5).returns().mean() for j in range(2)]
    assert runs[0] != runs[1]
    assert true_value(ENV, policy, 20, 5, replays=1) == runs[0]
    assert true_value(ENV, policy, 20, 5, replays=2) == pytest.approx(np.mean(runs), rel=1e-12)
    assert policy.seed == 7  # the caller's policy is left as it was
    assert TRUTH_SEED > 1000


def _with_seed(policy, seed):
    import copy

    replay = copy.copy(policy)
    replay.seed = seed
    return replay

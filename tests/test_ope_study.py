"""The OPE ground-truth study on a real env: deterministic, honest about on-policy data, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from agents.offline.collect import collect_episodes
from agents.offline.policies import ClinicianPolicy
from agents.offline.study import ESTIMATORS, estimate_all, main, summarise, target_policies

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

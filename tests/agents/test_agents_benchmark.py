"""Benchmark helpers: pooled seeds, paired relative change, command-line validation."""

from __future__ import annotations

import numpy as np
import pytest

from agents.benchmark import main, pooled, relative_change
from agents.evaluate import EvaluationResult, bootstrap_ci


def result(values: dict[str, np.ndarray], name: str = "p") -> EvaluationResult:
    return EvaluationResult("PKDose/PaclitaxelCarboplatin-v0", name, len(next(iter(values.values()))), 0, values,
                            bootstrap_ci(values, 200))


def test_relative_change_is_paired_and_covers_the_truth():
    rng = np.random.default_rng(0)
    reference = (rng.uniform(size=4000) < 0.2).astype(float)
    better = np.maximum(reference, (rng.uniform(size=4000) < 0.1)).astype(float)  # same patients, more responses
    point, low, high = relative_change(result({"objective_response": better}), result({"objective_response": reference}),
                                       "objective_response")
    assert point == pytest.approx(better.mean() / reference.mean() - 1)
    assert 0 < low < point < high
    with pytest.raises(ValueError, match="same cohort"):
        relative_change(result({"x": better[:10]}), result({"x": reference}), "x")


def test_pooled_concatenates_seeds():
    a, b = result({"return": np.ones(5)}), result({"return": np.zeros(5)})
    both = pooled([a, b], "PPO (2 seeds)")
    assert both.n_patients == 10 and both.metrics["return"].mean == pytest.approx(0.5)


@pytest.mark.parametrize("args, message", [
    (["--envs", "PKDose/Vancomycin-MO-v0"], "vector reward"),
    (["--envs", "PKDose/Nope-v0"], "unknown environment id"),
    (["--ppo-timesteps", "0"], "--ppo-timesteps must be >= 1"),
    (["--pareto-weights", "-1"], "--pareto-weights must be >= 0"),
])
def test_bad_arguments(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit):
        main([*args, "--out", str(tmp_path)])
    assert message in capsys.readouterr().err

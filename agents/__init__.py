"""Dosing agents and their evaluation; environments are used only through the Gymnasium API."""

from agents.baselines import (
    AdaptiveRulePolicy,
    FixedDosePolicy,
    Policy,
    RandomPolicy,
    SB3Policy,
    StandardDosingPolicy,
)
from agents.evaluate import Estimate, EvaluationResult, bootstrap_ci, evaluate_policy, markdown_header
from agents.model_based import MIPDPolicy, OraclePolicy

__all__ = ["AdaptiveRulePolicy", "Estimate", "EvaluationResult", "FixedDosePolicy", "MIPDPolicy", "OraclePolicy", "Policy", "RandomPolicy", "SB3Policy",
           "StandardDosingPolicy", "bootstrap_ci", "evaluate_policy", "markdown_header"]

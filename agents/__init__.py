"""Dosing agents and their evaluation; environments are used only through the Gymnasium API."""

from agents.baselines import FixedDosePolicy, Policy, RandomPolicy, SB3Policy, StandardDosingPolicy
from agents.evaluate import Estimate, EvaluationResult, bootstrap_ci, evaluate_policy, markdown_header

__all__ = ["Estimate", "EvaluationResult", "FixedDosePolicy", "Policy", "RandomPolicy", "SB3Policy",
           "StandardDosingPolicy", "bootstrap_ci", "evaluate_policy", "markdown_header"]

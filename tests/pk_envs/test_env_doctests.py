"""The examples in the environment class docstrings run and print what they say (Gymnasium style)."""

from __future__ import annotations

import doctest
import warnings

import pytest

import pk_envs.combination
import pk_envs.combination_v1
import pk_envs.single_drug


@pytest.mark.parametrize("module", [pk_envs.single_drug, pk_envs.combination, pk_envs.combination_v1])
def test_docstring_examples_run(module):
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    assert tests, f"{module.__name__} has no examples"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the v0 ids' "out of date" notice
        for test in tests:
            runner.run(test)
    assert runner.summarize(verbose=False).failed == 0

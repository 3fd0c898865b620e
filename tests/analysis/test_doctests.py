"""The docstring examples of the analysis modules run and are right."""
import doctest
import importlib

import pytest

MODULES = ["signals", "events", "classify", "memtrace", "analyzer", "aggregate", "memorization",
           "phases", "segments", "phase_signatures", "synthetic", "synthetic_examples", "importers", "schema",
           "runlock", "chunks", "store", "names", "cli_errors",
           "store_background"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(f"phasewatch.analysis.{name}")
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0

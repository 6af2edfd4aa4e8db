"""The examples in the docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import tileunet

MODULES = sorted(m.name for m in pkgutil.walk_packages(tileunet.__path__, "tileunet.")
                 if m.name != "tileunet.__main__")  # importing it runs the command line


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_the_examples_are_there():
    tried = {name: doctest.testmod(importlib.import_module(name)).attempted
             for name in ("tileunet.evaluation.scores", "tileunet.evaluation.isbi",
                          "tileunet.evaluation.warping", "tileunet.inference.postprocess",
                          "tileunet.model")}
    assert all(n > 0 for n in tried.values()), tried

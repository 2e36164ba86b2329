"""Every example in a module docstring runs (the runnable-docstring convention)."""

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ["tensorir", "passes", "backends", "frontends"]


def modules():
    for pkg in PACKAGES:
        mod = importlib.import_module(pkg)
        yield pkg
        for info in pkgutil.walk_packages(mod.__path__, pkg + "."):
            yield info.name


@pytest.mark.parametrize("name", sorted(set(modules())))
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0

"""Shared test setup: markers `slow` (run by `make test-all`) and `accelerator`."""

import jax
import pytest


def pytest_collection_modifyitems(config, items):
    if jax.default_backend() != "cpu":
        return
    skip = pytest.mark.skip(reason="needs an accelerator; JAX sees only the CPU")
    for item in items:
        if "accelerator" in item.keywords:
            item.add_marker(skip)

"""Shared test setup: markers `slow` (run by `make test-all`) and `accelerator`.

The suite compiles hundreds of tiny programs and runs each a few times, so XLA's CPU backend
optimisation is turned down for tests (set before JAX starts its backend): it cut the
compile time of a tiny GoogLeNet's init from 5.2 s to 1.3 s here. Convolutions and matmuls
still call the same libraries, and an explicit XLA_FLAGS setting is left alone.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax  # noqa: E402  (after XLA_FLAGS: the backend reads it once)
import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if jax.default_backend() != "cpu":
        return
    skip = pytest.mark.skip(reason="needs an accelerator; JAX sees only the CPU")
    for item in items:
        if "accelerator" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def native_kernels():
    """Require jaxnets.native's oneDNN library (make install builds it): comparing the pure
    path with itself would prove nothing. Fails where it could be built but is not; skips,
    saying why, only where it cannot be built (another platform, no compiler or oneDNN) or
    is switched off (JAXNETS_NATIVE=0)."""
    from jaxnets import native
    from jaxnets.native import library

    if library.loaded() is None:
        status = library.status()
        if "cannot be built here" in status or status.startswith("oneDNN kernels: off"):
            pytest.skip(status)
        pytest.fail(f"the oneDNN kernels can be built here but are not: {status}")
    assert native.enabled()

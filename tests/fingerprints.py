"""Recorded output fingerprints of every registered model: a regression net for refactors.

For each model of ``jaxnets.list_models()`` the tiny config (``card.test_config``) is built
with fixed keys on a fixed random batch of 8, and the fingerprint records

* the parameter count of the tiny config and of the full default config (so a preset whose
  tiny config equals another's, vgg13 and vgg16 say, is still told apart),
* the sum and absolute sum of the initial parameters,
* the shape of the outputs in evaluation mode and their sum, absolute sum and three fixed
  random projections (a permutation or sign change of outputs moves a projection), and the
  same statistics of the outputs in training mode with a fixed dropout key.

``tests/test_models.py`` compares every model against ``tests/fingerprints.json`` to a
relative 1e-4 of the outputs' absolute sum: far above float32 rounding between CPUs (and
the GPU, with float32 matmuls at full precision), far below any change of the function.
An intended change of a model's function is recorded with an explicit command::

    make fingerprints                       # every model
    .venv/bin/python tests/fingerprints.py lenet5 resnet18   # some

and the diff of ``tests/fingerprints.json`` goes into the same commit, so the change is seen.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")  # as conftest.py

import jax  # noqa: E402
import numpy as np  # noqa: E402

import jaxnets  # noqa: E402
from jaxnets import losses, registry  # noqa: E402

PATH = Path(__file__).with_name("fingerprints.json")
BATCH = 8
RTOL = 1e-4


@functools.cache
def built(name: str):
    """``(card, model, variables, x, y, eval_outputs)`` of the tiny config, fixed keys.

    Cached: the registry-wide tests of one model share one build and one compiled apply.
    Matmuls run at full float32 precision so that accelerators agree with the CPU.
    """
    card = jaxnets.model_card(name)
    model = jaxnets.create_model(name, **card.test_config)
    k_x, k_init, k_drop, k_y = jax.random.split(jax.random.PRNGKey(0), 4)
    x = registry.example_inputs(card, k_x, batch_size=BATCH)
    with jax.default_matmul_precision("highest"):
        variables = jax.jit(functools.partial(model.init, train=False))(
            {"params": k_init, "dropout": k_drop}, x
        )
        outputs = jax.jit(functools.partial(model.apply, train=False))(variables, x)
    y = losses.random_targets(card.loss, k_y, outputs)
    return card, model, variables, x, y, outputs


def train_outputs(name: str, model, variables, x) -> jax.Array:
    """Outputs in training mode (dropout key 3, batch statistics), jitted."""
    key = {"dropout": jax.random.PRNGKey(3)}
    with jax.default_matmul_precision("highest"):
        return jax.jit(
            lambda v, x: model.apply(v, x, train=True, rngs=key, mutable=["batch_stats"])[0]
        )(variables, x)


def full_parameter_count(name: str) -> int:
    """Parameters of the default (full) config, from shapes only (nothing is allocated)."""
    card = jaxnets.model_card(name)
    full = jaxnets.create_model(name)
    shape = jax.ShapeDtypeStruct((2, *card.input_shape), np.dtype(card.input_dtype))
    variables = jax.eval_shape(
        lambda x: full.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x),
        shape,
    )
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(variables["params"])))


def output_stats(outputs: jax.Array) -> dict:
    """Shape, sum, absolute sum and three fixed random projections of an output array."""
    out = np.asarray(outputs, dtype=np.float64).ravel()
    directions = np.random.default_rng(0).standard_normal((3, out.size))
    return {
        "shape": list(np.shape(outputs)),
        "sum": float(out.sum()),
        "abs_sum": float(np.abs(out).sum()),
        "projections": [float(p) for p in directions @ out],
    }


def parameter_stats(variables) -> dict:
    leaves = [np.asarray(p, np.float64) for p in jax.tree.leaves(variables["params"])]
    return {
        "count": int(sum(p.size for p in leaves)),
        "sum": float(sum(p.sum() for p in leaves)),
        "abs_sum": float(sum(np.abs(p).sum() for p in leaves)),
    }


def fingerprint(name: str) -> dict:
    """Everything recorded for one model (see the module docstring)."""
    _, model, variables, x, _, outputs = built(name)
    return {
        "full_parameters": full_parameter_count(name),
        "parameters": parameter_stats(variables),
        "eval_outputs": output_stats(outputs),
        "train_outputs": output_stats(train_outputs(name, model, variables, x)),
    }


def recorded() -> dict:
    return json.loads(PATH.read_text()) if PATH.exists() else {}


def mismatches(name: str, actual: dict, expected: dict, path: str = "") -> list[str]:
    """Where ``actual`` differs from the recorded ``expected``: integers and shapes exactly,
    floats to RTOL of the enclosing record's absolute sum."""
    scale = max(expected.get("abs_sum", 0.0), 1e-6)
    found = []
    for key, want in expected.items():
        got, where = actual.get(key), f"{path}{key}"
        if isinstance(want, dict):
            found += mismatches(name, got or {}, want, f"{where}.")
        elif isinstance(want, list) and want and isinstance(want[0], float):
            if (
                got is None
                or len(got) != len(want)
                or not np.allclose(got, want, rtol=0, atol=RTOL * scale)
            ):
                found.append(f"{where}: {got} != recorded {want}")
        elif isinstance(want, float):
            if got is None or abs(got - want) > RTOL * scale:
                found.append(f"{where}: {got} != recorded {want}")
        elif got != want:
            found.append(f"{where}: {got} != recorded {want}")
    return found


def update(names: list[str]) -> None:
    """Record the fingerprints of ``names`` (all registered models when empty)."""
    unknown = sorted(set(names) - set(jaxnets.list_models()))
    if unknown:
        raise SystemExit(f"unknown model(s) {', '.join(unknown)}; see jaxnets.list_models()")
    table = recorded()
    for name in names or jaxnets.list_models():
        table[name] = fingerprint(name)
        print(f"recorded {name}")
    stale = sorted(set(table) - set(jaxnets.list_models()))
    for name in stale:  # models that were removed from the registry
        del table[name]
    PATH.write_text(json.dumps(dict(sorted(table.items())), indent=1) + "\n")
    print(f"wrote {PATH} ({len(table)} models)")


if __name__ == "__main__":
    update(sys.argv[1:])

"""Export a registered model's inference function as a serialized ``jax.export`` artifact.

The artifact is the StableHLO of ``x -> model.apply(variables, x, train=False)`` with the
variables baked in as constants and a symbolic batch dimension ``b``
(``jax.export.symbolic_shape("b")``), lowered for the CPU and for CUDA GPUs. It needs only
jax (and the ``flatbuffers`` package jax reads it with) to run, not jaxnets::

    import jax, numpy as np
    exported = jax.export.deserialize(open("lenet5.jaxexport", "rb").read())
    logits = exported.call(np.zeros((7, 32, 32, 1), np.float32))   # any batch size

Every registered model exports with a symbolic batch on its tiny test config
(``tests/test_export.py`` checks each one against jaxnets' own forward pass); a model that
cannot (a Python branch on the batch size) raises :class:`ExportError` naming it and the
reason, and ``batch=N`` exports it for that one batch size instead.

ONNX: not offered. ``jax2onnx`` 0.17.1 and ``onnxruntime`` 1.32.0 install here (32 s, into a
venv already holding jaxnets' dependencies; jax 0.10.2, flax 0.12.8), but (1) jax2onnx pins
``orbax-checkpoint<0.11.37``, so installing it downgrades the project's orbax-checkpoint
0.12.8 to 0.11.36; and (2) while it traces, it replaces ``flax.linen.max_pool`` and
``avg_pool`` with functions that take the window, strides and padding only as keywords, so
every model pooling through ``jaxnets.nn.conv.pool`` (LeNet-5, ResNet-18, the VGGs, ...)
fails with ``TypeError: ... patched_max_pool() takes 1 positional argument but 4 were
given``. The MLP and the LSTM classifier convert and agree with jaxnets to 3e-8; with
``pool`` calling flax by keywords, LeNet-5 and ResNet-18 agree to 4e-7 as well.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnets import native, registry
from jaxnets.weights import check_variables, default_input_shape

__all__ = [
    "PLATFORMS",
    "ExportError",
    "describe",
    "export_apply",
    "export_model",
    "initial_variables",
]

PLATFORMS = ("cpu", "cuda")


class ExportError(ValueError):
    """Raised when a model cannot be exported as asked; the message names the model, the
    reason and what to do instead."""


def initial_variables(
    name: str, input_shape: Sequence[int], *, seed: int = 0, **hyperparameters: Any
) -> dict[str, Any]:
    """Fresh variables of ``create_model(name, **hyperparameters)`` for inputs of shape
    ``(batch, *input_shape)``, drawn as ``Trainer.init(jax.random.PRNGKey(seed), x)`` draws
    them (the key split in three: state, ``params``, ``dropout``)."""
    card = registry.model_card(name)
    model = registry.create_model(name, **hyperparameters)
    _, params_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jnp.zeros((1, *input_shape), card.input_dtype)
    init = jax.jit(lambda keys, x: model.init(keys, x, train=False))
    return dict(init({"params": params_key, "dropout": dropout_key}, x))


def export_apply(
    model: nn.Module,
    variables: Mapping[str, Any],
    input_shape: Sequence[int],
    dtype: Any,
    *,
    batch: int | None = None,
    platforms: Sequence[str] = PLATFORMS,
    label: str = "the model",
) -> jax.export.Exported:
    """Export ``x -> model.apply(variables, x, train=False)`` for ``x`` of shape
    ``(b, *input_shape)`` and ``dtype``, ``b`` symbolic (``batch=None``) or ``batch``; the
    variables become constants of the program. Raises :class:`ExportError` naming ``label``
    when the model needs a concrete batch size."""
    constants = jax.tree.map(jnp.asarray, dict(variables))
    (symbolic,) = jax.export.symbolic_shape("b")
    x = jax.ShapeDtypeStruct((symbolic if batch is None else batch, *input_shape), dtype)

    def forward(x: jax.Array) -> Any:
        return model.apply(constants, x, train=False)

    try:
        # the artifact runs where jaxnets' oneDNN library is not loaded: lax convolutions only
        with native.pure_jax():
            return jax.export.export(jax.jit(forward), platforms=tuple(platforms))(x)
    except jax.errors.InconclusiveDimensionOperation as err:
        raise ExportError(
            f"{label} cannot be exported with a symbolic batch dimension: a Python branch "
            f"depends on the batch size ({str(err).splitlines()[0]}); export it for one batch "
            "size with batch=N (jaxnets export --batch N)"
        ) from err


def export_model(
    name: str,
    variables: Mapping[str, Any] | None = None,
    *,
    out: str | Path | None = None,
    batch: int | None = None,
    input_shape: Sequence[int] | None = None,
    seed: int = 0,
    platforms: Sequence[str] = PLATFORMS,
    **hyperparameters: Any,
) -> jax.export.Exported:
    """Export ``x -> create_model(name, **hyperparameters).apply(variables, x, train=False)``.

    Args:
      name: a registered model.
      variables: ``{"params": ..., **collections}`` (e.g. ``load_weights(p).variables``),
        checked against the model (``WeightsError`` names the first key that does not fit);
        None initialises them from ``seed`` (:func:`initial_variables`).
      out: where to write ``exported.serialize()``; None writes nothing.
      batch: None for a symbolic batch dimension ``b``, or a fixed batch size.
      input_shape: one example's shape (no batch axis); defaults to the card's (its tiny
        shape when ``hyperparameters`` are exactly its test config).
      platforms: what to lower for; ``exported.call`` runs on any of them.

    Returns the ``jax.export.Exported``: its input is ``(b, *input_shape)`` of the card's
    dtype, its output what the model returns (e.g. logits ``(b, num_classes)``).
    """
    card = registry.model_card(name)
    input_shape = tuple(input_shape or default_input_shape(name, hyperparameters))
    if variables is None:
        variables = initial_variables(name, input_shape, seed=seed, **hyperparameters)
    check_variables(name, variables, input_shape, hyperparameters, where=f"variables for {name!r}")
    exported = export_apply(
        registry.create_model(name, **hyperparameters),
        variables,
        input_shape,
        card.input_dtype,
        batch=batch,
        platforms=platforms,
        label=f"model {name!r}",
    )
    if out is not None:
        Path(out).write_bytes(exported.serialize())
    return exported


def describe(exported: jax.export.Exported, out: str | Path) -> str:
    """What ``jaxnets export`` prints: the input and output shapes and dtypes of the artifact
    at ``out`` and the lines that run it in a process that imports only jax."""
    (spec,) = exported.in_avals
    shape = ", ".join(str(d) for d in spec.shape)
    outputs = ", ".join(f"({', '.join(map(str, o.shape))}) {o.dtype}" for o in exported.out_avals)
    example = ", ".join("7" if not isinstance(d, int) else str(d) for d in spec.shape)
    return "\n".join(
        [
            f"wrote {out} ({Path(out).stat().st_size:,} bytes; {', '.join(exported.platforms)})",
            f"input:  ({shape}) {spec.dtype}",
            f"output: {outputs}",
            "run it with jax alone:",
            "  import jax, numpy as np",
            f"  exported = jax.export.deserialize(open({str(out)!r}, 'rb').read())",
            f"  outputs = exported.call(np.zeros(({example}), np.{spec.dtype}))",
        ]
    )

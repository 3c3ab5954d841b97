"""Weights files: one model's variables with the name and hyperparameters that rebuild it.

A weights file is three parts, so that ``load_weights`` can say what is wrong with a bad one:

1. the line ``jaxnets-weights 1`` (the format and its version);
2. a one-line JSON header: ``model`` (the registry name), ``hyperparameters`` (the overrides
   passed to :func:`jaxnets.create_model`; tuples are stored as lists and come back as
   tuples), ``input_shape`` and ``input_dtype`` (one example, no batch axis),
   ``jaxnets_version``, ``payload_bytes`` and ``sha256`` (the SHA-256 of the payload);
3. the payload: ``flax.serialization.msgpack_serialize`` of the variables
   (``{"params": ..., "batch_stats": ...}``), whose arrays keep their dtype and bits.

Loading checks each part in turn and refuses with :class:`WeightsError` naming the first
fault: a missing file, a file of another kind, a payload whose digest differs from the
header's (corrupt or truncated), a model name the registry does not know (with its
did-you-mean), or variables that do not fit ``create_model(name, **hyperparameters)`` on the
stored input shape (the first missing, extra or wrongly shaped key, with both shapes).

Weights out of a training run: ``fit`` returns a ``FitResult`` whose ``state`` is a
``TrainState``; its parameters and model state are the variables::

    result = fit(trainer, state, train, epochs=5, batch_size=32)
    save_weights("lenet5.weights", "lenet5",
                 {"params": result.state.params, **result.state.model_state},
                 input_shape=x.shape[1:], **hyperparameters)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np
from flax import serialization

import jaxnets
from jaxnets import registry

__all__ = [
    "MAGIC",
    "Weights",
    "WeightsError",
    "check_variables",
    "default_input_shape",
    "load_weights",
    "save_weights",
    "variable_shapes",
]

MAGIC = b"jaxnets-weights 1\n"


class WeightsError(ValueError):
    """Raised for a weights file or a set of variables that cannot be used; the message says
    which file, what is wrong with it and what would be right."""


class Weights(NamedTuple):
    """What :func:`load_weights` returns.

    Attributes:
      name: the registry name of the model.
      hyperparameters: the overrides for ``create_model(name, **hyperparameters)``.
      variables: ``{"params": ..., **other collections}``, nested dicts of NumPy arrays.
      input_shape: the shape of one example (no batch axis) the variables were checked on.
      input_dtype: the dtype name of the input (``"float32"``, ``"int32"``).
    """

    name: str
    hyperparameters: dict[str, Any]
    variables: dict[str, Any]
    input_shape: tuple[int, ...]
    input_dtype: str

    def model(self) -> nn.Module:
        """The linen Module these variables belong to: ``create_model(name, **hyperparameters)``."""
        return registry.create_model(self.name, **self.hyperparameters)


def default_input_shape(name: str, hyperparameters: Mapping[str, Any]) -> tuple[int, ...]:
    """The shape of one example for ``name`` built with ``hyperparameters``: the card's tiny
    input shape when the hyperparameters are exactly its test config, else its input shape."""
    card = registry.model_card(name)
    return (
        card.tiny_input_shape
        if dict(hyperparameters) == dict(card.test_config)
        else card.input_shape
    )


def variable_shapes(name: str, input_shape: tuple[int, ...], **hyperparameters: Any) -> dict:
    """The variables ``create_model(name, **hyperparameters)`` makes on a batch of one
    ``(1, *input_shape)`` input, as a tree of ``jax.ShapeDtypeStruct`` (nothing is computed)."""
    card = registry.model_card(name)
    model = registry.create_model(name, **hyperparameters)
    x = jax.ShapeDtypeStruct((1, *input_shape), np.dtype(card.input_dtype))
    keys = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}
    return jax.eval_shape(lambda x: model.init(keys, x, train=False), x)


def _flat(tree: Any) -> dict[str, Any]:
    state = serialization.to_state_dict(tree)
    return {
        "/".join(str(getattr(k, "key", k)) for k in path): leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(state)
    }


def check_variables(
    name: str,
    variables: Mapping[str, Any],
    input_shape: tuple[int, ...],
    hyperparameters: Mapping[str, Any],
    *,
    where: str = "the variables",
) -> None:
    """Raise :class:`WeightsError` naming the first key of ``variables`` (``"params/..."``)
    that is missing, extra or of another shape than ``create_model(name, **hyperparameters)``
    makes for inputs ``(batch, *input_shape)``; ``where`` says whose variables they are."""
    expected = _flat(variable_shapes(name, input_shape, **hyperparameters))
    got = _flat(variables)
    config = ", ".join([repr(name), *(f"{k}={v!r}" for k, v in hyperparameters.items())])
    target = f"create_model({config}) on input (batch, {', '.join(map(str, input_shape))})"
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    if missing:
        raise WeightsError(
            f"{where} do not fit {target}: {missing[0]!r} is missing (the model has "
            f"{len(expected)} arrays, the weights {len(got)})"
        )
    if extra:
        raise WeightsError(f"{where} do not fit {target}: {extra[0]!r} is not one of the model's")
    for key, spec in expected.items():
        if tuple(np.shape(got[key])) != tuple(spec.shape):
            raise WeightsError(
                f"{where} do not fit {target}: {key!r} has shape {tuple(np.shape(got[key]))} "
                f"in the weights, the model expects {tuple(spec.shape)}"
            )


def _to_json(value: Any, key: str) -> Any:
    if isinstance(value, (tuple, list)):
        return [_to_json(v, key) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise WeightsError(
        f"hyperparameter {key!r} = {value!r} cannot be stored in a weights file: give numbers, "
        "strings, booleans, None or tuples of them (e.g. an activation by its name)"
    )


def _from_json(value: Any) -> Any:
    return tuple(_from_json(v) for v in value) if isinstance(value, list) else value


def save_weights(
    path: str | Path,
    name: str,
    variables: Mapping[str, Any],
    *,
    input_shape: tuple[int, ...] | None = None,
    **hyperparameters: Any,
) -> Path:
    """Write ``variables`` of the registered model ``name`` to one weights file at ``path``.

    ``variables``: ``{"params": ..., **collections}`` as ``model.init`` returns them (or
    ``{"params": state.params, **state.model_state}`` from a ``TrainState``); arrays may be
    on a device. ``hyperparameters``: the overrides the model was built with. ``input_shape``:
    one example's shape (no batch axis); defaults to the card's (its tiny shape when
    ``hyperparameters`` are exactly its test config). The variables are checked against
    ``create_model(name, **hyperparameters)`` first, so a file that would not load is not
    written. Returns the path.
    """
    hyperparameters = {k: _from_json(_to_json(v, k)) for k, v in hyperparameters.items()}
    input_shape = tuple(input_shape or default_input_shape(name, hyperparameters))
    check_variables(name, variables, input_shape, hyperparameters, where=f"variables for {name!r}")
    payload = serialization.msgpack_serialize(
        serialization.to_state_dict(jax.device_get(dict(variables)))
    )
    header = {
        "model": name,
        "hyperparameters": {k: _to_json(v, k) for k, v in hyperparameters.items()},
        "input_shape": list(input_shape),
        "input_dtype": registry.model_card(name).input_dtype,
        "jaxnets_version": jaxnets.__version__,
        "payload_bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    path = Path(path)
    path.write_bytes(MAGIC + json.dumps(header).encode() + b"\n" + payload)
    return path


def load_weights(path: str | Path) -> Weights:
    """Read a weights file written by :func:`save_weights` and check it (see the module
    docstring for what is checked). ``Weights.model()`` builds the model; then
    ``model.apply(weights.variables, x, train=False)`` with ``x`` of shape
    ``(batch, *weights.input_shape)`` gives its outputs."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no weights file at {str(path)!r} (write one with save_weights)")
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise WeightsError(
            f"{str(path)!r} is not a jaxnets weights file: it starts with {data[:18]!r}, "
            f"a weights file with {MAGIC!r}"
        )
    header_line, _, payload = data[len(MAGIC) :].partition(b"\n")
    try:
        header = json.loads(header_line)
        name, digest = header["model"], header["sha256"]
    except (ValueError, KeyError, TypeError) as err:
        raise WeightsError(
            f"{str(path)!r} is corrupt: its JSON header is unreadable ({err})"
        ) from err
    actual = hashlib.sha256(payload).hexdigest()
    if actual != digest:
        raise WeightsError(
            f"{str(path)!r} is corrupt: its payload ({len(payload)} bytes) has SHA-256 "
            f"{actual[:16]}..., the header records {digest[:16]}... "
            f"({header.get('payload_bytes')} bytes)"
        )
    try:
        registry.model_card(name)
    except registry.UnknownModelError as err:
        raise WeightsError(f"{str(path)!r} holds weights of an {err}") from None
    hyperparameters = {k: _from_json(v) for k, v in header["hyperparameters"].items()}
    input_shape = tuple(header["input_shape"])
    variables = serialization.msgpack_restore(payload)
    check_variables(
        name, variables, input_shape, hyperparameters, where=f"the weights in {str(path)!r}"
    )
    return Weights(name, hyperparameters, variables, input_shape, header["input_dtype"])

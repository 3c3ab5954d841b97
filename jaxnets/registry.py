"""Model registry: every builder in jaxnets is registered here with a model card.

`list_models()` is what the tests and the CLI iterate over, so a registered model is
automatically built, gradient-checked and documented.

This module imports no model: each family module under :mod:`jaxnets.models` calls
:func:`register_model` when it is imported, and ``jaxnets/__init__.py`` imports
:mod:`jaxnets.models` (which imports every family), so every model is registered once any
part of jaxnets has been imported, ``jaxnets.registry`` included.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.checks import check_choice
from jaxnets.validation import check_counts

__all__ = [
    "InputSpecError",
    "ModelCard",
    "UnknownModelError",
    "builder_path",
    "check_input",
    "create_model",
    "example_inputs",
    "list_models",
    "model_card",
    "register_model",
]


class UnknownModelError(KeyError):
    """Raised for a model name that is not registered; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class InputSpecError(ValueError):
    """Raised when an input does not match the shape/dtype a model card declares."""


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What a user needs to know to use a registered model.

    Attributes:
      name: registry name (``create_model(name)``).
      family: the lecture family (``"linear"``, ``"mlp"``, ...).
      lecture: seed file and section, e.g. ``"004 §2.1 Linear regression (line 163)"``.
      reference: paper or textbook reference.
      task: ``"classification"``, ``"binary"``, ``"regression"`` or ``"density"`` (a
        generative model trained by maximum likelihood: PixelCNN, NICE).
      input_shape: shape of ONE example for the default config (no batch axis).
      input_dtype: dtype name of the input (``"float32"``, ``"int32"``).
      loss: name of the default per-example loss in :mod:`jaxnets.losses`.
      test_config: overrides giving a tiny model for tests and gradcheck.
      test_input_shape: shape of one example for ``test_config`` (defaults to ``input_shape``).
      per_example_grads: False for models that couple examples (batch norm).
      description: one line saying what the model is.
      input_range: for integer inputs (token ids), the number of distinct values.
      builder: callable ``(**config) -> nn.Module``.
      defaults: the default hyperparameters passed to the builder.
      module: where the model lives, as ``"<module>.<builder>"`` (e.g.
        ``"jaxnets.models.cnn.LeNet5"``); derived from ``builder`` (a class, a function or a
        ``functools.partial`` of one) unless given. Family names need not match file names
        (family ``flows`` covers ``nice.py`` and ``revnet.py``), so this is the way to a file.
    """

    name: str
    family: str
    lecture: str
    reference: str
    task: str
    input_shape: tuple[int, ...]
    loss: str
    builder: Callable[..., nn.Module]
    input_dtype: str = "float32"
    test_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    test_input_shape: tuple[int, ...] | None = None
    per_example_grads: bool = True
    description: str = ""
    input_range: int = 2
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    module: str = ""

    def __post_init__(self) -> None:
        if not self.module:
            object.__setattr__(self, "module", builder_path(self.builder))

    @property
    def tiny_input_shape(self) -> tuple[int, ...]:
        return self.input_shape if self.test_input_shape is None else self.test_input_shape


def builder_path(builder: Callable[..., Any]) -> str:
    """``"<module>.<name>"`` of ``builder``, or of the function a ``functools.partial`` wraps.

    Raises ValueError for a builder that is not an attribute of its module (a lambda or a
    function defined inside another): register such a model with an explicit ``module=``.
    """
    target = builder.func if isinstance(builder, functools.partial) else builder
    qualname = getattr(target, "__qualname__", "")
    if not qualname or "<" in qualname:
        raise ValueError(
            f"cannot name the module of builder {builder!r}: it is not a module attribute; "
            "pass module='package.module.Builder' to register_model"
        )
    return f"{target.__module__}.{qualname}"


_REGISTRY: dict[str, ModelCard] = {}
TASKS = ("classification", "binary", "regression", "density")


def register_model(
    name: str,
    builder: Callable[..., nn.Module],
    *,
    family: str,
    lecture: str,
    reference: str,
    task: str,
    input_shape: tuple[int, ...],
    loss: str,
    defaults: Mapping[str, Any] | None = None,
    **card_fields: Any,
) -> ModelCard:
    """Register ``builder`` under ``name`` and return its :class:`ModelCard`.

    ``builder(**{**defaults, **overrides})`` must return a ``flax.linen.Module``.
    Registering a name twice is an error (two models cannot share a name). The card's
    ``module`` is derived from ``builder`` unless ``module=`` is passed in ``card_fields``.
    """
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered (family {_REGISTRY[name].family})")
    check_choice("task", task, TASKS)
    card = ModelCard(
        name=name,
        family=family,
        lecture=lecture,
        reference=reference,
        task=task,
        input_shape=tuple(input_shape),
        loss=loss,
        builder=builder,
        defaults=MappingProxyType(dict(defaults or {})),
        **card_fields,
    )
    _REGISTRY[name] = card
    return card


def _unknown(name: str) -> UnknownModelError:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f" — did you mean {', '.join(repr(c) for c in close)}?" if close else ";"
    return UnknownModelError(
        f"unknown model {name!r}{hint} see jaxnets.list_models() ({len(_REGISTRY)} registered)"
    )


def model_card(name: str) -> ModelCard:
    """Return the :class:`ModelCard` registered under ``name``."""
    if name not in _REGISTRY:
        raise _unknown(name)
    return _REGISTRY[name]


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of registered models matching the glob ``pattern`` (e.g. ``"mlp*"``)."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the registered model ``name`` with its defaults updated by ``overrides``.

    Unknown hyperparameter names raise a ``TypeError`` naming the accepted ones. Every
    integer hyperparameter (widths, channels, kernels, vocabulary sizes, layer counts, ...)
    must be >= 1, except those a family lists in its ``ZERO_OK`` class attribute (e.g.
    AlexNet's paddings) which may be 0, else ValueError (TypeError for a non-integer).
    Whether kernels and pools fit the input is checked when the model first sees one
    (``init``).
    """
    card = model_card(name)
    config = {**card.defaults, **overrides}
    try:
        model = card.builder(**config)
    except TypeError as err:
        fields = _builder_fields(card.builder)
        unknown = sorted(set(overrides) - set(fields)) if fields else []
        if unknown:
            raise TypeError(
                f"model {name!r} has no hyperparameter {', '.join(map(repr, unknown))}; "
                f"it accepts {', '.join(fields)}"
            ) from err
        raise
    check_counts(
        f"model {name!r}",
        [(f.name, f.type, getattr(model, f.name)) for f in _hyperparameters(model)],
        zero_ok=getattr(model, "ZERO_OK", ()),
    )
    return model


def _hyperparameters(target: Any) -> list[dataclasses.Field]:
    """The dataclass fields of a module (class or instance) other than Flax's own."""
    if not dataclasses.is_dataclass(target):
        return []
    return [f for f in dataclasses.fields(target) if f.name not in ("parent", "name")]


def _builder_fields(builder: Callable[..., Any]) -> list[str]:
    return [f.name for f in _hyperparameters(getattr(builder, "func", builder))]


def check_input(card: ModelCard, x: Any, *, tiny: bool = False) -> None:
    """Raise :class:`InputSpecError` if ``x`` cannot be an input batch for ``card``'s model.

    Checked: the number of axes (batch + the card's example axes) and the dtype kind
    (integer token ids vs real values). Sizes along the example axes are not enforced,
    because most models infer them (an MLP built for digits trains on 784 features too);
    a rank error is the one that would otherwise pass silently (a Dense layer applied to
    the last axis of (batch, 8, 8) images).
    """
    expected = card.tiny_input_shape if tiny else card.input_shape
    shape = tuple(np.shape(x))
    dtype = np.dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)
    wants_int = np.issubdtype(np.dtype(card.input_dtype), np.integer)
    if len(shape) != len(expected) + 1 or np.issubdtype(dtype, np.integer) != wants_int:
        raise InputSpecError(
            f"model {card.name!r} expects input of shape (batch, {', '.join(map(str, expected))})"
            f" and dtype {card.input_dtype}; got shape {shape} and dtype {dtype}"
        )


def example_inputs(
    card: ModelCard, rng: jax.Array, batch_size: int = 4, *, tiny: bool = True, dtype=jnp.float32
) -> jax.Array:
    """Random inputs (batch_size, *input_shape) matching the card (tiny config by default).

    Integer inputs (token ids) are drawn from ``[0, card.input_range)``. Targets depend on the
    model's outputs: build them with :func:`jaxnets.losses.random_targets` after a forward pass.
    """
    shape = (batch_size, *(card.tiny_input_shape if tiny else card.input_shape))
    if np.issubdtype(np.dtype(card.input_dtype), np.integer):
        return jax.random.randint(rng, shape, 0, card.input_range, dtype=jnp.int32)
    return jax.random.normal(rng, shape, dtype=dtype)

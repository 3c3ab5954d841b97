"""Field-by-field validation of model hyperparameters and experiment configs, and the
arguments of the autoregressive samplers, built on the scalar checks of :mod:`jaxnets.checks`.

Every check runs on host values before any array work, and its message names the field, the
value it got and the range that would be right.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any

import jax
import numpy as np

from jaxnets.checks import check_number

_INT = re.compile(r"\bint\b")
_FLOAT = re.compile(r"\bfloat\b")


def _leaves(value: Any) -> Iterable[Any]:
    """The scalars of a value that may be a (nested) list or tuple of scalars."""
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _typed(annotation: Any, pattern: re.Pattern, value: Any) -> bool:
    """Whether a field of this annotation holds ``pattern``'s type (``None`` where allowed
    and ``True``/``False`` where ``bool`` is allowed are left alone)."""
    text = str(annotation)
    return bool(pattern.search(text)) and not (value is None and "None" in text)


def check_counts(owner: str, fields: Iterable[tuple[str, Any, Any]], zero_ok=()) -> None:
    """Every integer-typed field must hold integers >= 1 (>= 0 for names in ``zero_ok``).

    ``fields`` are ``(name, type annotation, value)``; a field is checked when its annotation
    names ``int`` (``int``, ``Sequence[int]``, ``int | None``, ``int | bool``, ...), element by
    element for sequences. ``owner`` (e.g. ``"model 'lenet5'"``, or empty) opens the message.
    Raises ValueError, or TypeError for a non-integer such as 2.5.
    """
    for name, annotation, value in fields:
        if not _typed(annotation, _INT, value):
            continue
        allows_bool = "bool" in str(annotation)
        every = "every entry of " if isinstance(value, (list, tuple)) else ""
        label = f"{owner + ': ' if owner else ''}{every}{name}"
        minimum = 0 if name in zero_ok else 1
        for leaf in _leaves(value):
            if allows_bool and isinstance(leaf, (bool, np.bool_)):
                continue
            if isinstance(leaf, (bool, np.bool_)) or not isinstance(leaf, (int, np.integer)):
                raise TypeError(
                    f"{label} must be an integer >= {minimum}; got {leaf!r} ({type(leaf).__name__})"
                )
            check_number(label, leaf, at_least=minimum)


def check_config(cfg: Any, *, zero_ok=(), any_sign=(), fractions=()) -> None:
    """Validate every numeric field of a frozen experiment ``Config`` dataclass by its type.

    Integers (and tuples of them) must be >= 1 and floats (and tuples of them) finite and
    > 0, except: names in ``zero_ok`` may also be 0 (seeds, shifts, penalties); ``any_sign``
    floats need only be finite; ``fractions`` lie in [0, 1). A new field is checked by the
    strictest rule until it is listed. Raises ValueError (tyro prints it as a usage error).
    """
    fields = [(f.name, f.type, getattr(cfg, f.name)) for f in dataclasses.fields(cfg)]
    check_counts("", fields, zero_ok)
    for name, annotation, value in fields:
        if not _typed(annotation, _FLOAT, value):
            continue
        if name in fractions:
            bounds = {"at_least": 0, "below": 1}
        elif name in any_sign:
            bounds = {}
        else:
            bounds = {"at_least": 0} if name in zero_ok else {"above": 0}
        every = "every entry of " if isinstance(value, (list, tuple)) else ""
        for leaf in _leaves(value):
            check_number(f"{every}{name}", leaf, **bounds)


def check_batch_size(batch_size: int, train_size: int, field: str = "batch_size") -> None:
    """A minibatch cannot hold more examples than the training split it is drawn from."""
    if batch_size > train_size:
        raise ValueError(
            f"{field}={batch_size} is larger than the training split ({train_size} examples); "
            f"use {field} <= {train_size}"
        )


def check_sampling(prompt: Any, vocab_size: int, length: Any, temperature: Any, what="token ids"):
    """Arguments of an autoregressive sampler: ``length`` an integer >= 0, ``temperature`` a
    finite number >= 0 (0 = greedy argmax), ``prompt`` integer ids in ``[0, vocab_size)``.

    The prompt's values are checked when they are concrete (call this before converting a host
    prompt with ``jnp.asarray``, which stages it under a trace); a traced prompt gets only its
    dtype checked, and ids outside the vocabulary would then read as zero embeddings.
    """
    if (
        isinstance(length, (bool, np.bool_))
        or not isinstance(length, (int, np.integer))
        or (length < 0)
    ):
        raise ValueError(f"length must be an int >= 0 (tokens to generate); got {length!r}")
    check_number("temperature", temperature, at_least=0)
    traced = isinstance(prompt, jax.core.Tracer)
    values = prompt if traced else np.asarray(prompt)
    if values.dtype == np.bool_ or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"prompt must hold integer {what}; got dtype {values.dtype}")
    if traced or values.size == 0:
        return
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"prompt {what} must lie in [0, {vocab_size}) (the model's vocabulary); got values "
            f"in [{low}, {high}]"
        )

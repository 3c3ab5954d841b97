"""Checks of user inputs on the host, shared by the engine and the optimizers.

Each check raises before any compiled work with a message that names the argument, what it
got and what it needs: ``TypeError`` for a value of the wrong type (a bool or a float where
an integer count belongs, a string where a number belongs), ``ValueError`` for a value out
of range or not finite. They run on Python numbers and host arrays, never under ``jit``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

__all__ = [
    "check_choice",
    "check_finite_array",
    "check_number",
    "check_positive_int",
    "first_index",
]


def _interval(above, at_least, below, at_most) -> str:
    """The allowed range in words: ``> 0``, ``>= 0``, ``in [0, 1)``."""
    low = f"> {above}" if above is not None else f">= {at_least}" if at_least is not None else ""
    high = f"< {below}" if below is not None else f"<= {at_most}" if at_most is not None else ""
    if low and high:
        left = "(" if above is not None else "["
        right = ")" if below is not None else "]"
        return f"in {left}{low[2:].strip()}, {high[2:].strip()}{right}"
    return low or high


def check_number(
    name: str,
    value: Any,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
) -> float:
    """``value`` as a float if it is a finite real number within the given bounds.

    Raises TypeError for non-numbers (bools included), ValueError for NaN, ±inf or a value
    outside the bounds, e.g. ``momentum must be in [0, 1); got 1.5``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r} ({type(value).__name__})")
    allowed = _interval(above, at_least, below, at_most)
    if not math.isfinite(value):
        raise ValueError(
            f"{name} must be a finite number{' ' + allowed if allowed else ''}; got {value}"
        )
    if (
        (above is not None and not value > above)
        or (at_least is not None and not value >= at_least)
        or (below is not None and not value < below)
        or (at_most is not None and not value <= at_most)
    ):
        raise ValueError(f"{name} must be {allowed}; got {value}")
    return float(value)


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer >= ``minimum`` (numpy integers accepted).

    Raises TypeError for bools, floats (even ``32.0``) and other types; ValueError below
    ``minimum``, e.g. ``batch_size must be a positive integer; got 0``.
    """
    wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {wanted}; got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be {wanted}; got {value}")
    return int(value)


def first_index(mask: np.ndarray) -> str:
    """``[i, j, ...]``: the index of the first True entry of the boolean array ``mask``."""
    index = np.unravel_index(int(np.argmax(mask.ravel())), mask.shape)
    return f"[{', '.join(map(str, index))}]"


def check_finite_array(name: str, a: Any) -> None:
    """Raise ValueError if the floating array ``a`` (any shape) holds NaN or ±inf, naming how
    many entries and the index of the first, e.g. ``x has 3 NaN/inf entries (of 640); the
    first is x[2, 5] = nan``. Arrays of other dtypes (integers, bools) pass."""
    a = np.asarray(a)
    if not jnp.issubdtype(a.dtype, jnp.inexact):  # jnp's test also knows bfloat16
        return
    bad = ~np.isfinite(a)
    count = int(np.count_nonzero(bad))
    if count:
        raise ValueError(
            f"{name} has {count} NaN/inf {'entry' if count == 1 else 'entries'} (of {a.size}); "
            f"the first is {name}{first_index(bad)} = {a[bad][0]}: remove or impute them "
            "before training"
        )


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise ValueError unless ``value`` (the argument ``name``) is one of ``choices``:
    ``"block must be one of basic, bottleneck; got 'plain'"``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")

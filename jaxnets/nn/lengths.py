"""Variable-length sequences in a padded batch: checking the lengths, the time mask, and
reversing each sequence's valid part. :class:`jaxnets.nn.recurrent.Recurrent` uses them to hold
a sequence's state past its length and to read it backwards; seq2seq reverses its sources.

Lecture: seed 004, Lecture 13 "Recurrent Neural Nets" (line 2721): an RNN reads a sequence one
step at a time, so sequences of different lengths share a batch only when the steps past each
one's length change nothing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["reverse_valid", "time_mask"]


def _check_lengths(lengths: jax.Array, batch: int, time: int) -> jax.Array:
    """``lengths`` as an array after checking it is (batch,) integers in [0, time].

    The values are checked when they are concrete (eager calls, ``init``); under ``jit`` they
    are traced and only the shape and dtype can be: there a length above ``time`` would count
    the padding as input.
    """
    array = jnp.asarray(lengths)
    if array.shape != (batch,):
        raise ValueError(f"lengths must have shape (batch,) = ({batch},); got {array.shape}")
    if array.dtype == jnp.bool_ or not jnp.issubdtype(array.dtype, jnp.integer):
        raise ValueError(
            f"lengths must be integer step counts in [0, {time}] (the time axis); got dtype "
            f"{array.dtype}"
        )
    # Read the values from the argument: under jit even a host constant is staged by asarray.
    if batch and not isinstance(lengths, jax.core.Tracer):
        values = np.asarray(lengths)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > time:
            raise ValueError(
                f"lengths must lie in [0, {time}] (the time axis of the input); got values in "
                f"[{low}, {high}]"
            )
    return array


def time_mask(lengths: jax.Array | None, batch: int, time: int) -> jax.Array | None:
    """(time, batch) bool: step t is inside sequence b's length; None for ``lengths=None``.

    lengths: (batch,) ints in [0, time], checked as :func:`reverse_valid` checks them.
    """
    if lengths is None:
        return None
    lengths = _check_lengths(lengths, batch, time)
    return jnp.arange(time)[:, None] < lengths[None, :]


def reverse_valid(x: jax.Array, lengths: jax.Array) -> jax.Array:
    """Reverse each sequence's first ``lengths[b]`` steps, leaving the padding in place.

    x: (batch, time, ...); lengths: (batch,) ints in [0, time]. Its own inverse.
    """
    time = x.shape[1]
    t = jnp.arange(time)[None, :]
    lengths = _check_lengths(lengths, x.shape[0], time)[:, None]
    index = jnp.where(t < lengths, lengths - 1 - t, t)
    return jnp.take_along_axis(x, index.reshape(*index.shape, *([1] * (x.ndim - 2))), axis=1)

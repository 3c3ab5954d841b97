"""Convolution and pooling: the fast XLA path, and the lecture's definitions to test it against.

Lecture: seed 004, Lecture 9 "Convolutional Networks" (line 2115):
  * §2 convolution, eq. (2) ``(x * w)[t] = sum_tau x[t - tau] w[tau]`` and eq. (3) in 2-D
    ("flip-and-filter"); zero padding outside the signal;
  * §3 convolution layers compute *filtering*, eq. (9) ``(x ⋆ w)[t] = sum_tau x[t + tau] w[tau]``,
    i.e. ``x * w = x ⋆ flip(w)``; with several maps, eq. (10) ``z_i = sum_j x_j ⋆ w_ij``;
  * §4 pooling layers: max (or mean, LeNet's "subsampling") over a window, spaced by a stride;
  * Lecture 10 §3 (line 2410): *valid* convolutions keep only the positions where the filter lies
    inside the input (32 -> 28 for 5x5); *same* convolutions pad with zeros to keep the size.

:func:`filtering` and :data:`Conv` compute through :func:`jaxnets.native.conv_general_dilated`:
oneDNN's convolutions on the CPU where that library is built, ``lax.conv_general_dilated``
otherwise (issue 20).

Layouts are channels-last throughout, as in ``flax.linen.Conv``: signals ``(batch, *spatial,
channels)``, kernels ``(*window, in_channels, out_channels)``.

``filter_reference`` and ``convolve_reference`` are slow numpy loops written from the equations;
they exist only so the tests can check the fast path (:func:`filtering`, :func:`convolve`) on
small random arrays.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import native

__all__ = [
    "PADDINGS",
    "POOLS",
    "Conv",
    "Pool",
    "convolve",
    "convolve_reference",
    "filter_reference",
    "filtering",
    "output_size",
    "pool",
]

PADDINGS = ("valid", "same", "full")

Conv = functools.partial(nn.Conv, conv_general_dilated=native.conv_general_dilated)
"""``flax.linen.Conv`` whose 2-D float32 convolutions run on oneDNN on the CPU when
:mod:`jaxnets.native` is built (the same parameters, the same numbers to float32 rounding);
every model's conv layers are built with it."""
POOLS = ("max", "mean")


def _check_padding(padding: str) -> str:
    if not isinstance(padding, str) or padding.lower() not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; expected one of {', '.join(PADDINGS)}")
    return padding.lower()


def output_size(size: int, window: int, stride: int = 1, padding: str = "valid") -> int:
    """Length of one spatial axis after a window of ``window`` slides with ``stride``.

    valid: ``floor((size - window) / stride) + 1`` (the 32 -> 28 of LeNet's C1);
    same: ``ceil(size / stride)``; full: ``floor((size + window - 2) / stride) + 1``.
    """
    padding = _check_padding(padding)
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1; got window={window}, stride={stride}")
    if padding == "same":
        return -(-size // stride)
    span = size - window if padding == "valid" else size + window - 2
    if span < 0:
        raise ValueError(f"a window of {window} does not fit in an axis of size {size} (valid)")
    return span // stride + 1


def _pads(window: Sequence[int], padding: str) -> str | list[tuple[int, int]]:
    if padding == "full":
        return [(k - 1, k - 1) for k in window]
    return padding.upper()


def filtering(
    x: jax.Array, kernel: jax.Array, *, stride: int | Sequence[int] = 1, padding: str = "valid"
) -> jax.Array:
    """What a convolution layer computes (eq. 9-10): ``z_i = sum_j x_j ⋆ w_ij``, no flip.

    Args:
      x: (batch, *spatial, in_channels), 1 or 2 spatial axes (or more).
      kernel: (*window, in_channels, out_channels).
      stride: an int or one per spatial axis.
      padding: ``"valid"``, ``"same"`` or ``"full"`` (zero padding of window - 1 on each side).

    Returns:
      (batch, *out_spatial, out_channels), ``out_spatial`` from :func:`output_size`.
    """
    padding = _check_padding(padding)
    spatial = x.ndim - 2
    if spatial < 1 or kernel.ndim != spatial + 2 or kernel.shape[-2] != x.shape[-1]:
        raise ValueError(
            f"filtering needs x (batch, *spatial, C) and kernel (*window, C, M) with the same "
            f"number of spatial axes and C; got x {x.shape} and kernel {kernel.shape}"
        )
    strides = (stride,) * spatial if isinstance(stride, int) else tuple(stride)
    axes = "HWD"[:spatial]
    dims = jax.lax.conv_dimension_numbers(
        x.shape, kernel.shape, (f"N{axes}C", f"{axes}IO", f"N{axes}C")
    )
    return native.conv_general_dilated(
        x, kernel, strides, _pads(kernel.shape[:spatial], padding), dimension_numbers=dims
    )


def convolve(x: jax.Array, w: jax.Array, mode: str = "full") -> jax.Array:
    """The convolution ``x * w`` of eq. (2)/(3) for one 1-D or 2-D signal, by the fast path.

    Flip-and-filter: ``x * w = x ⋆ flip(w)``. ``mode="full"`` returns every position where the
    flipped filter overlaps the signal (size ``n + k - 1``), as in Figures 3-4; ``"valid"``
    only those where it lies inside; ``"same"`` the central ``n``.

    x: (n,) or (h, w); w: (k,) or (kh, kw) -> the convolved signal, same rank.
    """
    if x.ndim != w.ndim or x.ndim not in (1, 2):
        raise ValueError(f"convolve takes two 1-D or two 2-D signals; got {x.shape} and {w.shape}")
    flipped = jnp.flip(w, axis=tuple(range(w.ndim)))
    out = filtering(x[None, ..., None], flipped[..., None, None], padding=mode)
    return out[0, ..., 0]


def filter_reference(x: np.ndarray, kernel: np.ndarray, padding: str = "valid") -> np.ndarray:
    """Eq. (9)-(10) by loops: ``z[b, t, m] = sum_{tau, c} x[b, t + tau, c] w[tau, c, m]``.

    Same shapes and padding convention as :func:`filtering` (stride 1), any number of spatial
    axes; written for clarity, not speed (small arrays only).
    """
    padding = _check_padding(padding)
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    window = kernel.shape[:-2]
    if padding == "full":
        pads = [(k - 1, k - 1) for k in window]
    elif padding == "same":  # XLA's convention: the extra zero goes after
        pads = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in window]
    else:
        pads = [(0, 0)] * len(window)
    x = np.pad(x, [(0, 0), *pads, (0, 0)])
    out_spatial = [n - k + 1 for n, k in zip(x.shape[1:-1], window, strict=True)]
    out = np.zeros((x.shape[0], *out_spatial, kernel.shape[-1]))
    for t in itertools.product(*map(range, out_spatial)):
        for tau in itertools.product(*map(range, window)):
            at = tuple(ti + taui for ti, taui in zip(t, tau, strict=True))
            out[(slice(None), *t)] += x[(slice(None), *at)] @ kernel[tau]
    return out


def convolve_reference(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Eq. (2)/(3) by loops, full extent: ``(x * w)[s] = sum_sigma x[s - sigma] w[sigma]``.

    Zero outside ``x`` (zero padding). x: (n,) or (h, w); w: same rank -> (n + k - 1, ...).
    """
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    out = np.zeros([n + k - 1 for n, k in zip(x.shape, w.shape, strict=True)])
    for s in itertools.product(*map(range, out.shape)):
        for sigma in itertools.product(*map(range, w.shape)):
            at = tuple(si - gi for si, gi in zip(s, sigma, strict=True))
            if all(0 <= a < n for a, n in zip(at, x.shape, strict=True)):
                out[s] += x[at] * w[sigma]
    return out


def pool(
    x: jax.Array,
    window: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    *,
    kind: str = "max",
    padding: str = "valid",
) -> jax.Array:
    """Max or mean over each window (pooling group), windows spaced by ``stride``.

    x: (batch, *spatial, channels) -> (batch, *out_spatial, channels). ``stride`` defaults to
    the window (non-overlapping groups). Mean pooling with ``"same"`` padding averages only
    the positions inside the input.
    """
    if kind not in POOLS:
        raise ValueError(f"unknown pooling {kind!r}; expected one of {', '.join(POOLS)}")
    padding = _check_padding(padding)
    if padding == "full":
        raise ValueError("pooling supports padding 'valid' or 'same'")
    spatial = x.ndim - 2
    window = (window,) * spatial if isinstance(window, int) else tuple(window)
    stride = window if stride is None else stride
    stride = (stride,) * spatial if isinstance(stride, int) else tuple(stride)
    if kind == "max":
        return nn.max_pool(x, window, stride, padding.upper())
    return nn.avg_pool(x, window, stride, padding.upper(), count_include_pad=False)


class Pool(nn.Module):
    """A pooling layer (no parameters): :func:`pool` as a module, so it has a name in tables.

    Attributes: kind ``"max"`` or ``"mean"``; window and stride (ints or per axis); padding.
    x: (batch, *spatial, channels) -> (batch, *out_spatial, channels).
    """

    kind: str = "max"
    window: int | tuple[int, ...] = 2
    stride: int | tuple[int, ...] | None = None
    padding: str = "valid"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return pool(x, self.window, self.stride, kind=self.kind, padding=self.padding)

"""2-D convolution by oneDNN on the CPU, with its gradients, behind ``lax.conv_general_dilated``.

Lecture: seed 004, Lecture 9 "Convolutional Networks" §3 (line 2115): a convolution layer
computes the filtering ``z_i = sum_j x_j ⋆ w_ij`` (eq. 9-10), here for channels-last images
``x (N, H, W, C)`` and kernels ``(KH, KW, C, O)``, with strides, kernel dilation and explicit
zero padding. Backprop through it (Lecture 6 §4) is two more convolutions: the input's gradient
(``src/conv.cc``: ``ConvBackwardData``) and the kernel's (``ConvBackwardWeights``), tied to the
forward pass by a ``jax.custom_vjp``.

:func:`conv_general_dilated` has ``lax.conv_general_dilated``'s signature, so flax's ``nn.Conv``
takes it as its ``conv_general_dilated`` field. It calls oneDNN only for what the kernels do:
float32, 2 spatial axes, NHWC/HWIO/NHWC dimension numbers, no input dilation or feature groups,
and only where XLA compiles for the CPU (:func:`jaxnets.native.library.cpu_or_pure`); anything
else, float64 gradient checks included, runs ``lax.conv_general_dilated`` itself.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.native import library

__all__ = ["conv_general_dilated", "supports"]

_LAYOUT = ("NHWC", "HWIO", "NHWC")
_TARGETS = {
    "forward": ("jaxnets_conv_forward", "JaxnetsConvForward"),
    "input_grad": ("jaxnets_conv_input_grad", "JaxnetsConvBackwardData"),
    "kernel_grad": ("jaxnets_conv_kernel_grad", "JaxnetsConvBackwardWeights"),
}

Pads = tuple[tuple[int, int], tuple[int, int]]


def _call(kind: str, out: jax.ShapeDtypeStruct, a, b, strides, dilation, padding: Pads):
    target = library.register(*_TARGETS[kind])
    # an ensemble vmapped over members runs one kernel call per member
    return jax.ffi.ffi_call(target, out, vmap_method="sequential")(
        a,
        b,
        strides=np.asarray(strides, np.int64),
        dilation=np.asarray(dilation, np.int64),
        padding=np.asarray(padding, np.int64).reshape(-1),
    )


def _live_taps(size: int, taps: int, stride: int, dilation: int, pads: tuple[int, int]):
    """The first and last kernel tap along one spatial axis that reads the input (not only its
    zero padding) at some output position."""
    outputs = (size + sum(pads) - (taps - 1) * dilation - 1) // stride + 1
    live = [
        t
        for t in range(taps)
        if any(0 <= o * stride + t * dilation - pads[0] < size for o in range(outputs))
    ]
    return live[0], live[-1]


def _crop_dead_taps(x_shape, k_shape, strides, dilation, padding: Pads):
    """The kernel window and padding that compute the same convolution without the taps that
    only ever multiply zero padding, or None when every tap reads the input somewhere.

    A 3x3 convolution (pad 1) of ResNet-18's last stage sees 1x1 images of CIFAR's 32x32: eight
    of its nine taps fall on padding, and oneDNN spent ~3.8 ms per layer per training step on
    them (kernel gradient 1.5 ms, reorders of the 2.4 M-number kernel 1.6 ms) for what is a
    (32, 512) @ (512, 512) matmul. Cropped, the call is a 1x1 convolution (the ResNet-18 step
    at batch 32 went from ~82 to ~62 ms); the cropped taps' gradient is zero, as ``jax.grad``
    of the slice gives.
    Returns ``(kernel slices, new padding)``.
    """
    window, pads = [], []
    for axis in range(2):
        low, high = padding[axis]
        taps, d = k_shape[axis], dilation[axis]
        first, last = _live_taps(x_shape[1 + axis], taps, strides[axis], d, (low, high))
        window.append(slice(first, last + 1))
        pads.append((low - first * d, high - (taps - 1 - last) * d))
    if all(w == slice(0, t) for w, t in zip(window, k_shape[:2], strict=True)):
        return None
    if any(p < 0 for pair in pads for p in pair):
        return None
    return tuple(window), tuple(pads)


def _out_shape(x_shape, k_shape, strides, dilation, padding: Pads) -> tuple[int, ...]:
    spatial = [
        (x_shape[1 + a] + sum(padding[a]) - (k_shape[a] - 1) * dilation[a] - 1) // strides[a] + 1
        for a in range(2)
    ]
    return (x_shape[0], *spatial, k_shape[3])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _onednn_conv(x, kernel, strides, dilation, padding: Pads):
    out = jax.ShapeDtypeStruct(
        _out_shape(x.shape, kernel.shape, strides, dilation, padding), x.dtype
    )
    return _call("forward", out, x, kernel, strides, dilation, padding)


def _onednn_conv_fwd(x, kernel, strides, dilation, padding):
    return _onednn_conv(x, kernel, strides, dilation, padding), (x, kernel)


def _onednn_conv_bwd(strides, dilation, padding, residuals, dy):
    x, kernel = residuals
    geometry = (strides, dilation, padding)
    dx = _call("input_grad", jax.ShapeDtypeStruct(x.shape, x.dtype), dy, kernel, *geometry)
    dk = _call("kernel_grad", jax.ShapeDtypeStruct(kernel.shape, kernel.dtype), x, dy, *geometry)
    return dx, dk


_onednn_conv.defvjp(_onednn_conv_fwd, _onednn_conv_bwd)


def supports(
    lhs, rhs, *, dimension_numbers=None, lhs_dilation=None, feature_group_count: int = 1,
    batch_group_count: int = 1, preferred_element_type=None,
) -> bool:  # fmt: skip
    """Whether the oneDNN kernels compute this convolution (when :func:`library.enabled`):
    float32 operands (N, H, W, C) and (KH, KW, C, O) in that layout, no input dilation, no
    feature or batch groups, no other result dtype."""
    if lhs.ndim != 4 or rhs.ndim != 4 or lhs.dtype != jnp.float32 or rhs.dtype != jnp.float32:
        return False
    if feature_group_count != 1 or batch_group_count != 1:
        return False
    if preferred_element_type not in (None, jnp.float32):
        return False
    if lhs_dilation is not None and any(d != 1 for d in lhs_dilation):
        return False
    numbers = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    return numbers == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _LAYOUT)


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision=None,
    preferred_element_type=None,
) -> jax.Array:
    """``jax.lax.conv_general_dilated``, on oneDNN where it :func:`supports` the call.

    lhs: (N, H, W, C), rhs: (KH, KW, C, O) -> (N, OH, OW, O) for the oneDNN path (channels
    last, as flax's ``nn.Conv``); any other call is passed to ``lax.conv_general_dilated``
    unchanged. ``padding``: ``"SAME"``, ``"VALID"`` or one ``(low, high)`` pair per spatial axis.
    """
    pure = functools.partial(
        jax.lax.conv_general_dilated,
        window_strides=window_strides,
        padding=padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    fits = supports(
        lhs,
        rhs,
        dimension_numbers=dimension_numbers,
        lhs_dilation=lhs_dilation,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        preferred_element_type=preferred_element_type,
    )
    if not (fits and library.enabled()):
        return pure(lhs, rhs)
    strides = tuple(int(s) for s in window_strides)
    dilation = tuple(int(d) for d in (rhs_dilation or (1, 1)))
    if isinstance(padding, str):
        window = [(k - 1) * d + 1 for k, d in zip(rhs.shape[:2], dilation, strict=True)]
        padding = jax.lax.padtype_to_pads(lhs.shape[1:3], window, strides, padding)
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    if any(p < 0 for pair in pads for p in pair):  # lax crops for negative pads; oneDNN cannot
        return pure(lhs, rhs)
    cropped = _crop_dead_taps(lhs.shape, rhs.shape, strides, dilation, pads)

    def fast(x, kernel):
        if cropped is None:
            return _onednn_conv(x, kernel, strides, dilation, pads)
        window, live_pads = cropped
        return _onednn_conv(x, kernel[window], strides, dilation, live_pads)

    return library.cpu_or_pure(fast, pure, lhs, rhs)

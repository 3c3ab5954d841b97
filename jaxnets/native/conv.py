"""2-D convolution by oneDNN on the CPU, with its gradients, behind ``lax.conv_general_dilated``.

Lecture: seed 004, Lecture 9 "Convolutional Networks" §3 (line 2115): a convolution layer
computes the filtering ``z_i = sum_j x_j ⋆ w_ij`` (eq. 9-10), here for channels-last images
``x (N, H, W, C)`` and kernels ``(KH, KW, C, O)``, with strides, kernel dilation and explicit
zero padding. Backprop through it (Lecture 6 §4) is two more convolutions: the input's gradient
(``src/conv.cc``: ``ConvBackwardData``) and the kernel's (``ConvBackwardWeights``). The three
are JAX primitives, each bilinear, whose derivatives and transposes are one another: reverse
mode, forward mode (``jax.jvp``, ``jax.hessian``) and every higher order run on oneDNN.

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
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from jaxnets.native import library

__all__ = ["conv_general_dilated", "supports"]

_LAYOUT = ("NHWC", "HWIO", "NHWC")
_TARGETS = {
    "forward": ("jaxnets_conv_forward", "JaxnetsConvForward"),
    "input_grad": ("jaxnets_conv_input_grad", "JaxnetsConvBackwardData"),
    "kernel_grad": ("jaxnets_conv_kernel_grad", "JaxnetsConvBackwardWeights"),
}

Pads = tuple[tuple[int, int], tuple[int, int]]


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


# The three oneDNN calls as JAX primitives, each bilinear in its two operands: forward (x,
# kernel) -> y, input_grad (dy, kernel) -> dx, kernel_grad (x, dy) -> dkernel. Their JVPs and
# transposes are each other (``ad.defbilinear``), so reverse mode runs oneDNN's gradient
# kernels, forward mode (``jax.jvp``, ``jax.hessian``, Hessian-vector products) runs oneDNN
# too, and so does any order of either. Params: strides, dilation, padding (low, high) per
# spatial axis, and ``shape``, the result's.
_PRIMITIVES = {kind: Primitive(f"jaxnets_onednn_conv_{kind}") for kind in _TARGETS}
_FORWARD, _INPUT_GRAD, _KERNEL_GRAD = (_PRIMITIVES[k] for k in _TARGETS)


def _abstract(a, b, *, shape, **geometry):
    return jax.core.ShapedArray(shape, jnp.float32)


def _attributes(strides, dilation, padding) -> dict:
    return {
        "strides": np.asarray(strides, np.int64),
        "dilation": np.asarray(dilation, np.int64),
        "padding": np.asarray(padding, np.int64).reshape(-1),
    }


def _lowering(target: str):
    def lower(ctx, a, b, *, strides, dilation, padding, shape):
        del shape  # the result's, which XLA reads from the call's type
        return jax.ffi.ffi_lowering(target)(ctx, a, b, **_attributes(strides, dilation, padding))

    return lower


def _eager(target: str):
    """Outside ``jit`` (``jax.disable_jit`` included): the FFI call run on its own."""

    def run(a, b, *, strides, dilation, padding, shape):
        out = jax.ShapeDtypeStruct(shape, jnp.float32)
        return jax.ffi.ffi_call(target, out)(a, b, **_attributes(strides, dilation, padding))

    return run


def _batched(primitive: Primitive):
    """vmap (an ensemble's members): one kernel call per member, in a ``lax.map``."""

    def rule(args, dims, **params):
        size = next(a.shape[d] for a, d in zip(args, dims, strict=True) if d is not None)
        moved = [a if d is None else jnp.moveaxis(a, d, 0) for a, d in zip(args, dims, strict=True)]

        def one(member):
            return primitive.bind(
                *(a if d is None else a[member] for a, d in zip(moved, dims, strict=True)),
                **params,
            )

        return jax.lax.map(one, jnp.arange(size)), 0

    return rule


def _bind(primitive: Primitive, a, b, shape, **geometry):
    return primitive.bind(a, b, shape=tuple(shape), **geometry)


# Transposes. For y = forward(x, k): x's cotangent is input_grad(ct, k), k's kernel_grad(x, ct);
# for dx = input_grad(dy, k): dy's is forward(ct, k), k's kernel_grad(ct, dy); for
# dk = kernel_grad(x, dy): x's is input_grad(dy, ct), dy's forward(x, ct).
ad.defbilinear(
    _FORWARD,
    lambda ct, x, k, shape, **g: _bind(_INPUT_GRAD, ct, k, x.aval.shape, **g),
    lambda ct, x, k, shape, **g: _bind(_KERNEL_GRAD, x, ct, k.aval.shape, **g),
)
ad.defbilinear(
    _INPUT_GRAD,
    lambda ct, dy, k, shape, **g: _bind(_FORWARD, ct, k, dy.aval.shape, **g),
    lambda ct, dy, k, shape, **g: _bind(_KERNEL_GRAD, ct, dy, k.aval.shape, **g),
)
ad.defbilinear(
    _KERNEL_GRAD,
    lambda ct, x, dy, shape, **g: _bind(_INPUT_GRAD, dy, ct, x.aval.shape, **g),
    lambda ct, x, dy, shape, **g: _bind(_FORWARD, x, ct, dy.aval.shape, **g),
)
for _kind, _primitive in _PRIMITIVES.items():
    _primitive.def_abstract_eval(_abstract)
    _primitive.def_impl(_eager(_TARGETS[_kind][0]))
    mlir.register_lowering(_primitive, _lowering(_TARGETS[_kind][0]), platform="cpu")
    batching.primitive_batchers[_primitive] = _batched(_primitive)


def _onednn_conv(x, kernel, strides, dilation, padding: Pads):
    for target, symbol in _TARGETS.values():  # before lowering: its gradients may be traced
        library.register(target, symbol)
    shape = _out_shape(x.shape, kernel.shape, strides, dilation, padding)
    return _bind(_FORWARD, x, kernel, shape, strides=strides, dilation=dilation, padding=padding)


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

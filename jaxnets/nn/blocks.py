"""Layer helpers shared by the image classifiers (VGG, AlexNet, GoogLeNet, the ResNets).

Lecture: seed 004, Lecture 9 "Convolutional Networks" (line 2115) and Lecture 10 §4 "Modern
conv nets" (line 2437). The helpers create Flax layers and call them, so each must be called
inside a compact method: the layers join the calling module under the names given, which keeps
the parameter trees (and :func:`jaxnets.inspect.layer_table`) as if the module had built them
itself.

Images are channels-last, ``(batch, height, width, channels)``; ``dtype`` is a layer's
computation dtype (``None``: inferred from inputs and parameters, float32 normally).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from jaxnets.nn.conv import Conv

__all__ = [
    "RELU_INIT",
    "batch_norm_layer",
    "check_image",
    "conv_bn_relu",
    "output_layer",
    "square_conv",
]

RELU_INIT = nn.initializers.he_normal()
"""He et al. (2015) initialization: variance 2 / fan_in keeps the scale of ReLU activations
constant through depth (LeCun's 1 / fan_in halves it at every ReLU layer)."""


def check_image(x: jax.Array, model: str, min_size: int) -> None:
    """Raise a ``ValueError`` naming ``model`` unless ``x`` is a batch of images
    ``(batch, height, width, channels)`` with height and width at least ``min_size``."""
    if x.ndim != 4 or min(x.shape[1:3]) < min_size:
        raise ValueError(
            f"{model} expects images (batch, height, width, channels) with height and width "
            f">= {min_size}; got an input of shape {x.shape}"
        )


def square_conv(
    features: int, kernel: int, stride: int, padding: int, dtype: Any, name: str, **kw: Any
) -> nn.Conv:
    """A square ``kernel`` x ``kernel`` convolution, ``padding`` zeros on every side, He init.

    ``kw`` goes to :class:`flax.linen.Conv` (e.g. ``use_bias``, ``bias_init``).
    """
    return Conv(
        features,
        (kernel, kernel),
        strides=stride,
        padding=((padding, padding), (padding, padding)),
        kernel_init=RELU_INIT,
        dtype=dtype,
        name=name,
        **kw,
    )


def batch_norm_layer(train: bool, dtype: Any, name: str) -> nn.BatchNorm:
    """Batch norm with momentum 0.9 (statistics in ``batch_stats``): batch statistics while
    ``train``, the running ones otherwise."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=dtype, name=name)


def conv_bn_relu(
    h: jax.Array,
    features: int,
    kernel: int,
    stride: int,
    *,
    name: str,
    batch_norm: bool,
    train: bool,
    dtype: Any,
    bias_init: Any = nn.initializers.zeros,
) -> jax.Array:
    """ReLU of a "same" conv (``kernel // 2`` zeros each side) named ``name``.

    With ``batch_norm``, a batch norm ``{name}_bn`` (:func:`batch_norm_layer`) sits between them and
    the conv has no bias, which the norm's mean subtraction would cancel.
    h: (batch, H, W, C) -> (batch, ceil(H / stride), ceil(W / stride), features).
    """
    conv = square_conv(
        features,
        kernel,
        stride,
        kernel // 2,
        dtype,
        name,
        use_bias=not batch_norm,
        bias_init=bias_init,
    )
    h = conv(h)
    if batch_norm:
        h = batch_norm_layer(train, dtype, f"{name}_bn")(h)
    return nn.relu(h)


def output_layer(h: jax.Array, num_classes: int) -> jax.Array:
    """The linear ``output`` layer on flattened features.

    It computes in the parameters' precision (no dtype), so the loss sees float32 logits
    even when the rest of the network runs in bfloat16. h: (batch, ...) -> (batch, num_classes).
    """
    return nn.Dense(num_classes, name="output")(h.reshape(h.shape[0], -1))

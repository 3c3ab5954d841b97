"""RevNet: a reversible residual network whose backward pass recomputes its activations.

Lecture: seed 004, Lecture 15 "Autoregressive and Reversible Models" §1 Reversible Models
(line 3309): the reversible block (eq. 5, line 3343) and its inverse (eq. 6, line 3347); it is
the residual block of Lecture 14 §4 (line 3269) with the units split in two groups. Gomez et al.
(2017) use the inverse to train without storing activations; see :mod:`jaxnets.nn.reversible`.

:class:`RevNet` classifies small images: a 3x3 ``stem`` convolution to ``features`` maps, the
maps split into two halves, ``depth`` reversible blocks (``blocks``: stacked parameters ``F``
and ``G``), the halves concatenated again, ReLU, global mean pool and the linear ``output``.
F and G are :class:`ConvResidual` nets (3x3 conv, ReLU, 3x3 conv) on ``features / 2`` maps.

``recompute=True`` trains through the custom VJP that stores only the output of the block stack;
``recompute=False`` uses plain autodiff through the same blocks (every activation stored): the
gradients are equal. ``block="residual"`` is the ordinary residual network of the same depth
and width for comparison (:data:`residual_net`): ``depth`` blocks ``y = x + F(x)`` whose F is a
:class:`ConvResidual` on all ``features`` maps, plain autodiff.

No batch norm, unlike :mod:`jaxnets.models.resnet`: the backward pass evaluates F and G again,
so they must be pure functions of (parameters, input). Batch norm in training mode carries a
mutable ``batch_stats`` update, which cannot be threaded through a ``jax.custom_vjp`` (and
would be applied twice, once by the recomputation), and its batch statistics couple the
examples, which would take away per-example gradients. The residual branches' last convolution
starts small instead (``residual_scale``), so a deep stack without normalisation starts close to
the identity (the role batch norm's scale plays at initialisation).

x: (batch, height, width, channels) -> logits (batch, num_classes).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnets.checks import check_choice
from jaxnets.nn.conv import Conv, Pool
from jaxnets.nn.reversible import ReversibleStack
from jaxnets.registry import register_model

__all__ = ["BLOCKS", "ConvResidual", "RevNet", "residual_net"]

BLOCKS = ("reversible", "residual")


class ConvResidual(nn.Module):
    """A residual function F: ``conv2(relu(conv1(x)))``, both convolutions ``kernel_size``
    square, "same" padding, stride 1, with biases.

    Attributes:
      features: maps in and out.
      kernel_size: side of the square kernels.
      residual_scale: variance scale of conv2's initialisation (fan-in, truncated normal);
        small, so that the block starts near the identity.
      dtype: computation dtype (None: inferred from inputs and parameters).

    x: (batch, height, width, features) -> (batch, height, width, features).
    """

    features: int
    kernel_size: int = 3
    residual_scale: float = 0.1
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = (self.kernel_size, self.kernel_size)
        h = Conv(
            self.features,
            kernel,
            padding="SAME",
            kernel_init=nn.initializers.he_normal(),
            dtype=self.dtype,
            name="conv1",
        )(x)
        return Conv(
            self.features,
            kernel,
            padding="SAME",
            kernel_init=nn.initializers.variance_scaling(
                self.residual_scale, "fan_in", "truncated_normal"
            ),
            dtype=self.dtype,
            name="conv2",
        )(nn.relu(h))


class RevNet(nn.Module):
    """Stem convolution, ``depth`` reversible (or residual) blocks, mean pool, linear output.

    Attributes:
      features: maps after the stem (C); the reversible halves have C / 2 each.
      depth: number of blocks.
      num_classes: outputs.
      kernel_size: side of every square kernel.
      block: ``"reversible"`` (RevNet) or ``"residual"`` (the ordinary residual network
        ``y = x + F(x)`` on all C maps, plain autodiff).
      recompute: reversible blocks only: True trains through the custom VJP that recomputes
        activations from the outputs; False stores them (plain autodiff). Same gradients.
      residual_scale: see :class:`ConvResidual`.
      unroll: ``lax.scan``'s unroll over the reversible blocks (True: straight-line code;
        XLA:CPU runs convolutions inside a while loop many times slower).
      dtype: computation dtype (None: inferred, float32 normally, float64 under gradcheck).

    x: (batch, height, width, channels) -> logits (batch, num_classes).
    """

    features: int = 32
    depth: int = 8
    num_classes: int = 10
    kernel_size: int = 3
    block: str = "reversible"
    recompute: bool = True
    residual_scale: float = 0.1
    unroll: int | bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train  # no dropout or batch norm: training and evaluation compute the same
        check_choice("block", self.block, BLOCKS)
        if self.block == "reversible" and self.features % 2:
            raise ValueError(
                f"a reversible block splits the maps in two equal halves: features must be "
                f"even; got {self.features}"
            )
        if x.ndim != 4:
            raise ValueError(
                f"RevNet expects images (batch, height, width, channels); got shape {x.shape}"
            )
        residual = functools.partial(
            ConvResidual,
            kernel_size=self.kernel_size,
            residual_scale=self.residual_scale,
            dtype=self.dtype,
        )
        h = Conv(
            self.features,
            (self.kernel_size, self.kernel_size),
            padding="SAME",
            dtype=self.dtype,
            name="stem",
        )(x)
        if self.block == "reversible":
            h1, h2 = jnp.split(h, 2, axis=-1)
            h1, h2 = ReversibleStack(
                functools.partial(residual, features=self.features // 2),
                self.depth,
                recompute=self.recompute,
                unroll=self.unroll,
                name="blocks",
            )(h1, h2)
            h = jnp.concatenate([h1, h2], axis=-1)
        else:
            for i in range(self.depth):
                h = h + residual(self.features, name=f"block{i + 1}")(h)
        h = Pool("mean", h.shape[1:3], name="avgpool")(nn.relu(h))
        # No dtype: the output layer computes in the parameters' precision (float32 logits).
        return nn.Dense(self.num_classes, name="output")(h.reshape(h.shape[0], -1))


residual_net = functools.partial(RevNet, block="residual")
"""The ordinary residual network of the same depth and width (the memory baseline)."""


register_model(
    "revnet",
    RevNet,
    family="flows",
    lecture="004 L15 §1 Reversible Models, eqs. 5-6 (line 3343); L14 §4 residual blocks "
    "(line 3269)",
    reference="Gomez, Ren, Urtasun & Grosse, The reversible residual network: backpropagation "
    "without storing activations, NeurIPS (2017), arXiv:1707.04585",
    task="classification",
    input_shape=(8, 8, 1),
    loss="softmax_cross_entropy",
    # 2 maps per half, 2 blocks: 339 parameters, enough to exercise the scan and the custom VJP
    test_config={"features": 4, "depth": 2, "num_classes": 3},
    test_input_shape=(4, 4, 1),
    description="RevNet: 3x3 stem, reversible blocks (conv-ReLU-conv F and G on half the maps) "
    "whose backward pass recomputes activations from outputs (jax.custom_vjp), mean pool",
)

"""GoogLeNet / Inception v1 (Szegedy et al., 2014) and a small GoogLeNet for 32x32 digits.

Lecture: seed 004, Lecture 10 "Image Classification" §4 "Modern conv nets" (line 2437):
GoogLeNet "went out of its way to reduce the number of trainable parameters" (line 2473): no
fully connected hidden layers, and Inception modules whose 1x1 convolutions are linear
bottlenecks in front of the larger filters (margin note, line 2491).

Images are channels-last, ``x: (batch, height, width, channels)`` -> logits
``(batch, num_classes)``; ``dtype`` is the computation dtype as in :mod:`jaxnets.models.cnn`;
the layer helpers are those of :mod:`jaxnets.nn.blocks`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnets.checks import check_choice
from jaxnets.nn.blocks import check_image, conv_bn_relu, output_layer
from jaxnets.nn.conv import Pool
from jaxnets.registry import register_model

__all__ = ["GOOGLENET_STAGES", "STEMS", "GoogLeNet", "Inception", "googlenet_small"]


# The bias filler of the reference Caffe model (BVLC GoogLeNet): without batch norm, a positive
# bias keeps ReLU units alive where all their inputs are zero (their pre-activation is then
# 0.2, away from the kink, rather than exactly 0).
_GOOGLENET_BIAS_INIT = nn.initializers.constant(0.2)


class Inception(nn.Module):
    """An Inception module (Szegedy et al., 2014, Figure 2b): four branches, concatenated.

    ``branch1x1``: 1x1 conv; ``branch3x3_reduce`` 1x1 -> ``branch3x3`` 3x3; ``branch5x5_reduce``
    1x1 -> ``branch5x5`` 5x5; ``branch_pool`` 3x3 max pool, stride 1 -> ``branch_pool_proj``
    1x1. Every conv is "same", stride 1, with ReLU and either a bias (initially 0.2, as in the
    reference Caffe model) or, with ``batch_norm``, a batch norm ``{name}_bn``. The 1x1
    reductions are the lecture's margin note (line 2491): a bottleneck that cuts the weights
    of each large filter.

    Attributes: the six widths of the paper's Table 1 columns (``#1x1``, ``#3x3 reduce``,
    ``#3x3``, ``#5x5 reduce``, ``#5x5``, ``pool proj``), ``batch_norm`` and the computation
    ``dtype``.
    x: (batch, height, width, in) -> (batch, height, width, c1 + c3 + c5 + pool_proj).
    """

    c1: int
    c3_reduce: int
    c3: int
    c5_reduce: int
    c5: int
    pool_proj: int
    batch_norm: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        def conv_relu(features, kernel, name, h):
            return conv_bn_relu(
                h,
                features,
                kernel,
                1,
                name=name,
                batch_norm=self.batch_norm,
                train=train,
                dtype=self.dtype,
                bias_init=_GOOGLENET_BIAS_INIT,
            )

        branch1 = conv_relu(self.c1, 1, "branch1x1", x)
        branch3 = conv_relu(self.c3_reduce, 1, "branch3x3_reduce", x)
        branch3 = conv_relu(self.c3, 3, "branch3x3", branch3)
        branch5 = conv_relu(self.c5_reduce, 1, "branch5x5_reduce", x)
        branch5 = conv_relu(self.c5, 5, "branch5x5", branch5)
        pooled = Pool("max", 3, 1, padding="same", name="branch_pool")(x)
        pooled = conv_relu(self.pool_proj, 1, "branch_pool_proj", pooled)
        return jnp.concatenate([branch1, branch3, branch5, pooled], axis=-1)


GOOGLENET_STAGES = (
    ((64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64)),
    (
        (192, 96, 208, 16, 48, 64),
        (160, 112, 224, 24, 64, 64),
        (128, 128, 256, 24, 64, 64),
        (112, 144, 288, 32, 64, 64),
        (256, 160, 320, 32, 128, 128),
    ),
    ((256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128)),
)
"""Table 1 of Szegedy et al. (2014): inception (3a, 3b), (4a-4e), (5a, 5b), each as
``(#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)``."""

STEMS = ("imagenet", "cifar")


class GoogLeNet(nn.Module):
    """GoogLeNet / Inception v1 (Szegedy et al., 2014), Table 1, without auxiliary classifiers.

    Stem ``"imagenet"``: ``conv1`` 7x7/2, ``pool1`` max 3x3/2, ``conv2_reduce`` 1x1, ``conv2``
    3x3, ``pool2`` max 3x3/2; ``"cifar"`` (for 32x32 inputs): ``conv1`` is 3x3/1 and ``pool1``
    is left out, so stage 3 works at half the input size. Then stages of :class:`Inception`
    modules ``inception_3a``, ``inception_3b``, ``pool3``, ``inception_4a``, ..., with a max
    pool 3x3/2 between stages; global average pooling (``avgpool``, the paper's 7x7 at
    224x224), dropout 0.4 and the linear ``output``. Max pools pad "same" (XLA puts the extra
    row after), which at 112 and 56 gives torchvision's ceil-mode sizes. The paper's local
    response normalization is left out (lecture line 2463). ``batch_norm`` puts a batch norm
    after every conv, as torchvision's GoogLeNet does (the paper predates batch norm).

    At 224x224x3 the maps are 112, 56, 56, 28 (stage 3: 256, 480 maps), 14 (4a-4e: 512, 512,
    512, 528, 832), 7 (5a, 5b: 832, 1024). Inception 3a has 163,328 weights (159.5K; Table 1:
    159K), conv2 112K and the output layer 1000K as in Table 1; some other rows of the table
    (4c: 463K) disagree with its own widths (4c: 497.5K).

    Attributes:
      stages: per stage, the Inception widths (:data:`GOOGLENET_STAGES`).
      stem: ``"imagenet"`` or ``"cifar"``; stem_widths: conv1, conv2_reduce, conv2 maps.
      batch_norm: batch norm after every conv (momentum 0.9) instead of conv biases.
      dropout_rate: dropout before the output layer while training.
      dtype: computation dtype (None: inferred, float32 normally).

    x: (batch, 224, 224, 3) -> logits (batch, num_classes).
    """

    num_classes: int = 1000
    stages: Sequence[Sequence[Sequence[int]]] = GOOGLENET_STAGES
    stem: str = "imagenet"
    stem_widths: Sequence[int] = (64, 64, 192)
    batch_norm: bool = False
    dropout_rate: float = 0.4
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_choice("stem", self.stem, STEMS)
        check_image(x, f"GoogLeNet ({self.stem} stem)", 1)
        layer = functools.partial(
            conv_bn_relu,
            batch_norm=self.batch_norm,
            train=train,
            dtype=self.dtype,
            bias_init=_GOOGLENET_BIAS_INIT,
        )
        imagenet = self.stem == "imagenet"
        width1, width2_reduce, width2 = self.stem_widths
        h = layer(x, width1, *((7, 2) if imagenet else (3, 1)), name="conv1")
        if imagenet:
            h = Pool("max", 3, 2, padding="same", name="pool1")(h)
        h = layer(h, width2_reduce, 1, 1, name="conv2_reduce")
        h = layer(h, width2, 3, 1, name="conv2")
        h = Pool("max", 3, 2, padding="same", name="pool2")(h)
        for s, modules in enumerate(self.stages, start=3):
            if s > 3:
                h = Pool("max", 3, 2, padding="same", name=f"pool{s - 1}")(h)
            for letter, widths in zip("abcdefgh", modules, strict=False):
                inception = Inception(
                    *widths,
                    batch_norm=self.batch_norm,
                    dtype=self.dtype,
                    name=f"inception_{s}{letter}",
                )
                h = inception(h, train)
        h = Pool("mean", h.shape[1:3], name="avgpool")(h)
        h = nn.Dropout(self.dropout_rate, deterministic=not train, name="dropout")(h)
        return output_layer(h, self.num_classes)


googlenet_small = functools.partial(
    GoogLeNet,
    num_classes=10,
    stem="cifar",
    stem_widths=(16, 16, 32),
    batch_norm=True,
    stages=(((16, 16, 24, 4, 8, 8), (24, 24, 32, 4, 12, 12)), ((32, 24, 48, 8, 16, 16),)),
)
"""GoogLeNet with batch norm for 32x32 inputs: the 3x3 stem and pool2, inception 3a, 3b at
16x16 (56, 80 maps), pool3, inception 4a at 8x8 (112 maps), global average pool."""


_GOOGLENET_CARD = {
    "family": "cnn",
    "task": "classification",
    "loss": "softmax_cross_entropy",
    "lecture": "004 L10 §4 Modern conv nets (line 2437): GoogLeNet/Inception, Figure 3 (line 2471)",
    "reference": "Szegedy et al., Going deeper with convolutions, CVPR (2015), arXiv:1409.4842",
    "test_config": {"num_classes": 3, "stem_widths": (3, 3, 4), "stages": (((2, 2, 3, 2, 2, 2),),)},
}
register_model(
    "googlenet",
    GoogLeNet,
    **_GOOGLENET_CARD,
    input_shape=(224, 224, 3),
    test_input_shape=(16, 16, 1),
    description="GoogLeNet (Inception v1, Table 1): 9 Inception modules, global average pool, "
    "no auxiliary classifiers",
)
register_model(
    "googlenet_small",
    googlenet_small,
    **_GOOGLENET_CARD,
    input_shape=(32, 32, 1),
    test_input_shape=(8, 8, 1),
    per_example_grads=False,
    description="GoogLeNet with batch norm for 32x32 inputs: 3x3 stem, Inception 3a, 3b, 4a "
    "(56, 80, 112 maps)",
)

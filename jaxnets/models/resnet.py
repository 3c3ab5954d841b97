"""Deep residual networks (He et al., 2016): ImageNet ResNet-18/34/50, CIFAR ResNet-20/56.

Lectures: seed 004, Lecture 14 "Learning Long-Term Dependencies" §4 ResNets (line 3254): the
residual block y = x + F(x) (eq. 10) passes error signals through unchanged when dF/dx is
small (eq. 11), and strided convolutions shrink the image where the block must change shape;
Lecture 10 §4 (line 2487: "deep residual nets", ILSVRC 2015); seed 001 "Other network
connectivity" (line 557: residual connections give shorter paths to the output).

Blocks follow the paper: every convolution is followed by batch norm (statistics in the
``batch_stats`` collection, momentum 0.9) and the ReLU comes after the addition. When a block
changes the shape, the shortcut is either a projection (option B: 1x1 conv with the block's
stride, then batch norm; the ImageNet nets) or parameter-free (option A: take every
``stride``-th pixel and append zero channels; the CIFAR nets of §4.2).

Images are channels-last, ``x: (batch, height, width, channels)`` -> logits
``(batch, num_classes)``. ``dtype`` is the computation dtype (``None``: inferred from inputs and
parameters, float32 normally, float64 under the gradient check); parameters stay float32 and the
output layer computes in their precision.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnets.checks import check_choice
from jaxnets.nn.blocks import batch_norm_layer, output_layer, square_conv
from jaxnets.nn.conv import Pool
from jaxnets.registry import register_model

__all__ = [
    "BLOCKS",
    "SHORTCUTS",
    "STEMS",
    "BasicBlock",
    "BottleneckBlock",
    "ResNet",
    "resnet18",
    "resnet20",
    "resnet34",
    "resnet50",
    "resnet56",
    "zero_pad_shortcut",
]

BLOCKS = ("basic", "bottleneck")
SHORTCUTS = ("projection", "zero_pad")
STEMS = ("imagenet", "cifar")


def zero_pad_shortcut(x: jax.Array, features: int, stride: int) -> jax.Array:
    """The parameter-free shortcut (option A, paper §3.3): subsample, then pad with zeros.

    Keeps pixels ``(stride*i, stride*j)``, the positions a stride-``stride`` 3x3 convolution
    with one pixel of padding is centred on, and appends ``features - channels`` zero channels.
    x: (batch, height, width, channels) -> (batch, ceil(height/stride), ceil(width/stride),
    features).
    """
    if features < x.shape[-1]:
        raise ValueError(
            f"a zero-padding shortcut can only add channels: {x.shape[-1]} -> {features}; "
            "use shortcut='projection' to reduce them"
        )
    x = x[:, ::stride, ::stride, :]
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, features - x.shape[-1])))


def _conv(features: int, kernel: int, stride: int, dtype: Any, name: str) -> nn.Conv:
    """A "same" square conv without bias: the batch norm that follows would cancel it."""
    return square_conv(features, kernel, stride, kernel // 2, dtype, name, use_bias=False)


def _shortcut(
    x: jax.Array, features: int, stride: int, kind: str, train: bool, dtype: Any
) -> jax.Array:
    """The identity, or (when the shape changes) the option-A or option-B shortcut.

    Call inside a block's compact method. x: (batch, H, W, C) -> (batch, H', W', features).
    """
    if x.shape[-1] == features and stride == 1:
        return x
    if kind == "zero_pad":
        return zero_pad_shortcut(x, features, stride)
    x = _conv(features, 1, stride, dtype, "shortcut_conv")(x)
    return batch_norm_layer(train, dtype, "shortcut_bn")(x)


class BasicBlock(nn.Module):
    """Two 3x3 conv + batch norm layers and a shortcut (paper Figure 5, left).

    ``relu(x' + bn2(conv2(relu(bn1(conv1(x))))))``, where conv1 has the block's ``stride`` and
    ``x'`` is :func:`_shortcut` of x.

    Attributes: features (output maps), stride, shortcut (``"projection"`` or ``"zero_pad"``),
    dtype (computation dtype).
    x: (batch, H, W, C) -> (batch, ceil(H/stride), ceil(W/stride), features).
    """

    features: int
    stride: int = 1
    shortcut: str = "projection"
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        y = _conv(self.features, 3, self.stride, self.dtype, "conv1")(x)
        y = nn.relu(batch_norm_layer(train, self.dtype, "bn1")(y))
        y = _conv(self.features, 3, 1, self.dtype, "conv2")(y)
        y = batch_norm_layer(train, self.dtype, "bn2")(y)
        shortcut = _shortcut(x, self.features, self.stride, self.shortcut, train, self.dtype)
        return nn.relu(shortcut + y)


class BottleneckBlock(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x ``expansion``), each with batch norm (Figure 5, right).

    The stride sits on the 3x3 conv (as in torchvision, "ResNet v1.5"). Output maps are
    ``features * expansion``.

    Attributes: features (maps inside the bottleneck), stride, shortcut, expansion, dtype.
    x: (batch, H, W, C) -> (batch, ceil(H/stride), ceil(W/stride), features * expansion).
    """

    features: int
    stride: int = 1
    shortcut: str = "projection"
    expansion: int = 4
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        out = self.features * self.expansion
        y = _conv(self.features, 1, 1, self.dtype, "conv1")(x)
        y = nn.relu(batch_norm_layer(train, self.dtype, "bn1")(y))
        y = _conv(self.features, 3, self.stride, self.dtype, "conv2")(y)
        y = nn.relu(batch_norm_layer(train, self.dtype, "bn2")(y))
        y = _conv(out, 1, 1, self.dtype, "conv3")(y)
        y = batch_norm_layer(train, self.dtype, "bn3")(y)
        shortcut = _shortcut(x, out, self.stride, self.shortcut, train, self.dtype)
        return nn.relu(shortcut + y)


class ResNet(nn.Module):
    """A residual network: stem, stages of residual blocks, global average pool, linear output.

    Stem ``"imagenet"``: ``conv1`` 7x7/2 + ``bn1`` + ReLU, ``pool1`` max 3x3/2 over one pixel
    of padding on every side, as torchvision's ``MaxPool2d(3, 2, padding=1)`` (a "same" pool
    would pad only after, shifting every window by one pixel); ``"cifar"`` (paper §4.2):
    ``conv1`` 3x3/1 + ``bn1`` + ReLU, no pool. The stem has ``widths[0]`` maps. Stage ``s``
    holds ``stage_sizes[s]`` blocks ``stage{s}_block{j}`` of ``widths[s]`` maps; the first
    block of every stage after the first has stride 2. Then ``avgpool`` (global mean) and the
    linear ``output``.

    With 224x224x3 inputs and 1000 classes, :func:`resnet18`, :func:`resnet34` and
    :func:`resnet50` have torchvision's 11,689,512 / 21,797,672 / 25,557,032 parameters;
    :func:`resnet20` (6n+2 layers, n=3) has 269,722 at 32x32x3 with 10 classes.

    Attributes:
      stage_sizes: blocks per stage.
      block: ``"basic"`` (:class:`BasicBlock`) or ``"bottleneck"`` (:class:`BottleneckBlock`).
      widths: maps per stage (inside the bottleneck for ``"bottleneck"``).
      stem: ``"imagenet"`` or ``"cifar"``.
      shortcut: ``"projection"`` (option B) or ``"zero_pad"`` (option A) where shapes change.
      dtype: computation dtype (None: inferred, float32 normally).

    x: (batch, height, width, channels) -> logits (batch, num_classes).
    """

    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    block: str = "basic"
    widths: Sequence[int] = (64, 128, 256, 512)
    stem: str = "imagenet"
    shortcut: str = "projection"
    num_classes: int = 1000
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_choice("block", self.block, BLOCKS)
        check_choice("stem", self.stem, STEMS)
        check_choice("shortcut", self.shortcut, SHORTCUTS)
        if len(self.stage_sizes) != len(self.widths):
            raise ValueError(
                f"ResNet needs one width per stage: stage_sizes {tuple(self.stage_sizes)} vs "
                f"widths {tuple(self.widths)}"
            )
        if x.ndim != 4:
            raise ValueError(
                f"ResNet expects images (batch, height, width, channels); got shape {x.shape}"
            )
        imagenet = self.stem == "imagenet"
        kernel, stride = (7, 2) if imagenet else (3, 1)
        h = _conv(self.widths[0], kernel, stride, self.dtype, "conv1")(x)
        h = nn.relu(batch_norm_layer(train, self.dtype, "bn1")(h))
        if imagenet:
            h = jnp.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
            h = Pool("max", 3, 2, name="pool1")(h)
        block = BasicBlock if self.block == "basic" else BottleneckBlock
        for s, (size, width) in enumerate(zip(self.stage_sizes, self.widths, strict=True)):
            for j in range(size):
                h = block(
                    width,
                    stride=2 if s > 0 and j == 0 else 1,
                    shortcut=self.shortcut,
                    dtype=self.dtype,
                    name=f"stage{s + 1}_block{j + 1}",
                )(h, train)
        h = Pool("mean", h.shape[1:3], name="avgpool")(h)
        return output_layer(h, self.num_classes)


resnet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block="basic")
resnet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="basic")
resnet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="bottleneck")
_cifar_resnet = functools.partial(
    ResNet, widths=(16, 32, 64), stem="cifar", shortcut="zero_pad", num_classes=10
)
resnet20 = functools.partial(_cifar_resnet, stage_sizes=(3, 3, 3))
"""CIFAR ResNet-20 (§4.2: 6n+2 layers with n=3; 16-32-64 maps at 32-16-8 pixels; option A)."""
resnet56 = functools.partial(_cifar_resnet, stage_sizes=(9, 9, 9))
"""CIFAR ResNet-56 (n=9)."""


_CARD = {
    "family": "cnn",
    "task": "classification",
    "loss": "softmax_cross_entropy",
    "lecture": "004 L14 §4 ResNets (line 3254); L10 §4 deep residual nets (line 2487); "
    "001 Other network connectivity (line 557)",
    "reference": "He, Zhang, Ren & Sun, Deep residual learning for image recognition, CVPR "
    "(2016), arXiv:1512.03385",
    "per_example_grads": False,
}
# Tiny test configs (2-8 maps, a few hundred parameters in few layers: every parameter layer
# costs compile time in each registry-wide test): two stages of basic blocks, or one stage
# of bottlenecks (whose outputs are 4x wider). ResNet-56 is a preset but not registered: it
# is ResNet-20 with n=9.
_TWO_BASIC_STAGES = {"num_classes": 3, "stage_sizes": (1, 1), "widths": (2, 4)}
_ONE_BOTTLENECK_STAGE = {"num_classes": 3, "stage_sizes": (1,), "widths": (2,)}
# The ImageNet ResNets of §4.1: name -> (preset, test config, blocks in the description).
_IMAGENET_RESNETS = {
    "resnet18": (resnet18, _TWO_BASIC_STAGES, "basic blocks 2-2-2-2 of 64-128-256-512 maps"),
    "resnet34": (resnet34, _TWO_BASIC_STAGES, "basic blocks 3-4-6-3 of 64-128-256-512 maps"),
    "resnet50": (resnet50, _ONE_BOTTLENECK_STAGE, "bottleneck blocks 3-4-6-3 (256-2048 maps)"),
}
for _name, (_builder, _test_config, _blocks) in _IMAGENET_RESNETS.items():
    register_model(
        _name,
        _builder,
        **_CARD,
        input_shape=(224, 224, 3),
        test_config=_test_config,
        test_input_shape=(16, 16, 1),
        description=f"ResNet-{_name[len('resnet') :]}: 7x7 stem, {_blocks}, projections",
    )
register_model(
    "resnet20",
    resnet20,
    **_CARD,
    input_shape=(32, 32, 3),
    test_config=_TWO_BASIC_STAGES,
    test_input_shape=(8, 8, 1),
    description="CIFAR ResNet-20: 3x3 stem, 3 stages of 3 basic blocks (16-32-64 maps), "
    "parameter-free zero-padding shortcuts",
)

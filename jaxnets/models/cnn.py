"""Convolutional networks of the image-classification lecture: LeNet-5, AlexNet, VGG, GoogLeNet.

Lectures: seed 004, Lecture 9 "Convolutional Networks" (line 2115) for convolution and pooling
layers, and Lecture 10 "Image Classification" (line 2311): §3 LeNet (line 2406, Table 1 at
line 2446) and §4 "Modern conv nets" (line 2437: AlexNet, VGGNet, GoogLeNet/Inception; Table 2
at line 2450). ResNets live in :mod:`jaxnets.models.resnet`.

Images are channels-last, ``x: (batch, height, width, channels)``; every model returns logits
``(batch, num_classes)``. Layer names follow the lecture where it names them (LeNet's C1, S2,
...), so :func:`jaxnets.inspect.layer_table` prints the lecture's table.

Every family except LeNet-5 has a ``dtype`` field: the computation dtype of its layers (e.g.
``jnp.bfloat16``); ``None`` infers it from the inputs and parameters, which is float32 normally
and float64 under the float64 gradient check. Parameters are always stored in float32, and the
output layer computes in the parameters' precision, so the loss sees float32 logits.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnets.nn.activations import get_activation
from jaxnets.nn.conv import Pool
from jaxnets.registry import register_model

__all__ = [
    "AlexNet",
    "GOOGLENET_STAGES",
    "GoogLeNet",
    "Inception",
    "LeNet5",
    "VGG",
    "VGG_DEPTHS",
    "alexnet_small",
    "googlenet_small",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
    "vgg_small",
]
_CNN_LECTURE = "004 L10 §3-4 Image classification (line 2406); L9 conv and pooling (line 2115)"


class LeNet5(nn.Module):
    """LeNet-5 as Lecture 10 §3 describes it (LeCun et al., 1998).

    C1: ``c1`` maps, ``kernel``x``kernel`` valid convolution; S2: ``pool`` pooling, window and
    stride 2; C3: ``c3`` maps, valid, connected to every S2 map (the lecture's simplification
    of the original partial connection table); S4: pooling; F5 and F6 fully connected; a
    linear output layer whose softmax is taken by the loss (the lecture's simplification of
    the original RBF output units).

    With the defaults and 32x32x1 inputs the units, connections and weights per layer are
    exactly Table 1 of the lecture.

    x: (batch, 32, 32, 1) -> logits (batch, num_classes).
    """

    num_classes: int = 10
    c1: int = 6
    c3: int = 16
    f5: int = 120
    f6: int = 84
    kernel: int = 5
    pool: str = "mean"
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train  # no dropout or batch norm in LeNet-5
        phi = get_activation(self.activation).fn
        window = (self.kernel, self.kernel)
        h = phi(nn.Conv(self.c1, window, padding="VALID", name="C1")(x))
        h = Pool(self.pool, 2, 2, name="S2")(h)
        h = phi(nn.Conv(self.c3, window, padding="VALID", name="C3")(h))
        h = Pool(self.pool, 2, 2, name="S4")(h)
        h = h.reshape(h.shape[0], -1)
        h = phi(nn.Dense(self.f5, name="F5")(h))
        h = phi(nn.Dense(self.f6, name="F6")(h))
        return nn.Dense(self.num_classes, name="output")(h)


register_model(
    "lenet5",
    LeNet5,
    family="cnn",
    lecture=_CNN_LECTURE,
    reference="LeCun, Bottou, Bengio & Haffner, Gradient-based learning applied to document "
    "recognition, Proc. IEEE (1998)",
    task="classification",
    input_shape=(32, 32, 1),
    loss="softmax_cross_entropy",
    test_config={"c1": 2, "c3": 3, "f5": 5, "f6": 4, "kernel": 3, "num_classes": 3},
    test_input_shape=(12, 12, 1),
    description="LeNet-5: C1 6@5x5, S2 mean-pool, C3 16@5x5, S4, F5 120, F6 84, 10 logits",
)


# -- shared pieces of the modern conv nets ---------------------------------------------------

# He et al. (2015) initialization: variance 2 / fan_in keeps the scale of ReLU activations
# constant through depth (LeCun's 1 / fan_in halves it at every ReLU layer).
_RELU_INIT = nn.initializers.he_normal()


def _check_image(x: jax.Array, model: str, min_size: int) -> None:
    if x.ndim != 4 or min(x.shape[1:3]) < min_size:
        raise ValueError(
            f"{model} expects images (batch, height, width, channels) with height and width "
            f">= {min_size}; got an input of shape {x.shape}"
        )


def _conv(features: int, kernel: int, stride: int, padding: int, dtype: Any, name: str, **kw):
    """A square ``kernel`` x ``kernel`` convolution with ``padding`` zeros on every side."""
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=stride,
        padding=((padding, padding), (padding, padding)),
        kernel_init=_RELU_INIT,
        dtype=dtype,
        name=name,
        **kw,
    )


def _output_layer(h: jax.Array, num_classes: int) -> jax.Array:
    """The linear ``output`` layer on flattened features; call inside a compact method.

    It computes in the parameters' precision (no dtype), so the loss sees float32 logits
    even when the rest of the network runs in bfloat16. h: (batch, ...) -> (batch, num_classes).
    """
    return nn.Dense(num_classes, name="output")(h.reshape(h.shape[0], -1))


def _classifier(
    h: jax.Array,
    hidden: Sequence[int],
    num_classes: int,
    dropout_rate: float,
    dtype: Any,
    train: bool,
) -> jax.Array:
    """Flatten, then ReLU layers ``fc1, fc2, ...`` each followed by dropout, then ``output``.

    Call inside a compact method (the layers join the calling module).
    h: (batch, ...) -> logits (batch, num_classes).
    """
    h = h.reshape(h.shape[0], -1)
    for i, width in enumerate(hidden, start=1):
        h = nn.relu(nn.Dense(width, dtype=dtype, name=f"fc{i}")(h))
        h = nn.Dropout(dropout_rate, deterministic=not train, name=f"dropout{i}")(h)
    return _output_layer(h, num_classes)


# -- AlexNet ---------------------------------------------------------------------------------


class AlexNet(nn.Module):
    """AlexNet (Krizhevsky, Sutskever & Hinton, 2012), single-tower as in torchvision.

    conv1 64@11x11/4 (pad 2), pool1 max 3x3/2, conv2 192@5x5 (pad 2), pool2, conv3 384@3x3,
    conv4 256@3x3, conv5 256@3x3 (pad 1), pool5, then fc1 4096, fc2 4096 (ReLU, dropout 0.5
    after each) and the linear output. Pooling windows overlap (3x3, stride 2; paper §3.4).
    The paper's two-GPU split and local response normalization are left out (the lecture:
    "not believed to make a big difference", line 2463).

    At 224x224x3 the last map is 6x6x256 (224 -> 55 -> 27 -> 27 -> 13 -> 13 -> 6), the size
    torchvision's ``AdaptiveAvgPool2d((6, 6))`` produces, so that pool is the identity there and
    is not included; other input sizes change the width of fc1. With 1000 classes the model has
    torchvision's 61,100,840 parameters.

    Attributes:
      widths, kernels, strides, paddings: the five conv layers (5 entries each); pooling
        follows conv1, conv2 and conv5.
      hidden: widths of the fully connected ReLU layers.
      dropout_rate: dropout after each hidden fully connected layer while training.
      dtype: computation dtype (None: inferred, float32 normally).

    x: (batch, 224, 224, 3) -> logits (batch, num_classes).
    """

    num_classes: int = 1000
    widths: Sequence[int] = (64, 192, 384, 256, 256)
    kernels: Sequence[int] = (11, 5, 3, 3, 3)
    strides: Sequence[int] = (4, 1, 1, 1, 1)
    paddings: Sequence[int] = (2, 2, 1, 1, 1)
    hidden: Sequence[int] = (4096, 4096)
    dropout_rate: float = 0.5
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        layers = (self.widths, self.kernels, self.strides, self.paddings)
        if any(len(entries) != 5 for entries in layers):
            raise ValueError(
                "AlexNet has 5 conv layers: widths, kernels, strides and paddings need 5 "
                f"entries each; got {tuple(map(tuple, layers))}"
            )
        _check_image(x, "AlexNet", 1)
        h = x
        for i, (width, kernel, stride, padding) in enumerate(zip(*layers, strict=True), start=1):
            h = nn.relu(_conv(width, kernel, stride, padding, self.dtype, f"conv{i}")(h))
            if i in (1, 2, 5):
                h = Pool("max", 3, 2, name=f"pool{i}")(h)
        return _classifier(h, self.hidden, self.num_classes, self.dropout_rate, self.dtype, train)


alexnet_small = functools.partial(
    AlexNet,
    num_classes=10,
    widths=(16, 32, 48, 32, 32),
    kernels=(5, 5, 3, 3, 3),
    strides=(1, 1, 1, 1, 1),
    paddings=(2, 2, 1, 1, 1),
    hidden=(128, 128),
)
"""AlexNet's layer pattern for 32x32 inputs: stride-1 5x5/3x3 convs, narrow layers;
32 -> 15 -> 7 -> 3 through the three overlapping pools, 3*3*32 = 288 features."""


# -- VGG ----------------------------------------------------------------------------------

VGG_DEPTHS = {
    "A": (1, 1, 2, 2, 2),
    "B": (2, 2, 2, 2, 2),
    "D": (2, 2, 3, 3, 3),
    "E": (2, 2, 4, 4, 4),
}
"""Conv layers per stage of the configurations in Table 1 of Simonyan & Zisserman (2014)."""


class VGG(nn.Module):
    """VGG (Simonyan & Zisserman, 2014): stages of 3x3 "same" convolutions, 2x2 max pooling.

    Stage ``s`` has ``depths[s]`` conv layers ``conv{s}_{j}`` of ``widths[s]`` maps (3x3,
    stride 1, pad 1, ReLU; with ``batch_norm`` each is followed by batch norm ``bn{s}_{j}``
    before the ReLU and has no bias, which the norm's mean subtraction would cancel), then
    ``pool{s}`` halves the height and width. The classifier has ReLU layers ``fc1``,
    ``fc2``, ... each followed by dropout, and the linear ``output``. Input sides must be at
    least ``2**len(depths)``.

    With 224x224x3 inputs the last map is 7x7x512 (torchvision's adaptive 7x7 pool is then
    the identity and is not included); with 1000 classes VGG-11/16/19 have torchvision's
    132,863,336 / 138,357,544 / 143,667,240 parameters.

    Attributes:
      depths: conv layers per stage (:data:`VGG_DEPTHS`; default D, VGG-16).
      widths: feature maps per stage.
      hidden: widths of the fully connected ReLU layers.
      batch_norm: batch norm after every conv (statistics in ``batch_stats``, momentum 0.9).
      dropout_rate: dropout after each hidden fully connected layer while training.
      dtype: computation dtype (None: inferred, float32 normally).

    x: (batch, 224, 224, 3) -> logits (batch, num_classes).
    """

    num_classes: int = 1000
    depths: Sequence[int] = VGG_DEPTHS["D"]
    widths: Sequence[int] = (64, 128, 256, 512, 512)
    hidden: Sequence[int] = (4096, 4096)
    batch_norm: bool = False
    dropout_rate: float = 0.5
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if len(self.depths) != len(self.widths):
            raise ValueError(
                f"VGG needs one width per stage: depths {tuple(self.depths)} has "
                f"{len(self.depths)} stages, widths {tuple(self.widths)} has {len(self.widths)}"
            )
        _check_image(x, f"VGG with {len(self.depths)} pooling stages", 2 ** len(self.depths))
        h = x
        for s, (depth, width) in enumerate(zip(self.depths, self.widths, strict=True), start=1):
            for j in range(1, depth + 1):
                conv = _conv(
                    width, 3, 1, 1, self.dtype, f"conv{s}_{j}", use_bias=not self.batch_norm
                )
                h = conv(h)
                if self.batch_norm:
                    h = nn.BatchNorm(
                        use_running_average=not train,
                        momentum=0.9,
                        dtype=self.dtype,
                        name=f"bn{s}_{j}",
                    )(h)
                h = nn.relu(h)
            h = Pool("max", 2, 2, name=f"pool{s}")(h)
        return _classifier(h, self.hidden, self.num_classes, self.dropout_rate, self.dtype, train)


vgg11 = functools.partial(VGG, depths=VGG_DEPTHS["A"])
vgg13 = functools.partial(VGG, depths=VGG_DEPTHS["B"])
vgg16 = functools.partial(VGG, depths=VGG_DEPTHS["D"])
vgg19 = functools.partial(VGG, depths=VGG_DEPTHS["E"])
vgg_small = functools.partial(
    VGG,
    num_classes=10,
    depths=(1, 1, 2),
    widths=(16, 32, 64),
    hidden=(128,),
    batch_norm=True,
)
"""A VGG for 32x32 inputs: 16, 32, 2x64 maps with batch norm (32 -> 16 -> 8 -> 4), fc 128."""


# -- GoogLeNet -------------------------------------------------------------------------------


def _googlenet_conv(features: int, kernel: int, stride: int, dtype: Any, name: str) -> nn.Conv:
    """A "same" conv (``kernel // 2`` zeros each side) with biases starting at 0.2.

    The 0.2 is the reference Caffe model's (BVLC GoogLeNet) bias filler: without batch norm, a
    positive bias keeps ReLU units alive where all their inputs are zero (pre-activations are
    then 0.2, not exactly at the kink).
    """
    return _conv(
        features, kernel, stride, kernel // 2, dtype, name, bias_init=nn.initializers.constant(0.2)
    )


class Inception(nn.Module):
    """An Inception module (Szegedy et al., 2014, Figure 2b): four branches, concatenated.

    ``branch1x1``: 1x1 conv; ``branch3x3_reduce`` 1x1 -> ``branch3x3`` 3x3; ``branch5x5_reduce``
    1x1 -> ``branch5x5`` 5x5; ``branch_pool`` 3x3 max pool, stride 1 -> ``branch_pool_proj``
    1x1. Every conv is "same", stride 1, with ReLU and a bias (initially 0.2). The 1x1
    reductions are the lecture's margin note (line 2491): a bottleneck that cuts the weights
    of each large filter.

    Attributes: the six widths of the paper's Table 1 columns (``#1x1``, ``#3x3 reduce``,
    ``#3x3``, ``#5x5 reduce``, ``#5x5``, ``pool proj``) and the computation ``dtype``.
    x: (batch, height, width, in) -> (batch, height, width, c1 + c3 + c5 + pool_proj).
    """

    c1: int
    c3_reduce: int
    c3: int
    c5_reduce: int
    c5: int
    pool_proj: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        def conv_relu(features, kernel, name, h):
            return nn.relu(_googlenet_conv(features, kernel, 1, self.dtype, name)(h))

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

    Stem ``"imagenet"``: ``conv1`` 7x7/2 (pad 3), ``pool1`` max 3x3/2, ``conv2_reduce`` 1x1,
    ``conv2`` 3x3, ``pool2`` max 3x3/2; ``"cifar"`` (for 32x32 inputs): ``conv1`` is 3x3/1 and
    the two pools are left out. Then stages of :class:`Inception` modules ``inception_3a``,
    ``inception_3b``, ``pool3``, ``inception_4a``..., with a max pool 3x3/2 between stages;
    global average pooling (``avgpool``, the paper's 7x7 at 224x224), dropout 0.4 and the
    linear ``output``. Max pools pad "same" (XLA puts the extra row after), which at 112 and
    56 gives torchvision's ceil-mode sizes. The paper's local response normalization is left
    out (lecture line 2463); there is no batch norm (the paper predates it).

    At 224x224x3 the maps are 112, 56, 56, 28 (stage 3: 256, 480 maps), 14 (4a-4e: 512, 512,
    512, 528, 832), 7 (5a, 5b: 832, 1024), and the params column of Table 1 is reproduced
    (e.g. inception 3a has 163,328 weights = 159.5K, the paper's 159K).

    Attributes:
      stages: per stage, the Inception widths (:data:`GOOGLENET_STAGES`).
      stem: ``"imagenet"`` or ``"cifar"``; stem_widths: conv1, conv2_reduce, conv2 maps.
      dropout_rate: dropout before the output layer while training.
      dtype: computation dtype (None: inferred, float32 normally).

    x: (batch, 224, 224, 3) -> logits (batch, num_classes).
    """

    num_classes: int = 1000
    stages: Sequence[Sequence[Sequence[int]]] = GOOGLENET_STAGES
    stem: str = "imagenet"
    stem_widths: Sequence[int] = (64, 64, 192)
    dropout_rate: float = 0.4
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {', '.join(STEMS)}; got {self.stem!r}")
        _check_image(x, f"GoogLeNet ({self.stem} stem)", 1)
        imagenet = self.stem == "imagenet"
        width1, width2_reduce, width2 = self.stem_widths
        kernel, stride = (7, 2) if imagenet else (3, 1)
        h = nn.relu(_googlenet_conv(width1, kernel, stride, self.dtype, "conv1")(x))
        if imagenet:
            h = Pool("max", 3, 2, padding="same", name="pool1")(h)
        h = nn.relu(_googlenet_conv(width2_reduce, 1, 1, self.dtype, "conv2_reduce")(h))
        h = nn.relu(_googlenet_conv(width2, 3, 1, self.dtype, "conv2")(h))
        if imagenet:
            h = Pool("max", 3, 2, padding="same", name="pool2")(h)
        for s, modules in enumerate(self.stages, start=3):
            if s > 3:
                h = Pool("max", 3, 2, padding="same", name=f"pool{s - 1}")(h)
            for letter, widths in zip("abcdefgh", modules, strict=False):
                h = Inception(*widths, dtype=self.dtype, name=f"inception_{s}{letter}")(h)
        h = Pool("mean", h.shape[1:3], name="avgpool")(h)
        h = nn.Dropout(self.dropout_rate, deterministic=not train, name="dropout")(h)
        return _output_layer(h, self.num_classes)


googlenet_small = functools.partial(
    GoogLeNet,
    num_classes=10,
    stem="cifar",
    stem_widths=(16, 16, 32),
    stages=(((16, 16, 24, 4, 8, 8), (24, 24, 32, 4, 12, 12)), ((32, 24, 48, 8, 16, 16),)),
)
"""GoogLeNet for 32x32 inputs: the 3x3 stem, inception 3a, 3b at 32x32 (56, 80 maps), pool3,
inception 4a at 16x16 (112 maps), global average pool."""


# -- registration ----------------------------------------------------------------------------

_MODERN = "004 L10 §4 Modern conv nets (line 2437)"
_CARD = {"family": "cnn", "task": "classification", "loss": "softmax_cross_entropy"}

# Tiny test configs: 300-700 parameters in few layers, because every parameter layer costs
# compile time in each of the registry-wide tests (float64 gradcheck, eager execution, ...).
# VGG-11/13/19 are presets here but not registered: their tiny tests would repeat VGG-16's.
_ALEXNET_CARD = {
    **_CARD,
    "lecture": f"{_MODERN}: AlexNet, Figure 2 and Table 2 (line 2450)",
    "reference": "Krizhevsky, Sutskever & Hinton, ImageNet classification with deep "
    "convolutional neural networks, NeurIPS (2012)",
    "test_config": {
        "num_classes": 3,
        "widths": (4, 4, 4, 4, 4),
        "kernels": (3, 3, 3, 3, 3),
        "strides": (1, 1, 1, 1, 1),
        "paddings": (1, 1, 1, 1, 1),
        "hidden": (6,),
    },
    "test_input_shape": (16, 16, 1),
}
register_model(
    "alexnet",
    AlexNet,
    **_ALEXNET_CARD,
    input_shape=(224, 224, 3),
    description="AlexNet: convs 64@11x11/4, 192@5x5, 384, 256, 256@3x3, 3 max pools, FC 4096-4096",
)
register_model(
    "alexnet_small",
    alexnet_small,
    **_ALEXNET_CARD,
    input_shape=(32, 32, 1),
    description="AlexNet's pattern for 32x32 inputs: stride-1 convs 16-32-48-32-32, FC 128-128",
)

_VGG_CARD = {
    **_CARD,
    "lecture": f"{_MODERN}: VGGNet (line 2469)",
    "reference": "Simonyan & Zisserman, Very deep convolutional networks for large-scale image "
    "recognition, ICLR (2015), arXiv:1409.1556",
    "test_config": {"num_classes": 3, "depths": (1, 2), "widths": (3, 4), "hidden": (6,)},
    "test_input_shape": (8, 8, 1),
}
_VGG_PRESETS = {
    "vgg11": (vgg11, "A"),
    "vgg13": (vgg13, "B"),
    "vgg16": (vgg16, "D"),
    "vgg19": (vgg19, "E"),
}
for _name, (_builder, _config) in _VGG_PRESETS.items():
    register_model(
        _name,
        _builder,
        **_VGG_CARD,
        input_shape=(224, 224, 3),
        description=f"VGG-{_name[3:]} (configuration {_config}): 3x3 convs in 5 stages of "
        "64-128-256-512-512 maps, FC 4096-4096",
    )
register_model(
    "vgg_small",
    vgg_small,
    **_VGG_CARD,
    input_shape=(32, 32, 1),
    per_example_grads=False,
    description="VGG with batch norm for 32x32 inputs: convs 16, 32, 64, 64 (3x3), FC 128",
)

_GOOGLENET_CARD = {
    **_CARD,
    "lecture": f"{_MODERN}: GoogLeNet/Inception, Figure 3 (line 2471)",
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
    description="GoogLeNet for 32x32 inputs: 3x3 stem, Inception 3a, 3b, 4a (56, 80, 112 maps)",
)

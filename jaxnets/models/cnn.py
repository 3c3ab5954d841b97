"""Convolutional networks of the image-classification lecture: LeNet-5, AlexNet, VGG.

Lectures: seed 004, Lecture 9 "Convolutional Networks" (line 2115) for convolution and pooling
layers, and Lecture 10 "Image Classification" (line 2311): §3 LeNet (line 2406, Table 1 at
line 2446) and §4 "Modern conv nets" (line 2437: AlexNet, VGGNet, GoogLeNet/Inception; Table 2
at line 2450). GoogLeNet lives in :mod:`jaxnets.models.googlenet`, ResNets in
:mod:`jaxnets.models.resnet`; the layer helpers they share with AlexNet and VGG are in
:mod:`jaxnets.nn.blocks`.

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
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.nn.activations import get_activation
from jaxnets.nn.blocks import check_image, conv_bn_relu, output_layer, square_conv
from jaxnets.nn.conv import Conv, Pool
from jaxnets.registry import register_model

__all__ = [
    "VGG",
    "VGG_DEPTHS",
    "AlexNet",
    "LeNet5",
    "adaptive_avg_pool",
    "alexnet",
    "alexnet_small",
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
    pool: Literal["mean", "max"] = "mean"
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train  # no dropout or batch norm in LeNet-5
        k = self.kernel
        _check_fit(
            x, "LeNet-5", [("C1", k, 1, 0), ("S2", 2, 2, 0), ("C3", k, 1, 0), ("S4", 2, 2, 0)]
        )
        phi = get_activation(self.activation).fn
        window = (k, k)
        h = phi(Conv(self.c1, window, padding="VALID", name="C1")(x))
        h = Pool(self.pool, 2, 2, name="S2")(h)
        h = phi(Conv(self.c3, window, padding="VALID", name="C3")(h))
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


# -- input checks and the classifier head of this module's nets -----------------------------


def _check_fit(x: jax.Array, model: str, layers: Sequence[tuple[str, int, int, int]]) -> None:
    """Raise unless images ``x`` (batch, H, W, C) keep at least one pixel through ``layers``:
    square (name, window, stride, padding) convolutions and pools applied in order. Inputs of
    another rank are left to the first convolution, whose error names the rank it needs."""
    if x.ndim != 4:
        return
    # A layer's output has >= n pixels iff its input has >= (n - 1) stride + window - 2 padding.
    need = 1
    for _, window, stride, padding in reversed(layers):
        need = max(1, (need - 1) * stride + window - 2 * padding)
    if min(x.shape[1:3]) < need:
        steps = ", ".join(f"{n} {w}x{w}/{st} pad {p}" for n, w, st, p in layers)
        raise ValueError(
            f"{model} needs images of at least {need}x{need}: its layers ({steps}) leave no "
            f"pixels of {x.shape[1]}x{x.shape[2]} images; got input shape {x.shape}"
        )


def _pool_matrix(size: int, out: int) -> np.ndarray:
    """(out, size) averaging weights of PyTorch's adaptive pooling along one axis: output ``i``
    is the mean of inputs ``floor(i size / out)`` to ``ceil((i + 1) size / out) - 1``."""
    weights = np.zeros((out, size))  # float64: cast to the input dtype, exact in either
    for i in range(out):
        start, stop = (i * size) // out, -(-((i + 1) * size) // out)
        weights[i, start:stop] = 1.0 / (stop - start)
    return weights


def adaptive_avg_pool(x: jax.Array, size: int) -> jax.Array:
    """PyTorch's ``AdaptiveAvgPool2d((size, size))``: average ``size`` x ``size`` bins.

    The identity when the map is already ``size`` x ``size``; a smaller map is spread over
    the bins (a 1x1 map is copied into every bin).
    x: (batch, H, W, C) -> (batch, size, size, C).
    """
    height, width = x.shape[1:3]
    if (height, width) == (size, size):
        return x
    rows = jnp.asarray(_pool_matrix(height, size), x.dtype)
    cols = jnp.asarray(_pool_matrix(width, size), x.dtype)
    return jnp.einsum("ih,jw,bhwc->bijc", rows, cols, x)


def _classifier(
    h: jax.Array,
    hidden: Sequence[int],
    num_classes: int,
    dropout_rate: float,
    dtype: Any,
    train: bool,
    *,
    dropout_first: bool = False,
) -> jax.Array:
    """Flatten, then ReLU layers ``fc1, fc2, ...`` with dropout, then ``output``.

    Dropout follows each ReLU (VGG), or precedes each ``fc`` layer with ``dropout_first``
    (AlexNet), as in torchvision's classifiers. Call inside a compact method (the layers join
    the calling module). h: (batch, ...) -> logits (batch, num_classes).
    """
    h = h.reshape(h.shape[0], -1)
    for i, width in enumerate(hidden, start=1):
        dropout = nn.Dropout(dropout_rate, deterministic=not train, name=f"dropout{i}")
        h = dropout(h) if dropout_first else h
        h = nn.relu(nn.Dense(width, dtype=dtype, name=f"fc{i}")(h))
        h = h if dropout_first else dropout(h)
    return output_layer(h, num_classes)


# -- AlexNet ---------------------------------------------------------------------------------


_ALEXNET_POOLED = (1, 2, 5)  # conv layers followed by a 3x3/2 max pool


class AlexNet(nn.Module):
    """AlexNet (Krizhevsky, Sutskever & Hinton, 2012), single-tower as in torchvision.

    conv1 64@11x11/4 (pad 2), pool1 max 3x3/2, conv2 192@5x5 (pad 2), pool2, conv3 384@3x3,
    conv4 256@3x3, conv5 256@3x3 (pad 1), pool5, with ``pooled_size`` an adaptive average
    pool to ``pooled_size`` x ``pooled_size`` (6 in the registered ``alexnet``), then fc1
    4096, fc2 4096 (ReLU, dropout 0.5 before each, as in torchvision) and the linear output.
    Pooling windows overlap (3x3, stride 2; paper §3.4). The paper's two-GPU split and local
    response normalization are left out (the lecture: "not believed to make a big
    difference", line 2463).

    At 224x224x3 the last map is 6x6x256 (224 -> 55 -> 27 -> 27 -> 13 -> 13 -> 6), so the
    adaptive pool (torchvision's ``AdaptiveAvgPool2d((6, 6))``) is the identity there; with
    it, other input sizes keep fc1's width. With 1000 classes the model has torchvision's
    61,100,840 parameters.

    Attributes:
      widths, kernels, strides, paddings: the five conv layers (5 entries each); pooling
        follows conv1, conv2 and conv5.
      hidden: widths of the fully connected ReLU layers.
      dropout_rate: dropout before each hidden fully connected layer while training.
      pooled_size: side of the adaptive average pool before fc1 (None: no pool; fc1 then
        reads the last map as it is); torchvision's 6 in the registered ``alexnet``.
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
    pooled_size: int | None = None
    dtype: Any = None
    ZERO_OK = ("paddings",)  # hyperparameters that may be 0 (see jaxnets.create_model)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        layers = (self.widths, self.kernels, self.strides, self.paddings)
        if any(len(entries) != 5 for entries in layers):
            raise ValueError(
                "AlexNet has 5 conv layers: widths, kernels, strides and paddings need 5 "
                f"entries each; got {tuple(map(tuple, layers))}"
            )
        steps = []
        for i, (kernel, stride, padding) in enumerate(zip(*layers[1:], strict=True), start=1):
            steps.append((f"conv{i}", kernel, stride, padding))
            if i in _ALEXNET_POOLED:
                steps.append((f"pool{i}", 3, 2, 0))
        _check_fit(x, "AlexNet", steps)
        h = x
        for i, (width, kernel, stride, padding) in enumerate(zip(*layers, strict=True), start=1):
            h = nn.relu(square_conv(width, kernel, stride, padding, self.dtype, f"conv{i}")(h))
            if i in _ALEXNET_POOLED:
                h = Pool("max", 3, 2, name=f"pool{i}")(h)
        if self.pooled_size is not None:
            h = adaptive_avg_pool(h, self.pooled_size)
        return _classifier(
            h,
            self.hidden,
            self.num_classes,
            self.dropout_rate,
            self.dtype,
            train,
            dropout_first=True,
        )


alexnet = functools.partial(AlexNet, pooled_size=6)
"""torchvision's AlexNet: adaptive 6x6 average pool before the classifier."""
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
    stride 1, pad 1, ReLU; with ``batch_norm`` each is followed by batch norm
    ``conv{s}_{j}_bn`` before the ReLU and has no bias), then
    ``pool{s}`` halves the height and width. The classifier has ReLU layers ``fc1``,
    ``fc2``, ... each followed by dropout, and the linear ``output``; with ``pooled_size``,
    torchvision's adaptive average pool to ``pooled_size`` x ``pooled_size`` comes first (7 in
    the presets ``vgg11`` to ``vgg19``). Input sides must be at least ``2**len(depths)``.

    With 224x224x3 inputs the last map is 7x7x512 (the adaptive 7x7 pool is then the
    identity); with 1000 classes VGG-11/16/19 have torchvision's 132,863,336 / 138,357,544 /
    143,667,240 parameters, at any input size.

    Attributes:
      depths: conv layers per stage (:data:`VGG_DEPTHS`; default D, VGG-16).
      widths: feature maps per stage.
      hidden: widths of the fully connected ReLU layers.
      batch_norm: batch norm after every conv (statistics in ``batch_stats``, momentum 0.9).
      dropout_rate: dropout after each hidden fully connected layer while training.
      pooled_size: side of the adaptive average pool before fc1 (None: no pool); torchvision's
        7 in the presets ``vgg11`` to ``vgg19``.
      dtype: computation dtype (None: inferred, float32 normally).

    x: (batch, 224, 224, 3) -> logits (batch, num_classes).
    """

    num_classes: int = 1000
    depths: Sequence[int] = VGG_DEPTHS["D"]
    widths: Sequence[int] = (64, 128, 256, 512, 512)
    hidden: Sequence[int] = (4096, 4096)
    batch_norm: bool = False
    dropout_rate: float = 0.5
    pooled_size: int | None = None
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if len(self.depths) != len(self.widths):
            raise ValueError(
                f"VGG needs one width per stage: depths {tuple(self.depths)} has "
                f"{len(self.depths)} stages, widths {tuple(self.widths)} has {len(self.widths)}"
            )
        check_image(x, f"VGG with {len(self.depths)} pooling stages", 2 ** len(self.depths))
        h = x
        for s, (depth, width) in enumerate(zip(self.depths, self.widths, strict=True), start=1):
            for j in range(1, depth + 1):
                h = conv_bn_relu(
                    h,
                    width,
                    3,
                    1,
                    name=f"conv{s}_{j}",
                    batch_norm=self.batch_norm,
                    train=train,
                    dtype=self.dtype,
                )
            h = Pool("max", 2, 2, name=f"pool{s}")(h)
        if self.pooled_size is not None:
            h = adaptive_avg_pool(h, self.pooled_size)
        return _classifier(h, self.hidden, self.num_classes, self.dropout_rate, self.dtype, train)


# torchvision's VGGs: adaptive 7x7 average pool before the classifier
vgg11 = functools.partial(VGG, depths=VGG_DEPTHS["A"], pooled_size=7)
vgg13 = functools.partial(VGG, depths=VGG_DEPTHS["B"], pooled_size=7)
vgg16 = functools.partial(VGG, depths=VGG_DEPTHS["D"], pooled_size=7)
vgg19 = functools.partial(VGG, depths=VGG_DEPTHS["E"], pooled_size=7)
vgg_small = functools.partial(
    VGG,
    num_classes=10,
    depths=(1, 1, 2),
    widths=(16, 32, 64),
    hidden=(128,),
    batch_norm=True,
)
"""A VGG for 32x32 inputs: 16, 32, 2x64 maps with batch norm (32 -> 16 -> 8 -> 4), fc 128."""


# -- registration ----------------------------------------------------------------------------

_MODERN = "004 L10 §4 Modern conv nets (line 2437)"
_CARD = {"family": "cnn", "task": "classification", "loss": "softmax_cross_entropy"}

# Tiny test configs: 400-700 parameters in few layers, because every parameter layer costs
# compile time in each of the registry-wide tests (float64 gradcheck, eager execution, ...).
# The VGG presets share one tiny config (two stages), so their tiny tests are alike.
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
    alexnet,
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

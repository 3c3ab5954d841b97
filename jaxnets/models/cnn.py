"""Convolutional networks of the image-classification lecture: LeNet-5, AlexNet, VGG, GoogLeNet.

Lectures: seed 004, Lecture 9 "Convolutional Networks" (line 2115) for convolution and pooling
layers, and Lecture 10 "Image Classification" (line 2311): §3 LeNet (line 2406, Table 1 at
line 2446) and §4 "Modern conv nets" (line 2474: AlexNet, VGGNet, GoogLeNet/Inception).
ResNets live in :mod:`jaxnets.models.resnet`.

Images are channels-last, ``x: (batch, height, width, channels)``; every model returns logits
``(batch, num_classes)``. Layer names follow the lecture where it names them (LeNet's C1, S2,
...), so :func:`jaxnets.inspect.layer_table` prints the lecture's table.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxnets.nn.activations import get_activation
from jaxnets.nn.conv import Pool
from jaxnets.registry import register_model

__all__ = ["LeNet5"]

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

"""The sklearn digits at LeNet's input size: 8x8 digits enlarged and padded to 32x32.

Lectures: seed 004, Lecture 10 "Image Classification" §2.1 USPS and MNIST (line 2331):
MNIST's digits are centred in their image and normalised to a standard size; §3 LeNet
(line 2388): "the inputs are grayscale images of size 32×32" (line 2390), so
:func:`digits_to_32x32` enlarges the 8x8 sklearn digits and gives them the blank border of
an MNIST digit, and :func:`load_digits_32` returns them as a data set. The MNIST,
Fashion-MNIST and CIFAR-10 file loaders live in :mod:`jaxnets.data.idx` and
:mod:`jaxnets.data.cifar`.

Images are float32 in [0, 1], channels-last ``(n, 32, 32, 1)``; labels int32.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxnets.data.dataset import ArrayDataset
from jaxnets.data.embedded import load_digits

__all__ = ["digits_to_32x32", "load_digits_32"]


def digits_to_32x32(x_Nx64: np.ndarray) -> np.ndarray:
    """Enlarge 8x8 digits to 24x24 and pad them with a blank 4-pixel border to 32x32.

    LeNet takes 32x32 inputs; like an MNIST digit, the enlarged digit sits in the centre
    of a blank frame. Resizing is bilinear with ``jax.image.resize(method="linear")``
    (pixel centres aligned, so output pixel ``3r + 1`` of the 24x24 image is exactly input
    pixel ``r``); each input pixel's weights sum to 3x3 output pixels, so the mean ink of
    the central 24x24 equals that of the 8x8 image.

    Args:
      x_Nx64: (n, 64) row-major flattened 8x8 images.

    Returns:
      (n, 32, 32, 1) float32 images; rows and columns 0-3 and 28-31 are zero.
    """
    x_Nx64 = np.asarray(x_Nx64, dtype=np.float32)
    if x_Nx64.ndim != 2 or x_Nx64.shape[1] != 64:
        raise ValueError(
            f"digits_to_32x32 expects flattened 8x8 digits of shape (n, 64); got {x_Nx64.shape}"
        )
    n = len(x_Nx64)
    enlarged = jax.image.resize(x_Nx64.reshape(n, 8, 8), (n, 24, 24), method="linear")
    return np.pad(np.asarray(enlarged, np.float32), ((0, 0), (4, 4), (4, 4)))[..., None]


def load_digits_32() -> ArrayDataset:
    """The sklearn digits at LeNet's input size.

    Returns:
      ``x`` float32 (1797, 32, 32, 1) in [0, 1] (see :func:`digits_to_32x32`), ``y`` int32
      (1797,), ``num_classes=10``, ``image_shape=(32, 32, 1)``, name ``"digits32"``.
    """
    digits = load_digits()
    return ArrayDataset(
        x=digits_to_32x32(digits.x),
        y=digits.y,
        name="digits32",
        num_classes=10,
        image_shape=(32, 32, 1),
    )

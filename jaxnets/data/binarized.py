"""Binarised digits: the 8x8 sklearn digits thresholded to black and white, for PixelCNN.

Lecture: seed 004, Lecture 15 "Autoregressive and Reversible Models" (line 3300), §2: an image
is modelled as a sequence of pixels in raster-scan order (Figure 2, line 3397). With binary
pixels each conditional p(x_i | x_<i) is one Bernoulli, so the model needs one logit per
pixel (:func:`jaxnets.losses.bernoulli_nll`) instead of a 256-way softmax.
"""

from __future__ import annotations

import numpy as np

from jaxnets.data.dataset import ArrayDataset
from jaxnets.data.embedded import load_digits

__all__ = ["load_binarized_digits"]


def load_binarized_digits(threshold: float = 0.5) -> ArrayDataset:
    """The 1797 sklearn digits with every pixel set to 1 where its ink exceeds ``threshold``.

    Args:
      threshold: in [0, 1) on the digits' ink scale (raw 0-16 counts / 16); a pixel is 1
        iff its ink is strictly greater.

    Returns:
      ``x`` float32 (1797, 8, 8, 1) in {0, 1}, channels-last; ``y`` int32 (1797,) digit
      labels (kept for stratified splits and for plotting); ``num_classes=10``,
      ``image_shape=(8, 8, 1)``, name ``"binarized_digits"``.
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(
            f"threshold must lie in [0, 1) (the digits' ink is scaled to [0, 1]); got {threshold}"
        )
    digits = load_digits()
    binary = (digits.x > threshold).astype(np.float32)
    return ArrayDataset(
        x=binary.reshape(len(binary), 8, 8, 1),
        y=digits.y,
        name="binarized_digits",
        num_classes=10,
        image_shape=(8, 8, 1),
    )

"""Masked 2-D convolution: the causal convolution of PixelCNN, with type A and B masks.

Lecture: seed 004, Lecture 15 "Autoregressive and Reversible Models" (line 3300), §2 on
autoregressive models: an image is a sequence of pixels in raster-scan order (Figure 2,
line 3397), p(x) = Π_i p(x_i | x_1, ..., x_{i-1}) (Eq. 11), and "we can design convolutional
neural nets (CNNs) to have a causal structure by masking their connections, i.e. constraining
certain of their weights to be zero" (line 3422, Figure 3 bottom). Van den Oord, Kalchbrenner
and Kavukcuoglu, "Pixel recurrent neural networks" (ICML 2016), §3.4-3.5.

A kernel entry ``(i, j)`` of a ``kh x kw`` filter (cross-correlation, as ``flax.linen.Conv``)
multiplies the input pixel at offset ``(i - kh // 2, j - kw // 2)`` from the output pixel. The
mask keeps the offsets that come before the output pixel in raster order: every row above,
and the pixels to the left in the same row. Type A (the first layer, which sees the image)
also drops the centre, so output pixel i never sees input pixel i; type B (every later layer,
which sees features that already exclude pixel i) keeps the centre.

Single colour channel only (grey or binary images): the mask is the same for every
(input, output) channel pair. Colour PixelCNNs also order R < G < B inside the centre pixel,
which needs a mask that depends on the channel groups; that is not implemented here.

Layouts are those of ``flax.linen.Conv``: inputs NHWC, kernels HWIO, ``'SAME'`` padding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.nn.conv import filtering

__all__ = ["MASK_TYPES", "MaskedConv2D", "causal_mask"]

MASK_TYPES = ("A", "B")


def _kernel_pair(kernel_size: int | Sequence[int]) -> tuple[int, int]:
    size = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    if len(size) != 2 or any(k < 1 or k % 2 == 0 for k in size):
        raise ValueError(
            f"a masked convolution needs an odd kernel size (an int or (height, width)) so "
            f"that the output pixel sits at the kernel's centre; got {kernel_size!r}"
        )
    return size


def causal_mask(
    kernel_size: int | Sequence[int], in_features: int, out_features: int, mask_type: str
) -> np.ndarray:
    """The PixelCNN mask of one kernel: 1 where the weight may be nonzero, 0 where not.

    Args:
      kernel_size: odd ``k`` or ``(kh, kw)``.
      in_features, out_features: channel counts (the mask is the same for every pair).
      mask_type: ``"A"`` excludes the centre (first layer), ``"B"`` includes it.

    Returns:
      float32 ``(kh, kw, in_features, out_features)``: rows above the centre are 1, the
      centre row is 1 left of the centre, the centre is 0 (A) or 1 (B), the rest 0. For 3x3::

          A: 1 1 1      B: 1 1 1
             1 0 0         1 1 0
             0 0 0         0 0 0
    """
    if mask_type not in MASK_TYPES:
        raise ValueError(
            f"unknown mask type {mask_type!r}; expected 'A' (first layer: excludes the centre "
            "pixel) or 'B' (later layers: includes it)"
        )
    kh, kw = _kernel_pair(kernel_size)
    # position in raster order relative to the centre: negative comes before the output pixel
    order = np.arange(kh * kw).reshape(kh, kw) - (kh // 2 * kw + kw // 2)
    allowed = order < 0 if mask_type == "A" else order <= 0
    spatial = allowed.astype(np.float32)[:, :, None, None]
    return np.broadcast_to(spatial, (kh, kw, in_features, out_features)).copy()


class MaskedConv2D(nn.Module):
    """A stride-1 'SAME' convolution whose kernel is multiplied by :func:`causal_mask`.

    The masked weights are stored (and get zero gradient) but never used, so the layer's
    output at pixel (r, c) depends only on inputs before (r, c) in raster order (type A) or
    at and before it (type B).

    Attributes:
      features: output channels.
      kernel_size: odd ``k`` or ``(kh, kw)``.
      mask_type: ``"A"`` or ``"B"``.
      use_bias: add a learned bias per output channel.
      kernel_init, bias_init: initialisers of the (unmasked) kernel and the bias.

    x: (batch, height, width, in_features) -> (batch, height, width, features).
    """

    features: int
    kernel_size: int | tuple[int, int]
    mask_type: str
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(
                f"MaskedConv2D expects images (batch, height, width, channels); got shape {x.shape}"
            )
        kh, kw = _kernel_pair(self.kernel_size)
        in_features = x.shape[-1]
        mask = causal_mask((kh, kw), in_features, self.features, self.mask_type)
        kernel = self.param("kernel", self.kernel_init, (kh, kw, in_features, self.features))
        dtype = jnp.result_type(x, kernel)
        y = filtering(x.astype(dtype), (kernel * mask).astype(dtype), padding="same")
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,)).astype(dtype)
        return y

"""PixelCNN over binary images: an autoregressive density model built from masked convolutions.

Lecture: seed 004, Lecture 15 "Autoregressive and Reversible Models" (line 3300), §2: an image
is a sequence of pixels in raster-scan order (Figure 2, line 3397) and its likelihood is the
product of the conditionals p(x_i | x_1, ..., x_{i-1}) (Eq. 11); causal convolution (line
3422, Figure 3 bottom) computes every conditional in one forward pass by masking the
connections that would let a prediction see its own pixel or later ones; sampling, in
contrast, needs a loop over the pixels, "since the model's own samples need to be fed in as
inputs". Van den Oord, Kalchbrenner and Kavukcuoglu, "Pixel recurrent neural networks"
(ICML 2016), §3.5 and Figure 5 (residual blocks).

Binary pixels make each conditional a Bernoulli with one logit; the training loss is
:func:`jaxnets.losses.bernoulli_nll` summed over the pixels of an image, and
:func:`bits_per_dim` reports it per pixel in bits. :func:`pixel_frequency_logits` is the
independent-Bernoulli baseline (each pixel's training frequency, ignoring the other pixels),
the model with no context at all.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.losses import bernoulli_nll
from jaxnets.nn.activations import get_activation
from jaxnets.nn.masked import MaskedConv2D
from jaxnets.registry import register_model

__all__ = ["PixelCNN", "bits_per_dim", "pixel_frequency_logits", "sample"]


class PixelCNN(nn.Module):
    """PixelCNN for one binary channel: logits of p(x_ij = 1 | pixels before ij in raster order).

    Layers: a ``first_kernel`` x ``first_kernel`` type-A masked convolution (it sees only
    pixels strictly before the output pixel); ``layers`` residual blocks
    ``h + Dense(phi(MaskedConv_B(phi(h))))`` with ``kernel`` x ``kernel`` type-B masks (they
    may use the features at the output pixel, which already exclude its own input); then
    ``phi -> 1x1 (features) -> phi -> 1x1 (1)``, with ``phi`` the elementwise ``activation``
    (ReLU in the paper). A 1x1 convolution (a Dense layer over the
    channel axis) is a type-B masked convolution, so the whole net is causal.

    The blind spot of the original PixelCNN is kept, as in the lecture's Figure 3: stacked
    masked 3x3 kernels grow the receptive field by one pixel up, left and right per layer, so
    pixels above and far to the right of the output pixel (earlier in raster order, but
    outside that cone) are never seen. (The gated PixelCNN of van den Oord et al. 2016 fixes
    this with separate vertical and horizontal stacks.)

    x: (batch, height, width, 1) in {0, 1} (any reals are accepted) -> logits
    (batch, height, width, 1).
    """

    features: int = 64
    layers: int = 4
    first_kernel: int = 5
    kernel: int = 3
    activation: str = "relu"
    ZERO_OK = ("layers",)  # the type-A conv and the 1x1 head alone are a PixelCNN

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train  # no dropout or batch norm
        phi = get_activation(self.activation).fn
        if x.ndim != 4 or x.shape[-1] != 1:
            raise ValueError(
                "PixelCNN expects one-channel images (batch, height, width, 1) with pixels in "
                f"{{0, 1}}; got an input of shape {x.shape}"
            )
        h = MaskedConv2D(self.features, self.first_kernel, "A", name="input_A")(x)
        for i in range(self.layers):
            r = MaskedConv2D(self.features, self.kernel, "B", name=f"block{i}_B")(phi(h))
            h = h + nn.Dense(self.features, name=f"block{i}_1x1")(phi(r))
        h = nn.Dense(self.features, name="head_1x1")(phi(h))
        return nn.Dense(1, name="output")(phi(h))


def bits_per_dim(logits: jax.Array, x: jax.Array) -> jax.Array:
    """Mean negative log-likelihood per pixel in bits: Σ bernoulli_nll / (n · pixels · ln 2).

    logits, x: (n, height, width, channels), x in {0, 1} -> ().
    """
    if logits.shape != x.shape:
        raise ValueError(
            f"bits_per_dim needs one logit per pixel: logits and x of the same shape; got "
            f"logits {logits.shape} and x {x.shape}"
        )
    nats = jnp.mean(jax.vmap(bernoulli_nll)(logits, x))
    return nats / (np.prod(x.shape[1:]) * np.log(2.0))


def pixel_frequency_logits(x_train: np.ndarray, smoothing: float = 1.0) -> np.ndarray:
    """The independent-Bernoulli baseline: each pixel's smoothed training frequency, as logits.

    p_ij = (count_ij + smoothing) / (n + 2 smoothing) (add-``smoothing``, Laplace's rule for
    ``smoothing=1``), so a pixel never inked in training still gets a finite loss on test.

    x_train: (n, height, width, channels) in {0, 1} -> logits log(p / (1 - p)), float32
    (height, width, channels); broadcast them over a test batch for :func:`bits_per_dim`.
    """
    x_train = np.asarray(x_train, np.float64)
    if smoothing <= 0:
        raise ValueError(f"smoothing must be > 0 (0 gives infinite loss); got {smoothing}")
    if not np.all((x_train == 0) | (x_train == 1)):
        raise ValueError("pixel_frequency_logits needs binary images (every pixel 0 or 1)")
    p = (x_train.sum(axis=0) + smoothing) / (len(x_train) + 2.0 * smoothing)
    return np.log(p / (1.0 - p)).astype(np.float32)


def sample(
    model: nn.Module,
    variables: dict,
    rng: jax.Array,
    num: int,
    shape: tuple[int, int, int],
) -> jax.Array:
    """Draw ``num`` images pixel by pixel in raster order (ancestral sampling).

    Step i runs the whole net on the partly generated images and draws pixel i from its
    Bernoulli; causality means the pixels not yet drawn (still 0) do not affect it. One
    ``lax.fori_loop`` over the height x width positions, compiled once per (model, num,
    shape). The same ``rng`` gives the same images.

    Args:
      model: a :class:`PixelCNN` (any module mapping (num, *shape) images to logits of that
        shape); variables: its variables.
      shape: ``(height, width, 1)`` of one image.

    Returns:
      float32 (num, height, width, 1) in {0, 1}.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or shape[-1] != 1 or num < 1:
        raise ValueError(
            f"sample draws num >= 1 one-channel images of shape (height, width, 1); got "
            f"num={num}, shape={shape}"
        )
    return _sample(model, variables, rng, int(num), shape)


@functools.partial(jax.jit, static_argnames=("model", "num", "shape"))
def _sample(model, variables, rng, num, shape):
    height, width, _ = shape

    def draw_pixel(i, x):
        row, col = i // width, i % width
        logit = model.apply(variables, x, train=False)[:, row, col, 0]
        bit = jax.random.bernoulli(jax.random.fold_in(rng, i), jax.nn.sigmoid(logit))
        return x.at[:, row, col, 0].set(bit.astype(x.dtype))

    return jax.lax.fori_loop(0, height * width, draw_pixel, jnp.zeros((num, *shape), jnp.float32))


register_model(
    "pixelcnn",
    PixelCNN,
    family="autoregressive",
    lecture="004 L15 §2 Autoregressive models, causal (masked) convolution (line 3422)",
    reference="van den Oord, Kalchbrenner & Kavukcuoglu, Pixel recurrent neural networks, "
    "ICML (2016)",
    task="density",
    input_shape=(8, 8, 1),
    loss="bernoulli_nll",
    # softplus (a smooth ReLU), not ReLU, in the tiny config: pixel (0, 0) has no context, so
    # every pre-activation there is a bias, zero at init: exactly ReLU's kink, where central
    # differences (slope 1/2) cannot agree with the gradient (0).
    test_config={
        "features": 2,
        "layers": 1,
        "first_kernel": 3,
        "kernel": 3,
        "activation": "softplus",
    },
    test_input_shape=(4, 4, 1),
    description="PixelCNN: 5x5 type-A masked conv, 4 residual blocks of 3x3 type-B masked "
    "convs, 1x1 head; one Bernoulli logit per pixel",
)

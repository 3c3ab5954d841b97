"""Pure, jit-able data augmentations for image batches, flattened or image-shaped.

Lecture: seed 004 §12 "Generalization" (line 2500), §4.5 "Data augmentation" (line 2699):
"each time we visit a training example, we can randomly distort it, for instance by shifting
it by a few pixels, adding noise, rotating it slightly" — which enlarges the effective
training set. The same paragraph warns that the useful distortions depend on the task:
horizontal flips help object recognition (CIFAR-10) but do not preserve the identity of a
handwritten digit (a flipped 2 is no digit, a flipped 7 is not a 7).

Every augmentation is a pure function of a PRNG key, ``augment(rng, x_batch) -> x_batch``,
so it runs inside the jitted training step (bind the options with ``functools.partial``
and chain several with :func:`compose`). Images come either

* flattened, ``x: (batch, prod(image_shape))`` row-major, with ``image_shape`` =
  ``(height, width)`` or ``(height, width, channels)`` saying how to unflatten them (the
  8x8 sklearn digits), or
* image-shaped, ``x: (batch, height, width)`` or ``(batch, height, width, channels)``
  (channels-last, as the conv nets take them), with ``image_shape=None``.

The output has the shape and dtype of the input.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

__all__ = [
    "compose",
    "random_flip",
    "random_rotation",
    "random_shift",
    "rotate_images",
    "shift_images",
]

Augmentation = Callable[[jax.Array, jax.Array], jax.Array]


def _as_images(x: jax.Array, image_shape: tuple[int, ...] | None, caller: str) -> jax.Array:
    """View ``x`` as ``(batch, height, width[, channels])``."""
    if x.ndim == 2:
        if image_shape is None:
            raise ValueError(
                f"{caller}: x of shape {x.shape} is a batch of flattened images; pass "
                "image_shape=(height, width[, channels]) to unflatten them, or pass "
                "image-shaped x (batch, height, width[, channels])"
            )
        image_shape = tuple(image_shape)
        if len(image_shape) not in (2, 3):
            raise ValueError(
                f"{caller}: image_shape must be (height, width[, channels]); got {image_shape}"
            )
        if x.shape[1] != math.prod(image_shape):
            raise ValueError(
                f"{caller}: expected flattened images of shape (batch, {math.prod(image_shape)}) "
                f"for image_shape {image_shape}; got {x.shape}"
            )
        return x.reshape(x.shape[0], *image_shape)
    if x.ndim in (3, 4):
        if image_shape is not None and tuple(image_shape) != x.shape[1:]:
            raise ValueError(
                f"{caller}: x holds images of shape {x.shape[1:]} but image_shape="
                f"{tuple(image_shape)}; image_shape describes flattened input, so pass "
                "image_shape=None to use the batch's own shape"
            )
        return x
    raise ValueError(
        f"{caller}: expected flattened images (batch, pixels) or image-shaped "
        f"(batch, height, width[, channels]); got x of shape {x.shape}"
    )


def _shift_one(image_HxW: jax.Array, offset_2: jax.Array, pad: int) -> jax.Array:
    """``out[i, j] = image[i - dy, j - dx]`` with zeros outside, for |dy|, |dx| <= pad."""
    widths = [(pad, pad), (pad, pad)] + [(0, 0)] * (image_HxW.ndim - 2)
    padded = jnp.pad(image_HxW, widths)
    starts = (pad - offset_2[0], pad - offset_2[1]) + (0,) * (image_HxW.ndim - 2)
    return jax.lax.dynamic_slice(padded, starts, image_HxW.shape)


def shift_images(
    x: jax.Array, offsets_Bx2: jax.Array, image_shape: tuple[int, ...] | None = (8, 8)
) -> jax.Array:
    """Translate each image by its own integer offset ``(dy, dx)``, filling with zeros.

    Args:
      x: (batch, prod(image_shape)) row-major flattened images, or (batch, height, width)
        / (batch, height, width, channels) images with ``image_shape=None``.
      offsets_Bx2: (batch, 2) integer offsets; positive ``dy`` moves content down, positive
        ``dx`` moves it right (as ``np.roll`` along the height and width axes, but pixels
        pushed off an edge are dropped rather than wrapped). Offsets of magnitude >= the
        image size give a blank image.
      image_shape: (height, width) or (height, width, channels) of flattened input; the
        default is the 8x8 digits. ``None`` for image-shaped input.

    Returns:
      the shifted images, same shape and dtype as ``x``.
    """
    images = _as_images(x, image_shape, "shift_images")
    # The default integer type, as the Python-int channel start of _shift_one: with x64 on,
    # int32 offsets beside it made the batched slice of channel images fail.
    offsets_Bx2 = jnp.asarray(offsets_Bx2, int)
    pad = max(images.shape[1], images.shape[2])  # enough that every offset stays in bounds
    offsets_Bx2 = jnp.clip(offsets_Bx2, -pad, pad)
    shifted = jax.vmap(_shift_one, in_axes=(0, 0, None))(images, offsets_Bx2, pad)
    return shifted.reshape(x.shape)


def random_shift(
    rng: jax.Array,
    x: jax.Array,
    image_shape: tuple[int, ...] | None = (8, 8),
    max_shift: int = 1,
) -> jax.Array:
    """Shift each image by an offset drawn uniformly from ``[-max_shift, max_shift]²``.

    The one-pixel random shift of the generalization lecture is the default. ``max_shift=0``
    is the identity. Pure: the same ``rng`` gives the same shifts; ``image_shape`` and
    ``max_shift`` are static under ``jax.jit``.

    Args:
      rng: a PRNG key.
      x: (batch, prod(image_shape)) flattened images, or (batch, height, width[, channels])
        images with ``image_shape=None``.
      image_shape: (height, width[, channels]) of flattened input (default: the 8x8
        digits); ``None`` for image-shaped input.
      max_shift: largest shift in pixels along each axis.

    Returns:
      the shifted images with zero fill, same shape and dtype as ``x``.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0; got {max_shift}")
    offsets_Bx2 = jax.random.randint(rng, (x.shape[0], 2), -max_shift, max_shift + 1)
    return shift_images(x, offsets_Bx2, image_shape)


def _rotate_one(image_HxWxC: jax.Array, degrees: jax.Array) -> jax.Array:
    """Rotate one image counter-clockwise (as displayed, row 0 on top) about its centre."""
    height, width = image_HxWxC.shape[:2]
    theta = jnp.deg2rad(degrees).astype(image_HxWxC.dtype)
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    rows, cols = jnp.meshgrid(
        jnp.arange(height, dtype=image_HxWxC.dtype),
        jnp.arange(width, dtype=image_HxWxC.dtype),
        indexing="ij",
    )
    centre_row, centre_col = (height - 1) / 2, (width - 1) / 2
    dy, dx = rows - centre_row, cols - centre_col
    # Each output pixel reads the input at its position rotated back by -theta, so every
    # output pixel gets a value (inverse mapping leaves no holes).
    source = [centre_row + cos * dy + sin * dx, centre_col - sin * dy + cos * dx]

    def sample(channel_HxW: jax.Array) -> jax.Array:
        return map_coordinates(channel_HxW, source, order=1, mode="constant", cval=0.0)

    return jax.vmap(sample, in_axes=2, out_axes=2)(image_HxWxC)


def rotate_images(
    x: jax.Array, degrees: jax.Array | float, image_shape: tuple[int, ...] | None = None
) -> jax.Array:
    """Rotate each image about its centre by its own angle, bilinear, zero fill.

    Positive angles turn the content counter-clockwise as the image is displayed (row 0 on
    top), so 90 degrees on a square image is ``np.rot90(image)``. Pixels are sampled with
    ``jax.scipy.ndimage.map_coordinates(order=1)``; the corners that rotate in from outside
    the image are zero.

    Args:
      x: (batch, prod(image_shape)) flattened floating images, or (batch, height, width)
        / (batch, height, width, channels) with ``image_shape=None``.
      degrees: (batch,) angles in degrees, or one angle for the whole batch.
      image_shape: (height, width[, channels]) of flattened input; ``None`` for
        image-shaped input.

    Returns:
      the rotated images, same shape and dtype as ``x``.
    """
    images = _as_images(x, image_shape, "rotate_images")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(
            f"rotate_images interpolates between pixels and needs floating images; got "
            f"dtype {images.dtype} (convert first, e.g. x.astype(jnp.float32) / 255)"
        )
    batch, height, width = images.shape[:3]
    degrees_B = jnp.broadcast_to(jnp.asarray(degrees, images.dtype), (batch,))
    rotated = jax.vmap(_rotate_one)(images.reshape(batch, height, width, -1), degrees_B)
    return rotated.reshape(x.shape)


def random_rotation(
    rng: jax.Array,
    x: jax.Array,
    max_degrees: float = 10.0,
    image_shape: tuple[int, ...] | None = None,
) -> jax.Array:
    """Rotate each image by an angle drawn uniformly from ``[-max_degrees, max_degrees]``.

    The "rotating it slightly" distortion of the lecture; see :func:`rotate_images` for the
    geometry. ``max_degrees=0`` is the identity.

    Args:
      rng: a PRNG key.
      x: (batch, height, width[, channels]) floating images, or (batch,
        prod(image_shape)) flattened ones with ``image_shape`` given.
      max_degrees: largest rotation in degrees, either way.
      image_shape: (height, width[, channels]) of flattened input; ``None`` for
        image-shaped input.

    Returns:
      the rotated images, same shape and dtype as ``x``.
    """
    if max_degrees < 0:
        raise ValueError(f"max_degrees must be >= 0; got {max_degrees}")
    degrees_B = jax.random.uniform(rng, (x.shape[0],), minval=-max_degrees, maxval=max_degrees)
    return rotate_images(x, degrees_B, image_shape)


def random_flip(
    rng: jax.Array, x: jax.Array, image_shape: tuple[int, ...] | None = None, p: float = 0.5
) -> jax.Array:
    """Mirror each image left-right with probability ``p``, independently per image.

    For object images such as CIFAR-10, where a mirrored cat is still a cat. Flips do not
    preserve the identity of handwritten digits, so do not use this on MNIST or the digits.

    Args:
      rng: a PRNG key.
      x: (batch, height, width[, channels]) images, or (batch, prod(image_shape))
        flattened ones with ``image_shape`` given.
      image_shape: (height, width[, channels]) of flattened input; ``None`` for
        image-shaped input.
      p: probability that an image is flipped; ``p=1`` flips every image
        (``x[:, :, ::-1]``), ``p=0`` none.

    Returns:
      the images, some mirrored along the width axis, same shape and dtype as ``x``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1]; got {p}")
    images = _as_images(x, image_shape, "random_flip")
    flip_B = jax.random.bernoulli(rng, p, (images.shape[0],))
    flip = flip_B.reshape(-1, *(1,) * (images.ndim - 1))
    return jnp.where(flip, images[:, :, ::-1], images).reshape(x.shape)


def compose(*augmentations: Augmentation) -> Augmentation:
    """Chain augmentations into one ``augment(rng, x) -> x``.

    The key is split into one independent key per augmentation, applied in the order
    given, e.g. ``compose(partial(random_shift, image_shape=None, max_shift=2),
    random_flip)`` for CIFAR-10 batches (batch, 32, 32, 3).
    """

    def augment(rng: jax.Array, x: jax.Array) -> jax.Array:
        keys = jax.random.split(rng, len(augmentations))
        for augmentation, key in zip(augmentations, keys, strict=True):
            x = augmentation(key, x)
        return x

    return augment

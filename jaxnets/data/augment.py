"""Pure, jit-able data augmentations for flattened image batches.

Lecture: seed 004 §12 "Generalization" (line 2500), §4.5 "Data augmentation" (line 2697):
"each time we visit a training example, we can randomly distort it, for instance by shifting
it by a few pixels" — which enlarges the effective training set. Horizontal flips are not
offered: they do not preserve digit identity (the same paragraph).

Both functions take and return flattened images ``x_BxD`` with ``D = prod(image_shape)``,
so they slot into the training step as ``augment(rng, x_batch) -> x_batch`` (bind
``image_shape``/``max_shift`` with ``functools.partial``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["shift_images", "random_shift"]


def _check_images(x_BxD: jax.Array, image_shape: tuple[int, ...]) -> None:
    if len(image_shape) < 2:
        raise ValueError(f"image_shape must be (height, width[, channels]); got {image_shape}")
    if x_BxD.ndim != 2 or x_BxD.shape[1] != math.prod(image_shape):
        raise ValueError(
            f"expected flattened images of shape (batch, {math.prod(image_shape)}) for "
            f"image_shape {tuple(image_shape)}; got {x_BxD.shape}"
        )


def _shift_one(image_HxW: jax.Array, offset_2: jax.Array, pad: int) -> jax.Array:
    """``out[i, j] = image[i - dy, j - dx]`` with zeros outside, for |dy|, |dx| <= pad."""
    widths = [(pad, pad), (pad, pad)] + [(0, 0)] * (image_HxW.ndim - 2)
    padded = jnp.pad(image_HxW, widths)
    starts = (pad - offset_2[0], pad - offset_2[1]) + (0,) * (image_HxW.ndim - 2)
    return jax.lax.dynamic_slice(padded, starts, image_HxW.shape)


def shift_images(
    x_BxD: jax.Array, offsets_Bx2: jax.Array, image_shape: tuple[int, ...] = (8, 8)
) -> jax.Array:
    """Translate each image by its own integer offset ``(dy, dx)``, filling with zeros.

    Args:
      x_BxD: (batch, prod(image_shape)) row-major flattened images.
      offsets_Bx2: (batch, 2) integer offsets; positive ``dy`` moves content down, positive
        ``dx`` moves it right (as ``np.roll`` along axes 0 and 1, but pixels pushed off an
        edge are dropped rather than wrapped). Offsets of magnitude >= the image size give
        a blank image.
      image_shape: (height, width) or (height, width, channels).

    Returns:
      (batch, prod(image_shape)) shifted images, same dtype as ``x_BxD``.
    """
    image_shape = tuple(image_shape)
    _check_images(x_BxD, image_shape)
    offsets_Bx2 = jnp.asarray(offsets_Bx2, jnp.int32)
    pad = max(image_shape[0], image_shape[1])  # enough that every offset stays in bounds
    offsets_Bx2 = jnp.clip(offsets_Bx2, -pad, pad)
    images = x_BxD.reshape(x_BxD.shape[0], *image_shape)
    shifted = jax.vmap(_shift_one, in_axes=(0, 0, None))(images, offsets_Bx2, pad)
    return shifted.reshape(x_BxD.shape)


def random_shift(
    rng: jax.Array, x_BxD: jax.Array, image_shape: tuple[int, ...] = (8, 8), max_shift: int = 1
) -> jax.Array:
    """Shift each image by an offset drawn uniformly from ``[-max_shift, max_shift]²``.

    The one-pixel random shift of the generalization lecture is the default. ``max_shift=0``
    is the identity. Pure: the same ``rng`` gives the same shifts; ``image_shape`` and
    ``max_shift`` are static under ``jax.jit``.

    Args:
      rng: a PRNG key.
      x_BxD: (batch, prod(image_shape)) flattened images.
      image_shape: (height, width) or (height, width, channels).
      max_shift: largest shift in pixels along each axis.

    Returns:
      (batch, prod(image_shape)) shifted images with zero fill.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0; got {max_shift}")
    offsets_Bx2 = jax.random.randint(rng, (x_BxD.shape[0], 2), -max_shift, max_shift + 1)
    return shift_images(x_BxD, offsets_Bx2, image_shape)

"""Tests of jaxnets.data.augment: shifts, rotations and flips of flattened and image-shaped
batches, their randomness, and composition under jax.jit."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from jaxnets.data import (
    ArrayDataset,
    compose,
    load_digits,
    random_flip,
    random_rotation,
    random_shift,
    rotate_images,
    shift_images,
)


@pytest.fixture(scope="module")
def digits() -> ArrayDataset:
    return load_digits()


def _reference_shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """np.roll, then blank the rows/columns that wrapped around."""
    out = np.roll(image, (dy, dx), axis=(0, 1))
    h, w = image.shape[:2]
    if dy > 0:
        out[:dy] = 0
    elif dy < 0:
        out[h + dy :] = 0
    if dx > 0:
        out[:, :dx] = 0
    elif dx < 0:
        out[:, w + dx :] = 0
    return out


def test_shift_images_matches_roll_with_zero_fill():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(7, 6, 5)).astype(np.float32)
    offsets = np.array([[0, 0], [1, 0], [0, -1], [-2, 3], [5, -4], [6, 0], [-1, 1]])
    shifted = shift_images(jnp.asarray(images.reshape(7, 30)), offsets, image_shape=(6, 5))
    assert shifted.shape == (7, 30) and shifted.dtype == jnp.float32
    for got, image, (dy, dx) in zip(np.asarray(shifted), images, offsets, strict=True):
        np.testing.assert_array_equal(got.reshape(6, 5), _reference_shift(image, dy, dx))
    assert np.all(np.asarray(shifted)[5] == 0)  # a shift by the full height leaves nothing


def test_shift_images_with_channels():
    images = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    shifted = shift_images(
        jnp.asarray(images.reshape(2, -1)), np.array([[1, -1], [0, 2]]), (4, 4, 3)
    )
    np.testing.assert_array_equal(
        np.asarray(shifted).reshape(2, 4, 4, 3)[0], _reference_shift(images[0], 1, -1)
    )


def test_random_shift_is_a_jittable_one_pixel_shift(digits):
    x = jnp.asarray(digits.x[:32])
    shift = jax.jit(functools.partial(random_shift, image_shape=(8, 8), max_shift=1))
    out = np.asarray(shift(jax.random.key(0), x))
    assert out.shape == (32, 64)
    np.testing.assert_array_equal(out, np.asarray(shift(jax.random.key(0), x)))
    assert not np.array_equal(out, np.asarray(shift(jax.random.key(1), x)))
    images = digits.x[:32].reshape(32, 8, 8)
    seen = set()
    for got, image in zip(out.reshape(32, 8, 8), images, strict=True):
        matches = [
            (dy, dx)
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if np.array_equal(got, _reference_shift(image, dy, dx))
        ]
        assert matches, "every output must be its input shifted by at most one pixel"
        seen.add(matches[0])
    assert len(seen) >= 5  # offsets are drawn per example, not one for the batch


def test_random_shift_identity_and_errors(digits):
    x = jnp.asarray(digits.x[:8])
    np.testing.assert_array_equal(random_shift(jax.random.key(3), x, max_shift=0), x)
    with pytest.raises(ValueError, match=r"expected flattened images of shape \(batch, 64\)"):
        random_shift(jax.random.key(0), x[:, :60])
    with pytest.raises(ValueError, match="max_shift must be >= 0"):
        random_shift(jax.random.key(0), x, max_shift=-1)


# --- image-shaped batches ------------------------------------------------------------------


@pytest.mark.parametrize("image_shape", [(6, 5), (6, 5, 3)])
def test_shift_of_image_batches_equals_shift_of_flattened(image_shape):
    images = np.random.default_rng(1).uniform(size=(4, *image_shape)).astype(np.float32)
    offsets = np.array([[1, -2], [0, 0], [-3, 1], [2, 4]])
    flat = shift_images(jnp.asarray(images.reshape(4, -1)), offsets, image_shape)
    shaped = shift_images(jnp.asarray(images), offsets, image_shape=None)
    assert shaped.shape == images.shape
    np.testing.assert_array_equal(np.asarray(shaped).reshape(4, -1), np.asarray(flat))
    np.testing.assert_array_equal(np.asarray(shaped)[2], _reference_shift(images[2], -3, 1))
    key = jax.random.key(7)
    np.testing.assert_array_equal(
        np.asarray(random_shift(key, jnp.asarray(images), image_shape=None, max_shift=2)),
        np.asarray(random_shift(key, jnp.asarray(images.reshape(4, -1)), image_shape, 2)).reshape(
            images.shape
        ),
    )


def test_image_shape_must_agree_with_the_batch():
    x = jnp.zeros((2, 32, 32, 1))
    with pytest.raises(ValueError, match=r"images of shape \(32, 32, 1\) but image_shape=\(8, 8\)"):
        random_shift(jax.random.key(0), x)  # the (8, 8) default is for flattened digits
    with pytest.raises(ValueError, match=r"flattened images; pass image_shape="):
        random_flip(jax.random.key(0), jnp.zeros((2, 64)))
    with pytest.raises(ValueError, match=r"\(batch, height, width\[, channels\]\); got x of shape"):
        rotate_images(jnp.zeros((2, 3, 4, 5, 6)), 10.0)


# --- rotation ------------------------------------------------------------------------------


def test_rotation_by_right_angles_is_rot90():
    images = np.random.default_rng(2).uniform(size=(3, 7, 7, 2)).astype(np.float32)
    rotated = np.asarray(rotate_images(jnp.asarray(images), jnp.array([90.0, -90.0, 180.0])))
    for got, image, turns in zip(rotated, images, (1, -1, 2), strict=True):
        np.testing.assert_allclose(got, np.rot90(image, turns, axes=(0, 1)), atol=1e-5)
    np.testing.assert_array_equal(
        np.asarray(rotate_images(jnp.asarray(images), 0.0)), images
    )  # 0 degrees reads every pixel exactly at its own centre


def test_float64_images_turn_by_the_float32_angle_in_float64():
    """A float32 angle of 90 is exact; cast to float64 first, π/2 is good to 1e-16, and the
    turn is np.rot90 to ~1e-14 (radians computed in float32 would miss by ~4e-8)."""
    image = np.arange(9.0).reshape(3, 3) ** 2
    with jax.enable_x64(True):
        got = rotate_images(jnp.asarray(image[None]), np.array([90.0], np.float32))
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(got[0]), np.rot90(image), rtol=0, atol=1e-12)


def test_a_bfloat16_image_at_0_degrees_keeps_its_pixels_up_to_256():
    """bfloat16 holds the integers up to 256 exactly, so each pixel position up to 256 is
    read at its own centre, as in float32 (257 rounds to 256 in bfloat16)."""
    image = np.random.default_rng(3).uniform(size=(1, 258, 258))
    image = jnp.asarray(image, jnp.bfloat16)
    got = np.asarray(rotate_images(image, 0.0), np.float32)
    np.testing.assert_array_equal(got[:, :257, :257], np.asarray(image, np.float32)[:, :257, :257])


def test_rotation_matches_scipy_on_a_non_square_image():
    image = np.zeros((12, 10), np.float32)
    image[3:9, 3:7] = np.random.default_rng(3).uniform(size=(6, 4))
    for degrees in (30.0, -17.0):
        expected = scipy.ndimage.rotate(image, degrees, reshape=False, order=1, mode="constant")
        got = np.asarray(rotate_images(jnp.asarray(image[None]), degrees))[0]
        np.testing.assert_allclose(got, expected, atol=1e-5)
    flat = rotate_images(jnp.asarray(image.reshape(1, -1)), -17.0, image_shape=(12, 10))
    np.testing.assert_array_equal(np.asarray(flat).reshape(12, 10), got)


def _bar_angles(images: np.ndarray) -> np.ndarray:
    """Orientation in degrees (counter-clockwise from horizontal) of each image's ink."""
    rows, cols = np.mgrid[: images.shape[1], : images.shape[2]]
    angles = []
    for image in images:
        mass = image.sum()
        y = -(rows - (rows * image).sum() / mass)  # y up, so counter-clockwise is positive
        x = cols - (cols * image).sum() / mass
        mu_xx, mu_yy, mu_xy = (image * x * x).sum(), (image * y * y).sum(), (image * x * y).sum()
        angles.append(np.degrees(0.5 * np.arctan2(2 * mu_xy, mu_xx - mu_yy)))
    return np.array(angles)


def test_random_rotation_draws_per_image_angles_within_range():
    bar = np.zeros((31, 31), np.float32)
    bar[15, 3:28] = 1.0  # a horizontal bar through the centre
    batch = jnp.asarray(np.broadcast_to(bar, (64, 31, 31)))
    rotate = jax.jit(functools.partial(random_rotation, max_degrees=10.0))
    out = np.asarray(rotate(jax.random.key(0), batch))
    angles = _bar_angles(out)
    assert np.all(np.abs(angles) <= 10.5)
    assert angles.min() < -7 and angles.max() > 7  # spread over the whole range
    assert len(np.unique(np.round(angles, 3))) > 60  # one angle per image
    np.testing.assert_array_equal(out, np.asarray(rotate(jax.random.key(0), batch)))
    assert not np.allclose(out, np.asarray(rotate(jax.random.key(1), batch)))
    np.testing.assert_array_equal(
        np.asarray(random_rotation(jax.random.key(0), batch, max_degrees=0.0)), batch
    )


def test_rotation_errors():
    with pytest.raises(ValueError, match="needs floating images; got dtype uint8"):
        rotate_images(jnp.zeros((1, 4, 4), jnp.uint8), 10.0)
    with pytest.raises(ValueError, match="max_degrees must be >= 0"):
        random_rotation(jax.random.key(0), jnp.zeros((1, 4, 4)), max_degrees=-1.0)


# --- flips and composition -----------------------------------------------------------------


def test_flip_with_probability_one_zero_and_half():
    images = np.random.default_rng(4).uniform(size=(32, 5, 6, 3)).astype(np.float32)
    x, key = jnp.asarray(images), jax.random.key(5)
    np.testing.assert_array_equal(np.asarray(random_flip(key, x, p=1.0)), images[:, :, ::-1])
    np.testing.assert_array_equal(np.asarray(random_flip(key, x, p=0.0)), images)
    np.testing.assert_array_equal(
        np.asarray(random_flip(key, x[..., 0], p=1.0)), images[:, :, ::-1, 0]
    )
    flat = random_flip(key, x.reshape(32, -1), image_shape=(5, 6, 3))
    half = np.asarray(random_flip(key, x))
    np.testing.assert_array_equal(np.asarray(flat).reshape(half.shape), half)
    flipped = [np.array_equal(got, image[:, ::-1]) for got, image in zip(half, images, strict=True)]
    kept = [np.array_equal(got, image) for got, image in zip(half, images, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))  # each image one or the other
    assert 8 <= sum(flipped) <= 24
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\]; got 1.5"):
        random_flip(key, x, p=1.5)


def test_compose_splits_the_key_and_runs_under_jit():
    images = jnp.asarray(np.random.default_rng(6).uniform(size=(8, 9, 9, 3)), jnp.float32)
    shift = functools.partial(random_shift, image_shape=None, max_shift=2)
    rotate = functools.partial(random_rotation, max_degrees=15.0)
    augment = compose(shift, rotate, random_flip)
    key = jax.random.key(9)
    k_shift, k_rotate, k_flip = jax.random.split(key, 3)
    expected = random_flip(k_flip, rotate(k_rotate, shift(k_shift, images)))
    eager = augment(key, images)
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(expected))
    jitted = jax.jit(augment)(key, images)
    assert jitted.shape == images.shape and jitted.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=1e-5)
    assert not np.allclose(np.asarray(jitted), np.asarray(jax.jit(augment)(k_flip, images)))


def test_random_rotation_of_flattened_images_equals_rotation_of_the_image_batch():
    """image_shape reaches the rotation: flattened images are rotated as the images they
    flatten, by the same per-image angles for the same key."""
    images = np.random.default_rng(8).uniform(size=(3, 6, 5, 2)).astype(np.float32)
    key = jax.random.key(4)
    shaped = random_rotation(key, jnp.asarray(images), max_degrees=30.0)
    flat = random_rotation(key, jnp.asarray(images.reshape(3, -1)), 30.0, image_shape=(6, 5, 2))
    assert flat.shape == (3, 60)
    np.testing.assert_allclose(np.asarray(flat).reshape(images.shape), shaped, atol=1e-6)
    assert not np.allclose(np.asarray(shaped), images, atol=1e-2)  # they were rotated


def test_shape_errors_name_the_augmentation_that_was_called():
    flat = jnp.zeros((2, 64))
    with pytest.raises(ValueError, match=r"^random_flip: x of shape \(2, 64\)"):
        random_flip(jax.random.key(0), flat)
    with pytest.raises(ValueError, match=r"^shift_images: expected flattened images"):
        shift_images(flat[:, :60], np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match=r"^rotate_images: x holds images"):
        rotate_images(jnp.zeros((2, 5, 5)), 10.0, image_shape=(4, 4))


def test_an_image_shape_that_agrees_with_an_image_batch_is_accepted(digits):
    """image_shape=None is the way to pass image-shaped batches, but an image_shape equal to
    the batch's image shape is accepted and changes nothing: the (8, 8) default of the shifts
    takes a (batch, 8, 8) batch of digit images, and an explicit (height, width, channels)
    describes a channels-last batch."""
    images = digits.x[:8].reshape(8, 8, 8)
    offsets = np.array([[1, -2], [-1, 0], [0, 0], [2, 1], [-3, 3], [0, 1], [1, 0], [8, 0]])
    shifted = np.asarray(shift_images(jnp.asarray(images), offsets))  # the (8, 8) default
    for got, image, (dy, dx) in zip(shifted, images, offsets, strict=True):
        np.testing.assert_array_equal(got, _reference_shift(image, dy, dx))
    images = np.random.default_rng(10).uniform(size=(3, 7, 7, 2)).astype(np.float32)
    rotated = rotate_images(jnp.asarray(images), jnp.array([90.0, -90.0, 180.0]), (7, 7, 2))
    for got, image, turns in zip(np.asarray(rotated), images, (1, -1, 2), strict=True):
        np.testing.assert_allclose(got, np.rot90(image, turns, axes=(0, 1)), atol=1e-5)


def test_unsigned_offsets_shift_as_the_same_signed_offsets():
    """Offsets of any integer dtype are taken by value: uint8 offsets (as a NumPy pipeline may
    hand over) shift like the int offsets, where clipping them to [-pad, pad] in uint8 would
    wrap -pad to 256 - pad and turn every offset into pad, a blank image."""
    images = np.random.default_rng(11).uniform(size=(2, 6, 5)).astype(np.float32)
    offsets = np.array([[1, 2], [0, 3]], np.uint8)
    shifted = np.asarray(shift_images(jnp.asarray(images), offsets, image_shape=None))
    for got, image, (dy, dx) in zip(shifted, images, offsets.astype(int), strict=True):
        np.testing.assert_array_equal(got, _reference_shift(image, dy, dx))


def test_channel_images_shift_in_float64_with_x64_on():
    """With x64 on, channels-last images (image-shaped or flattened with (h, w, c)) shift as
    in float32 and stay float64 (the slice start of the channel axis is an int64 there)."""
    images = np.random.default_rng(13).uniform(size=(2, 5, 4, 3))
    offsets = np.array([[1, -2], [-3, 0]])
    with jax.enable_x64(True):
        shaped = shift_images(jnp.asarray(images), offsets, image_shape=None)
        flat = shift_images(jnp.asarray(images.reshape(2, -1)), offsets, (5, 4, 3))
    assert shaped.dtype == flat.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(flat).reshape(images.shape), shaped)
    for got, image, (dy, dx) in zip(np.asarray(shaped), images, offsets, strict=True):
        np.testing.assert_array_equal(got, _reference_shift(image, dy, dx))


def test_the_default_distortions_are_one_pixel_and_ten_degrees(digits):
    """Without max_shift and max_degrees, the augmentations are the lecture's slight ones: a
    shift of at most one pixel and a rotation of at most 10 degrees either way, the same
    draws as passing max_shift=1 and max_degrees=10 with the same key."""
    key, x = jax.random.key(12), jnp.asarray(digits.x[:8])
    np.testing.assert_array_equal(
        np.asarray(random_shift(key, x)), np.asarray(random_shift(key, x, max_shift=1))
    )
    images = jnp.asarray(np.random.default_rng(12).uniform(size=(3, 6, 5, 2)), jnp.float32)
    np.testing.assert_array_equal(
        np.asarray(random_rotation(key, images)),
        np.asarray(random_rotation(key, images, max_degrees=10.0)),
    )

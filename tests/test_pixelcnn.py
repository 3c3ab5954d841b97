"""PixelCNN: masks, causality through Jacobian sparsity, the Bernoulli baseline, sampling."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.data import load_digits
from jaxnets.data.binarized import load_binarized_digits
from jaxnets.models.pixelcnn import PixelCNN, bits_per_dim, pixel_frequency_logits, sample
from jaxnets.nn.conv import filter_reference
from jaxnets.nn.masked import MaskedConv2D, causal_mask

# Offsets (row, column) from the output pixel that a 3x3 mask lets through, written by hand.
_OFFSETS_A = {(-1, -1), (-1, 0), (-1, 1), (0, -1)}
_OFFSETS_B = _OFFSETS_A | {(0, 0)}


def _raster_reach(offsets, height, width) -> np.ndarray:
    """(pixels, pixels) 0/1: [p, q] = 1 iff a layer with these offsets connects input q to
    output p of a height x width image (zero padding: offsets leaving the image reach nothing)."""
    reach = np.zeros((height * width, height * width), dtype=int)
    for r in range(height):
        for c in range(width):
            for dr, dc in offsets:
                if 0 <= r + dr < height and 0 <= c + dc < width:
                    reach[r * width + c, (r + dr) * width + c + dc] = 1
    return reach


@functools.cache
def _init_apply(module, shape, seed=0):
    """(variables, jitted apply) of a module on inputs of ``shape``; cached across tests."""
    x = jnp.zeros(shape)
    variables = jax.jit(module.init)(jax.random.PRNGKey(seed), x)
    return variables, jax.jit(module.apply)


def _input_jacobian(module, x) -> np.ndarray:
    """(pixels, pixels) d output[p] / d x[q] of a one-channel-out module on one image x (h, w, c),
    summed over input channels."""
    variables, apply = _init_apply(module, (1, *x.shape))
    jac = jax.jacrev(lambda image: apply(variables, image[None])[0, ..., 0].ravel())(x)
    h, w, _ = x.shape
    return np.asarray(jnp.sum(jnp.abs(jac), axis=-1)).reshape(h * w, h * w)


# -- masks ---------------------------------------------------------------------------------


def test_3x3_masks_are_the_pixelcnn_patterns():
    a = np.array([[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    b = np.array([[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    mask_a, mask_b = causal_mask(3, 2, 5, "A"), causal_mask((3, 3), 2, 5, "B")
    assert mask_a.shape == mask_b.shape == (3, 3, 2, 5) and mask_a.dtype == np.float32
    for i in range(2):
        for o in range(5):
            np.testing.assert_array_equal(mask_a[:, :, i, o], a)
            np.testing.assert_array_equal(mask_b[:, :, i, o], b)
    # a non-square kernel: 1 row of 5 keeps the two pixels to the left (and B the centre)
    np.testing.assert_array_equal(causal_mask((1, 5), 1, 1, "A")[..., 0, 0], [[1, 1, 0, 0, 0]])
    np.testing.assert_array_equal(causal_mask((1, 5), 1, 1, "B")[..., 0, 0], [[1, 1, 1, 0, 0]])


@pytest.mark.parametrize(
    "args, message",
    [
        ((3, 1, 1, "C"), "unknown mask type 'C'; expected 'A'"),
        ((4, 1, 1, "A"), "odd kernel size"),
        (((3, 2), 1, 1, "B"), "odd kernel size"),
    ],
)
def test_bad_mask_arguments_are_named(args, message):
    with pytest.raises(ValueError, match=message):
        causal_mask(*args)


# -- the masked convolution ---------------------------------------------------------------


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_conv_equals_filtering_with_the_masked_kernel(mask_type):
    layer = MaskedConv2D(4, (3, 5), mask_type)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 6, 3))
    variables, apply = _init_apply(layer, x.shape)
    kernel, bias = (np.asarray(variables["params"][k]) for k in ("kernel", "bias"))
    variables = {"params": {"kernel": kernel, "bias": bias + np.arange(4.0)}}
    mask = causal_mask((3, 5), 3, 4, mask_type)
    expected = filter_reference(np.asarray(x), kernel * mask, "same") + np.arange(4.0)
    np.testing.assert_allclose(apply(variables, x), expected, rtol=1e-5, atol=1e-5)
    unmasked = filter_reference(np.asarray(x), kernel, "same") + np.arange(4.0)
    assert np.max(np.abs(unmasked - expected)) > 0.1  # the mask changed the result


@pytest.mark.parametrize("mask_type, offsets", [("A", _OFFSETS_A), ("B", _OFFSETS_B)])
def test_one_masked_layer_sees_exactly_its_mask(mask_type, offsets):
    x = jax.random.normal(jax.random.PRNGKey(2), (5, 5, 2))
    depends = _input_jacobian(MaskedConv2D(1, 3, mask_type), x) > 0
    np.testing.assert_array_equal(depends, _raster_reach(offsets, 5, 5))
    assert np.diag(depends).all() == (mask_type == "B")  # B sees its own pixel, A does not


def test_masked_conv_rejects_non_images():
    with pytest.raises(ValueError, match=r"expects images \(batch, height, width, channels\)"):
        MaskedConv2D(2, 3, "A").init(jax.random.PRNGKey(0), jnp.zeros((5, 5, 1)))


# -- PixelCNN causality -------------------------------------------------------------------


def test_pixelcnn_output_depends_exactly_on_its_masks_receptive_field():
    layers = 2
    model = PixelCNN(features=8, layers=layers, first_kernel=3, kernel=3)
    x = jax.random.normal(jax.random.PRNGKey(3), (5, 5, 1))
    depends = _input_jacobian(model, x) > 0
    # causality: output pixel i has zero derivative wrt every input pixel >= i in raster order
    assert not np.any(np.triu(depends))
    # the expected dependencies: one type-A layer, then residual type-B blocks h + f(h)
    # (B contains the centre, so a block reaches its input's reach through the offsets B)
    reach = _raster_reach(_OFFSETS_A, 5, 5)
    for _ in range(layers):
        reach = np.minimum(_raster_reach(_OFFSETS_B, 5, 5) @ reach, 1)
    np.testing.assert_array_equal(depends, reach.astype(bool))
    assert depends.sum() > 100  # most of the 300 earlier (output, input) pairs are used
    # the blind spot: pixel (3, 1) never sees (2, 4), which comes before it in raster order
    assert not depends[3 * 5 + 1, 2 * 5 + 4]


def test_pixelcnn_rejects_colour_images():
    with pytest.raises(ValueError, match=r"one-channel images \(batch, height, width, 1\)"):
        PixelCNN(features=2, layers=1).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 3)))


# -- bits per dimension and the independent-Bernoulli baseline ----------------------------


def test_pixel_frequency_baseline_by_hand():
    # three 1x2 images; pixel 0 is on in 2 of them, pixel 1 in 1: Laplace p = 3/5 and 2/5
    train = np.array([[1, 0], [1, 1], [0, 0]], np.float32).reshape(3, 1, 2, 1)
    logits = pixel_frequency_logits(train, smoothing=1.0)
    np.testing.assert_allclose(logits[0, :, 0], [np.log(1.5), np.log(2 / 3)], rtol=1e-6)
    test = np.array([[1, 0], [0, 1]], np.float32).reshape(2, 1, 2, 1)
    # image 1 has probability 3/5 * 3/5, image 2 has 2/5 * 2/5; 2 pixels each
    expected = -(2 * np.log2(0.6) + 2 * np.log2(0.4)) / 4
    got = bits_per_dim(jnp.broadcast_to(logits, test.shape), jnp.asarray(test))
    np.testing.assert_allclose(float(got), expected, rtol=1e-6)
    # smoothing 3: p = (2 + 3) / (3 + 6) for pixel 0
    np.testing.assert_allclose(pixel_frequency_logits(train, 3.0)[0, 0, 0], np.log(5 / 4), 1e-6)


def test_baseline_and_bits_per_dim_reject_bad_inputs():
    with pytest.raises(ValueError, match="needs binary images"):
        pixel_frequency_logits(np.full((2, 2, 2, 1), 0.5))
    with pytest.raises(ValueError, match="smoothing must be > 0"):
        pixel_frequency_logits(np.zeros((2, 2, 2, 1)), smoothing=0.0)
    with pytest.raises(ValueError, match="one logit per pixel"):
        bits_per_dim(jnp.zeros((2, 2, 2, 1)), jnp.zeros((2, 4, 1)))


# -- sampling ------------------------------------------------------------------------------


@functools.cache
def _tiny_model():
    model = PixelCNN(features=3, layers=1, first_kernel=3, kernel=3)
    return model, _init_apply(model, (1, 4, 4, 1), seed=5)[0]


def test_samples_are_binary_images_fixed_by_the_seed():
    model, variables = _tiny_model()
    first = sample(model, variables, jax.random.PRNGKey(0), 6, (4, 4, 1))
    assert first.shape == (6, 4, 4, 1) and first.dtype == jnp.float32
    assert set(np.unique(first)) <= {0.0, 1.0}
    np.testing.assert_array_equal(
        first, sample(model, variables, jax.random.PRNGKey(0), 6, [4, 4, 1])
    )
    assert np.any(first != sample(model, variables, jax.random.PRNGKey(1), 6, (4, 4, 1)))


@pytest.mark.parametrize("bias, value", [(60.0, 1.0), (-60.0, 0.0)])
def test_a_huge_output_bias_makes_every_pixel_certain(bias, value):
    model, variables = _tiny_model()
    params = dict(variables["params"])
    params["output"] = {**params["output"], "bias": jnp.array([bias])}
    samples = sample(model, {"params": params}, jax.random.PRNGKey(0), 5, (4, 4, 1))
    np.testing.assert_array_equal(samples, np.full((5, 4, 4, 1), value))


def test_sampling_feeds_each_drawn_pixel_back_in():
    # a hand-set PixelCNN whose pixel is the opposite of its left neighbour, with certainty:
    # the type-A layer copies the left neighbour (offset (0, -1): kernel entry (1, 0)), the
    # head passes it on, the output maps 0 -> logit +50 and 1 -> -50
    model = PixelCNN(features=1, layers=0, first_kernel=3)
    kernel = np.zeros((3, 3, 1, 1), np.float32)
    kernel[1, 0] = 1.0
    params = {
        "input_A": {"kernel": kernel, "bias": np.zeros(1, np.float32)},
        "head_1x1": {"kernel": np.ones((1, 1), np.float32), "bias": np.zeros(1, np.float32)},
        "output": {"kernel": np.full((1, 1), -100.0, np.float32), "bias": np.array([50.0])},
    }
    samples = sample(model, {"params": params}, jax.random.PRNGKey(0), 2, (3, 4, 1))
    np.testing.assert_array_equal(samples[..., 0], np.tile([1.0, 0.0, 1.0, 0.0], (2, 3, 1)))


def test_sample_rejects_a_colour_shape():
    model, variables = _tiny_model()
    with pytest.raises(ValueError, match=r"shape \(height, width, 1\)"):
        sample(model, variables, jax.random.PRNGKey(0), 2, (4, 4, 3))


# -- data and experiment ------------------------------------------------------------------


def test_binarized_digits_threshold_the_ink():
    data = load_binarized_digits(threshold=0.5)
    assert data.x.shape == (1797, 8, 8, 1) and data.x.dtype == np.float32
    ink = load_digits().x.reshape(1797, 8, 8, 1)
    np.testing.assert_array_equal(data.x, (ink > 0.5).astype(np.float32))
    np.testing.assert_array_equal(data.y, load_digits().y)
    assert 0.2 < data.x.mean() < 0.4  # about 29% of the pixels are on
    assert load_binarized_digits(threshold=0.0).x.mean() > data.x.mean()
    with pytest.raises(ValueError, match=r"threshold must lie in \[0, 1\)"):
        load_binarized_digits(threshold=1.0)

"""The fast convolution and pooling against the lecture's definitions (seed 004, Lecture 9)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.nn.conv import (
    PADDINGS,
    POOLS,
    Pool,
    convolve,
    convolve_reference,
    filter_reference,
    filtering,
    output_size,
    pool,
)

# Figures 3-4 of Lecture 9: the worked 2-D example, x * w in full extent.
LECTURE_X = np.array([[1, 3, 1], [0, -1, 1], [2, 2, -1]], dtype=np.float32)
LECTURE_W = np.array([[1, 2], [0, -1]], dtype=np.float32)
LECTURE_X_STAR_W = np.array([[1, 5, 7, 2], [0, -2, -4, 1], [2, 6, 4, -3], [0, -2, -2, 1]])


def test_lecture_example_by_reference_and_fast_path():
    np.testing.assert_array_equal(convolve_reference(LECTURE_X, LECTURE_W), LECTURE_X_STAR_W)
    np.testing.assert_array_equal(convolve(LECTURE_X, LECTURE_W), LECTURE_X_STAR_W)


@pytest.mark.parametrize("shape_x, shape_w", [((9,), (4,)), ((7, 6), (3, 2)), ((5, 5), (5, 5))])
@pytest.mark.parametrize("mode", ["full", "valid", "same"])
def test_convolve_equals_flip_and_filter_definition(shape_x, shape_w, mode):
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=shape_x), rng.normal(size=shape_w)
    full = convolve_reference(x, w)
    sizes = list(zip(x.shape, w.shape, strict=True))
    if mode == "full":
        expected = full
    elif mode == "valid":  # only where the flipped filter lies inside x
        expected = full[tuple(slice(k - 1, n) for n, k in sizes)]
    else:  # the central n outputs (XLA puts the odd extra zero after)
        expected = full[
            tuple(slice(k // 2, k // 2 + n) for n, k in zip(x.shape, w.shape, strict=True))
        ]
    fast = convolve(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32), mode)
    np.testing.assert_allclose(fast, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding", ["valid", "same", "full"])
@pytest.mark.parametrize("spatial", [(11,), (7, 6)])
def test_multichannel_filtering_equals_eq10(padding, spatial):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, *spatial, 3))
    kernel = rng.normal(size=(*(3,) * len(spatial), 3, 4))
    fast = filtering(jnp.asarray(x, jnp.float32), jnp.asarray(kernel, jnp.float32), padding=padding)
    expected = filter_reference(x, kernel, padding)
    assert fast.shape == expected.shape
    assert fast.shape[1:-1] == tuple(output_size(n, 3, 1, padding) for n in spatial)
    np.testing.assert_allclose(fast, expected, rtol=1e-5, atol=1e-5)


def test_convolution_is_filtering_with_the_flipped_kernel():
    rng = np.random.default_rng(2)
    x, w = rng.normal(size=(6, 5)), rng.normal(size=(3, 2))
    filtered = filter_reference(x[None, ..., None], w[::-1, ::-1, None, None], "full")
    np.testing.assert_allclose(filtered[0, ..., 0], convolve_reference(x, w), atol=1e-12)


def test_filtering_with_stride_subsamples_the_stride_one_output():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(1, 9, 9, 2)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(3, 3, 2, 5)), jnp.float32)
    strided = filtering(x, kernel, stride=2)
    np.testing.assert_allclose(strided, filtering(x, kernel)[:, ::2, ::2], rtol=1e-5, atol=1e-5)
    assert strided.shape[1] == output_size(9, 3, 2) == 4


def test_output_sizes_of_lenet_and_errors():
    assert output_size(32, 5) == 28 and output_size(28, 2, 2) == 14  # C1, S2
    assert output_size(32, 5, padding="same") == 32 and output_size(32, 5, 2, "same") == 16
    assert output_size(4, 3, padding="full") == 6
    with pytest.raises(ValueError, match="unknown padding 'circular'"):
        output_size(8, 3, padding="circular")
    with pytest.raises(ValueError, match="does not fit"):
        output_size(3, 5)
    with pytest.raises(ValueError, match="same number of spatial axes"):
        filtering(jnp.zeros((1, 8, 8, 2)), jnp.zeros((3, 3, 3, 4)))


def test_max_and_mean_pooling_with_stride():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(pool(x, 2, kind="max")[0, ..., 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(pool(x, 2, kind="mean")[0, ..., 0], [[2.5, 4.5], [10.5, 12.5]])
    # overlapping 3x3 groups spaced by 2 (AlexNet's pooling); "same" mean ignores the padding
    np.testing.assert_array_equal(pool(x, 3, 2, kind="max")[0, ..., 0], [[10]])
    x3 = jnp.arange(9.0).reshape(1, 3, 3, 1)  # "same" pads to 4x4; the corner group is x3[2, 2]
    np.testing.assert_array_equal(
        pool(x3, 2, kind="mean", padding="same")[0, ..., 0], [[2, 3.5], [6.5, 8]]
    )
    layer = Pool("mean", 2, 2)
    np.testing.assert_array_equal(layer.apply({}, x), pool(x, 2, kind="mean"))
    with pytest.raises(ValueError, match="unknown pooling 'min'"):
        pool(x, 2, kind="min")
    with pytest.raises(ValueError, match="pooling supports padding 'valid' or 'same'"):
        pool(x, 2, padding="full")


def test_max_pool_gradient_goes_to_the_maximum_only():
    x = jnp.array([[1.0, 4.0], [3.0, 2.0]]).reshape(1, 2, 2, 1)
    grad = jax.grad(lambda x: pool(x, 2, kind="max").sum())(x)
    np.testing.assert_array_equal(grad[0, ..., 0], [[0, 1], [0, 0]])


def _np_pool(x, window, stride, kind, padding):
    """Lecture 9 §4 by loops: the max or mean of each window (pooling group), windows spaced
    by ``stride``; "same" pads so that out = ceil(n / stride), the extra position after (XLA's
    convention), and a mean counts only the positions inside the input."""
    n = x.shape[1:-1]
    if padding == "same":
        out = [-(-ni // s) for ni, s in zip(n, stride, strict=True)]
        total = [
            max((o - 1) * s + k - ni, 0) for o, s, k, ni in zip(out, stride, window, n, strict=True)
        ]
        lo = [p // 2 for p in total]
    else:
        out = [(ni - k) // s + 1 for ni, k, s in zip(n, window, stride, strict=True)]
        lo = [0] * len(n)
    result = np.zeros((x.shape[0], *out, x.shape[-1]))
    for t in itertools.product(*map(range, out)):
        group = tuple(
            slice(max(ti * s - p, 0), min(ti * s - p + k, ni))
            for ti, s, p, k, ni in zip(t, stride, lo, window, n, strict=True)
        )
        values = x[(slice(None), *group)].reshape(x.shape[0], -1, x.shape[-1])
        result[(slice(None), *t)] = values.max(1) if kind == "max" else values.mean(1)
    return result


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_pooling_with_per_axis_windows_and_strides_equals_the_loop(padding):
    """Rectangular windows and per-axis strides (tuples), both kinds, against the loop; the
    defaults are max pooling over non-overlapping windows (stride = window)."""
    x = np.random.default_rng(4).normal(size=(2, 7, 8, 3))
    for window, stride in [((2, 3), (1, 2)), ((3, 2), (2, 2)), ((2, 2), None)]:
        for kind in POOLS:
            got = pool(jnp.asarray(x, jnp.float32), window, stride, kind=kind, padding=padding)
            want = _np_pool(x, window, stride or window, kind, padding)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"{kind} {window}")
    np.testing.assert_array_equal(pool(jnp.asarray(x), 2), pool(jnp.asarray(x), 2, 2, kind="max"))


def test_filtering_with_per_axis_strides_and_full_padding_sizes():
    """A stride per axis subsamples each axis of the stride-1 output by its own step, and the
    output sizes follow output_size for every padding and stride."""
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(1, 9, 8, 2)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(3, 2, 2, 4)), jnp.float32)
    for padding in PADDINGS:
        dense = filtering(x, kernel, padding=padding)
        strided = filtering(x, kernel, stride=(2, 3), padding=padding)
        if padding != "same":  # "same" centres the strided windows differently
            np.testing.assert_allclose(strided, dense[:, ::2, ::3], rtol=1e-5, atol=1e-5)
        sizes = [
            output_size(n, k, s, padding) for n, k, s in zip((9, 8), (3, 2), (2, 3), strict=True)
        ]
        assert strided.shape == (1, *sizes, 4)
        assert dense.shape[1:3] == tuple(
            output_size(n, k, 1, padding) for n, k in zip((9, 8), (3, 2), strict=True)
        )


def test_a_window_as_large_as_the_axis_fits_once():
    """valid: floor((n − k) / s) + 1 = 1 when k = n, the span 0 being the one position."""
    assert output_size(5, 5) == 1 and output_size(5, 5, 3) == 1
    x = jnp.ones((1, 5, 2))
    assert filtering(x, jnp.ones((5, 2, 3))).shape == (1, 1, 3)


def test_output_size_takes_a_window_or_stride_of_one_and_rejects_zero():
    """valid: (n − 1) / 1 + 1 = n for a 1-wide window; 0 for either is an error."""
    assert output_size(5, 1) == 5 and output_size(5, 1, 2) == 3
    assert output_size(4, 1, padding="full") == 4
    with pytest.raises(ValueError, match="must be >= 1"):
        output_size(5, 0)
    with pytest.raises(ValueError, match="must be >= 1"):
        output_size(5, 2, 0)


def test_convolve_rejects_three_axes_and_mixed_ranks():
    with pytest.raises(ValueError, match="convolve takes"):
        convolve(jnp.ones((2, 2, 2)), jnp.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="convolve takes"):
        convolve(jnp.ones((3,)), jnp.ones((2, 2)))


def test_filtering_rejects_a_kernel_of_another_rank_or_no_spatial_axis():
    """C matches (2, then 3) but the number of spatial axes does not: 1 vs 2, and 0."""
    with pytest.raises(ValueError, match="filtering needs"):
        filtering(jnp.ones((1, 8, 2)), jnp.ones((3, 3, 2, 4)))
    with pytest.raises(ValueError, match="filtering needs"):
        filtering(jnp.ones((4, 3)), jnp.ones((3, 5)))


def test_filter_reference_defaults_to_valid():
    """(x ⋆ w)[t] = x[t] w[0] + x[t + 1] w[1] with x = 1, 2, 3 and w = 1, 10: 21, 32."""
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1)
    kernel = np.array([1.0, 10.0]).reshape(2, 1, 1)
    np.testing.assert_array_equal(filter_reference(x, kernel)[0, :, 0], [21.0, 32.0])

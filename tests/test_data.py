"""Tests of jaxnets.data: validation, splits, standardisation, batching, embedded data sets
(augmentations: tests/test_augment.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.svm import SVC

from jaxnets.data import (
    ArrayDataset,
    Splits,
    Standardizer,
    load_digits,
    make_circles,
    make_linearly_separable,
    make_polynomial_regression,
    make_two_moons,
    make_xor,
    standardize,
    xor_truth_table,
)


@pytest.fixture(scope="module")
def digits() -> ArrayDataset:
    return load_digits()


def _toy(n: int = 10) -> ArrayDataset:
    return ArrayDataset(np.arange(2 * n, dtype=np.float32).reshape(n, 2), np.arange(n) % 2)


# --- ArrayDataset validation -------------------------------------------------------------


def test_empty_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match=r"dataset 'digits' is empty: 0 examples"):
        ArrayDataset(np.zeros((0, 64), np.float32), np.zeros(0, np.int32), name="digits")


def test_length_mismatch_names_both_lengths():
    with pytest.raises(ValueError, match=r"x has 5 examples but y has 4"):
        ArrayDataset(np.zeros((5, 2)), np.zeros(4))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_rejected(bad):
    x = np.ones((3, 2), np.float32)
    x[1, 0] = bad
    with pytest.raises(ValueError, match=r"1 non-finite values"):
        ArrayDataset(x, np.zeros(3, np.int32))


def test_labels_must_fit_num_classes():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\); got range \[0, 3\]"):
        ArrayDataset(np.zeros((4, 2)), np.array([0, 1, 2, 3]), num_classes=3)
    with pytest.raises(ValueError, match="integer class labels"):
        ArrayDataset(np.zeros((2, 2)), np.array([0.0, 1.0]), num_classes=2)


def test_image_shape_must_match_features():
    with pytest.raises(ValueError, match=r"image_shape \(8, 8\) has 64 pixels"):
        ArrayDataset(np.zeros((2, 63)), np.zeros(2), image_shape=(8, 8))


def test_len_input_shape_and_as_jax():
    data = ArrayDataset(np.ones((6, 2, 3), np.float64), np.arange(6, dtype=np.int32))
    assert len(data) == 6 and data.input_shape == (2, 3)
    x, y = data.as_jax(jnp.float32)
    assert isinstance(x, jax.Array) and x.dtype == jnp.float32 and x.shape == (6, 2, 3)
    assert y.dtype == jnp.int32 and np.array_equal(np.asarray(y), np.arange(6))


# --- splits --------------------------------------------------------------------------------


def test_split_partitions_the_data_reproducibly(digits):
    splits = digits.split((0.6, 0.2, 0.2), seed=3)
    assert isinstance(splits, Splits)
    assert [len(p) for p in splits] == [1078, 360, 359]  # largest remainder: sums to 1797
    assert [p.name for p in splits] == ["digits/train", "digits/val", "digits/test"]
    # Split a copy whose input is the example index: the parts must partition the indices.
    indexed = ArrayDataset(np.arange(len(digits))[:, None], digits.y, num_classes=10)
    parts = [p.x[:, 0] for p in indexed.split((0.6, 0.2, 0.2), seed=3)]
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(digits)))
    np.testing.assert_array_equal(digits.x[parts[2]], splits.test.x)
    again = digits.split((0.6, 0.2, 0.2), seed=3)
    other = digits.split((0.6, 0.2, 0.2), seed=4)
    assert all(np.array_equal(a.x, b.x) for a, b in zip(splits, again, strict=True))
    assert not np.array_equal(splits.test.x, other.test.x)
    assert splits.train.num_classes == 10 and splits.train.image_shape == (8, 8)


def test_stratified_split_keeps_class_proportions(digits):
    counts = np.bincount(digits.y)
    for seed in range(5):
        for part in digits.split((0.6, 0.2, 0.2), seed=seed):
            expected = counts * len(part) / len(digits)
            assert np.abs(np.bincount(part.y, minlength=10) - expected).max() < 1.0


def test_stratified_split_of_imbalanced_classes_is_exact():
    y = np.array([0] * 90 + [1] * 10, np.int32)
    data = ArrayDataset(np.arange(100, dtype=np.float32)[:, None], y, num_classes=2)
    for seed in range(10):
        train, val, test = data.split((0.6, 0.2, 0.2), seed=seed)
        assert np.array_equal(np.bincount(train.y), [54, 6])
        assert np.array_equal(np.bincount(val.y), [18, 2])
        assert np.array_equal(np.bincount(test.y), [18, 2])
    # Unstratified splits of the same data miss the 2-in-20 share of class 1 for some seeds.
    ones = [np.sum(data.split(seed=s, stratify=False).test.y) for s in range(10)]
    assert any(c != 2 for c in ones)


def test_split_by_sizes_and_errors():
    data = _toy(10)
    train, val, test = data.split((5, 2, 2), seed=0, stratify=False)
    assert (len(train), len(val), len(test)) == (5, 2, 2)
    with pytest.raises(ValueError, match=r"sum to 12 > 10"):
        data.split((6, 3, 3))
    with pytest.raises(ValueError, match="must sum to 1"):
        data.split((0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="every part needs at least one example"):
        data.split((0.9, 0.1, 0.0))
    regression = ArrayDataset(np.zeros((10, 1)), np.linspace(0, 1, 10)[:, None])
    with pytest.raises(ValueError, match="stratify=True needs integer class labels"):
        regression.split(stratify=True)
    assert len(regression.split().train) == 6  # no num_classes: unstratified by default


# --- standardisation -----------------------------------------------------------------------


def test_standardize_fits_on_train_only(digits):
    splits = digits.split(seed=0)
    scaled, stats = standardize(splits)
    train64 = splits.train.x.astype(np.float64)
    np.testing.assert_allclose(stats.mean, train64.mean(0), atol=1e-6)
    live = train64.std(0) > 1e-6
    np.testing.assert_allclose(stats.std[live], train64.std(0)[live], rtol=1e-5)
    # Pixels blank in every training image are centred only (scale 1), not divided by ~0.
    assert (~live).sum() >= 1 and np.all(stats.std[~live] == 1.0)
    assert np.all(np.isfinite(scaled.test.x)) and np.abs(scaled.test.x).max() < 100
    np.testing.assert_allclose(scaled.train.x[:, live].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(scaled.train.x[:, live].std(0), 1.0, atol=1e-4)
    np.testing.assert_allclose(scaled.test.x, (splits.test.x - stats.mean) / stats.std, atol=1e-6)
    # The validation data were not used: its own statistics differ from the train ones.
    assert np.abs(splits.val.x.mean(0) - stats.mean).max() > 1e-3
    assert scaled.train.x.dtype == np.float32 and scaled.val.name == "digits/val"
    np.testing.assert_allclose(stats.inverse_transform(scaled.val.x), splits.val.x, atol=1e-5)


def test_standardizer_of_constant_feature():
    x = np.array([[1.0, 3.0], [1.0, 5.0], [1.0, 7.0]])
    stats = Standardizer.fit(x)
    np.testing.assert_allclose(stats.mean, [1.0, 5.0])
    np.testing.assert_allclose(stats.std, [1.0, np.sqrt(8 / 3)])
    np.testing.assert_allclose(stats.transform([[2.0, 5.0]]), [[1.0, 0.0]])


# --- batching ------------------------------------------------------------------------------


def test_batches_cover_every_example_once():
    data = _toy(10)
    batches = list(data.batches(4, seed=1))
    assert [len(xb) for xb, _ in batches] == [4, 4, 2]
    xs = np.concatenate([xb for xb, _ in batches])
    assert sorted(xs[:, 0].tolist()) == list(range(0, 20, 2))
    assert not np.array_equal(xs, data.x)  # shuffled
    ys = np.concatenate([yb for _, yb in batches])
    np.testing.assert_array_equal(ys, (xs[:, 0] // 2) % 2)  # pairs stay aligned
    same = np.concatenate([xb for xb, _ in data.batches(4, seed=1)])
    np.testing.assert_array_equal(xs, same)


def test_batches_drop_last_and_order():
    data = _toy(10)
    assert [len(xb) for xb, _ in data.batches(4, drop_last=True)] == [4, 4]
    first, *_ = data.batches(3, shuffle=False)
    np.testing.assert_array_equal(first[0], data.x[:3])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        next(data.batches(0))


# --- embedded data sets --------------------------------------------------------------------


def test_load_digits(digits):
    assert digits.x.shape == (1797, 64) and digits.x.dtype == np.float32
    assert digits.y.shape == (1797,) and digits.y.dtype == np.int32
    assert digits.num_classes == 10 and digits.image_shape == (8, 8) and digits.name == "digits"
    assert digits.x.min() == 0.0 and digits.x.max() == 1.0
    # The first image is a 0 whose top row has raw ink counts 0 0 5 13 9 1 0 0.
    np.testing.assert_allclose(digits.x[0, :8] * 16, [0, 0, 5, 13, 9, 1, 0, 0])
    assert digits.y[0] == 0 and np.array_equal(np.bincount(digits.y)[:3], [178, 182, 177])


def test_xor_truth_table_and_noisy_xor():
    table = xor_truth_table()
    np.testing.assert_array_equal(table.x, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(table.y, [0, 1, 1, 0])
    clean = make_xor(64, noise=0.0, seed=1)
    np.testing.assert_array_equal(clean.y, clean.x[:, 0].astype(int) ^ clean.x[:, 1].astype(int))
    noisy = make_xor(64, noise=0.05, seed=1)
    np.testing.assert_array_equal(noisy.y, clean.y)  # same seed, same corners
    assert 0 < np.abs(noisy.x - clean.x).max() < 0.5
    assert len(np.unique(clean.x, axis=0)) == 4


def test_polynomial_regression_data():
    sine = make_polynomial_regression(10, noise=0.0, seed=2)
    assert sine.x.shape == sine.y.shape == (10, 1) and sine.num_classes is None
    np.testing.assert_allclose(sine.y, np.sin(2 * np.pi * sine.x), atol=1e-6)
    assert 0.0 <= sine.x.min() and sine.x.max() <= 1.0
    noisy = make_polynomial_regression(10, noise=0.3, seed=2)
    np.testing.assert_array_equal(noisy.x, sine.x)
    assert 0.05 < np.std(noisy.y - sine.y) < 0.6
    cubic = make_polynomial_regression(50, degree=3, noise=0.0, seed=0, x_range=(-2.0, 2.0))
    assert -2.0 <= cubic.x.min() and cubic.x.max() <= 2.0
    # A degree-3 polynomial has a constant third difference on an exact grid; here check that
    # the data lie on one: a cubic fit leaves (numerically) no residual, a quadratic does.
    x, y = cubic.x[:, 0].astype(np.float64), cubic.y[:, 0].astype(np.float64)
    assert np.abs(np.polyval(np.polyfit(x, y, 3), x) - y).max() < 1e-4
    assert np.abs(np.polyval(np.polyfit(x, y, 2), x) - y).max() > 1e-2
    with pytest.raises(ValueError, match="low < high"):
        make_polynomial_regression(x_range=(1.0, 0.0))


def test_moons_and_circles():
    moons = make_two_moons(100, noise=0.0, seed=0)
    assert moons.x.shape == (100, 2) and np.array_equal(np.bincount(moons.y), [50, 50])
    upper = moons.x[moons.y == 0]
    np.testing.assert_allclose(np.linalg.norm(upper, axis=1), 1.0, atol=1e-6)  # unit half circle
    circles = make_circles(100, noise=0.0, factor=0.3, seed=0)
    radii = np.linalg.norm(circles.x, axis=1)
    np.testing.assert_allclose(radii[circles.y == 1], 0.3, atol=1e-6)
    np.testing.assert_allclose(radii[circles.y == 0], 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="factor"):
        make_circles(factor=1.5)


def test_linearly_separable_data_have_the_margin():
    data = make_linearly_separable(200, dim=3, margin=0.2, seed=5)
    assert data.x.shape == (200, 3) and 0 < data.y.sum() < 200
    assert np.abs(data.x).max() <= 1.0
    svm = SVC(kernel="linear", C=1e8).fit(data.x, data.y)
    assert svm.score(data.x, data.y) == 1.0
    # The max-margin separator's geometric margin is at least the generator's.
    w = svm.coef_[0]
    margins = (2 * data.y - 1) * (data.x @ w + svm.intercept_[0]) / np.linalg.norm(w)
    assert margins.min() >= 0.2 - 1e-4
    with pytest.raises(ValueError, match="margin"):
        make_linearly_separable(margin=0.0)

"""Data sets that ship with jaxnets: the sklearn digits and seeded synthetic tasks.

Lectures:
  * seed 004 §2.1 "Linear regression" (line 163, §5-6 feature maps and overfitting): noisy
    samples of a smooth curve fitted by polynomials of growing degree
    (:func:`make_polynomial_regression`; the curve is sin(2πx), Bishop 2006 §1.1).
  * seed 004 §2.2 "Linear classification" (line 406): linearly separable data for the
    perceptron (:func:`make_linearly_separable`) and XOR, which no linear classifier
    separates (§5.2, :func:`xor_truth_table`, :func:`make_xor`).
  * seed 004 §3 "Multilayer perceptrons" (line 971): XOR, moons and circles as tasks a
    linear model fails and a hidden layer solves.
  * seed 004 §10/§12 (lines 2311, 2500): handwritten digits for image classification.

Every generator takes a ``seed`` and uses its own ``numpy.random.default_rng(seed)`` (or
sklearn's ``random_state``), so the same seed always gives the same data. Inputs are float32,
class labels int32; binary labels are {0, 1} (the convention of :mod:`jaxnets.losses`).
"""

from __future__ import annotations

import numpy as np

from jaxnets.data.dataset import ArrayDataset


def _sklearn_datasets():
    """scikit-learn's datasets module, imported on first use: importing it takes over a
    second (scipy.stats), which every ``import jaxnets`` would pay otherwise."""
    import sklearn.datasets

    return sklearn.datasets


__all__ = [
    "load_digits",
    "make_circles",
    "make_linearly_separable",
    "make_polynomial_regression",
    "make_two_moons",
    "make_xor",
    "xor_truth_table",
]


def _check_n(n: int, name: str) -> None:
    if int(n) < 1:
        raise ValueError(f"{name}: n must be a positive number of examples; got {n}")


def load_digits() -> ArrayDataset:
    """The UCI/sklearn handwritten digits: 1797 images of 8x8 pixels, 10 classes.

    Returns:
      ``x`` float32 (1797, 64), row-major flattened 8x8 images scaled from the raw 0-16
      ink counts to [0, 1]; ``y`` int32 (1797,) digit labels 0-9; ``image_shape=(8, 8)``.
      Bundled with scikit-learn: no download.
    """
    raw = _sklearn_datasets().load_digits()
    return ArrayDataset(
        x=(raw.data / 16.0).astype(np.float32),
        y=raw.target.astype(np.int32),
        name="digits",
        num_classes=10,
        image_shape=(8, 8),
    )


def xor_truth_table() -> ArrayDataset:
    """The four points of XOR: x (4, 2) float32 = {0,1}², y (4,) int32 = x1 XOR x2 = [0,1,1,0]."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    return ArrayDataset(x=x, y=np.array([0, 1, 1, 0], dtype=np.int32), name="xor", num_classes=2)


def make_xor(n: int = 200, noise: float = 0.1, seed: int = 0) -> ArrayDataset:
    """Noisy XOR: corners of the unit square plus Gaussian noise of std ``noise``.

    Returns ``x`` float32 (n, 2) and ``y`` int32 (n,) = XOR of the corner's coordinates.
    """
    _check_n(n, "make_xor")
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 2, size=(n, 2))
    x = corners + noise * rng.standard_normal((n, 2))
    y = corners[:, 0] ^ corners[:, 1]
    return ArrayDataset(
        x=x.astype(np.float32), y=y.astype(np.int32), name="xor_noisy", num_classes=2
    )


def make_polynomial_regression(
    n: int = 10,
    degree: int | None = None,
    noise: float = 0.3,
    seed: int = 0,
    x_range: tuple[float, float] = (0.0, 1.0),
) -> ArrayDataset:
    """Noisy 1-D regression targets ``t = f(x) + noise * ε``, ``x`` uniform in ``x_range``.

    Args:
      n: number of points (the lecture's overfitting picture uses about 10).
      degree: ``None`` gives the lecture's curve ``f(x) = sin(2πx)`` (fitted by polynomials
        of degree 1, 3 and 10 in seed 004 §2.1 §6); an integer gives a polynomial of that
        degree with standard-normal coefficients drawn from ``seed``, which a polynomial
        feature map of the same degree can fit exactly when ``noise=0``.
      noise: standard deviation of the Gaussian noise ε.
      seed: seeds the inputs, the coefficients and the noise.
      x_range: interval ``(low, high)`` of the inputs.

    Returns:
      ``x`` float32 (n, 1) and ``y`` float32 (n, 1) (one regression output).
    """
    _check_n(n, "make_polynomial_regression")
    low, high = x_range
    if not low < high:
        raise ValueError(
            "make_polynomial_regression: x_range must be (low, high) with low < high; "
            f"got {x_range}"
        )
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, size=n)
    if degree is None:
        f, name = np.sin(2.0 * np.pi * x), "sin"
    else:
        if degree < 0:
            raise ValueError(f"make_polynomial_regression: degree must be >= 0; got {degree}")
        coefficients = rng.standard_normal(degree + 1)  # c_0 + c_1 x + ... + c_d x^d
        f, name = np.polynomial.polynomial.polyval(x, coefficients), f"poly{degree}"
    t = f + noise * rng.standard_normal(n)
    return ArrayDataset(x=x[:, None].astype(np.float32), y=t[:, None].astype(np.float32), name=name)


def make_two_moons(n: int = 200, noise: float = 0.1, seed: int = 0) -> ArrayDataset:
    """Two interleaving half circles (sklearn ``make_moons``): x float32 (n, 2), y int32 (n,)."""
    _check_n(n, "make_two_moons")
    x, y = _sklearn_datasets().make_moons(n_samples=n, noise=noise, random_state=seed)
    return ArrayDataset(
        x=x.astype(np.float32), y=y.astype(np.int32), name="two_moons", num_classes=2
    )


def make_circles(
    n: int = 200, noise: float = 0.05, factor: float = 0.5, seed: int = 0
) -> ArrayDataset:
    """Two concentric circles (sklearn ``make_circles``); the inner one (radius ``factor``)
    is class 1. x float32 (n, 2), y int32 (n,)."""
    _check_n(n, "make_circles")
    if not 0.0 <= factor < 1.0:
        raise ValueError(
            f"make_circles: factor (inner/outer radius) must be in [0, 1); got {factor}"
        )
    x, y = _sklearn_datasets().make_circles(
        n_samples=n, noise=noise, factor=factor, random_state=seed
    )
    return ArrayDataset(x=x.astype(np.float32), y=y.astype(np.int32), name="circles", num_classes=2)


def make_linearly_separable(
    n: int = 100, dim: int = 2, margin: float = 0.1, seed: int = 0
) -> ArrayDataset:
    """Points in ``[-1, 1]^dim`` labelled by a random hyperplane, at least ``margin`` from it.

    The hyperplane ``w·x + b = 0`` has a random unit normal ``w`` and offset ``b`` uniform in
    [-0.25, 0.25]; points closer than ``margin`` to it are redrawn, so the data are separable
    with geometric margin >= ``margin`` (the quantity in the perceptron convergence bound).

    Returns ``x`` float32 (n, dim) and ``y`` int32 (n,) in {0, 1} (1 where ``w·x + b > 0``).
    """
    _check_n(n, "make_linearly_separable")
    if dim < 1 or not 0.0 < margin < 0.5:
        raise ValueError(
            f"make_linearly_separable: need dim >= 1 and 0 < margin < 0.5; got dim={dim}, "
            f"margin={margin}"
        )
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(dim)
    w /= np.linalg.norm(w)
    b = rng.uniform(-0.25, 0.25)
    kept: list[np.ndarray] = []
    count = 0
    while count < n:  # rejection sampling; each round keeps a constant fraction of the draws
        candidates = rng.uniform(-1.0, 1.0, size=(2 * n, dim))
        candidates = candidates[np.abs(candidates @ w + b) >= margin]
        kept.append(candidates)
        count += len(candidates)
    x = np.concatenate(kept)[:n]
    y = (x @ w + b > 0).astype(np.int32)
    return ArrayDataset(x=x.astype(np.float32), y=y, name="linearly_separable", num_classes=2)

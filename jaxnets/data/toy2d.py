"""Two-dimensional toy densities for flows: two moons and concentric rings.

Lecture: seed 004, Lecture 15 "Autoregressive and Reversible Models" (line 3300), §1
"Reversible Models": a flow fitted by maximum likelihood (NICE) should put its density where
the data are; in 2-D the learned density can be drawn as a heat map and compared with the
points, and with a Gaussian, which cannot bend around two moons or leave a ring's centre empty.

The generators return the points only, ``float32 (n, 2)``, NOT standardised (moons span
about [-1, 2] x [-0.5, 1], rings have outer radius 1): standardise with
:func:`jaxnets.data.standardize` on a training split, so the test points never inform the
statistics. :func:`toy2d_dataset` wraps them as an :class:`ArrayDataset` for
``Trainer``/``fit``, whose density loss ignores its targets: ``y`` is zeros.
Every generator uses its own ``numpy.random.default_rng(seed)`` (sklearn's ``random_state``
for the moons), so the same seed gives the same points.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from jaxnets.data.dataset import ArrayDataset
from jaxnets.data.embedded import make_two_moons

__all__ = ["TOY2D", "rings", "toy2d_dataset", "two_moons"]


def _check(name: str, n: int, noise: float) -> None:
    if int(n) != n or n < 1:
        raise ValueError(f"{name}: n must be a positive whole number of points; got {n!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(
            f"{name}: noise is the standard deviation of the Gaussian added to each "
            f"coordinate and must be finite and >= 0; got {noise!r}"
        )


def two_moons(n: int = 2000, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """Two interleaving half circles (sklearn ``make_moons``): float32 (n, 2), unstandardised.

    Args:
      n: number of points, split evenly between the moons.
      noise: standard deviation of the isotropic Gaussian noise added to each point.
      seed: random seed.
    """
    _check("two_moons", n, noise)
    return make_two_moons(int(n), noise=noise, seed=seed).x


def rings(n: int = 2000, noise: float = 0.05, num_rings: int = 2, seed: int = 0) -> np.ndarray:
    """Concentric circles of radii k / num_rings, k = 1..num_rings: float32 (n, 2).

    Points are spread over the rings in proportion to their circumference (so every ring has
    the same density along its arc), at uniform random angles, plus isotropic Gaussian noise of
    standard deviation ``noise``. Unstandardised: the outer ring has radius 1.

    Args:
      n: number of points.
      noise: standard deviation of the Gaussian noise per coordinate.
      num_rings: number of rings (>= 1).
      seed: random seed.
    """
    _check("rings", n, noise)
    if int(num_rings) != num_rings or num_rings < 1:
        raise ValueError(f"rings: num_rings must be a positive whole number; got {num_rings!r}")
    rng = np.random.default_rng(seed)
    radii = np.arange(1, num_rings + 1) / num_rings
    ring = rng.choice(num_rings, size=int(n), p=radii / radii.sum())
    angle = rng.uniform(0.0, 2.0 * np.pi, size=int(n))
    points = radii[ring, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return (points + noise * rng.standard_normal(points.shape)).astype(np.float32)


TOY2D: dict[str, Callable[..., np.ndarray]] = {"two_moons": two_moons, "rings": rings}
"""The generators by name: ``(n, noise, seed) -> float32 (n, 2)``."""


def toy2d_dataset(name: str, n: int, *, noise: float, seed: int = 0) -> ArrayDataset:
    """The toy density ``name`` (a key of :data:`TOY2D`) as an unlabelled ArrayDataset.

    x: float32 (n, 2) unstandardised points; y: float32 (n,) zeros (a density model's loss,
    ``negative_log_likelihood``, ignores its target). Split it with ``.split`` and standardise
    with :func:`jaxnets.data.standardize`.
    """
    if name not in TOY2D:
        raise ValueError(f"unknown 2-D toy density {name!r}; choose one of {', '.join(TOY2D)}")
    x = TOY2D[name](n, noise=noise, seed=seed)
    return ArrayDataset(x=x, y=np.zeros(len(x), np.float32), name=name)

"""In-memory data sets: validation, seeded stratified splits, standardisation, batching.

Lecture: seed 004 §12 "Generalization" (line 2500): the data are partitioned into a training
set (fit the parameters), a validation set (tune hyperparameters, early stopping) and a test
set (used once, at the very end). Seed 004 §2.1 §6 (line 163 onwards) makes the same point
for polynomial regression.

All embedded data sets fit in memory, so an :class:`ArrayDataset` holds numpy arrays and the
training engine moves them to the device once (:meth:`ArrayDataset.as_jax`) and scans over
minibatches there; :meth:`ArrayDataset.batches` is the host-side streaming fallback.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ArrayDataset", "Splits", "Standardizer", "split_sizes", "standardize"]


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A labelled data set held in memory.

    Attributes:
      x: inputs ``(n, ...)``; floating inputs must be finite.
      y: targets ``(n,)`` (class indices or binary labels), ``(n, k)`` (real targets) or
        ``(n, T)`` integer class indices, one per time step of a sequence task.
      name: used in error messages and run records.
      num_classes: number of classes for classification data (every label, per example or
        per time step, in ``[0, num_classes)``); ``None`` for regression.
      image_shape: shape of one image when each row of ``x`` is a flattened image
        (``(8, 8)`` for the digits), used by the augmentations; ``None`` otherwise.
    """

    x: np.ndarray
    y: np.ndarray
    name: str = "dataset"
    num_classes: int | None = None
    image_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        x, y = np.asarray(self.x), np.asarray(self.y)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        if x.ndim == 0 or y.ndim == 0:
            raise ValueError(
                f"dataset {self.name!r}: x and y need a leading example axis; "
                f"got x shape {x.shape} and y shape {y.shape}"
            )
        if len(x) == 0:
            raise ValueError(
                f"dataset {self.name!r} is empty: 0 examples; x has shape {x.shape}. "
                "Pass at least one example (check the loader's path, filter or split sizes)."
            )
        if len(x) != len(y):
            raise ValueError(
                f"dataset {self.name!r}: x has {len(x)} examples but y has {len(y)}; "
                "they must have the same length (one target per example)"
            )
        if y.ndim > 2:
            raise ValueError(f"dataset {self.name!r}: y must be (n,) or (n, k); got {y.shape}")
        if np.issubdtype(x.dtype, np.inexact) and not np.all(np.isfinite(x)):
            bad = int(np.sum(~np.isfinite(x)))
            raise ValueError(
                f"dataset {self.name!r}: x has {bad} non-finite values (nan or inf); "
                "clean or impute them before training"
            )
        if self.num_classes is not None:
            if not np.issubdtype(y.dtype, np.integer):
                raise ValueError(
                    f"dataset {self.name!r}: num_classes={self.num_classes} needs integer class "
                    f"labels of shape (n,) or (n, T); got y dtype {y.dtype} and shape {y.shape}"
                )
            if y.min() < 0 or y.max() >= self.num_classes:
                raise ValueError(
                    f"dataset {self.name!r}: labels must lie in [0, {self.num_classes}); "
                    f"got range [{y.min()}, {y.max()}]"
                )
        if self.image_shape is not None and int(np.prod(self.image_shape)) != int(
            np.prod(x.shape[1:])
        ):
            raise ValueError(
                f"dataset {self.name!r}: image_shape {self.image_shape} has "
                f"{int(np.prod(self.image_shape))} pixels but each example has shape {x.shape[1:]}"
            )

    def __len__(self) -> int:
        return len(self.x)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example (no batch axis)."""
        return tuple(self.x.shape[1:])

    def subset(self, indices: np.ndarray, name: str | None = None) -> ArrayDataset:
        """The examples at ``indices``, keeping the metadata."""
        indices = np.asarray(indices)
        return dataclasses.replace(
            self, x=self.x[indices], y=self.y[indices], name=name or self.name
        )

    def split(
        self,
        fractions: Sequence[float] | Sequence[int] = (0.6, 0.2, 0.2),
        *,
        seed: int = 0,
        stratify: bool | None = None,
    ) -> Splits:
        """Seeded train/validation/test split.

        Args:
          fractions: three fractions summing to 1, or three integer sizes (train, val, test)
            summing to at most ``len(self)`` (the remaining examples are left out).
          seed: the same seed gives the same split.
          stratify: keep each class's share in every split (to within about one example per
            class). ``None`` stratifies exactly when the data has
            ``num_classes`` and one label per example; ``True`` on data without such labels
            (regression targets, per-time-step labels) is an error.

        Returns:
          :class:`Splits` whose parts are named ``"<name>/train"`` etc.
        """
        sizes = split_sizes(fractions, len(self), self.name)
        if stratify is None:
            stratify = self.num_classes is not None and self.y.ndim == 1
        if stratify and (self.y.ndim != 1 or not np.issubdtype(self.y.dtype, np.integer)):
            raise ValueError(
                f"dataset {self.name!r}: stratify=True needs integer class labels (n,); "
                f"got y dtype {self.y.dtype} shape {self.y.shape}; pass stratify=False"
            )
        rng = np.random.default_rng(seed)
        order = _stratified_order(self.y, rng) if stratify else rng.permutation(len(self))
        bounds = np.cumsum((0, *sizes))
        parts = [
            self.subset(np.sort(order[lo:hi]), name=f"{self.name}/{part}")
            for part, lo, hi in zip(Splits._fields, bounds[:-1], bounds[1:], strict=True)
        ]
        return Splits(*parts)

    def batches(
        self, batch_size: int, *, shuffle: bool = True, seed: int = 0, drop_last: bool = False
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(x_batch, y_batch)`` numpy minibatches (the streaming fallback).

        With ``drop_last`` the final partial batch is skipped, so every batch has exactly
        ``batch_size`` examples (one compiled shape).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size}")
        n = len(self)
        order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            yield self.x[idx], self.y[idx]

    def as_jax(self, dtype: jnp.dtype | None = None) -> tuple[jax.Array, jax.Array]:
        """``(x, y)`` as device arrays; ``dtype`` casts ``x`` only (labels keep their dtype)."""
        return jnp.asarray(self.x, dtype=dtype), jnp.asarray(self.y)


class Splits(NamedTuple):
    """The three parts of a split data set."""

    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset


def split_sizes(fractions: Sequence[float] | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    """Three split sizes (train, val, test) of ``n`` items.

    Args:
      fractions: three non-negative fractions summing to 1 (rounded by largest remainder, so
        the sizes sum to ``n``), or three integer sizes summing to at most ``n``.
      n: the number of items to split.
      name: what is split, for the error messages.

    Returns:
      three sizes, each at least 1; a ``ValueError`` otherwise.
    """
    values = tuple(fractions)
    if len(values) != 3 or any(v < 0 for v in values):
        raise ValueError(
            f"split of {name!r}: give three non-negative fractions or sizes (train, val, test); "
            f"got {values}"
        )
    if all(isinstance(v, (int, np.integer)) for v in values):
        sizes = tuple(int(v) for v in values)
        if sum(sizes) > n:
            raise ValueError(f"split of {name!r}: sizes {sizes} sum to {sum(sizes)} > {n} examples")
    else:
        if not np.isclose(sum(values), 1.0):
            raise ValueError(f"split of {name!r}: fractions {values} must sum to 1")
        exact = np.asarray(values, dtype=np.float64) * n
        sizes_arr = np.floor(exact).astype(int)
        # Hand the leftover examples to the largest remainders so the sizes sum to n.
        leftover = n - int(sizes_arr.sum())
        sizes_arr[np.argsort(-(exact - sizes_arr), kind="stable")[:leftover]] += 1
        sizes = tuple(int(s) for s in sizes_arr)
    if min(sizes) == 0:
        raise ValueError(
            f"split of {name!r}: {values} of {n} examples gives sizes {sizes}; every part needs "
            "at least one example (use larger fractions or more data)"
        )
    return sizes


def _stratified_order(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of the examples in which every prefix holds each class in proportion.

    Each example's key is the centre of its quantile within its shuffled class,
    ``(rank + 1/2) / n_class``; sorting by the key (ties between classes broken at random)
    interleaves the classes evenly, so any contiguous block of the order holds each class
    within about one example of its proportional share.
    """
    keys = np.empty(len(y), dtype=np.float64)
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        keys[members] = (rng.permutation(len(members)) + 0.5) / len(members)
    return np.lexsort((rng.permutation(len(y)), keys))


@dataclasses.dataclass(frozen=True, eq=False)
class Standardizer:
    """Per-feature affine map ``(x - mean) / std`` fitted on training inputs only.

    Attributes:
      mean: ``(*input_shape)`` per-feature mean of the training inputs.
      std: ``(*input_shape)`` per-feature standard deviation; features whose training std
        is below ``min_std`` (e.g. digit pixels that are blank in every training image) get
        scale 1, so they are only centred: dividing by a tiny std would blow up the rare test
        image that does ink that pixel.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, min_std: float = 1e-6) -> Standardizer:
        """Statistics of ``x`` (n, ...), computed in float64 and stored in ``x``'s dtype."""
        x = np.asarray(x)
        x64 = x.astype(np.float64)
        mean, std = x64.mean(axis=0), x64.std(axis=0)
        std = np.where(std < min_std, 1.0, std)
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
        return cls(mean=mean.astype(dtype), std=std.astype(dtype))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / std`` for ``x`` (n, ...) with the fitted statistics."""
        return ((np.asarray(x) - self.mean) / self.std).astype(self.mean.dtype)

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        """Undo :meth:`transform`: ``z * std + mean``."""
        return (np.asarray(z) * self.std + self.mean).astype(self.mean.dtype)


def standardize(splits: Splits, min_std: float = 1e-6) -> tuple[Splits, Standardizer]:
    """Standardise all three splits with statistics fitted on ``splits.train`` only.

    Fitting on the validation or test inputs would leak information about them into
    training; the returned :class:`Standardizer` is what to apply to any new input.
    """
    stats = Standardizer.fit(splits.train.x, min_std=min_std)
    return (
        Splits(*(dataclasses.replace(part, x=stats.transform(part.x)) for part in splits)),
        stats,
    )

"""In-memory data sets, splits, batching, embedded/synthetic tasks and augmentations."""

from jaxnets.data.augment import random_shift, shift_images
from jaxnets.data.dataset import ArrayDataset, Splits, Standardizer, standardize
from jaxnets.data.embedded import (
    load_digits,
    make_circles,
    make_linearly_separable,
    make_polynomial_regression,
    make_two_moons,
    make_xor,
    xor_truth_table,
)

__all__ = [
    "ArrayDataset",
    "Splits",
    "Standardizer",
    "standardize",
    "load_digits",
    "xor_truth_table",
    "make_xor",
    "make_polynomial_regression",
    "make_two_moons",
    "make_circles",
    "make_linearly_separable",
    "random_shift",
    "shift_images",
]

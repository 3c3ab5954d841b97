"""In-memory data sets, splits, batching, embedded/synthetic tasks, image files (MNIST,
Fashion-MNIST, CIFAR-10) and augmentations."""

from jaxnets.data.augment import (
    compose,
    random_flip,
    random_rotation,
    random_shift,
    rotate_images,
    shift_images,
)
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
from jaxnets.data.files import CorruptFileError, data_folder, load_cifar10, load_mnist, read_idx
from jaxnets.data.images import digits_to_32x32, load_digits_32

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
    "CorruptFileError",
    "data_folder",
    "digits_to_32x32",
    "load_digits_32",
    "read_idx",
    "load_mnist",
    "load_cifar10",
    "random_shift",
    "shift_images",
    "rotate_images",
    "random_rotation",
    "random_flip",
    "compose",
]

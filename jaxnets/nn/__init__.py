"""Building blocks flax.linen lacks: the activation zoo (with maxout and RBF units), convolution
and pooling helpers with the lecture-definition references they are tested against."""

from jaxnets.nn.activations import (
    ACTIVATIONS,
    RBF,
    ActivationSpec,
    Maxout,
    PReLU,
    RReLU,
    UnknownActivationError,
    get_activation,
    make_activation,
    make_layer,
)
from jaxnets.nn.conv import Pool, convolve, filtering, output_size, pool

__all__ = [
    "ACTIVATIONS",
    "RBF",
    "ActivationSpec",
    "Maxout",
    "PReLU",
    "RReLU",
    "UnknownActivationError",
    "get_activation",
    "make_activation",
    "make_layer",
    "Pool",
    "convolve",
    "filtering",
    "output_size",
    "pool",
]

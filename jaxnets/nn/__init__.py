"""Building blocks flax.linen lacks: the activation zoo (with maxout and RBF units)."""

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
]

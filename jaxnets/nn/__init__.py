"""Building blocks flax.linen lacks: the activation zoo (with maxout and RBF units), convolution
and pooling helpers with the lecture-definition references they are tested against, the conv,
batch-norm and output-layer helpers the image classifiers share, and the
layers of Lecture 15's autoregressive and reversible models (masked and causal convolutions,
reversible and coupling blocks)."""

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
from jaxnets.nn.blocks import (
    RELU_INIT,
    batch_norm_layer,
    check_image,
    conv_bn_relu,
    output_layer,
    square_conv,
)
from jaxnets.nn.causal import CausalConv1D, causal_conv_reference, receptive_field
from jaxnets.nn.conv import Pool, convolve, filtering, output_size, pool
from jaxnets.nn.coupling import (
    AdditiveCoupling,
    DiagonalScaling,
    check_coupling_function,
    coupling_partition,
)
from jaxnets.nn.masked import MaskedConv2D, causal_mask
from jaxnets.nn.reversible import (
    ReversibleStack,
    reversible_forward,
    reversible_inverse,
    reversible_stack,
    reversible_stack_inverse,
)

__all__ = [
    "ACTIVATIONS",
    "RBF",
    "RELU_INIT",
    "ActivationSpec",
    "AdditiveCoupling",
    "CausalConv1D",
    "DiagonalScaling",
    "MaskedConv2D",
    "Maxout",
    "PReLU",
    "Pool",
    "RReLU",
    "ReversibleStack",
    "UnknownActivationError",
    "batch_norm_layer",
    "causal_conv_reference",
    "causal_mask",
    "check_coupling_function",
    "check_image",
    "conv_bn_relu",
    "convolve",
    "coupling_partition",
    "filtering",
    "get_activation",
    "make_activation",
    "make_layer",
    "output_layer",
    "output_size",
    "pool",
    "receptive_field",
    "reversible_forward",
    "reversible_inverse",
    "reversible_stack",
    "reversible_stack_inverse",
    "square_conv",
]

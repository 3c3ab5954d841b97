"""Model families, one module per lecture family; importing a module registers its builders."""

from jaxnets.models import (  # noqa: F401  (imported for registration)
    cnn,
    googlenet,
    linear,
    mlp,
    nice,
    nplm,
    pixelcnn,
    resnet,
    revnet,
    rnn,
    wavenet,
)

"""Model families, one module per lecture family; importing a module registers its builders."""

from jaxnets.models import cnn, googlenet, linear, mlp, nplm, resnet, rnn  # noqa: F401  (imported for registration)

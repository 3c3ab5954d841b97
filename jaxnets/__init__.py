"""jaxnets: a JAX/Flax model zoo of the neural-network curriculum.

Every model is a pure ``flax.linen`` builder registered with a model card; training is one
jit-compiled step driven by Optax; every gradient is checked against finite differences.

Importing the package imports :mod:`jaxnets.models`, whose family modules register their
models, so ``create_model``, ``list_models`` and ``model_card`` know every model.
"""

from jaxnets import models  # noqa: F401  (each family registers its models on import)
from jaxnets.pretrained import load_pretrained  # noqa: F401  (jaxnets.load_pretrained(name))
from jaxnets.registry import (
    InputSpecError,
    ModelCard,
    UnknownModelError,
    create_model,
    list_models,
    model_card,
    register_model,
)

__all__ = [
    "InputSpecError",
    "ModelCard",
    "UnknownModelError",
    "create_model",
    "list_models",
    "model_card",
    "register_model",
]
__version__ = "0.1.0"

"""Shared pieces of the training-engine tests (test_train_step.py, test_train_fit.py,
test_train_closed_form.py): a small dropout MLP, its toy 3-class data, and a fresh state."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.optim import make_optimizer
from jaxnets.train import Trainer, TrainState


class Net(nn.Module):
    """A small MLP with dropout, so the rng path is exercised: (batch, 5) -> logits (batch, 3)."""

    dropout: float = 0.1

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.tanh(nn.Dense(16)(x))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.Dense(3)(h)


def toy_data(n: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs x (n, 5) float32, standard normal, and labels y (n,) int32 in {0, 1, 2}:
    [x0 + x1 > 0] + [x2 > 1]."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 1).astype(np.int32)
    return x, y


def momentum_trainer() -> Trainer:
    """The tests' shared trainer: Net with dropout 0.1, cross-entropy, momentum at lr 0.1."""
    return Trainer(Net(), "softmax_cross_entropy", make_optimizer("momentum", 0.1))


def init_state(trainer: Trainer, seed: int = 0) -> TrainState:
    """A fresh state of ``trainer`` for inputs of 5 features, from PRNGKey(seed)."""
    return trainer.init(jax.random.PRNGKey(seed), jnp.zeros((1, 5)))

"""Per-example gradients of a Trainer's model (seed 004 §12: which examples the model fits
badly): ``vmap(grad)`` over single examples."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxnets.train.objective import model_outputs
from jaxnets.train.state import TrainState

__all__ = ["PerExampleGrads"]

Batch = tuple[jax.Array, jax.Array]


class PerExampleGrads:
    """Mixin of :class:`~jaxnets.train.Trainer`: per-example gradients and their norms."""

    @functools.cached_property
    def per_example_grads(self):
        """``(state, (x, y)) -> grads`` with a leading batch axis on every leaf: (batch, *leaf).

        Each example's gradient of its own loss (no regularizer), from ``vmap(grad)`` over
        single examples, each with its own dropout key (so with dropout their mean is not the
        batch step's gradient, whose mask is drawn for the whole batch). Not defined for models
        that couple examples (batch norm): raises ``ValueError``.
        """
        if not self.per_example:
            raise ValueError(
                "per-example gradients are not defined for this model: it couples the examples "
                "of a batch (batch norm); see its model card (per_example_grads=False)"
            )

        def one(params, model_state, x_i, y_i, key):
            outputs, _ = model_outputs(self.model, params, model_state, x_i[None], key, train=True)
            return self.loss.fn(outputs[0], y_i)

        def grads(state: TrainState, batch: Batch):
            x, y = batch
            keys = jax.random.split(jax.random.fold_in(state.rng, state.step), x.shape[0])
            return jax.vmap(jax.grad(one), in_axes=(None, None, 0, 0, 0))(
                state.params, state.model_state, x, y, keys
            )

        return jax.jit(grads)

    def per_example_grad_norms(
        self, state: TrainState, x: jax.Array, y: jax.Array, *, batch_size: int = 256
    ) -> jax.Array:
        """Global L2 norm of each example's own loss gradient (all parameters together).

        x (n, *input_shape), y (n, ...) -> (n,) norms, computed in chunks of ``batch_size``
        with :attr:`per_example_grads`. A large norm marks an example the model fits badly:
        a hard example or a wrong label.
        """
        norms = []
        for start in range(0, x.shape[0], batch_size):
            chunk = (x[start : start + batch_size], y[start : start + batch_size])
            leaves = jax.tree.leaves(self.per_example_grads(state, chunk))
            squares = sum(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1) for g in leaves)
            norms.append(jnp.sqrt(squares))
        return jnp.concatenate(norms)

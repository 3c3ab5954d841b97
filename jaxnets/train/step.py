"""Pure, jit-compiled training and evaluation steps.

Lectures: seed 004 §2.3 (line 668, average loss over the training set), §7 "Optimization"
(line 1841: minibatch SGD, one step = gradient of the minibatch loss), seed 001 (minibatch
SGD). The per-example loss is written for ONE example and ``jax.vmap``-ped over the
minibatch's outputs; the same loss under ``vmap(grad)`` over single examples gives
per-example gradients. Models whose examples interact (batch norm) have no per-example
gradient; their cards say ``per_example_grads=False``.

When the training data fits on the device an epoch is one compiled ``lax.scan`` over
minibatches (:meth:`Trainer.train_epoch`): no Python, no host round-trip per step.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxnets import losses as _losses
from jaxnets import registry
from jaxnets.train.state import TrainState

__all__ = ["Trainer", "batch_loss"]

PyTree = Any
Batch = tuple[jax.Array, jax.Array]

# Distinct fold-in tags so the shuffle of epoch k and the dropout of step k never share a key.
_SHUFFLE_TAG = 0x5EED
_AUGMENT_TAG = 0xA06


def _model_outputs(
    model: nn.Module,
    params: PyTree,
    model_state: PyTree,
    x: jax.Array,
    rng: jax.Array,
    *,
    train: bool,
) -> tuple[jax.Array, PyTree]:
    """Outputs (batch, ...) and the updated model state for inputs x (batch, ...).

    The model is applied to the whole batch: vmapping it over single examples gives the
    same numbers but adds a transpose before every weight-gradient matmul (measured 4-7%
    slower at batch 128); only the loss is vmapped.
    """
    variables = {"params": params, **model_state}
    if train and model_state:
        outputs, new_state = model.apply(
            variables, x, train=True, rngs={"dropout": rng}, mutable=list(model_state)
        )
        return outputs, new_state
    return model.apply(variables, x, train=train, rngs={"dropout": rng}), model_state


def batch_loss(
    model: nn.Module,
    loss: _losses.LossSpec,
    params: PyTree,
    model_state: PyTree,
    batch: Batch,
    rng: jax.Array,
    *,
    train: bool,
    regularizer: Callable[[PyTree], jax.Array] | None = None,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], PyTree]]:
    """Mean per-example loss (+ regularizer) of a minibatch.

    Args:
      batch: ``(x, y)`` with x (batch, *input_shape) and y (batch, ...) targets.
      rng: key for the model's ``dropout`` stream.
    Returns:
      ``(objective, (metrics, new_model_state))``: ``metrics`` holds the mean data ``loss``
      and, for classifiers, ``accuracy``.
    """
    x, y = batch
    outputs, new_state = _model_outputs(model, params, model_state, x, rng, train=train)
    per_example_loss = jax.vmap(loss.fn)(outputs, y)
    metrics = {"loss": jnp.mean(per_example_loss)}
    if loss.is_classification:
        metrics["accuracy"] = jnp.mean(jax.vmap(_losses.accuracy)(outputs, y))
    objective = metrics["loss"]
    if regularizer is not None:
        objective = objective + regularizer(params)
    return objective, (metrics, new_state)


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer:
    """A model, a loss and an optimizer, with their compiled steps.

    The compiled functions are built once per Trainer (``functools.cached_property``) and
    reused for every step and epoch; a new input shape is the only thing that recompiles.

    Attributes:
      model: a linen Module called as ``model.apply(variables, x, train=...)``.
      loss: a :class:`jaxnets.losses.LossSpec` or its name.
      optimizer: an Optax ``GradientTransformation`` (see :func:`jaxnets.optim.make_optimizer`).
      regularizer: optional ``params -> ()`` penalty added to the objective.
      augment: optional pure ``(rng, x_batch) -> x_batch`` applied to training batches.
      per_example: whether per-example gradients exist (False for batch-norm models).
      card: the model's :class:`~jaxnets.registry.ModelCard`; when given, inputs to ``init``
        and ``fit`` are checked against its input shape and dtype (see :meth:`for_model`).
    """

    model: nn.Module
    loss: _losses.LossSpec | str
    optimizer: optax.GradientTransformation
    regularizer: Callable[[PyTree], jax.Array] | None = None
    augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None
    per_example: bool = True
    card: registry.ModelCard | None = None

    def __post_init__(self):
        if isinstance(self.loss, str):
            object.__setattr__(self, "loss", _losses.get_loss(self.loss))

    @classmethod
    def for_model(
        cls, name: str, optimizer: optax.GradientTransformation, **overrides: Any
    ) -> Trainer:
        """A Trainer for the registered model ``name`` with its card's default loss and
        per-example setting; inputs are checked against the card. ``overrides`` are the
        model's hyperparameters, except ``regularizer``/``augment`` which go to the Trainer."""
        options = {k: overrides.pop(k) for k in ("regularizer", "augment") if k in overrides}
        card = registry.model_card(name)
        return cls(
            registry.create_model(name, **overrides),
            card.loss,
            optimizer,
            per_example=card.per_example_grads,
            card=card,
            **options,
        )

    def check_input(self, x: Any) -> None:
        """Raise :class:`~jaxnets.registry.InputSpecError` if x does not fit the card."""
        if self.card is not None:
            registry.check_input(self.card, x)

    # -- construction -------------------------------------------------------------------
    def init(self, rng: jax.Array, sample_x: jax.Array) -> TrainState:
        """A fresh TrainState; ``sample_x`` (batch, *input_shape) fixes the parameter shapes."""
        self.check_input(sample_x)
        init_rng, params_rng, dropout_rng = jax.random.split(rng, 3)
        variables = self.model.init(
            {"params": params_rng, "dropout": dropout_rng}, jnp.asarray(sample_x), train=False
        )
        variables = dict(variables)
        params = variables.pop("params")
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=self.optimizer.init(params),
            model_state=variables,
            rng=init_rng,
        )

    # -- the pure step -------------------------------------------------------------------
    def _objective(self, params, model_state, batch, rng, train):
        return batch_loss(
            self.model,
            self.loss,
            params,
            model_state,
            batch,
            rng,
            train=train,
            regularizer=self.regularizer,
        )

    def step(self, state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        """The pure, unjitted step ``(state, (x, y)) -> (state, metrics)``: compose it under
        ``jit``/``vmap``/``scan`` (see :attr:`train_step` and :mod:`jaxnets.train.ensemble`)."""
        rng = jax.random.fold_in(state.rng, state.step)
        x, y = batch
        if self.augment is not None:
            x = self.augment(jax.random.fold_in(rng, _AUGMENT_TAG), x)
        grad_fn = jax.value_and_grad(self._objective, has_aux=True)
        (_, (metrics, model_state)), grads = grad_fn(
            state.params, state.model_state, (x, y), rng, True
        )
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(
            step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state
        )
        return new_state, metrics

    @functools.cached_property
    def train_step(self) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
        """``(state, (x, y)) -> (state, metrics)``, jitted; the input state is donated."""
        return jax.jit(self.step, donate_argnums=0)

    def _epoch(self, state: TrainState, x: jax.Array, y: jax.Array, batch_size: int):
        n = x.shape[0]
        num_batches = n // batch_size
        shuffle_rng = jax.random.fold_in(jax.random.fold_in(state.rng, _SHUFFLE_TAG), state.step)
        order = jax.random.permutation(shuffle_rng, n)[: num_batches * batch_size]
        order = order.reshape(num_batches, batch_size)

        def body(carry, idx):
            return self.step(carry, (x[idx], y[idx]))

        return jax.lax.scan(body, state, order)

    @functools.cached_property
    def train_epoch(self):
        """``(state, x, y, batch_size) -> (state, metrics)``: one shuffled pass as a ``lax.scan``.

        x: (n, *input_shape), y: (n, ...); ``n // batch_size`` steps (the remainder of the
        shuffled order is left out this epoch); metrics are stacked per step: (steps,).
        """
        return jax.jit(self._epoch, static_argnames="batch_size", donate_argnums=0)

    # -- evaluation ----------------------------------------------------------------------
    def _evaluate(self, state: TrainState, x: jax.Array, y: jax.Array, batch_size: int):
        n = x.shape[0]
        num_chunks = -(-n // batch_size)
        pad = num_chunks * batch_size - n
        x_pad = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
        y_pad = jnp.concatenate([y, jnp.zeros((pad, *y.shape[1:]), y.dtype)])
        weight = (jnp.arange(num_chunks * batch_size) < n).astype(jnp.float32)

        def chunk(i):
            sl = lambda a: jax.lax.dynamic_slice_in_dim(a, i * batch_size, batch_size)  # noqa: E731
            xb, yb, wb = sl(x_pad), sl(y_pad), sl(weight)
            outputs, _ = _model_outputs(
                self.model, state.params, state.model_state, xb, state.rng, train=False
            )
            sums = {"loss": jnp.sum(wb * jax.vmap(self.loss.fn)(outputs, yb))}
            if self.loss.is_classification:
                sums["accuracy"] = jnp.sum(wb * jax.vmap(_losses.accuracy)(outputs, yb))
            return sums

        sums = jax.lax.map(chunk, jnp.arange(num_chunks))
        return {k: jnp.sum(v) / n for k, v in sums.items()}

    @functools.cached_property
    def evaluate(self):
        """``(state, x, y, batch_size) -> metrics``: mean loss (and accuracy) over all n examples,
        computed in chunks of ``batch_size`` in evaluation mode (``train=False``)."""
        return jax.jit(self._evaluate, static_argnames="batch_size")

    @functools.cached_property
    def predict(self):
        """``(state, x) -> outputs`` (batch, ...) in evaluation mode."""

        def _predict(state, x):
            return _model_outputs(
                self.model, state.params, state.model_state, x, state.rng, train=False
            )[0]

        return jax.jit(_predict)

    # -- per-example gradients -------------------------------------------------------------
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
            outputs, _ = _model_outputs(self.model, params, model_state, x_i[None], key, train=True)
            return self.loss.fn(outputs[0], y_i)

        def grads(state: TrainState, batch: Batch):
            x, y = batch
            keys = jax.random.split(jax.random.fold_in(state.rng, state.step), x.shape[0])
            return jax.vmap(jax.grad(one), in_axes=(None, None, 0, 0, 0))(
                state.params, state.model_state, x, y, keys
            )

        return jax.jit(grads)

"""The objective of one training step: a model's outputs, per-example losses summed or
averaged over a batch, and the helpers the engine's steps share.

Lectures: seed 004 §2.3 (line 668, average loss over the training set), §7 "Optimization"
(line 1841: one step = gradient of the minibatch loss). The per-example loss is written for
ONE example and ``jax.vmap``-ped over the minibatch's outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnets import losses as _losses

__all__ = [
    "batch_loss",
    "lowers_to_xla_convolution",
    "metric_sums",
    "model_outputs",
    "sum_in_order",
]

PyTree = Any
Batch = tuple[jax.Array, jax.Array]


def lowers_to_xla_convolution(fn: Callable, *args) -> bool:
    """Whether ``jax.jit(fn)`` lowered for the default backend with ``args`` (arrays or
    ``jax.ShapeDtypeStruct``) contains a convolution that XLA computes itself: one that does
    not run as a :mod:`jaxnets.native` kernel (lowering keeps only the branch of
    ``lax.platform_dependent`` for the backend), wherever it is nested."""
    return "stablehlo.convolution" in jax.jit(fn).lower(*args).as_text()


def model_outputs(
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


def metric_sums(
    loss: _losses.LossSpec, outputs: jax.Array, y: jax.Array, weight: jax.Array | None = None
) -> dict[str, jax.Array]:
    """Per-example losses (and, for classifiers, accuracies) summed over a batch:
    outputs (batch, ...), y (batch, ...), optional weight (batch,) -> {"loss": (), ...}."""
    per_example = {"loss": jax.vmap(loss.fn)(outputs, y)}
    if loss.is_classification:
        per_example["accuracy"] = jax.vmap(loss.accuracy)(outputs, y)
    if weight is not None:
        per_example = {k: weight * v for k, v in per_example.items()}
    return {k: jnp.sum(v) for k, v in per_example.items()}


def sum_in_order(stacked: jax.Array) -> jax.Array:
    """stacked (groups, ...) summed group after group: ((g0 + g1) + g2) + ..., an order that
    does not depend on where the groups were computed."""
    total = stacked[0]
    for i in range(1, stacked.shape[0]):
        total = total + stacked[i]
    return total


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
    outputs, new_state = model_outputs(model, params, model_state, x, rng, train=train)
    metrics = {k: v / x.shape[0] for k, v in metric_sums(loss, outputs, y).items()}
    objective = metrics["loss"]
    if regularizer is not None:
        objective = objective + regularizer(params)
    return objective, (metrics, new_state)

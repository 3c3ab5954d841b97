"""Ensembles and seed sweeps: N models as one stacked TrainState, trained by one compile.

Lectures: seed 004 Lecture 12 "Generalization" (line 2500), §4.4 "Ensembles" (line 2677):
average the predictions of several independently trained models; §4.2 early stopping (line
2621) chooses, for each model, the epoch with the lowest validation loss. Seed 002/004 §3
(XOR: whether a small net escapes its local minima depends on the initialisation, so one
trains many seeds). ``jax.vmap`` over the leading "member" axis of every state leaf turns the
single-model step into an N-model step: N models, one compile, one dispatch per step.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.train.state import TrainState
from jaxnets.train.step import Batch, Trainer, model_outputs

__all__ = [
    "EnsembleHistory",
    "init_ensemble",
    "train_ensemble",
    "train_ensemble_full_batch",
    "ensemble_probabilities",
    "ensemble_accuracy",
]


def init_ensemble(trainer: Trainer, keys: jax.Array, sample_x: jax.Array) -> TrainState:
    """A stacked TrainState: every leaf gets a leading axis (members,), one per key in keys."""
    return jax.vmap(trainer.init, in_axes=(0, None))(keys, sample_x)


@functools.partial(jax.jit, static_argnames=("trainer", "steps"))
def _train_full_batch(trainer: Trainer, states: TrainState, batch: Batch, steps: int):
    def one_member(state):
        return jax.lax.scan(lambda s, _: trainer.step(s, batch), state, None, length=steps)

    return jax.vmap(one_member)(states)


def train_ensemble_full_batch(
    trainer: Trainer, states: TrainState, batch: Batch, steps: int
) -> tuple[TrainState, dict[str, jax.Array]]:
    """``steps`` full-batch steps of every member at once: one jit of vmap over members of a
    ``lax.scan`` over steps.

    Args:
      states: stacked states from :func:`init_ensemble` (leading axis: members).
      batch: ``(x, y)`` shared by all members, x (n, *input_shape).
    Returns:
      ``(states, metrics)`` with metrics of shape (members, steps), each before its update.
    """
    return _train_full_batch(trainer, states, batch, steps)


@dataclasses.dataclass
class EnsembleHistory:
    """Per-epoch, per-member numbers of :func:`train_ensemble`.

    Attributes:
      train_loss: (epochs, members) mean training loss of each epoch's steps.
      val_loss, val_accuracy: (epochs, members) after each epoch (empty without ``val``).
      best_epoch: (members,) 1-based epoch of each member's lowest validation loss (the state
        returned when ``restore_best``); the last epoch without ``val``.
    """

    train_loss: np.ndarray
    val_loss: np.ndarray
    val_accuracy: np.ndarray
    best_epoch: np.ndarray


def _where_members(mask: jax.Array, new: Any, old: Any) -> Any:
    """Per member (leading axis), ``new`` where ``mask`` (members,) else ``old``."""
    return jax.tree.map(
        lambda n, o: jnp.where(mask.reshape(-1, *(1,) * (n.ndim - 1)), n, o), new, old
    )


@functools.partial(
    jax.jit, static_argnames=("trainer", "epochs", "batch_size", "val_batch_size", "restore_best")
)
def _train_epochs(trainer, states, x, y, val, epochs, batch_size, val_batch_size, restore_best):
    """All epochs of all members in one program: a scan over epochs of the vmapped epoch, with
    the validation loss after each and, per member, the best state so far."""
    members = jax.tree.leaves(states)[0].shape[0]
    epoch_fn = jax.vmap(trainer.epoch, in_axes=(0, None, None, None))
    evaluate = jax.vmap(trainer.pure_evaluate, in_axes=(0, None, None, None))

    def one_epoch(carry, epoch):
        states, best, best_loss, best_epoch = carry
        states, metrics = epoch_fn(states, x, y, batch_size)
        row = {"train_loss": jnp.mean(metrics["loss"], axis=1)}
        if val is not None:
            scores = evaluate(states, *val, val_batch_size)
            row["val_loss"] = scores["loss"]
            row["val_accuracy"] = scores.get("accuracy", jnp.full(members, jnp.nan))
            improved = scores["loss"] < best_loss
            best_loss = jnp.where(improved, scores["loss"], best_loss)
            best_epoch = jnp.where(improved, epoch + 1, best_epoch)
            if restore_best:
                best = _where_members(improved, states, best)
        return (states, best, best_loss, best_epoch), row

    start = (states, states, jnp.full(members, jnp.inf), jnp.full(members, epochs))
    (states, best, _, best_epoch), rows = jax.lax.scan(one_epoch, start, jnp.arange(epochs))
    return (best if restore_best else states), rows, best_epoch


def train_ensemble(
    trainer: Trainer,
    states: TrainState,
    train: Batch,
    *,
    epochs: int,
    batch_size: int,
    val: Batch | None = None,
    restore_best: bool = False,
) -> tuple[TrainState, EnsembleHistory]:
    """Train every member for ``epochs`` shuffled minibatch epochs (each member shuffles and
    drops out with its own rng), as ONE compiled program: a ``lax.scan`` over epochs of
    ``vmap`` over members of the single-model epoch, with the validation loss after every
    epoch.

    Args:
      trainer: the single-model Trainer (no convolutions on the CPU, where a scanned epoch is
        slow; see :mod:`jaxnets.train.step`).
      states: stacked states from :func:`init_ensemble` (leading axis: members).
      train: ``(x, y)``, x (n, *input_shape), shared by all members.
      epochs, batch_size: as in :func:`jaxnets.train.fit`.
      val: ``(x, y)`` evaluated after every epoch.
      restore_best: return, for each member, its state at its lowest validation loss (early
        stopping per member, Lecture 12 §4.2); needs ``val``.

    Returns:
      ``(states, history)``.
    """
    if restore_best and val is None:
        raise ValueError("train_ensemble: restore_best needs validation data (val=(x, y))")
    if epochs < 1:
        raise ValueError(f"train_ensemble: epochs must be >= 1; got {epochs}")
    x, y = (jnp.asarray(a) for a in train)
    if not 1 <= batch_size <= len(x):
        raise ValueError(
            f"batch_size must be in [1, {len(x)}] (the training set size); got {batch_size}"
        )
    val = None if val is None else tuple(jnp.asarray(a) for a in val)
    val_batch_size = 1 if val is None else min(len(val[0]), 1024)
    states, rows, best_epoch = _train_epochs(
        trainer, states, x, y, val, epochs, batch_size, val_batch_size, restore_best
    )
    rows = jax.device_get(rows)
    members = len(best_epoch)
    empty = np.zeros((0, members))
    history = EnsembleHistory(
        np.asarray(rows["train_loss"]),
        np.asarray(rows.get("val_loss", empty)),
        np.asarray(rows.get("val_accuracy", empty)),
        np.asarray(best_epoch),
    )
    return states, history


@functools.partial(jax.jit, static_argnames="trainer")
def ensemble_probabilities(trainer: Trainer, states: TrainState, x: jax.Array) -> jax.Array:
    """Each member's class probabilities: x (n, *input_shape) -> (members, n, classes)
    (softmax of a classifier's logits, in evaluation mode)."""

    def member(state):
        logits, _ = model_outputs(
            trainer.model, state.params, state.model_state, x, state.rng, train=False
        )
        return jax.nn.softmax(logits)

    return jax.vmap(member)(states)


def ensemble_accuracy(probabilities: jax.Array, y: jax.Array) -> tuple[float, np.ndarray]:
    """Accuracy of the ensemble (the argmax of the members' mean probabilities) and of each
    member: probabilities (members, n, classes), y (n,) labels -> (float, (members,))."""
    probabilities, y = np.asarray(probabilities), np.asarray(y)
    ensemble = float(np.mean(probabilities.mean(axis=0).argmax(-1) == y))
    return ensemble, np.mean(probabilities.argmax(-1) == y, axis=1)

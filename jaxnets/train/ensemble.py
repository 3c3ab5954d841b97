"""Ensembles and seed sweeps: N models as one stacked TrainState, trained by one compile.

Lectures: seed 004 Lecture 12 "Generalization" (line 2500), §4.4 "Ensembles" (line 2677):
average the predictions of several independently trained models; §4.2 early stopping (line
2621) chooses, for each model, the epoch with the lowest validation loss. Seed 002/004 §3
(XOR: whether a small net escapes its local minima depends on the initialisation, so one
trains many seeds). ``jax.vmap`` over the leading "member" axis of every state leaf turns the
single-model step into an N-model step: N models, one compile, one dispatch per step.

Every loop that trains many seeds or members at once goes through one function,
:func:`train_ensemble`: by epochs with validation and early stopping (``epochs=``), by a fixed
number of minibatch steps (``steps=``, e.g. to compare optimizers or batch sizes after equal
numbers of updates), or full-batch (``steps=`` without ``batch_size``);
:func:`evaluate_ensemble` scores every member on one data set. Members share one data set, or
each trains on its own (``member_data=True``: a fresh stream of examples per seed).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.train.objective import Batch, model_outputs
from jaxnets.train.state import TrainState
from jaxnets.train.step import Trainer

__all__ = [
    "EnsembleHistory",
    "ensemble_accuracy",
    "ensemble_probabilities",
    "evaluate_ensemble",
    "init_ensemble",
    "train_ensemble",
]


# keeps the step stream's shuffling keys apart from the step's own (dropout) keys
_STREAM_TAG = 0x53545245


def _training_data(
    name: str, states: TrainState, train: Batch, batch_size: int, member_data: bool
) -> tuple[jax.Array, jax.Array]:
    """``train`` on the device, checked: x (n, ...), or (members, n, ...) with member_data."""
    x, y = (jnp.asarray(a) for a in train)
    members = jax.tree.leaves(states)[0].shape[0]
    if member_data and not (x.ndim >= 2 and x.shape[0] == y.shape[0] == members):
        raise ValueError(
            f"{name}: with member_data, x and y need a leading axis of the {members} members "
            f"(x (members, n, ...)); got x {x.shape}, y {y.shape}"
        )
    n = x.shape[1] if member_data else x.shape[0]
    if not 1 <= batch_size <= n:
        raise ValueError(
            f"{name}: batch_size must be in [1, {n}] (the training set size); got {batch_size}"
        )
    return x, y


def _data_axis(member_data: bool) -> int | None:
    return 0 if member_data else None


def _member_scores(trainer: Trainer, states: TrainState, x, y, batch_size: int):
    """Every member's :meth:`Trainer.pure_evaluate` on the shared (x, y): values (members,)."""
    return jax.vmap(trainer.pure_evaluate, in_axes=(0, None, None, None))(states, x, y, batch_size)


def init_ensemble(trainer: Trainer, keys: jax.Array, sample_x: jax.Array) -> TrainState:
    """A stacked TrainState: every leaf gets a leading axis (members,), one per key in keys."""
    return jax.vmap(trainer.init, in_axes=(0, None))(keys, sample_x)


@functools.partial(jax.jit, static_argnames=("trainer", "steps", "member_data"))
def _train_full_batch(trainer: Trainer, states: TrainState, x, y, steps: int, member_data: bool):
    """``steps`` steps of every member on the whole of its (x, y): a vmap over members of a
    ``lax.scan`` over steps; metrics (members, steps)."""

    def one_member(state, x, y):
        return jax.lax.scan(lambda s, _: trainer.step(s, (x, y)), state, None, length=steps)

    axis = _data_axis(member_data)
    return jax.vmap(one_member, in_axes=(0, axis, axis))(states, x, y)


@dataclasses.dataclass
class EnsembleHistory:
    """Per-member numbers of :func:`train_ensemble`.

    Attributes:
      step_metrics: ``{"loss": (members, steps), ...}``: each step's minibatch metrics (and
        accuracy for classifiers), computed before its update.
      train_loss: (epochs, members) mean training loss of each epoch's steps; (0, members)
        when trained by ``steps``.
      val_loss, val_accuracy: (epochs, members) after each epoch (empty without ``val``).
      best_epoch: (members,) 1-based epoch of each member's lowest validation loss (the state
        returned when ``restore_best``); the last epoch without ``val``, 0 when trained by
        ``steps``.
    """

    step_metrics: dict[str, np.ndarray]
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
    jax.jit,
    static_argnames=(
        "trainer",
        "epochs",
        "batch_size",
        "val_batch_size",
        "restore_best",
        "member_data",
    ),
)
def _train_epochs(
    trainer, states, x, y, val, epochs, batch_size, val_batch_size, restore_best, member_data
):
    """All epochs of all members in one program: a scan over epochs of the vmapped epoch, with
    the validation loss after each and, per member, the best state so far."""
    members = jax.tree.leaves(states)[0].shape[0]
    axis = _data_axis(member_data)
    epoch_fn = jax.vmap(trainer.epoch, in_axes=(0, axis, axis, None))

    def one_epoch(carry, epoch):
        states, best, best_loss, best_epoch = carry
        states, metrics = epoch_fn(states, x, y, batch_size)
        row = {"train_loss": jnp.mean(metrics["loss"], axis=1), "steps": metrics}
        if val is not None:
            scores = _member_scores(trainer, states, *val, val_batch_size)
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
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    val: Batch | None = None,
    restore_best: bool = False,
    member_data: bool = False,
) -> tuple[TrainState, EnsembleHistory]:
    """Train every member at once, as ONE compiled program (``vmap`` over members of the
    single-model step, inside ``lax.scan``), for either ``epochs`` or ``steps``:

    - ``epochs``: shuffled minibatch epochs of :meth:`Trainer.epoch` (each member shuffles
      and drops out with its own rng; n // batch_size steps an epoch), with the validation
      loss after every epoch and, with ``restore_best``, each member's best state.
    - ``steps``: that many updates. With ``batch_size``, each member draws its minibatches
      from its own stream of shuffled epochs (every example once per epoch, the last
      n mod batch_size of each shuffle left out), keyed by its rng and positioned by its
      step counter: ``a`` steps and then ``b`` steps take the same steps as ``a + b`` at
      once, so a caller can stop every k steps to evaluate or time the run. Without
      ``batch_size``: full-batch gradient descent on all of (x, y), unshuffled.

    Args:
      trainer: the single-model Trainer (no convolutions on the CPU, where a scanned epoch is
        slow; see :mod:`jaxnets.train.step`).
      states: stacked states from :func:`init_ensemble` (leading axis: members).
      train: ``(x, y)``, x (n, *input_shape), shared by all members; with ``member_data``,
        x (members, n, *input_shape) and y (members, n, ...): member m trains on x[m], y[m].
      epochs, steps: how long to train (>= 1); give exactly one.
      batch_size: examples per update, in [1, n] (required with ``epochs``).
      val: ``(x, y)`` evaluated after every epoch, shared by all members (``epochs`` only).
      restore_best: return, for each member, its state at its lowest validation loss (early
        stopping per member, Lecture 12 §4.2); needs ``val``.
      member_data: each member trains on its own data (independent samples per seed).

    Returns:
      ``(states, history)``: see :class:`EnsembleHistory`.
    """
    if (epochs is None) == (steps is None):
        raise ValueError("train_ensemble: give exactly one of epochs= and steps=")
    length = epochs if steps is None else steps
    if length < 1:
        what = "epochs" if steps is None else "steps"
        raise ValueError(f"train_ensemble: {what} must be >= 1; got {length}")
    if steps is not None and (val is not None or restore_best):
        raise ValueError(
            "train_ensemble: val and restore_best evaluate after each epoch; train by epochs="
        )
    if epochs is not None and batch_size is None:
        raise ValueError("train_ensemble: epochs= needs a batch_size (the steps of an epoch)")
    if restore_best and val is None:
        raise ValueError("train_ensemble: restore_best needs validation data (val=(x, y))")
    n = len(train[0][0] if member_data else train[0])
    x, y = _training_data("train_ensemble", states, train, batch_size or n, member_data)
    members = jax.tree.leaves(states)[0].shape[0]
    empty = np.zeros((0, members))
    if steps is not None:
        if batch_size is None:
            states, metrics = _train_full_batch(trainer, states, x, y, steps, member_data)
        else:
            states, metrics = _train_steps(trainer, states, x, y, steps, batch_size, member_data)
        step_metrics = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
        return states, EnsembleHistory(step_metrics, empty, empty, empty, np.zeros(members, int))
    val = None if val is None else tuple(jnp.asarray(a) for a in val)
    val_batch_size = 1 if val is None else min(len(val[0]), 1024)
    states, rows, best_epoch = _train_epochs(
        trainer, states, x, y, val, epochs, batch_size, val_batch_size, restore_best, member_data
    )
    rows = jax.device_get(rows)
    # (epochs, members, steps per epoch) -> (members, steps)
    step_metrics = {
        k: np.moveaxis(np.asarray(v), 1, 0).reshape(members, -1) for k, v in rows["steps"].items()
    }
    history = EnsembleHistory(
        step_metrics,
        np.asarray(rows["train_loss"]),
        np.asarray(rows.get("val_loss", empty)),
        np.asarray(rows.get("val_accuracy", empty)),
        np.asarray(best_epoch),
    )
    return states, history


def _stream_order(rng: jax.Array, start: jax.Array, steps: int, n: int, batch_size: int):
    """(steps, batch_size) example indices of steps start, ..., start + steps - 1 of a member's
    minibatch stream: shuffled epochs of n // batch_size minibatches (each example at most
    once per epoch, the remainder left out), epoch e shuffled by a key from ``rng`` and e, so
    the stream does not depend on how its steps are split between calls."""
    per_epoch = n // batch_size
    first = start // per_epoch
    epochs = -(-steps // per_epoch) + 1  # the most epochs `steps` steps can touch

    def order(epoch):
        key = jax.random.fold_in(jax.random.fold_in(rng, _STREAM_TAG), epoch)
        return jax.random.permutation(key, n)[: per_epoch * batch_size]

    orders = jax.vmap(order)(first + jnp.arange(epochs)).reshape(-1, batch_size)
    return jax.lax.dynamic_slice_in_dim(orders, start - first * per_epoch, steps)


@functools.partial(jax.jit, static_argnames=("trainer", "steps", "batch_size", "member_data"))
def _train_steps(trainer, states, x, y, steps, batch_size, member_data):
    def member(state, x, y):
        order = _stream_order(state.rng, state.step, steps, x.shape[0], batch_size)
        return jax.lax.scan(lambda s, idx: trainer.step(s, (x[idx], y[idx])), state, order)

    axis = _data_axis(member_data)
    return jax.vmap(member, in_axes=(0, axis, axis))(states, x, y)


@functools.partial(jax.jit, static_argnames=("trainer", "batch_size"))
def evaluate_ensemble(
    trainer: Trainer, states: TrainState, x: jax.Array, y: jax.Array, *, batch_size: int
) -> dict[str, jax.Array]:
    """Every member's mean loss (and accuracy, for classifiers) on the shared x (n, ...),
    y (n, ...): :meth:`Trainer.evaluate` of each member, vmapped, in evaluation mode and
    chunks of ``batch_size``. Returns ``{"loss": (members,), ...}``."""
    return _member_scores(trainer, states, x, y, batch_size)


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

"""Ensembles and seed sweeps: N models as one stacked TrainState, trained by one compile.

Lectures: seed 004 §12 "Generalization" (line 2500: ensembles average several independently
trained models), seed 002/004 §3 (XOR: whether a small net escapes its local minima depends
on the initialisation, so one trains many seeds). ``jax.vmap`` over the leading "member" axis
of every state leaf turns the single-model step into an N-model step.
"""

from __future__ import annotations

import functools

import jax

from jaxnets.train.state import TrainState
from jaxnets.train.step import Batch, Trainer

__all__ = ["init_ensemble", "train_ensemble_full_batch"]


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

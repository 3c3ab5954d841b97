"""The training state: everything a training step reads and writes, as one pytree.

Lecture: seed 004 §7 "Optimization" (line 1841): an optimizer's state (momentum, second
moments) is part of what a step updates, alongside the parameters.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import struct

__all__ = ["TrainState"]


class TrainState(struct.PyTreeNode):
    """Parameters, optimizer state, model state, rng and step count, all arrays.

    Attributes:
      step: () int32, number of optimizer updates done so far.
      params: the model's ``params`` collection.
      opt_state: the Optax optimizer state for ``params``.
      model_state: the model's other collections (e.g. ``{"batch_stats": ...}``); ``{}`` if none.
      rng: a PRNG key; the step's key is ``fold_in(rng, step)``, so a run is reproducible
        and a resumed run draws the same randomness as an uninterrupted one.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    model_state: Any
    rng: jax.Array

"""Weight penalties over parameter trees: L1, L2 and elastic net.

Lectures: seed 001 (L1/L2/elastic-net regularization), seed 004 §12 "Generalization"
(line 2500: weight decay), seed 003 (regularization of the softmax classifier).

Each returns a scalar to add to the mean minibatch loss. By default only weights are
penalised, not biases (a bias shifts a unit's threshold and does not add capacity the way
a weight does); pass ``include_biases=True`` to penalise every leaf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["elastic_net", "l1", "l2", "make_regularizer"]

PyTree = Any


def _penalised_leaves(params: PyTree, include_biases: bool) -> list[jax.Array]:
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return [
        leaf for path, leaf in leaves if include_biases or getattr(path[-1], "key", None) != "bias"
    ]


def l1(params: PyTree, *, include_biases: bool = False) -> jax.Array:
    """Σ |w| over the (weight) leaves of ``params`` -> ()."""
    return sum(
        (jnp.sum(jnp.abs(w)) for w in _penalised_leaves(params, include_biases)), jnp.zeros(())
    )


def l2(params: PyTree, *, include_biases: bool = False) -> jax.Array:
    """½ Σ w² over the (weight) leaves of ``params`` -> (); its gradient is w (weight decay)."""
    return sum(
        (0.5 * jnp.sum(jnp.square(w)) for w in _penalised_leaves(params, include_biases)),
        jnp.zeros(()),
    )


def elastic_net(
    params: PyTree, l1_ratio: float = 0.5, *, include_biases: bool = False
) -> jax.Array:
    """Elastic net ``l1_ratio · L1 + (1 − l1_ratio) · L2`` -> (); l1_ratio in [0, 1]."""
    if not 0.0 <= l1_ratio <= 1.0:
        raise ValueError(f"l1_ratio must lie in [0, 1]; got {l1_ratio}")
    return l1_ratio * l1(params, include_biases=include_biases) + (1.0 - l1_ratio) * l2(
        params, include_biases=include_biases
    )


def make_regularizer(
    name: str | None, strength: float, *, l1_ratio: float = 0.5
) -> Callable[[PyTree], jax.Array] | None:
    """``params -> strength · penalty`` for name in {None, "l1", "l2", "elastic_net"}."""
    if name is None or strength == 0.0:
        return None
    penalties = {"l1": l1, "l2": l2, "elastic_net": lambda p: elastic_net(p, l1_ratio)}
    if name not in penalties:
        raise ValueError(f"unknown regularizer {name!r}; choose one of {', '.join(penalties)}")
    if strength < 0:
        raise ValueError(f"regularization strength must be >= 0; got {strength}")
    penalty = penalties[name]
    return lambda params: strength * penalty(params)

"""What makes training fail, as tools to reproduce it: the curvature that limits the learning
rate, SGD at a chosen rate, and the initialisations that break learning.

Lecture: seed 004, Lecture 7 "Optimization" §4 (line 1950). §4.5 (line 1985) and §4.8 (line
2072): too large a learning rate overshoots, and on a quadratic gradient descent diverges once
α > 2/λ_max, λ_max the largest Hessian eigenvalue; :func:`top_hessian_eigenvalue` estimates it
for a network's loss without forming the Hessian, and :func:`settable_sgd` with
:func:`with_learning_rate` trains at a rate chosen per run with one compiled program. §4.3
(line 1968): zero or constant weights leave hidden units identical (:func:`zero_params`,
:func:`constant_kernels`); §4.7 (line 2037): large weights saturate sigmoidal units
(:func:`scale_kernels`) and a negative bias kills ReLUs (:func:`hidden_bias`);
:func:`unit_fractions` measures both. experiments/failure_modes.py uses them all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnets.diagnostics import SATURATION_BOUNDS, dead_units, saturated_units
from jaxnets.train import Trainer, TrainState, batch_loss

__all__ = [
    "Transform",
    "constant_kernels",
    "hidden_bias",
    "scale_kernels",
    "settable_sgd",
    "top_hessian_eigenvalue",
    "unit_fractions",
    "with_learning_rate",
    "zero_params",
]

PyTree = Any
Transform = Callable[[PyTree], PyTree]
"""Initial params ``{layer: {"kernel", "bias"}}`` (numpy arrays) -> other initial params."""


@functools.partial(jax.jit, static_argnames=("trainer", "iterations"))
def top_hessian_eigenvalue(trainer: Trainer, params: PyTree, x, y, key, iterations: int):
    """λ_max of the Hessian of the mean training loss at ``params``, by power iteration.

    Each step multiplies by the Hessian without forming it: a Hessian-vector product is the
    forward-mode derivative of the gradient, ``jvp(grad(loss), (params,), (v,))``. The
    Rayleigh quotient vᵀHv of the normalised iterate estimates the eigenvalue of largest
    magnitude (the largest one, at an initialisation where the loss curves upward most).

    x: (n, ...) the whole training set as the model takes it (e.g. (n, 64) digits), y: (n,);
    key seeds the random start vector. On the CPU the Hessian-vector products of a conv net
    run on jaxnets' oneDNN convolutions, whose forward mode is theirs (``jaxnets.native.conv``).
    """

    def loss(p):
        return batch_loss(trainer.model, trainer.loss, p, {}, (x, y), key, train=False)[0]

    def hvp(v):
        return jax.jvp(jax.grad(loss), (params,), (v,))[1]

    def normalise(v):
        norm = jnp.sqrt(sum(jnp.vdot(leaf, leaf) for leaf in jax.tree.leaves(v)))
        return jax.tree.map(lambda leaf: leaf / norm, v)

    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    start = [
        jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves, strict=True)
    ]
    v = normalise(jax.tree.unflatten(treedef, start))
    v = jax.lax.fori_loop(0, iterations, lambda _, v: normalise(hvp(v)), v)
    return sum(
        jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(hvp(v)), strict=True)
    )


def settable_sgd() -> optax.GradientTransformation:
    """Plain SGD whose learning rate lives in its state (set it with :func:`with_learning_rate`),
    so that runs differing only in the rate share one Trainer and its compiled programs."""
    return optax.inject_hyperparams(optax.sgd)(1.0)


def with_learning_rate(state: TrainState, learning_rate: float) -> TrainState:
    """``state`` (whose optimizer is :func:`settable_sgd`) with its learning rate set."""
    hyperparams = {"learning_rate": jnp.asarray(learning_rate, jnp.float32)}
    return state.replace(opt_state=state.opt_state._replace(hyperparams=hyperparams))


def _map_layers(params: PyTree, kernel: Callable, bias: Callable) -> PyTree:
    return {
        layer: {name: (kernel if name == "kernel" else bias)(leaf) for name, leaf in leaves.items()}
        for layer, leaves in params.items()
    }


def zero_params(params: PyTree) -> PyTree:
    """Every weight and bias 0: all hidden units identical, and no gradient reaches them."""
    return jax.tree.map(np.zeros_like, params)


def constant_kernels(value: float) -> Transform:
    """Every weight ``value``, every bias 0: all hidden units of a layer identical."""
    return lambda params: _map_layers(
        params, lambda kernel: np.full_like(kernel, value), np.zeros_like
    )


def scale_kernels(factor: float) -> Transform:
    """Every weight times ``factor`` (biases kept): large factors saturate bounded units."""
    return lambda params: _map_layers(params, lambda kernel: factor * kernel, lambda bias: bias)


def hidden_bias(value: float) -> Transform:
    """The biases of the ``hidden*`` layers set to ``value`` (a negative one kills ReLUs)."""
    return lambda params: {
        layer: {**leaves, "bias": np.full_like(leaves["bias"], value)}
        if layer.startswith("hidden")
        else leaves
        for layer, leaves in params.items()
    }


def unit_fractions(activations: dict[str, jax.Array], activation: str, when: str) -> dict:
    """Dead (and, for bounded units, saturated) share of all hidden units, layers pooled:
    ``{"dead_<when>", "saturated_<when>"}`` from activations ``{layer: (n, units)}``."""
    units = {layer: h.shape[-1] for layer, h in activations.items()}

    def pooled(per_layer: dict[str, float]) -> float:
        return sum(per_layer[k] * units[k] for k in units) / sum(units.values())

    fractions = {f"dead_{when}": pooled(dead_units(activations))}
    if activation in SATURATION_BOUNDS:
        fractions[f"saturated_{when}"] = pooled(saturated_units(activations, activation))
    return fractions

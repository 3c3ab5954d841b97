"""Failure-mode diagnostics: dead and saturated units, per-layer gradient and update norms,
and the symmetry check for identically initialised hidden units.

Lecture: seed 004, Lecture 7 "Optimization" §4 "Problems, diagnostics, and workarounds"
(line 1950): §4.3 symmetries (line 1968: with all weights equal, "all the weights feeding into
a given hidden unit will have identical derivatives", so hidden units stay identical), §4.5
instability (line 1985: too large a learning rate makes the step overshoot and the cost blow
up; watch the update size), §4.7 dead and saturated units (line 2037: a unit "nearly always
near the ends of [its] dynamic range" passes back phi'(z) ~ 0, eq. 12-14, so the weights
feeding it get no gradient signal; ReLUs die when z is consistently negative).

Definitions (all on one batch, in evaluation mode):

* layer: a module path (``"hidden_0"``, ``"block/conv_1"``); per-layer numbers are keyed by
  it, in natural order (``hidden_2`` before ``hidden_10``).
* dead unit: its activation is within ``atol`` of 0 for every example (and every spatial
  position of a feature map): it passes no signal forward and, for a ReLU, no gradient back.
* saturated unit: for most examples (at least ``min_fraction``, default 3/4, of them and of
  the positions) its output lies within ``eps * (hi - lo)`` of a bound of its range
  ``(lo, hi)`` (either bound, per example). For the logistic sigmoid and tanh that is where
  phi'(z) is below about ``4 eps`` times its maximum (0.25 and 1, at z = 0): with the default
  eps = 0.02 under 8% of the slope is left.
* gradient / update / parameter norm of a layer: the Euclidean norm over all of the layer's
  parameter entries (kernel and bias together).
* unit difference of a hidden layer l: with unit j described by its incoming weights
  ``kernel_l[:, j]``, its bias ``bias_l[j]`` and its outgoing weights ``kernel_{l+1}[j, :]``,
  the largest ``max_k |u_a[k] - u_b[k]|`` over all pairs of units a, b; 0 exactly when every
  unit of the layer is the same unit.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxnets.nn.activations import get_activation
from jaxnets.train.state import TrainState
from jaxnets.train.step import Trainer

__all__ = [
    "SATURATION_BOUNDS",
    "LayerSymmetry",
    "StepNorms",
    "dead_units",
    "hidden_activations",
    "layer_norms",
    "preactivations",
    "saturated_units",
    "step_norms",
    "symmetry_check",
]

PyTree = Any

# Range (lo, hi) of each bounded activation of the zoo: where saturation is defined.
SATURATION_BOUNDS: dict[str, tuple[float, float]] = {
    "sigmoid": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "hard_tanh": (-1.0, 1.0),
}

_AFFINE = (nn.Dense, nn.DenseGeneral, nn.Conv, nn.ConvTranspose)


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _in_natural_order(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: values[name] for name in sorted(values, key=_natural_key)}


def _is_affine(module: nn.Module, method_name: str) -> bool:
    return method_name == "__call__" and isinstance(module, _AFFINE)


@functools.partial(jax.jit, static_argnums=0)
def _affine_outputs(model: nn.Module, variables: PyTree, x: jax.Array) -> dict[str, jax.Array]:
    _, state = model.apply(
        variables, x, train=False, capture_intermediates=_is_affine, mutable=["intermediates"]
    )
    flat = traverse_util.flatten_dict(state["intermediates"], sep="/")
    # flax stores each call's outputs as a tuple under "<path>/__call__"
    return {path.removesuffix("/__call__"): outputs[0] for path, outputs in flat.items()}


def preactivations(model: nn.Module, variables: PyTree, x: jax.Array) -> dict[str, jax.Array]:
    """The output z of every affine layer (Dense, DenseGeneral, Conv, ConvTranspose) of
    ``model`` on ``x``, in evaluation mode (``train=False``), captured with flax's
    ``capture_intermediates`` (jit-compiled once per model and input shape).

    Args:
      model: a linen Module called as ``model.apply(variables, x, train=False)``.
      variables: its variables (``{"params": ...}`` and any other collections).
      x: (batch, *input_shape) inputs.
    Returns:
      layer path -> z, (batch, ..., units) (e.g. ``{"hidden_0": (batch, 64), ..., "out":
      (batch, 10)}`` for :class:`~jaxnets.models.mlp.MLP`), in natural order of the paths.
    """
    return _in_natural_order(_affine_outputs(model, variables, jnp.asarray(x)))


def _activation_fn(model: nn.Module, activation: str | Callable | None) -> Callable:
    if callable(activation):
        return activation
    options = {}
    if activation is None:
        if not hasattr(model, "activation"):
            raise ValueError(
                f"{type(model).__name__} has no 'activation' field; pass activation= (a name "
                "from jaxnets.nn.ACTIVATIONS or a function z -> h)"
            )
        activation = model.activation
        options = dict(getattr(model, "activation_options", ()))
    spec = get_activation(activation)
    if spec.kind != "elementwise":
        raise ValueError(
            f"activation {activation!r} is a {spec.kind} activation; hidden_activations applies "
            "elementwise ones (relu, tanh, sigmoid, ...) to the captured pre-activations"
        )
    return functools.partial(spec.fn, **options)


def hidden_activations(
    model: nn.Module,
    variables: PyTree,
    x: jax.Array,
    *,
    activation: str | Callable[[jax.Array], jax.Array] | None = None,
    layers: Sequence[str] | None = None,
) -> dict[str, jax.Array]:
    """Hidden-unit activations h = phi(z) per layer, from :func:`preactivations`.

    Args:
      model, variables, x: as for :func:`preactivations`; x: (batch, *input_shape).
      activation: phi: a name of an elementwise activation, a function ``z -> h``, or None
        for the model's own ``activation`` field (with its ``activation_options``), which is
        right for :class:`~jaxnets.models.mlp.MLP` with elementwise hidden units.
      layers: the affine layers whose outputs feed phi; None means all but the last one (the
        output layer, whose units are logits, not hidden units).
    Returns:
      layer -> h, (batch, ..., units).
    """
    phi = _activation_fn(model, activation)
    z = preactivations(model, variables, x)
    if layers is None:
        layers = list(z)[:-1]
    missing = [name for name in layers if name not in z]
    if missing:
        raise ValueError(
            f"no affine layer named {', '.join(map(repr, missing))} in {type(model).__name__}; "
            f"its affine layers are {', '.join(z)}"
        )
    return {name: phi(z[name]) for name in layers}


def _units_last(h: jax.Array, name: str) -> np.ndarray:
    """(examples, units) on the host: every leading axis (batch, positions) is an example.

    The counts below are a few reductions of one small array; numpy spares them a compile
    per shape."""
    h = np.asarray(h)
    if h.ndim < 2:
        raise ValueError(
            f"activations of layer {name!r} have shape {h.shape}; expected (batch, ..., units)"
        )
    return h.reshape(-1, h.shape[-1])


def dead_units(activations: Mapping[str, jax.Array], *, atol: float = 0.0) -> dict[str, float]:
    """Per layer, the fraction of units that are dead on this batch: ``|h| <= atol`` for every
    example and position (``atol=0``: exactly zero, as a ReLU with z <= 0 outputs).

    Args:
      activations: layer -> h, (batch, ..., units) (see :func:`hidden_activations`).
    Returns:
      layer -> fraction of dead units in [0, 1].
    """
    fractions = {}
    for name, h in activations.items():
        dead = np.all(np.abs(_units_last(h, name)) <= atol, axis=0)
        fractions[name] = int(np.sum(dead)) / dead.size
    return fractions


def saturated_units(
    activations: Mapping[str, jax.Array],
    activation: str,
    *,
    eps: float = 0.02,
    min_fraction: float = 0.75,
) -> dict[str, float]:
    """Per layer, the fraction of saturated units: for at least ``min_fraction`` of the
    examples (and positions) the unit's output is within ``eps * (hi - lo)`` of ``lo`` or
    ``hi``, the bounds of ``activation``'s range (see the module docstring).

    Args:
      activations: layer -> h, (batch, ..., units), outputs of ``activation``.
      activation: a name in :data:`SATURATION_BOUNDS` (sigmoid, tanh, hard_tanh).
      eps: closeness to a bound, as a fraction of the range.
      min_fraction: share of the examples that must be near a bound.
    Returns:
      layer -> fraction of saturated units in [0, 1].
    """
    if activation not in SATURATION_BOUNDS:
        raise ValueError(
            f"saturation is defined for bounded activations ({', '.join(SATURATION_BOUNDS)}); "
            f"got {activation!r}, whose range is unbounded (for ReLUs use dead_units)"
        )
    if not 0.0 < eps < 0.5 or not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"need 0 < eps < 0.5 and 0 < min_fraction <= 1; got {eps}, {min_fraction}")
    lo, hi = SATURATION_BOUNDS[activation]
    margin = eps * (hi - lo)
    fractions = {}
    for name, h in activations.items():
        h = _units_last(h, name)
        near_bound = (h <= lo + margin) | (h >= hi - margin)
        saturated = np.mean(near_bound, axis=0) >= min_fraction
        fractions[name] = int(np.sum(saturated)) / saturated.size
    return fractions


def _norm_arrays(tree: PyTree) -> dict[str, jax.Array]:
    squares: dict[str, jax.Array] = {}
    for path, leaf in traverse_util.flatten_dict(tree, sep="/").items():
        layer = path.rpartition("/")[0] or path  # a leaf at top level is its own layer
        squares[layer] = squares.get(layer, 0.0) + jnp.sum(jnp.square(leaf))
    return {layer: jnp.sqrt(total) for layer, total in squares.items()}


def layer_norms(tree: PyTree) -> dict[str, float]:
    """Euclidean norm per layer of a parameter-shaped tree (params, gradients, updates).

    Args:
      tree: nested dicts of arrays, e.g. ``{"hidden_0": {"kernel": (64, 32), "bias": (32,)}}``;
        a layer is the path of a leaf's parent dict.
    Returns:
      layer -> sqrt(sum of squares of all its entries), in natural order.
    """
    return _as_floats(jax.jit(_norm_arrays)(tree))


def _as_floats(norms: Mapping[str, jax.Array]) -> dict[str, float]:
    return _in_natural_order({name: float(value) for name, value in norms.items()})


@dataclasses.dataclass(frozen=True)
class StepNorms:
    """Norms of one training step, per layer (see :func:`step_norms`).

    Attributes:
      loss: the minibatch objective before the step (data loss + regularizer), on the batch
        the step trained on.
      grad: layer -> ||dL/dtheta_l||.
      update: layer -> ||theta_l(after) - theta_l(before)||.
      param: layer -> ||theta_l(before)||.
    """

    loss: float
    grad: dict[str, float]
    update: dict[str, float]
    param: dict[str, float]

    @property
    def update_ratio(self) -> dict[str, float]:
        """layer -> ||update|| / ||param||: inf for an all-zero layer that moves, 0 for one that
        stays zero."""
        return {
            name: self.update[name] / param
            if param
            else (float("inf") if self.update[name] else 0.0)
            for name, param in self.param.items()
        }


@functools.partial(jax.jit, static_argnums=0)  # compiled once per Trainer (hashed by identity)
def _measured_step(trainer: Trainer, state: TrainState, batch: tuple[jax.Array, jax.Array]):
    """The engine's step with the gradients it applied, and the norms of the step."""
    new_state, metrics, grads = trainer.step_with_grads(state, batch)
    objective = metrics["loss"]  # the mean data loss; the objective adds the regularizer
    if trainer.regularizer is not None:
        objective = objective + trainer.regularizer(state.params)
    updates = jax.tree.map(jnp.subtract, new_state.params, state.params)
    norms = (_norm_arrays(grads), _norm_arrays(updates), _norm_arrays(state.params))
    return new_state, objective, norms


def step_norms(
    trainer: Trainer, state: TrainState, batch: tuple[jax.Array, jax.Array]
) -> tuple[TrainState, StepNorms]:
    """Take one training step and measure it per layer: gradient, update and parameter norms.

    The gradient is the one the step applied, returned by :meth:`Trainer.step_with_grads`:
    ``jax.grad`` of the step's objective (:func:`~jaxnets.train.batch_loss` plus the
    regularizer, with the step's dropout key and, when ``trainer.augment`` is set, on the
    step's augmented batch), before the optimizer's transform; the update is the parameter
    change of that same step (for plain SGD, ``lr * grad``). ``state`` is not donated and
    stays valid.

    Args:
      batch: ``(x, y)`` with x (batch, *input_shape) and y (batch, ...).
    Returns:
      ``(state after the step, StepNorms)``.
    """
    new_state, loss, (grad, update, param) = _measured_step(trainer, state, batch)
    norms = StepNorms(float(loss), _as_floats(grad), _as_floats(update), _as_floats(param))
    return new_state, norms


@dataclasses.dataclass(frozen=True)
class LayerSymmetry:
    """How alike the hidden units of one layer are (see :func:`symmetry_check`).

    Attributes:
      units: number of hidden units in the layer.
      max_difference: largest ``max_k |u_a[k] - u_b[k]|`` over pairs of units a, b, where
        u_j = (incoming weights, bias, outgoing weights) of unit j.
      identical: ``max_difference <= atol``: the units compute the same function and, by
        symmetry, get the same gradient; training cannot tell them apart.
    """

    units: int
    max_difference: float
    identical: bool


def _dense_chain(params: Mapping[str, Any], layers: Sequence[str] | None) -> list[str]:
    if layers is None:
        layers = [
            name
            for name, leaves in params.items()
            if isinstance(leaves, Mapping) and getattr(leaves.get("kernel"), "ndim", 0) == 2
        ]
        layers = sorted(layers, key=_natural_key)
    if len(layers) < 2:
        raise ValueError(
            f"symmetry_check needs at least two Dense layers (a hidden layer and the layer it "
            f"feeds); found {list(layers)} among {list(params)}"
        )
    for inner, outer in zip(layers, layers[1:], strict=False):
        units, inputs = params[inner]["kernel"].shape[1], params[outer]["kernel"].shape[0]
        if units != inputs:
            raise ValueError(
                f"layer {inner!r} has {units} units but the kernel of {outer!r} takes {inputs} "
                "inputs; pass layers= as the Dense layers in the order the data flows"
            )
    return list(layers)


def symmetry_check(
    params: Mapping[str, Any], *, layers: Sequence[str] | None = None, atol: float = 1e-6
) -> dict[str, LayerSymmetry]:
    """Whether the hidden units of each layer of a chain of Dense layers are identical.

    Unit j of hidden layer l is the vector u_j = (``kernel_l[:, j]``, ``bias_l[j]``,
    ``kernel_{l+1}[j, :]``); its spread ``max_k (max_j u_j[k] - min_j u_j[k])`` equals the
    largest pairwise difference ``max_{a,b} max_k |u_a[k] - u_b[k]|`` without forming the pairs.

    Args:
      params: the ``params`` collection, e.g. ``{"hidden_0": {"kernel": (in, H0), "bias":
        (H0,)}, "hidden_1": {...}, "out": {"kernel": (H1, out), ...}}``.
      layers: the Dense layers in the order the data flows; None: every top-level entry with a
        2-D ``kernel``, in natural order of the names (right for MLP: hidden_0, ..., out).
      atol: differences up to this count as identical.
    Returns:
      hidden layer -> :class:`LayerSymmetry` (every layer of the chain but the last).
    """
    chain = _dense_chain(params, layers)
    host = jax.device_get({name: params[name] for name in chain})  # numpy: no compile per shape
    report = {}
    for inner, outer in zip(chain, chain[1:], strict=False):
        kernel = host[inner]["kernel"]
        columns = [kernel.T, host[outer]["kernel"]]  # (units, in) and (units, out)
        if "bias" in host[inner]:
            columns.insert(1, host[inner]["bias"][:, None])
        units_UxF = np.concatenate(columns, axis=1)
        spread = float(np.max(np.max(units_UxF, axis=0) - np.min(units_UxF, axis=0)))
        report[inner] = LayerSymmetry(kernel.shape[1], spread, spread <= atol)
    return report

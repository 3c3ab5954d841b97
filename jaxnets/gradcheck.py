"""Gradient checking: autodiff gradients against central finite differences in float64.

Lectures: seed 000 (gradient checking: one- and two-sided differences, relative error,
use double precision), seed 004 §6 "Automatic differentiation" (line 1528: finite
differences are a check, not a way to train).

For a scalar function f of a parameter tree, every leaf gets a relative error

    rel(a, n) = ‖a − n‖ / (‖a‖ + ‖n‖)        (0 when both vanish)

between the analytic gradient ``a`` (``jax.grad``) and the numerical one ``n``, central
differences (f(θ + εe) − f(θ − εe)) / 2ε taken either along every coordinate ("full"
mode, for small models) or along random unit directions inside each leaf ("directions"
mode, for large ones: compares directional derivatives ⟨a, v⟩ with the differences).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["gradcheck", "gradcheck_model", "GradcheckReport", "LeafCheck", "GradcheckError"]

PyTree = Any


class GradcheckError(AssertionError):
    """A leaf's analytic gradient disagrees with finite differences; names the leaf."""


@dataclasses.dataclass(frozen=True)
class LeafCheck:
    """The comparison for one parameter leaf."""

    path: str
    size: int
    rel_error: float
    analytic_norm: float
    numeric_norm: float


@dataclasses.dataclass(frozen=True)
class GradcheckReport:
    """Per-leaf relative errors; ``worst`` is the leaf with the largest one."""

    leaves: tuple[LeafCheck, ...]
    mode: str
    eps: float
    tol: float

    @property
    def worst(self) -> LeafCheck:
        return max(self.leaves, key=lambda leaf: leaf.rel_error)

    @property
    def passed(self) -> bool:
        return self.worst.rel_error < self.tol

    def __str__(self) -> str:
        width = max(len(leaf.path) for leaf in self.leaves)
        lines = [f"gradcheck ({self.mode}, eps={self.eps:g}, tol={self.tol:g}, float64)",
                 f"{'leaf':<{width}}  {'size':>7}  {'rel error':>10}  {'|grad|':>10}"]
        for leaf in self.leaves:
            flag = "  FAIL" if leaf.rel_error >= self.tol else ""
            lines.append(f"{leaf.path:<{width}}  {leaf.size:>7}  {leaf.rel_error:>10.2e}  "
                         f"{leaf.analytic_norm:>10.3e}{flag}")
        lines.append(f"worst: {self.worst.path} ({self.worst.rel_error:.2e}) -> "
                     f"{'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)


def _rel_error(a: np.ndarray, n: np.ndarray) -> float:
    denom = np.linalg.norm(a) + np.linalg.norm(n)
    return 0.0 if denom == 0.0 else float(np.linalg.norm(a - n) / denom)


def _leaf_name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def gradcheck(
    f: Callable[[PyTree], jax.Array],
    params: PyTree,
    *,
    mode: str = "auto",
    eps: float = 1e-6,
    tol: float = 1e-6,
    num_directions: int = 6,
    max_full_size: int = 4096,
    seed: int = 0,
    raise_on_failure: bool = True,
) -> GradcheckReport:
    """Compare ``jax.grad(f)(params)`` with central differences, in float64.

    Args:
      f: scalar function of the parameter tree (it may close over float32 data; inputs are
        promoted because the parameters are cast to float64).
      params: the point to check at; every floating leaf is cast to float64.
      mode: "full" (every coordinate), "directions" (``num_directions`` random unit
        directions per leaf) or "auto" (full when the tree has <= ``max_full_size`` entries).
      eps: finite-difference step; tol: largest accepted relative error.
    Returns:
      a :class:`GradcheckReport`.
    Raises:
      GradcheckError: naming the worst leaf, when it fails and ``raise_on_failure``.
    """
    if mode not in ("auto", "full", "directions"):
        raise ValueError(f"mode must be 'auto', 'full' or 'directions'; got {mode!r}")
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
        leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(params64)
        leaves = [leaf for _, leaf in leaves_with_path]
        total = sum(leaf.size for leaf in leaves)
        if mode == "auto":
            mode = "full" if total <= max_full_size else "directions"

        def f_of(i: int, leaf_value: jax.Array) -> jax.Array:
            new = list(leaves)
            new[i] = leaf_value
            return f(jax.tree_util.tree_unflatten(treedef, new))

        analytic = jax.tree_util.tree_leaves(jax.jit(jax.grad(f))(params64))
        rng = np.random.default_rng(seed)
        checks = []
        for i, ((path, leaf), grad) in enumerate(zip(leaves_with_path, analytic)):
            flat = leaf.reshape(-1)
            if mode == "full":
                directions = jnp.eye(flat.size, dtype=jnp.float64)
            else:
                v = rng.standard_normal((num_directions, flat.size))
                directions = jnp.asarray(v / np.linalg.norm(v, axis=1, keepdims=True))

            def difference(v, i=i, flat=flat, shape=leaf.shape):
                plus = f_of(i, (flat + eps * v).reshape(shape))
                minus = f_of(i, (flat - eps * v).reshape(shape))
                return (plus - minus) / (2 * eps)

            numeric = np.asarray(jax.jit(lambda d, fn=difference: jax.lax.map(
                fn, d, batch_size=256))(directions))
            grad_flat = np.asarray(grad).reshape(-1)
            a = grad_flat if mode == "full" else np.asarray(directions) @ grad_flat
            checks.append(LeafCheck(_leaf_name(path), int(flat.size), _rel_error(a, numeric),
                                    float(np.linalg.norm(grad_flat)),
                                    float(np.linalg.norm(numeric))))
    report = GradcheckReport(tuple(checks), mode, eps, tol)
    if raise_on_failure and not report.passed:
        worst = report.worst
        raise GradcheckError(
            f"gradient of parameter {worst.path!r} disagrees with finite differences: relative "
            f"error {worst.rel_error:.3e} >= tol {tol:g} (|analytic| {worst.analytic_norm:.4e}, "
            f"|numeric| {worst.numeric_norm:.4e})\n{report}"
        )
    return report


def model_loss_at(name: str, *, seed: int = 0, batch_size: int = 3, overrides=None):
    """A registered model's tiny config in float64 and its mean loss as a function of params.

    Returns ``(loss_fn, params)``: ``loss_fn(params) -> ()`` evaluates the card's default
    loss on a fixed random batch (batch_size, *tiny_input_shape) in training mode with a
    fixed dropout key, so it is a deterministic function of the parameters.
    """
    from jaxnets import losses, registry
    from jaxnets.train.step import batch_loss

    card = registry.model_card(name)
    model = registry.create_model(name, **{**card.test_config, **(overrides or {})})
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    with jax.enable_x64(True):
        x = registry.example_inputs(card, keys[0], batch_size, dtype=jnp.float64)
        variables = dict(model.init({"params": keys[1], "dropout": keys[2]}, x, train=False))
        variables = jax.tree.map(
            lambda v: v.astype(jnp.float64) if jnp.issubdtype(v.dtype, jnp.floating) else v,
            variables,
        )
        params = variables.pop("params")
        outputs = model.apply({"params": params, **variables}, x, train=False)
        loss = losses.get_loss(card.loss)
        y = losses.random_targets(card.loss, keys[3], outputs)

    def loss_fn(p):
        objective, _ = batch_loss(model, loss, p, variables, (x, y), keys[2], train=True,
                                  per_example=card.per_example_grads)
        return objective

    return loss_fn, params


def gradcheck_model(name: str, *, mode: str = "auto", seed: int = 0, **kwargs) -> GradcheckReport:
    """Gradcheck a registered model's tiny config (see :func:`model_loss_at`)."""
    loss_fn, params = model_loss_at(name, seed=seed)
    return gradcheck(loss_fn, params, mode=mode, seed=seed, **kwargs)

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
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

__all__ = ["GradcheckError", "GradcheckReport", "LeafCheck", "gradcheck", "gradcheck_model"]

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
        # a NaN error (a non-finite gradient or difference) ranks above every number
        return max(self.leaves, key=lambda leaf: (np.isnan(leaf.rel_error), leaf.rel_error))

    @property
    def passed(self) -> bool:
        return self.worst.rel_error < self.tol

    def __str__(self) -> str:
        width = max(len(leaf.path) for leaf in self.leaves)
        lines = [
            f"gradcheck ({self.mode}, eps={self.eps:g}, tol={self.tol:g}, float64)",
            f"{'leaf':<{width}}  {'size':>7}  {'rel error':>10}  {'|grad|':>10}",
        ]
        for leaf in self.leaves:
            flag = "" if leaf.rel_error < self.tol else "  FAIL"
            lines.append(
                f"{leaf.path:<{width}}  {leaf.size:>7}  {leaf.rel_error:>10.2e}  "
                f"{leaf.analytic_norm:>10.3e}{flag}"
            )
        lines.append(
            f"worst: {self.worst.path} ({self.worst.rel_error:.2e}) -> "
            f"{'PASS' if self.passed else 'FAIL'}"
        )
        return "\n".join(lines)


def map_in_chunks(batched: Callable[[jax.Array], jax.Array], xs: jax.Array, chunk: int = 16):
    """``[fn(x) for x in xs]`` over chunks of ``xs``, looped from Python, where ``batched`` is
    ``jax.jit(jax.vmap(fn))``, built once by the caller so that every call with the same
    shapes reuses one compiled program.

    Not ``lax.map``: XLA:CPU runs convolutions inside a while loop many times slower (see
    :mod:`jaxnets.train.step`). The last chunk is padded, so there is one compile. Chunks of
    16: vmapped over 256 perturbed parameter vectors, a convolution runs with per-example
    kernels and XLA:CPU slows down (the full check of a tiny googlenet_small took 10 s in
    chunks of 256, 1.5 s in chunks of 16; dense and recurrent models are equally fast either
    way).
    """
    chunk = min(chunk, len(xs))
    pad = -len(xs) % chunk
    padded = jnp.concatenate([xs, jnp.repeat(xs[:1], pad, axis=0)]) if pad else xs
    out = [np.asarray(batched(padded[i : i + chunk])) for i in range(0, len(padded), chunk)]
    return np.concatenate(out)[: len(xs)]


def _rel_error(a: np.ndarray, n: np.ndarray, atol: float) -> float:
    denom = np.linalg.norm(a) + np.linalg.norm(n)
    # Both below the differences' rounding noise: an exactly-zero gradient (e.g. a hinge
    # bias whose margin violators cancel) agrees with its ~1e-14 numerical estimate.
    # (denom == 0 as well: with atol = 0, two exactly-zero gradients agree, not 0 / 0)
    return 0.0 if denom < atol or denom == 0 else float(np.linalg.norm(a - n) / denom)


def _leaf_name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def gradcheck(
    f: Callable[[PyTree], jax.Array],
    params: PyTree,
    *,
    mode: str = "auto",
    eps: float = 1e-5,
    tol: float = 1e-6,
    atol: float = 1e-9,
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
      eps: finite-difference step (near the optimum (3·1e-16)^(1/3) of central differences
        in float64, balancing rounding against truncation), finite and > 0; tol: largest
        accepted relative error, in (0, 1); atol: leaves whose analytic and numerical norms
        sum to less than this agree.
    Returns:
      a :class:`GradcheckReport`.
    Raises:
      GradcheckError: naming the worst leaf, when it fails and ``raise_on_failure``.
    """
    if mode not in ("auto", "full", "directions"):
        raise ValueError(f"mode must be 'auto', 'full' or 'directions'; got {mode!r}")
    # rel(a, n) lies in [0, 1] (triangle inequality), so a tol above 1 (or inf) accepts every
    # gradient, a sign-flipped one included (tol = 1 all but exact opposites); tol <= 0 none.
    if not 0 < tol < 1:
        raise ValueError(
            f"tol must be in (0, 1): the relative error lies in [0, 1], so tol >= 1 accepts "
            f"(nearly) every gradient and tol <= 0 none; got {tol}"
        )
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite finite-difference step > 0; got {eps}")
    if not (np.isfinite(atol) and atol >= 0):
        raise ValueError(f"atol must be finite and >= 0; got {atol}")
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
        flat, unravel = ravel_pytree(params64)
        paths = [_leaf_name(path) for path, _ in jax.tree_util.tree_leaves_with_path(params64)]
        sizes = [leaf.size for leaf in jax.tree.leaves(params64)]
        offsets = np.cumsum([0, *sizes])
        if mode == "auto":
            mode = "full" if flat.size <= max_full_size else "directions"

        def flat_f(v):
            return f(unravel(v))

        def difference(direction):
            return (flat_f(flat + eps * direction) - flat_f(flat - eps * direction)) / (2 * eps)

        analytic = np.asarray(jax.jit(jax.grad(flat_f))(flat))
        if mode == "full":
            # e_i is built inside, never an (n, n) eye.
            def along(i):
                return difference(jnp.zeros_like(flat).at[i].set(1.0))

            numeric = map_in_chunks(jax.jit(jax.vmap(along)), jnp.arange(flat.size))
            pairs = [
                (analytic[lo:hi], numeric[lo:hi], analytic[lo:hi])
                for lo, hi in zip(offsets[:-1], offsets[1:], strict=False)
            ]
        else:
            rng = np.random.default_rng(seed)
            # one program for every leaf: each leaf's directions are (num_directions, n) arrays
            batched_difference = jax.jit(jax.vmap(difference))
            pairs = []
            for lo, hi in zip(offsets[:-1], offsets[1:], strict=False):
                v = rng.standard_normal((num_directions, hi - lo))
                v /= np.linalg.norm(v, axis=1, keepdims=True)
                padded = np.zeros((num_directions, flat.size))
                padded[:, lo:hi] = v
                pairs.append(
                    (
                        v @ analytic[lo:hi],
                        map_in_chunks(batched_difference, jnp.asarray(padded)),
                        analytic[lo:hi],
                    )
                )
        checks = [
            LeafCheck(
                path,
                int(size),
                _rel_error(a, n, atol),
                float(np.linalg.norm(grad)),
                float(np.linalg.norm(n)),
            )
            for path, size, (a, n, grad) in zip(paths, sizes, pairs, strict=False)
        ]
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
    from jaxnets.train.objective import batch_loss

    card = registry.model_card(name)
    model = registry.create_model(name, **{**card.test_config, **(overrides or {})})
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    with jax.enable_x64(True):
        x = registry.example_inputs(card, keys[0], batch_size, dtype=jnp.float64)
        # jitted: eager flax init/apply compiles every primitive one by one (seconds)
        variables = jax.jit(functools.partial(model.init, train=False))(
            {"params": keys[1], "dropout": keys[2]}, x
        )
        variables = dict(
            jax.tree.map(
                lambda v: v.astype(jnp.float64) if jnp.issubdtype(v.dtype, jnp.floating) else v,
                variables,
            )
        )
        params = variables.pop("params")
        # the targets need only the outputs' shape and dtype: no compile of the forward pass
        outputs = jax.eval_shape(
            functools.partial(model.apply, train=False), {"params": params, **variables}, x
        )
        loss = losses.get_loss(card.loss)
        y = losses.random_targets(card.loss, keys[3], outputs)

    def loss_fn(p):
        objective, _ = batch_loss(
            model,
            loss,
            p,
            variables,
            (x, y),
            keys[2],
            train=True,
        )
        return objective

    return loss_fn, params


def gradcheck_model(name: str, *, mode: str = "auto", seed: int = 0, **kwargs) -> GradcheckReport:
    """Gradcheck a registered model's tiny config (see :func:`model_loss_at`)."""
    loss_fn, params = model_loss_at(name, seed=seed)
    return gradcheck(loss_fn, params, mode=mode, seed=seed, **kwargs)

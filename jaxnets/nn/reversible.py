"""Reversible blocks, and a stack of them whose backward pass recomputes its activations.

Lecture: seed 004, Lecture 15 "Autoregressive and Reversible Models" §1 Reversible Models
(line 3309): the units are split in two groups and the block (eq. 5, line 3343)

    y1 = x1 + F(x2),        y2 = x2 + G(y1)

is inverted exactly (eq. 6, line 3347) by

    x2 = y2 - G(y1),        x1 = y1 - F(x2),

whatever F and G are; its Jacobian is triangular with unit diagonal, so its determinant is 1
(line 3364) and a chain of blocks is inverted block by block (eq. 7). The residual block it is
built from is Lecture 14 §4 (line 3269).

Backprop normally stores every block's activations for the backward pass: memory grows with
depth. Because each block's input can be recomputed from its output, a reversible network needs
to store only the output of the whole stack (Gomez, Ren, Urtasun & Grosse, "The reversible
residual network: backpropagation without storing activations", NeurIPS 2017, Algorithm 1).
:func:`reversible_stack` with ``recompute=True`` is that algorithm as a ``jax.custom_vjp``:
the forward pass keeps the stack's output and the parameters, and the backward pass walks the
blocks in reverse with ``lax.scan``, reconstructing each block's input from its output while
it takes the block's VJP (F and G are each evaluated once more, inside their VJPs). The
gradients are those of plain autodiff (``recompute=False``) up to rounding.

F and G are pure functions ``f(params, x)`` of one block's parameters; all blocks share one
shape, so the parameters of the stack are pytrees with a leading ``depth`` axis and the blocks
run in a ``lax.scan``. :class:`ReversibleStack` is the flax.linen face of it: it declares the
stacked parameters with ``self.param`` (a ``jax.vmap`` of an unbound template module's
``init``) and calls the pure custom-VJP function with ``template.apply`` as F and G. This keeps
the custom VJP a plain JAX function of arrays: flax's lifted ``nn.custom_vjp`` would also do,
but it threads the module's variable collections through the rule, which a stack of pure
blocks does not need.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = [
    "ReversibleStack",
    "reversible_forward",
    "reversible_inverse",
    "reversible_stack",
    "reversible_stack_inverse",
]

PyTree = Any
Residual = Callable[[PyTree, jax.Array], jax.Array]
"""``(params of one block, x) -> F(x)``, the same shape as x."""
Branch = Callable[[jax.Array], jax.Array]
"""``x -> F(x)``: a block's shape-preserving function of one half (F or G)."""


def reversible_forward(
    f: Branch, g: Branch, x1: jax.Array, x2: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """One reversible block (eq. 5): ``y1 = x1 + F(x2)``, ``y2 = x2 + G(y1)``.

    f, g: shape-preserving functions of one half. x1, x2: the two halves, same shape
    (e.g. (batch, height, width, channels / 2)). Returns (y1, y2), shaped like (x1, x2).
    """
    y1 = x1 + f(x2)
    return y1, x2 + g(y1)


def reversible_inverse(
    f: Branch, g: Branch, y1: jax.Array, y2: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The exact inverse of :func:`reversible_forward` (eq. 6): ``x2 = y2 - G(y1)``,
    ``x1 = y1 - F(x2)``. y1, y2: the block's outputs -> (x1, x2), its inputs."""
    x2 = y2 - g(y1)
    return y1 - f(x2), x2


def _check_stacked(params_f: PyTree, params_g: PyTree) -> None:
    sizes = {leaf.shape[0] if leaf.ndim else None for leaf in jax.tree.leaves((params_f, params_g))}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            "stacked block parameters need one leading depth axis shared by every leaf of "
            f"params_f and params_g; got leading sizes {sorted(sizes, key=str)}"
        )


def _forward_scan(f: Residual, g: Residual, params_f, params_g, x1, x2, unroll):
    def block(halves, block_params):
        p_f, p_g = block_params
        halves = reversible_forward(functools.partial(f, p_f), functools.partial(g, p_g), *halves)
        return halves, None

    halves, _ = jax.lax.scan(block, (x1, x2), (params_f, params_g), unroll=unroll)
    return halves


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 6))
def _recomputing_stack(f: Residual, g: Residual, params_f, params_g, x1, x2, unroll):
    return _forward_scan(f, g, params_f, params_g, x1, x2, unroll)


def _recomputing_stack_fwd(f, g, params_f, params_g, x1, x2, unroll):
    y1, y2 = _forward_scan(f, g, params_f, params_g, x1, x2, unroll)
    # The stack's output and the parameters: nothing per block.
    return (y1, y2), (params_f, params_g, y1, y2)


def _recomputing_stack_bwd(f, g, unroll, saved, cotangents):
    params_f, params_g, y1, y2 = saved

    def back(carry, block_params):
        y1, y2, d_y1, d_y2 = carry
        p_f, p_g = block_params
        # y2 = x2 + G(y1): G's VJP at y1 also yields G(y1), which reconstructs x2.
        g_y1, g_vjp = jax.vjp(g, p_g, y1)
        x2 = y2 - g_y1
        d_p_g, d_y1_through_g = g_vjp(d_y2)
        d_y1 = d_y1 + d_y1_through_g
        # y1 = x1 + F(x2): the same for F, reconstructing x1.
        f_x2, f_vjp = jax.vjp(f, p_f, x2)
        x1 = y1 - f_x2
        d_p_f, d_x2_through_f = f_vjp(d_y1)
        # x1 reaches the loss only through y1, so its gradient is y1's total gradient.
        d_x1, d_x2 = d_y1, d_y2 + d_x2_through_f
        return (x1, x2, d_x1, d_x2), (d_p_f, d_p_g)

    carry = (y1, y2, *cotangents)
    (_, _, d_x1, d_x2), (d_params_f, d_params_g) = jax.lax.scan(
        back, carry, (params_f, params_g), reverse=True, unroll=unroll
    )
    return d_params_f, d_params_g, d_x1, d_x2


_recomputing_stack.defvjp(_recomputing_stack_fwd, _recomputing_stack_bwd)


def reversible_stack(
    f: Residual,
    g: Residual,
    params_f: PyTree,
    params_g: PyTree,
    x1: jax.Array,
    x2: jax.Array,
    *,
    recompute: bool = True,
    unroll: int | bool = 1,
) -> tuple[jax.Array, jax.Array]:
    """``depth`` reversible blocks in sequence; block i uses ``f(params_f[i], .)`` and
    ``g(params_g[i], .)``.

    Args:
      f, g: pure ``(params of one block, half) -> half`` functions (the residual functions F
        and G; a half is e.g. (batch, height, width, channels / 2)).
      params_f, params_g: pytrees whose leaves all have the leading axis ``depth``.
      x1, x2: the input halves, same shape.
      recompute: True: the backward pass stores only the stack's output and reconstructs each
        block's input with :func:`reversible_inverse` (memory independent of depth, one extra
        evaluation of F and G per block); False: plain autodiff, which stores every block's
        activations. Both give the same gradients up to rounding.
      unroll: ``lax.scan``'s unroll over blocks (True: straight-line code; XLA:CPU runs a
        convolution inside a while loop much slower, see :mod:`jaxnets.train.step`).
    Returns:
      (y1, y2), shaped like (x1, x2).
    """
    _check_stacked(params_f, params_g)
    if recompute:
        return _recomputing_stack(f, g, params_f, params_g, x1, x2, unroll)
    return _forward_scan(f, g, params_f, params_g, x1, x2, unroll)


def reversible_stack_inverse(
    f: Residual,
    g: Residual,
    params_f: PyTree,
    params_g: PyTree,
    y1: jax.Array,
    y2: jax.Array,
    *,
    unroll: int | bool = 1,
) -> tuple[jax.Array, jax.Array]:
    """The inverse of :func:`reversible_stack` (eq. 7): the blocks inverted last to first.

    y1, y2: the stack's output halves -> (x1, x2), its input halves.
    """
    _check_stacked(params_f, params_g)

    def block(halves, block_params):
        p_f, p_g = block_params
        halves = reversible_inverse(functools.partial(f, p_f), functools.partial(g, p_g), *halves)
        return halves, None

    halves, _ = jax.lax.scan(block, (y1, y2), (params_f, params_g), reverse=True, unroll=unroll)
    return halves


class ReversibleStack(nn.Module):
    """``depth`` reversible blocks whose F and G are copies of one template module.

    ``residual()`` must build an unbound linen Module mapping a half (batch, ..., channels / 2)
    to the same shape, with only ``params`` (no batch norm: see :mod:`jaxnets.models.revnet`)
    and no randomness at apply time. Parameters: ``F`` and ``G``, the template's parameter tree
    with a leading ``depth`` axis, initialised independently per block (a vmapped
    ``template.init``).

    Attributes:
      residual: a zero-argument builder of the template, e.g.
        ``functools.partial(MyConvNet, features=16)``; it is called with ``parent=None``.
      depth: number of blocks.
      recompute: see :func:`reversible_stack`.
      unroll: see :func:`reversible_stack`.

    ``(x1, x2) -> (y1, y2)``, each (batch, ..., channels / 2).
    """

    residual: Callable[..., nn.Module]
    depth: int
    recompute: bool = True
    unroll: int | bool = 1

    @nn.compact
    def __call__(self, x1: jax.Array, x2: jax.Array) -> tuple[jax.Array, jax.Array]:
        if self.depth < 1:
            raise ValueError(f"ReversibleStack needs depth >= 1; got {self.depth}")
        if x1.shape != x2.shape:
            raise ValueError(
                f"the two halves of a reversible block must have one shape; got {x1.shape} "
                f"and {x2.shape}"
            )
        # parent=None: the template is not a child of this module; its parameters live in the
        # stacked "F" and "G" trees declared below.
        template = self.residual(parent=None)

        def init_stacked(rng):
            def init_one(key):
                return template.init(key, jnp.zeros(x2.shape, x2.dtype))

            variables = jax.vmap(init_one)(jax.random.split(rng, self.depth))
            if set(variables) != {"params"}:
                raise ValueError(
                    "ReversibleStack recomputes F and G in its backward pass, so they must be "
                    f"pure functions of their parameters; {type(template).__name__} has the "
                    f"variable collections {sorted(variables)} (batch norm?): use a template "
                    "with only 'params'"
                )
            return variables["params"]

        params_f = self.param("F", init_stacked)
        params_g = self.param("G", init_stacked)

        def apply(params, x):
            return template.apply({"params": params}, x)

        return reversible_stack(
            apply, apply, params_f, params_g, x1, x2, recompute=self.recompute, unroll=self.unroll
        )

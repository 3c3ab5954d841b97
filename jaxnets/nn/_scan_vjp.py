"""Custom backward passes that make the recurrent layers of :mod:`jaxnets.nn.recurrent` fast
on XLA:CPU. Both compute exactly the gradients autodiff would, in a different order.

Lecture: seed 004, Lecture 13 "Recurrent Neural Nets" (line 2721) §3: backprop through time is
backprop on the unrolled graph, so the gradient of a weight shared by all time steps is the
sum over the steps of its per-step gradients. Summing them as ONE matmul over all (time,
batch) rows, after the backward scan, instead of T small matmuls accumulated one per step,
is what these functions do.

Measured against PyTorch's ``nn.LSTM`` (``benchmarks/rnn.py``, H=256, T=100, batch 32, one
core): the jaxnets LSTM step went from about 0.55x to about 0.7x of PyTorch's speed, level
with a hand-written Flax ``nn.RNN``. Two effects: XLA:CPU runs a dot that contracts its left
operand's leading axis (``x^T @ d``, what autodiff writes for a kernel gradient) about half as
fast as the same product with the transpose materialised; and T read-modify-writes of a
(H, 4H) gradient cost more than one large matmul.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["dense_dot_general", "rows_matmul", "scan_with_batched_weight_grad"]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def rows_matmul(x: jax.Array, kernel: jax.Array, precision: Any) -> jax.Array:
    """``x (..., F) @ kernel (F, K)`` whose kernel gradient is one (F, rows) @ (rows, K) matmul
    over all leading rows of x, with x^T materialised (see the module docstring)."""
    return jnp.matmul(x, kernel, precision=precision)


def rows_matmul_forward(x, kernel, precision):
    return rows_matmul(x, kernel, precision), (x, kernel)


def rows_matmul_backward(precision, saved, d_out):
    x, kernel = saved
    rows_x = x.reshape(-1, x.shape[-1])
    rows_d = d_out.reshape(-1, d_out.shape[-1])
    d_kernel = jnp.matmul(jax.lax.optimization_barrier(rows_x.T), rows_d, precision=precision)
    return jnp.matmul(d_out, kernel.T, precision=precision), d_kernel


rows_matmul.defvjp(rows_matmul_forward, rows_matmul_backward)


def dense_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """``nn.Dense``'s contraction (last axis of lhs with the kernel's first) as
    :func:`rows_matmul`."""
    del preferred_element_type  # Dense casts both operands to its dtype first
    if dimension_numbers != (((lhs.ndim - 1,), (0,)), ((), ())):
        raise ValueError(
            f"dense_dot_general contracts lhs's last axis with rhs's first, as nn.Dense "
            f"does; got dimension_numbers {dimension_numbers}"
        )
    return rows_matmul(lhs, rhs, precision)


def scan_with_batched_weight_grad(cell: Any, body: Callable, reverse: bool, unroll: int | bool):
    """``lax.scan`` over time whose backward pass computes the gradient of the recurrent matrix
    W (``hidden_to_hidden``) as ONE matmul after the backward scan.

    ``body(weights, carry, projected_t, recurrent_t, extras_t) -> (carry_t, output_t)`` is a
    step after its matmul ``recurrent_t = h_{t-1} W``; its ``weights`` are the recurrent
    weights without W (the GRU's recurrent bias). Autodiff of a plain scan adds
    ``h_{t-1}^T dz_t`` (dz_t the gradient of recurrent_t) into the (H, G·H) gradient of W at
    every backward step: T small matmuls that contract their lhs's leading axis, and T
    read-modify-writes of the matrix. Here the forward scan stacks h_{t-1} and the residuals
    of ``body``'s own VJP (what autodiff would save for it), the backward scan computes dz_t
    and ``dh_{t-1} = dz_t W^T``, and then ``dW = Σ_t h_{t-1}^T dz_t`` is one
    (H, T·B) @ (T·B, G·H) matmul with the transpose materialised. Reverse mode only
    (``jax.custom_vjp``); the VJP is exact, not an approximation.

    ``cell`` is a cell of :mod:`jaxnets.nn.recurrent`, used through its public interface:
    ``recurrent_product(weights, h)`` (the matmul), ``hidden_state``, ``perturb_hidden`` and
    ``sums_projected_and_recurrent`` (whether ``body`` reads projected_t and recurrent_t only
    through their sum, so that their gradients are one array).

    Returns ``run(weights, initial_carry, projected (T, B, G·H), extras) -> (final_carry,
    outputs (T, B, H))``, ``extras`` a pytree of (T, B, ...) float arrays (every input of a
    custom VJP gets a gradient, so no integer or boolean arrays).
    """
    matrix = "hidden_to_hidden"

    def without_matrix(weights):
        return {k: v for k, v in weights.items() if k != matrix}

    def forward_scan(weights, carry, projected, extras, save):
        def step(carry, inputs_t):
            projected_t, extras_t = inputs_t
            h = cell.hidden_state(carry)
            args = (without_matrix(weights), carry, projected_t, cell.recurrent_product(weights, h))
            if not save:
                return body(*args, extras_t)
            (carry, output), pullback = jax.vjp(body, *args, extras_t)
            return carry, (output, h, pullback)

        return jax.lax.scan(step, carry, (projected, extras), reverse=reverse, unroll=unroll)

    @jax.custom_vjp
    def run(weights, carry, projected, extras):
        return forward_scan(weights, carry, projected, extras, save=False)

    def run_forward(weights, carry, projected, extras):
        carry, (outputs, hiddens, pullbacks) = forward_scan(
            weights, carry, projected, extras, save=True
        )
        return (carry, outputs), (weights, hiddens, pullbacks)

    def run_backward(residuals, cotangents):
        weights, hiddens, pullbacks = residuals
        d_final_carry, d_outputs = cotangents
        stack_d_projected = not cell.sums_projected_and_recurrent

        def back(d_carry, saved_t):
            h, pullback, d_output = saved_t
            d_weights, d_carry, d_projected, d_recurrent, d_extras = pullback((d_carry, d_output))
            # through recurrent_t = h_{t-1} W: dh_{t-1} = dz_t W^T
            d_h = jax.vjp(lambda h: cell.recurrent_product(weights, h), h)[1](d_recurrent)[0]
            d_carry = cell.perturb_hidden(d_carry, d_h)
            return d_carry, (
                d_recurrent,
                d_projected if stack_d_projected else None,
                d_extras,
                d_weights,
            )

        d_carry, (d_recurrents, d_projected, d_extras, d_weights) = jax.lax.scan(
            back, d_final_carry, (hiddens, pullbacks, d_outputs), reverse=not reverse, unroll=unroll
        )
        rows_h = hiddens.reshape(-1, hiddens.shape[-1])
        rows_dz = d_recurrents.reshape(-1, d_recurrents.shape[-1])
        d_w = jnp.matmul(
            jax.lax.optimization_barrier(rows_h.T),
            rows_dz.astype(rows_h.dtype),
            preferred_element_type=weights[matrix].dtype,
        )
        d_weights = {matrix: d_w, **jax.tree.map(lambda d: jnp.sum(d, axis=0), d_weights)}
        if not stack_d_projected:
            d_projected = d_recurrents
        return d_weights, d_carry, d_projected, d_extras

    run.defvjp(run_forward, run_backward)
    return run

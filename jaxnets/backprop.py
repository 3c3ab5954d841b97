"""Backpropagation by hand: the lectures' error signals for an MLP of any depth.

Lectures: seed 000 "Backpropagation" (line 420: the error signal y-bar = dL/dy; line 499:
the full algorithm; line 608: vectorized form), seed 002 "backprop with deltas" (line 1420:
delta_t = dL/da_t, dL/dw_jt = delta_t z_j, output delta = y-hat - y), seed 004 §4
"Backpropagation" (line 1126; vectorized MLP backprop at line 1314).

For a minibatch X (N, D) and layers (W_l, b_l) with Flax's ``(in, out)`` kernels::

    forward:  Z_l = H_{l-1} W_l + b_l,   H_l = g(Z_l),   H_0 = X,   output Y = Z_L
    backward: Z_L-bar = dL/dZ_L                           (output error signal, below)
              W_l-bar = H_{l-1}^T Z_l-bar,   b_l-bar = sum_n Z_l-bar
              H_{l-1}-bar = Z_l-bar W_l^T,   Z_{l-1}-bar = H_{l-1}-bar * g'(Z_{l-1})

The loss is the MEAN per-example loss of :mod:`jaxnets.losses`, and each loss is paired
with its canonical output unit, whose error signal needs no Jacobian (seed 002 line 1437):

* ``squared_error`` with a linear output:  Z_L-bar = (Y - T) / N
* ``softmax_cross_entropy`` with softmax:  Z_L-bar = (softmax(Z_L) - onehot(T)) / N
* ``binary_cross_entropy`` with a sigmoid: Z_L-bar = (sigmoid(Z_L) - T) / N

Every derivative g' is written by hand below, from Z (and H where that is how the
lectures write it: sigmoid' = H(1 - H), tanh' = 1 - H^2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxnets import losses
from jaxnets.nn.activations import get_activation

__all__ = [
    "Layer",
    "DERIVATIVES",
    "OUTPUT_LOSSES",
    "mlp_forward",
    "backprop",
    "layers_from_mlp_params",
    "mlp_params_from_layers",
]

Layer = tuple[jax.Array, jax.Array]  # (W: (in, out), b: (out,))


def _leaky_relu_grad(z, h, negative_slope: float = 0.01):
    return jnp.where(z > 0, 1.0, negative_slope).astype(z.dtype)


def _elu_grad(z, h, alpha: float = 1.0):
    # For z <= 0, h = alpha (e^z - 1), so alpha e^z = h + alpha.
    return jnp.where(z > 0, jnp.ones_like(z), h + alpha)


DERIVATIVES: dict[str, Callable[..., jax.Array]] = {
    "identity": lambda z, h: jnp.ones_like(z),
    "relu": lambda z, h: (z > 0).astype(z.dtype),
    "leaky_relu": _leaky_relu_grad,
    "abs": lambda z, h: jnp.sign(z),
    "elu": _elu_grad,
    "softplus": lambda z, h: jax.nn.sigmoid(z),
    "sigmoid": lambda z, h: h * (1.0 - h),
    "tanh": lambda z, h: 1.0 - h * h,
    "hard_tanh": lambda z, h: (jnp.abs(z) < 1.0).astype(z.dtype),
    # The step's derivative is 0 wherever it exists: no error signal gets through.
    "hard_threshold": lambda z, h: jnp.zeros_like(z),
}
"""g'(z) for every parameter-free elementwise activation, as ``g'(z, h, **options)``."""


def _squared_error_signal(y, t):
    return y - t


def _softmax_signal(y, t):
    return jax.nn.softmax(y, axis=-1) - jax.nn.one_hot(t, y.shape[-1], dtype=y.dtype)


def _sigmoid_signal(y, t):
    return jax.nn.sigmoid(y) - t.reshape(y.shape)


OUTPUT_LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "squared_error": _squared_error_signal,
    "softmax_cross_entropy": _softmax_signal,
    "binary_cross_entropy": _sigmoid_signal,
}
"""Per-example dL/dZ_L for each loss with its canonical output unit."""


def _check(activation: str, loss: str) -> None:
    spec = get_activation(activation)  # unknown names raise with close matches
    if activation not in DERIVATIVES:
        raise ValueError(
            f"backprop supports parameter-free elementwise activations "
            f"({', '.join(DERIVATIVES)}); {activation!r} is a {spec.kind} activation"
        )
    if loss not in OUTPUT_LOSSES:
        raise ValueError(f"backprop supports the losses {', '.join(OUTPUT_LOSSES)}; got {loss!r}")


def mlp_forward(
    layers: Sequence[Layer], x: jax.Array, activation: str, **options: Any
) -> tuple[list[jax.Array], list[jax.Array]]:
    """Forward pass keeping every layer's values.

    Returns ``(zs, hs)``: ``zs[l]`` the pre-activations (N, out_l) of layer l (the last is
    the output Y), ``hs[l]`` the input to layer l (``hs[0] = x``: (N, D)).
    """
    g = get_activation(activation).fn
    hs, zs = [x], []
    for i, (w, b) in enumerate(layers):
        z = hs[-1] @ w + b
        zs.append(z)
        if i < len(layers) - 1:
            hs.append(g(z, **options))
    return zs, hs


def backprop(
    layers: Sequence[Layer],
    x: jax.Array,
    t: jax.Array,
    *,
    activation: str,
    loss: str,
    **options: Any,
) -> tuple[jax.Array, list[Layer]]:
    """Mean loss and its gradient for every (W, b), by forward then backward pass.

    Args:
      layers: ``[(W_1, b_1), ..., (W_L, b_L)]``, W_l: (in_l, out_l), b_l: (out_l,).
      x: inputs (N, D).
      t: targets: (N, out_L) reals for squared error, (N,) class indices for softmax
        cross-entropy, (N,) {0, 1} labels for binary cross-entropy (out_L = 1).
      activation: hidden activation name (a key of :data:`DERIVATIVES`).
      loss: ``squared_error``, ``softmax_cross_entropy`` or ``binary_cross_entropy``.
      options: activation options (``negative_slope``, ``alpha``).
    Returns:
      ``(loss_value, grads)`` with ``grads[l] = (dL/dW_l, dL/db_l)`` shaped like layers[l].
    """
    _check(activation, loss)
    if not layers:
        raise ValueError("backprop needs at least one (W, b) layer")
    zs, hs = mlp_forward(layers, x, activation, **options)
    n = x.shape[0]
    value = jnp.mean(jax.vmap(losses.get_loss(loss).fn)(zs[-1], t))
    g_prime = DERIVATIVES[activation]

    z_bar = OUTPUT_LOSSES[loss](zs[-1], t) / n  # the mean over N examples
    grads: list[Layer] = []
    for layer in reversed(range(len(layers))):
        w, _ = layers[layer]
        grads.append((hs[layer].T @ z_bar, jnp.sum(z_bar, axis=0)))
        if layer > 0:
            h_bar = z_bar @ w.T
            z_bar = h_bar * g_prime(zs[layer - 1], hs[layer], **options)
    return value, grads[::-1]


def layers_from_mlp_params(params: Mapping[str, Any]) -> list[Layer]:
    """``[(W, b), ...]`` from the params of :class:`jaxnets.models.mlp.MLP`.

    Accepts the MLP's ``params`` (``hidden_0, ..., hidden_{L-2}, out``) when every hidden
    layer is a Dense layer with a parameter-free activation (no PReLU slopes, maxout, RBF).
    """
    extra = sorted(k for k in params if k != "out" and not k.startswith("hidden_"))
    if "out" not in params or extra:
        raise ValueError(
            "expected MLP params with keys hidden_0, ..., out and parameter-free activations; "
            f"got keys {sorted(params)}"
        )
    layers = []
    for i in range(len(params) - 1):
        dense = params[f"hidden_{i}"]
        if set(dense) != {"kernel", "bias"}:
            raise ValueError(f"hidden_{i} is not a Dense layer (params {sorted(dense)})")
        layers.append((dense["kernel"], dense["bias"]))
    return [*layers, (params["out"]["kernel"], params["out"]["bias"])]


def mlp_params_from_layers(layers: Sequence[Layer]) -> dict[str, dict[str, jax.Array]]:
    """Inverse of :func:`layers_from_mlp_params`: an MLP params dict from ``[(W, b), ...]``."""
    names = [f"hidden_{i}" for i in range(len(layers) - 1)] + ["out"]
    return {name: {"kernel": w, "bias": b} for name, (w, b) in zip(names, layers, strict=True)}

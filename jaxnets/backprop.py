"""Backpropagation by hand: the lectures' error signals for an MLP of any depth, and backprop
through time for an Elman RNN.

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

Backprop through time (:func:`elman_forward`, :func:`bptt`): seed 004, Lecture 13 §3
"Backprop Through Time" (line 2836; vectorized rules eqs. 15-22 at line 2887), for an Elman
RNN with a readout at every step, in the row convention of
:class:`jaxnets.nn.recurrent.ElmanCell` (the lecture's ``Z-bar^T X`` is our ``X^T Z-bar``)::

    forward:  Z_t = X_t U + b + H_{t-1} W,   H_t = phi(Z_t),   R_t = H_t V + c,   H_0 = h0
    backward: R_t-bar = per-example dl/dR_t                       (eqs. 16-17, table above)
              H_t-bar = R_t-bar V^T + Z_{t+1}-bar W^T,  Z_{T+1}-bar = 0            (eq. 18)
              Z_t-bar = H_t-bar * phi'(Z_t)                                         (eq. 19)
              U-bar = 1/N sum_{t=1}^T X_t^T Z_t-bar,   b-bar = 1/N sum_t sum_n Z_t-bar
              V-bar = 1/N sum_{t=1}^T H_t^T R_t-bar,   c-bar = 1/N sum_t sum_n R_t-bar
              W-bar = 1/N sum_{t=1}^{T-1} H_t^T Z_{t+1}-bar  (+ 1/N h0^T Z_1-bar)   (eqs. 20-22)

The loss is ``L = 1/N sum_n sum_t l(R_t^n, target_t^n)``: summed over time steps, averaged
over the N sequences of the batch, which is the 1/N of eqs. 20-22.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxnets import losses
from jaxnets.nn.activations import get_activation

__all__ = [
    "DERIVATIVES",
    "OUTPUT_LOSSES",
    "ElmanTrace",
    "Layer",
    "backprop",
    "bptt",
    "elman_forward",
    "elman_params_from_flax",
    "flax_params_from_elman",
    "layers_from_mlp_params",
    "mlp_forward",
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
    _check_loss("backprop", loss)


def _check_loss(caller: str, loss: str) -> None:
    if loss not in OUTPUT_LOSSES:
        raise ValueError(f"{caller} supports the losses {', '.join(OUTPUT_LOSSES)}; got {loss!r}")


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


# --- backprop through time (Lecture 13 §3) -------------------------------------------------

# ElmanCell's activation names -> the names of their derivatives in DERIVATIVES.
_ELMAN_DERIVATIVES = {"tanh": "tanh", "relu": "relu", "linear": "identity"}
_OUTPUT_UNITS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "squared_error": lambda r: r,
    "softmax_cross_entropy": lambda r: jax.nn.softmax(r, axis=-1),
    "binary_cross_entropy": jax.nn.sigmoid,
}


class ElmanTrace(NamedTuple):
    """Every array of an Elman RNN's forward pass, batch first (N sequences, T steps)."""

    h0: jax.Array  # (N, H) the state before the first step
    z: jax.Array  # (N, T, H) hidden pre-activations Z_t
    h: jax.Array  # (N, T, H) hidden states H_t = phi(Z_t)
    r: jax.Array  # (N, T, O) readout pre-activations (logits) R_t
    y: jax.Array  # (N, T, O) outputs Y_t: R_t, softmax(R_t) or sigmoid(R_t), by the loss


def _check_elman(activation: str, loss: str) -> None:
    if activation not in _ELMAN_DERIVATIVES:
        raise ValueError(
            f"bptt supports the Elman activations {', '.join(_ELMAN_DERIVATIVES)}; "
            f"got {activation!r}"
        )
    _check_loss("bptt", loss)


def elman_forward(
    params: Mapping[str, jax.Array],
    x: jax.Array,
    h0: jax.Array | None = None,
    *,
    activation: str = "tanh",
    loss: str = "squared_error",
) -> ElmanTrace:
    """Forward pass of an Elman RNN with a readout at every step, keeping every array.

    Args:
      params: ``{"U": (F, H), "b": (H,), "W": (H, H), "V": (H, O), "c": (O,)}``.
      x: inputs (N, T, F).
      h0: initial state (N, H); zeros (the lecture's choice) when None.
      activation: hidden phi, ``"tanh"``, ``"relu"`` or ``"linear"`` (as in ElmanCell).
      loss: picks the output unit Y_t of :class:`ElmanTrace` (identity for
        ``squared_error``, softmax, sigmoid); R_t does not depend on it.
    Returns:
      :class:`ElmanTrace` (h0, Z, H, R, Y).
    """
    _check_elman(activation, loss)
    phi = get_activation(_ELMAN_DERIVATIVES[activation]).fn
    n = x.shape[0]
    u, w = params["U"], params["W"]
    if h0 is None:
        h0 = jnp.zeros((n, w.shape[0]), jnp.result_type(x, w))
    # The input projection for every step at once; only H_{t-1} W is sequential.
    projected = jnp.swapaxes(x @ u + params["b"], 0, 1)  # (T, N, H)

    def step(h_prev, projected_t):
        z = projected_t + h_prev @ w
        h = phi(z)
        return h, (z, h)

    _, (z, h) = jax.lax.scan(step, h0, projected)
    z, h = jnp.swapaxes(z, 0, 1), jnp.swapaxes(h, 0, 1)
    r = h @ params["V"] + params["c"]
    return ElmanTrace(h0, z, h, r, _OUTPUT_UNITS[loss](r))


def bptt(
    params: Mapping[str, jax.Array],
    x: jax.Array,
    targets: jax.Array,
    *,
    activation: str = "tanh",
    loss: str = "squared_error",
    h0: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Loss and its gradient by backprop through time, an explicit loop over t = T..1.

    The loss is ``1/N sum_n sum_t l(R_t^n, target_t^n)`` with ``l`` the per-example loss of
    :mod:`jaxnets.losses` on the logits R_t, so R_t-bar is the table of :data:`OUTPUT_LOSSES`.
    A Python loop over time is the point here (Lecture 13 eqs. 15-22 as written); the fast
    path is ``jax.grad`` through the ``lax.scan`` of :class:`jaxnets.nn.recurrent.Recurrent`.

    Args:
      params: ``{"U": (F, H), "b": (H,), "W": (H, H), "V": (H, O), "c": (O,)}``.
      x: inputs (N, T, F).
      targets: (N, T, O) reals for ``squared_error``; (N, T) class indices in [0, O) for
        ``softmax_cross_entropy``; (N, T) {0, 1} labels for ``binary_cross_entropy`` (O = 1).
      activation: hidden phi, ``"tanh"``, ``"relu"`` or ``"linear"``.
      loss: ``squared_error`` (identity output), ``softmax_cross_entropy`` (softmax output)
        or ``binary_cross_entropy`` (logistic output).
      h0: initial state (N, H); zeros when None, and then W's gradient has the lecture's
        bounds t = 1..T-1 exactly (the extra ``h0^T Z_1-bar`` term is zero).
    Returns:
      ``(loss_value, grads)``, grads a dict shaped like ``params``.
    """
    trace = elman_forward(params, x, h0, activation=activation, loss=loss)
    n, time = x.shape[:2]
    per_step = jax.vmap(jax.vmap(losses.get_loss(loss).fn), in_axes=1)(trace.r, targets)
    value = jnp.sum(per_step) / n
    phi_prime = DERIVATIVES[_ELMAN_DERIVATIVES[activation]]
    v, w = params["V"], params["W"]

    grads = {name: jnp.zeros_like(p) for name, p in params.items()}
    z_bar_next = jnp.zeros_like(trace.h0)  # Z_{T+1}-bar: nothing after the last step
    for t in reversed(range(time)):
        r_bar = OUTPUT_LOSSES[loss](trace.r[:, t], targets[:, t])  # eqs. 16-17, (N, O)
        h_bar = r_bar @ v.T + z_bar_next @ w.T  # eq. 18, (N, H)
        z_bar = h_bar * phi_prime(trace.z[:, t], trace.h[:, t])  # eq. 19
        h_prev = trace.h[:, t - 1] if t > 0 else trace.h0
        grads["U"] += x[:, t].T @ z_bar  # eq. 20
        grads["b"] += jnp.sum(z_bar, axis=0)
        grads["V"] += trace.h[:, t].T @ r_bar  # eq. 21
        grads["c"] += jnp.sum(r_bar, axis=0)
        grads["W"] += h_prev.T @ z_bar  # eq. 22: Z_t-bar pairs with H_{t-1}
        z_bar_next = z_bar
    return value, {name: g / n for name, g in grads.items()}


def elman_params_from_flax(
    recurrent_params: Mapping[str, Any], readout_params: Mapping[str, jax.Array]
) -> dict[str, jax.Array]:
    """``{"U", "b", "W", "V", "c"}`` from the params of ``Recurrent(ElmanCell)`` + ``nn.Dense``.

    recurrent_params: ``{"cell": {"input_to_hidden": {"kernel": (F, H), "bias": (H,)},
    "hidden_to_hidden": (H, H)}}``; readout_params: ``{"kernel": (H, O), "bias": (O,)}``.
    """
    cell = recurrent_params.get("cell", {})
    if set(cell) != {"input_to_hidden", "hidden_to_hidden"}:
        raise ValueError(
            "expected Recurrent(ElmanCell) params {'cell': {'input_to_hidden', "
            f"'hidden_to_hidden'}}; got cell keys {sorted(cell)} (an LSTM or GRU cell?)"
        )
    w = cell["hidden_to_hidden"]
    if w.shape[0] != w.shape[1]:
        raise ValueError(
            f"an Elman cell's hidden_to_hidden is square (H, H); got {w.shape} "
            "(a gated cell stacks its gates along the columns)"
        )
    if set(readout_params) != {"kernel", "bias"}:
        raise ValueError(
            f"expected Dense readout params {{'kernel', 'bias'}}; got {sorted(readout_params)}"
        )
    dense = cell["input_to_hidden"]
    return {
        "U": dense["kernel"],
        "b": dense["bias"],
        "W": w,
        "V": readout_params["kernel"],
        "c": readout_params["bias"],
    }


def flax_params_from_elman(
    params: Mapping[str, jax.Array],
) -> tuple[dict[str, Any], dict[str, jax.Array]]:
    """Inverse of :func:`elman_params_from_flax`: ``(recurrent_params, readout_params)``."""
    cell = {
        "input_to_hidden": {"kernel": params["U"], "bias": params["b"]},
        "hidden_to_hidden": params["W"],
    }
    return {"cell": cell}, {"kernel": params["V"], "bias": params["c"]}

"""One LSTM layer by oneDNN's LSTM primitive on the CPU, with its gradients.

Lecture: seed 004, Lecture 14 "Learning Long-Term Dependencies" §4 (line 3022): the LSTM's
gates ``[i f g o] = x_t U + b + h_{t-1} W``, ``c_t = σ(f) c_{t-1} + σ(i) tanh(g)``,
``h_t = σ(o) tanh(c_t)``; Lecture 13 "Recurrent Neural Nets" §3 (line 2721): backprop through
time is backprop on the unrolled graph. XLA:CPU runs the recurrence as a ``while`` loop of small
matmuls and elementwise kernels; oneDNN's ``lstm_forward`` / ``lstm_backward`` run the whole
sequence in one call each (``src/lstm.cc``). A ``jax.custom_vjp`` ties them: under
differentiation the forward pass (``forward_training``) keeps a workspace of every step's gates
and states for the backward pass; without, ``forward_inference`` keeps none.

The workspace (66 MB at H=256, T=100, batch 32) stays in the library, named by a ticket that
the forward pass returns and the backward pass presents: as an XLA buffer it was mapped and
page-faulted afresh at every step, a third of the step's time. The library keeps the last four;
a backward pass whose workspace a later forward pass took runs its forward pass again. Measured
(``python -m benchmarks.run --cases lstm``, H=256, T=100, batch 32, 2 cores): the training step
went from 88 ms (the scan) to 32 ms; PyTorch's ``nn.LSTM`` takes 45 ms.

Layouts are :class:`jaxnets.nn.recurrent.LSTMCell`'s (gates (i, f, g, o), which are oneDNN's
(i, f, c~, o)): x (N, T, F) batch first, w_ih (F, 4H), w_hh (H, 4H), b (4H,). The kernels take
float32 only, and run only where XLA compiles for the CPU (:func:`library.cpu_or_pure`); every
other call runs the ``pure`` function the caller passes, jaxnets' own ``lax.scan``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.native import library

__all__ = ["lstm_layer", "supports"]

_TARGETS = {
    "inference": ("jaxnets_lstm_inference", "JaxnetsLstmInference"),
    "forward": ("jaxnets_lstm_forward", "JaxnetsLstmForward"),
    "backward": ("jaxnets_lstm_backward", "JaxnetsLstmBackward"),
}

LstmResult = tuple[jax.Array, tuple[jax.Array, jax.Array]]


def _call(kind: str, outs, *operands, reverse: bool):
    target = library.register(*_TARGETS[kind])
    # an ensemble vmapped over members runs one kernel call per member
    return jax.ffi.ffi_call(target, outs, vmap_method="sequential")(
        *operands, reverse=np.int64(reverse)
    )


def _forward(kind: str, xs, h0, c0, w_ih, w_hh, b, reverse: bool):
    """``kind`` "inference": -> ys (T, N, H), h_T, c_T (N, H); "forward" (training): and the
    ticket () uint32 under which the library keeps the forward pass's workspace for the
    backward pass (``src/lstm.cc``: WorkspacePool)."""
    time, batch, _ = xs.shape
    state = jax.ShapeDtypeStruct((batch, h0.shape[-1]), jnp.float32)
    outs = (jax.ShapeDtypeStruct((time, batch, h0.shape[-1]), jnp.float32), state, state)
    if kind == "forward":
        outs += (jax.ShapeDtypeStruct((), jnp.uint32),)
    return _call(kind, outs, xs, h0, c0, w_ih, w_hh, b, reverse=reverse)


# Time-major (oneDNN's tnc, its fastest layout): xs (T, N, F) -> ys (T, N, H).
@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _onednn_lstm(xs, h0, c0, w_ih, w_hh, b, reverse: bool) -> LstmResult:
    ys, h_last, c_last = _forward("inference", xs, h0, c0, w_ih, w_hh, b, reverse)
    return ys, (h_last, c_last)


def _onednn_lstm_fwd(xs, h0, c0, w_ih, w_hh, b, reverse):
    ys, h_last, c_last, ticket = _forward("forward", xs, h0, c0, w_ih, w_hh, b, reverse)
    return (ys, (h_last, c_last)), (xs, h0, c0, w_ih, w_hh, b, ys, h_last, c_last, ticket)


def _onednn_lstm_bwd(reverse, residuals, cotangents):
    d_ys, (dh_last, dc_last) = cotangents
    outs = tuple(jax.ShapeDtypeStruct(a.shape, jnp.float32) for a in residuals[:6])
    return _call("backward", outs, *residuals, d_ys, dh_last, dc_last, reverse=reverse)


_onednn_lstm.defvjp(_onednn_lstm_fwd, _onednn_lstm_bwd)


def _batch_first(x, h0, c0, w_ih, w_hh, b, *, reverse: bool) -> LstmResult:
    ys, carry = _onednn_lstm(jnp.swapaxes(x, 0, 1), h0, c0, w_ih, w_hh, b, reverse)
    return jnp.swapaxes(ys, 0, 1), carry


def _check_shapes(x, h0, c0, w_ih, w_hh, b) -> None:
    if x.ndim != 3 or h0.ndim != 2:
        raise ValueError(
            f"lstm_layer expects x (N, T, F) and h0, c0 (N, H); got x {x.shape}, h0 {h0.shape}"
        )
    (batch, _, features), hidden = x.shape, h0.shape[1]
    want = {
        "h0": (batch, hidden),
        "c0": (batch, hidden),
        "w_ih": (features, 4 * hidden),
        "w_hh": (hidden, 4 * hidden),
        "b": (4 * hidden,),
    }
    got = {"h0": h0.shape, "c0": c0.shape, "w_ih": w_ih.shape, "w_hh": w_hh.shape, "b": b.shape}
    wrong = [f"{k} {got[k]} (want {want[k]})" for k in want if tuple(got[k]) != want[k]]
    if wrong:
        raise ValueError(
            f"lstm_layer: for x {x.shape} (N, T, F) and hidden {hidden}: " + ", ".join(wrong)
        )


def supports(*operands: jax.Array) -> bool:
    """Whether the oneDNN kernels compute ``lstm_layer(x, h0, c0, w_ih, w_hh, b)`` (when
    :func:`library.enabled`): all six operands float32, no empty axis (oneDNN has no LSTM over
    zero steps, sequences, features or units)."""
    x, h0 = operands[:2]
    return all(a.dtype == jnp.float32 for a in operands) and min(*x.shape, h0.shape[1]) >= 1


def lstm_layer(
    x: jax.Array,
    h0: jax.Array,
    c0: jax.Array,
    w_ih: jax.Array,
    w_hh: jax.Array,
    b: jax.Array,
    *,
    pure: Callable[..., LstmResult],
    reverse: bool = False,
) -> LstmResult:
    """An LSTM over a sequence, on oneDNN where it :func:`supports` the call, else ``pure``.

    Args:
      x: (N, T, F) inputs, batch first.
      h0, c0: (N, H) initial hidden state and cell.
      w_ih: (F, 4H) input-to-hidden weights, w_hh: (H, 4H) hidden-to-hidden, b: (4H,) bias;
        gates (i, f, g, o) in blocks of H.
      pure: ``pure(x, h0, c0, w_ih, w_hh, b) -> (y, (h_T, c_T))``, the same layer in JAX,
        run where the kernels do not (not built or switched off, not float32, not the CPU).
      reverse: run from the last time step to the first (y stays in the input's time order).

    Returns:
      ``(y, (h_T, c_T))``: y (N, T, H) every step's hidden state; h_T, c_T (N, H) the state
      after the last step processed (step 0 when ``reverse``).
    """
    args = (x, h0, c0, w_ih, w_hh, b)
    _check_shapes(*args)
    if not supports(*args):
        return pure(*args)
    return library.cpu_or_pure(functools.partial(_batch_first, reverse=reverse), pure, *args)

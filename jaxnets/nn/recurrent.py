"""Recurrent cells and one sequence wrapper on ``jax.lax.scan``.

Lectures: seed 004, Lecture 13 "Recurrent Neural Nets" (line 2721): §2 an RNN is one set of
hidden units that feeds into itself, unrolled over time with the weights shared; §3 backprop
through time is backprop on the unrolled graph. Lecture 14 "Learning Long-Term Dependencies"
(line 3022): §2 why gradients explode or vanish (the Jacobian ``∂h_T/∂h_t`` is a product of
per-step Jacobians, :func:`gradient_flow` measures it), §3 gradient clipping
(``make_optimizer(..., clip_norm=...)``), identity initialisation of the recurrent matrix
(IRNN, Le et al. 2015), §4 long short-term memory (Hochreiter & Schmidhuber 1997) and the
gated recurrent unit (Cho et al. 2014).

Every cell splits its work in two, which is what makes the scan fast:

* ``project(x)``: the input-to-hidden affine map for ALL time steps at once, one big matmul
  ``(batch, time, features) -> (batch, time, gates * hidden)`` before the scan;
* ``step(weights, carry, projected_t)``: the part that must be sequential, a pure function of
  the recurrent weights (``recurrent_weights()``), so the scan body touches no module state:
  the recurrent matmul ``h_{t-1} W`` and then ``update``, the cell's elementwise equations.

Training speed on XLA:CPU (measured against PyTorch's ``nn.LSTM``, ``benchmarks/rnn.py``):
the backward pass computes each weight gradient as ONE matmul over all (time, batch) rows,
with the transposed operand materialised, instead of a small matmul per step accumulated T
times (:mod:`jaxnets.nn._scan_vjp`, which reaches the cell only through its public methods):
XLA:CPU runs a dot that contracts its left operand's leading axis about half as fast.

:class:`Recurrent` runs a cell over a sequence with ``lax.scan`` (never a Python loop over
time), with ``unroll``, ``reverse`` and per-sequence ``lengths`` (:mod:`jaxnets.nn.lengths`):
past its length a sequence's state is held and its outputs are zero, and ``reverse`` reads
each sequence's own valid part backwards. :class:`Bidirectional` and :class:`Stacked` compose
wrappers; :func:`make_recurrent` builds any of them from a cell name (``rnn``, ``relu_rnn``,
``irnn``, ``lstm``, ``gru``).

Parameter layout (the hand-written BPTT in :mod:`jaxnets.backprop` relies on it):
``input_to_hidden/{kernel (F, G·H), bias (G·H,)}``, ``hidden_to_hidden (H, G·H)`` and, for the
GRU only, ``hidden_to_hidden_bias (3H,)``. Gates are ordered (i, f, g, o) for the LSTM and
(r, z, n) for the GRU, as in PyTorch, so weights can be copied across.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnets.native import library
from jaxnets.native.lstm import lstm_layer
from jaxnets.nn._scan_vjp import dense_dot_general, rows_matmul, scan_with_batched_weight_grad
from jaxnets.nn.lengths import reverse_valid, time_mask

__all__ = [
    "CELLS",
    "Bidirectional",
    "ElmanCell",
    "GRUCell",
    "LSTMCell",
    "Recurrent",
    "Stacked",
    "gradient_flow",
    "identity_init",
    "make_cell",
    "make_recurrent",
    "reverse_valid",
]

Carry = Any


def identity_init(scale: float = 1.0) -> Callable[..., jax.Array]:
    """Initializer ``scale · I`` for a square (H, H) recurrent matrix (IRNN, Le et al. 2015)."""

    def init(key, shape, dtype=jnp.float32):
        del key
        rows, cols = shape
        if rows != cols:
            raise ValueError(f"identity_init needs a square matrix; got shape {shape}")
        return scale * jnp.eye(rows, dtype=dtype)

    return init


_RECURRENT_INITS = {
    "orthogonal": lambda scale: nn.initializers.orthogonal(scale),
    "identity": identity_init,
}


class _Cell(nn.Module):
    """Shared parts of the cells: the hoisted input projection and the recurrent matrix."""

    hidden: int
    recurrent_init: str = "orthogonal"
    recurrent_scale: float = 1.0
    dtype: Any = None

    gates = 1  # blocks of H in the projections
    # update() reads projected_t and recurrent_t only through their sum, so the two have the
    # same gradient and the backward scan stores it once (Elman, LSTM; not the GRU)
    sums_projected_and_recurrent = True

    def setup(self):
        if self.recurrent_init not in _RECURRENT_INITS:
            raise ValueError(
                f"unknown recurrent_init {self.recurrent_init!r}; choose one of "
                f"{', '.join(_RECURRENT_INITS)}"
            )
        if self.hidden < 1:
            raise ValueError(f"hidden must be >= 1; got {self.hidden}")
        size = self.gates * self.hidden
        self.input_to_hidden = nn.Dense(
            size, dtype=self.dtype, bias_init=self._bias_init, dot_general=dense_dot_general
        )
        init = _RECURRENT_INITS[self.recurrent_init](self.recurrent_scale)
        # one (H, H) block per gate: orthogonal/identity per block, not over the (H, G·H) whole
        self.hidden_to_hidden = self.param(
            "hidden_to_hidden",
            lambda key, shape: jnp.concatenate(
                [
                    init(k, (self.hidden, self.hidden), jnp.float32)
                    for k in jax.random.split(key, self.gates)
                ],
                axis=1,
            ),
            (self.hidden, size),
        )

    @staticmethod
    def _bias_init(key, shape, dtype=jnp.float32):
        return jnp.zeros(shape, dtype)

    def project(self, x: jax.Array) -> jax.Array:
        """Input-to-hidden for every time step: x (..., time, features) -> (..., time, G·H)."""
        return self.input_to_hidden(x)

    def recurrent_weights(self) -> dict[str, jax.Array]:
        """The arrays :meth:`step` needs: ``{"hidden_to_hidden": (H, G·H)}``."""
        return {"hidden_to_hidden": self.hidden_to_hidden}

    def recurrent_product(self, weights, h: jax.Array) -> jax.Array:
        """``h_{t-1} W``: h (batch, H) @ ``weights["hidden_to_hidden"]`` (H, G·H) -> (batch, G·H),
        in the cell's ``dtype`` when it has one."""
        w = weights["hidden_to_hidden"]
        return h @ (w if self.dtype is None else w.astype(self.dtype))

    def step(self, weights, carry: Carry, projected_t: jax.Array) -> tuple[Carry, jax.Array]:
        """One time step: carry, projected_t (batch, G·H) -> (carry_t, h_t (batch, H)): the
        recurrent matmul ``h_{t-1} W`` (W = ``weights["hidden_to_hidden"]``), then ``update``."""
        return self.update(
            weights, carry, projected_t, self.recurrent_product(weights, self.hidden_state(carry))
        )

    def initial_carry(self, batch_shape: tuple[int, ...], dtype: Any = jnp.float32) -> Carry:
        """Zero state for a batch: h (*batch_shape, H)."""
        return jnp.zeros((*batch_shape, self.hidden), dtype)

    def hidden_state(self, carry: Carry) -> jax.Array:
        """The hidden units h (..., H) of a carry (the LSTM's carry also holds its cell c)."""
        return carry

    def perturb_hidden(self, carry: Carry, delta: jax.Array) -> Carry:
        """``carry`` with ``delta`` added to its hidden units h (used by :func:`gradient_flow`)."""
        return carry + delta


_ELMAN_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu, "linear": lambda z: z}


class ElmanCell(_Cell):
    """Elman RNN: ``h_t = φ(x_t U + b + h_{t-1} W)`` (Lecture 13 eqs. 3-4).

    Fields: ``hidden`` (H), ``activation`` (``"tanh"``, ``"relu"`` or ``"linear"``, the last
    for the lecture's hand-designed running-sum networks), ``recurrent_init``
    (``"orthogonal"`` or ``"identity"``; IRNN is relu with the identity), ``recurrent_scale``.
    Carry: h (batch, H).
    """

    activation: str = "tanh"

    def setup(self):
        if self.activation not in _ELMAN_ACTIVATIONS:
            raise ValueError(
                f"unknown Elman activation {self.activation!r}; choose one of "
                f"{', '.join(_ELMAN_ACTIVATIONS)}"
            )
        super().setup()

    def update(self, weights, carry, projected_t, recurrent_t) -> tuple[Carry, jax.Array]:
        """The step after its matmul: projected_t and recurrent_t = h_{t-1} W, each (batch, H)
        -> (h_t, h_t)."""
        del weights, carry
        h = _ELMAN_ACTIVATIONS[self.activation](projected_t + recurrent_t)
        return h, h


class LSTMCell(_Cell):
    """Long short-term memory (Lecture 14 §4), gates (i, f, g, o) as in PyTorch's ``nn.LSTM``.

    ``[i f g o] = x_t U + b + h_{t-1} W``; ``c_t = σ(f) c_{t-1} + σ(i) tanh(g)``;
    ``h_t = σ(o) tanh(c_t)``. The forget-gate bias starts at ``forget_bias`` (1 by default,
    Jozefowicz et al. 2015) so the cell remembers from the start. Carry: (c, h), each (batch, H).
    """

    forget_bias: float = 1.0

    gates = 4

    def _bias_init(self, key, shape, dtype=jnp.float32):
        del key
        return jnp.zeros(shape, dtype).at[self.hidden : 2 * self.hidden].set(self.forget_bias)

    def initial_carry(self, batch_shape: tuple[int, ...], dtype: Any = jnp.float32) -> Carry:
        zeros = super().initial_carry(batch_shape, dtype)
        return zeros, zeros

    def hidden_state(self, carry: Carry) -> jax.Array:
        return carry[1]

    def perturb_hidden(self, carry: Carry, delta: jax.Array) -> Carry:
        return carry[0], carry[1] + delta

    def update(self, weights, carry, projected_t, recurrent_t) -> tuple[Carry, jax.Array]:
        """The step after its matmul: carry (c, h), projected_t and recurrent_t = h_{t-1} W,
        each (batch, 4H) -> ((c_t, h_t), h_t)."""
        del weights
        c, _ = carry
        i, f, g, o = jnp.split(projected_t + recurrent_t, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h


class GRUCell(_Cell):
    """Gated recurrent unit (Lecture 14 §4), PyTorch's convention, gates (r, z, n).

    ``r = σ(x U_r + b_r + h W_r + c_r)``, ``z = σ(x U_z + b_z + h W_z + c_z)``,
    ``n = tanh(x U_n + b_n + r ∘ (h W_n + c_n))``, ``h_t = (1 − z) n + z h_{t-1}``.
    The recurrent bias ``c`` (``hidden_to_hidden_bias``, 3H) is separate because r multiplies
    it. Carry: h (batch, H).
    """

    gates = 3
    sums_projected_and_recurrent = False  # r multiplies the recurrent part of n

    def setup(self):
        super().setup()
        self.hidden_to_hidden_bias = self.param(
            "hidden_to_hidden_bias", nn.initializers.zeros, (3 * self.hidden,), jnp.float32
        )

    def recurrent_weights(self) -> dict[str, jax.Array]:
        return {**super().recurrent_weights(), "hidden_to_hidden_bias": self.hidden_to_hidden_bias}

    def update(self, weights, carry, projected_t, recurrent_t) -> tuple[Carry, jax.Array]:
        """The step after its matmul: carry h (batch, H), projected_t and recurrent_t =
        h_{t-1} W, each (batch, 3H) -> (h_t, h_t)."""
        recurrent = recurrent_t + weights["hidden_to_hidden_bias"].astype(recurrent_t.dtype)
        x_r, x_z, x_n = jnp.split(projected_t, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(recurrent, 3, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        h = (1.0 - z) * n + z * carry
        return h, h


CELLS: dict[str, Callable[..., _Cell]] = {
    "rnn": functools.partial(ElmanCell, activation="tanh"),
    "relu_rnn": functools.partial(ElmanCell, activation="relu"),
    "irnn": functools.partial(ElmanCell, activation="relu", recurrent_init="identity"),
    "lstm": LSTMCell,
    "gru": GRUCell,
}


def make_cell(kind: str, hidden: int, **fields: Any) -> _Cell:
    """A cell by name (``rnn``, ``relu_rnn``, ``irnn``, ``lstm``, ``gru``) with ``hidden`` units."""
    if kind not in CELLS:
        close = difflib.get_close_matches(kind, list(CELLS), n=2, cutoff=0.4)
        hint = f" — did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown cell {kind!r}{hint} (choose one of {', '.join(CELLS)})")
    return CELLS[kind](hidden=hidden, **fields)


class Recurrent(nn.Module):
    """Run ``cell`` over a sequence with ``lax.scan``.

    Fields:
      cell: an :class:`ElmanCell`, :class:`LSTMCell` or :class:`GRUCell`.
      reverse: read the sequence backwards (each sequence's valid part, when ``lengths`` is given).
      unroll: steps per scan iteration (``lax.scan(unroll=...)``); ``True`` unrolls fully.

    Call: ``x`` (batch, time, features), optional ``lengths`` (batch,), ``initial_carry``, and
    ``hidden_perturbation`` (time, batch, H) added to h after each step (the handle through
    which :func:`gradient_flow` differentiates with respect to h_t).
    Returns ``(outputs, final_carry)``: outputs (batch, time, H), zero past each length, in
    the input's time order also when ``reverse``; the carry after each sequence's last valid step.

    A float32 :class:`LSTMCell` without ``lengths`` or ``hidden_perturbation`` runs on oneDNN's
    LSTM primitive on the CPU (:mod:`jaxnets.native.lstm`, where the kernels are built and
    enabled): the scan's numbers to float32 rounding, the training step 2.7x as fast.
    """

    cell: _Cell
    reverse: bool = False
    unroll: int | bool = 1

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        lengths: jax.Array | None = None,
        initial_carry: Carry | None = None,
        hidden_perturbation: jax.Array | None = None,
    ) -> tuple[jax.Array, Carry]:
        if x.ndim != 3:
            raise ValueError(f"Recurrent expects x of shape (batch, time, features); got {x.shape}")
        batch, time, _ = x.shape
        mask = time_mask(lengths, batch, time)
        flip_in_place = self.reverse and mask is not None
        if flip_in_place:
            x = reverse_valid(x, lengths)
        if mask is None and hidden_perturbation is None and self._native_lstm(x):
            return self._lstm_layer(x, initial_carry)
        projected = jnp.swapaxes(self.cell.project(x), 0, 1)  # (time, batch, G·H)
        if initial_carry is None:
            initial_carry = self.cell.initial_carry((batch,), projected.dtype)
        if mask is not None:
            mask = mask.astype(projected.dtype)

        def body(weights, carry, projected_t, recurrent_t, extras_t):
            mask_t, delta_t = extras_t
            new_carry, output = self.cell.update(weights, carry, projected_t, recurrent_t)
            if delta_t is not None:
                new_carry = self.cell.perturb_hidden(new_carry, delta_t)
                output = self.cell.hidden_state(new_carry)
            if mask_t is not None:
                keep = mask_t[:, None] > 0
                new_carry = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new_carry, carry)
                output = jnp.where(keep, output, 0)
            return new_carry, output

        run = scan_with_batched_weight_grad(
            self.cell, body, self.reverse and not flip_in_place, self.unroll
        )
        carry, outputs = run(
            self.cell.recurrent_weights(), initial_carry, projected, (mask, hidden_perturbation)
        )
        outputs = jnp.swapaxes(outputs, 0, 1)
        if flip_in_place:
            outputs = reverse_valid(outputs, lengths)
        return outputs, carry

    def _native_lstm(self, x: jax.Array) -> bool:
        """Whether this call runs on :func:`jaxnets.native.lstm.lstm_layer` (oneDNN's LSTM on
        the CPU): a float32 :class:`LSTMCell` once its parameters exist, the kernels enabled."""
        return (
            isinstance(self.cell, LSTMCell)
            and self.cell.dtype in (None, jnp.float32)
            and x.dtype == jnp.float32
            and not self.is_initializing()
            and library.enabled()
        )

    def _lstm_layer(self, x: jax.Array, initial_carry: Carry | None) -> tuple[jax.Array, Carry]:
        """The LSTM over x (batch, time, F) by :func:`lstm_layer`; its pure path is the scan
        of ``__call__`` without lengths or perturbation, the cell's ``nn.Dense`` projection
        written out."""
        params = self.cell.variables["params"]
        if initial_carry is None:
            initial_carry = self.cell.initial_carry((x.shape[0],), x.dtype)
        run = scan_with_batched_weight_grad(
            self.cell,
            lambda w, carry, p, r, _: self.cell.update(w, carry, p, r),
            self.reverse,
            self.unroll,
        )

        def scan(x, h0, c0, w_ih, w_hh, b):
            projected = jnp.swapaxes(rows_matmul(x, w_ih, None) + b, 0, 1)
            (c, h), outputs = run({"hidden_to_hidden": w_hh}, (c0, h0), projected, (None, None))
            return jnp.swapaxes(outputs, 0, 1), (h, c)

        c0, h0 = initial_carry
        w_ih, b = params["input_to_hidden"]["kernel"], params["input_to_hidden"]["bias"]
        outputs, (h, c) = lstm_layer(
            x, h0, c0, w_ih, params["hidden_to_hidden"], b, pure=scan, reverse=self.reverse
        )
        return outputs, (c, h)


class Bidirectional(nn.Module):
    """A forward and a backward :class:`Recurrent` over the same input, outputs concatenated.

    Call: x (batch, time, F), optional lengths (batch,) -> (outputs (batch, time, H_f + H_b),
    (forward_carry, backward_carry)).
    """

    forward: Recurrent
    backward: Recurrent

    def __call__(self, x: jax.Array, lengths: jax.Array | None = None):
        out_f, carry_f = self.forward(x, lengths)
        out_b, carry_b = self.backward(x, lengths)
        return jnp.concatenate([out_f, out_b], axis=-1), (carry_f, carry_b)


class Stacked(nn.Module):
    """Recurrent layers applied in turn, each reading the outputs of the one below.

    Call: x (batch, time, F), optional lengths (batch,) -> (outputs of the top layer
    (batch, time, H_top), tuple of every layer's final carry, bottom first).
    """

    layers: Sequence[nn.Module]

    def __call__(self, x: jax.Array, lengths: jax.Array | None = None):
        carries = []
        for layer in self.layers:
            x, carry = layer(x, lengths)
            carries.append(carry)
        return x, tuple(carries)


def make_recurrent(
    kind: str,
    hidden: int,
    *,
    layers: int = 1,
    bidirectional: bool = False,
    unroll: int | bool = 1,
    **cell_fields: Any,
) -> nn.Module:
    """A (stacked, optionally bidirectional) recurrent network of ``kind`` cells.

    Returns a module called as ``(x (batch, time, F), lengths=None) -> (outputs, carry)``:
    outputs (batch, time, H) or (batch, time, 2H) when bidirectional; for ``layers == 1`` the
    carry is the layer's own, else a tuple over layers.
    """
    if layers < 1:
        raise ValueError(f"layers must be >= 1; got {layers}")

    def one_layer():
        def direction(reverse):
            return Recurrent(make_cell(kind, hidden, **cell_fields), reverse=reverse, unroll=unroll)

        return (
            Bidirectional(direction(False), direction(True)) if bidirectional else direction(False)
        )

    return one_layer() if layers == 1 else Stacked(tuple(one_layer() for _ in range(layers)))


def gradient_flow(recurrent: Recurrent, variables: Any, x: jax.Array) -> jax.Array:
    """Norms ``‖∂h_T/∂h_t‖_F`` for t = 1..T: how much the last state depends on each earlier one.

    Lecture 14 §2: ``∂h_T/∂h_t = Π_{s>t} ∂h_s/∂h_{s-1}``, whose norm shrinks (vanishing) or
    grows (exploding) geometrically in T − t unless the recurrence keeps it near 1. Computed
    exactly with ``jax.jacrev`` through a perturbation δ_t added to h_t (for the LSTM the cell
    c_t is held fixed, the usual convention).

    Args:
      recurrent: a single-direction :class:`Recurrent`.
      variables: its variables (``recurrent.init(...)``).
      x: one sequence (time, features).
    Returns:
      (time,) Frobenius norms; the last entry is ‖I‖ = sqrt(H).
    """
    hidden = recurrent.cell.hidden
    time = x.shape[0]

    def last_state(delta):
        _, carry = recurrent.apply(variables, x[None], hidden_perturbation=delta)
        return recurrent.cell.hidden_state(carry)[0]

    jac = jax.jacrev(last_state)(jnp.zeros((time, 1, hidden), x.dtype))  # (H, time, 1, H)
    return jnp.sqrt(jnp.sum(jnp.square(jac), axis=(0, 2, 3)))

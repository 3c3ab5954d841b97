"""Hand-designed recurrent nets: running sum, larger sum, parity.

Lecture: seed 004, Lecture 13 "Recurrent Neural Nets" §2 (line 2761), designing RNNs by hand:

* Example 1 (line 2781, Figure 3 top): all units linear, input-to-hidden, hidden-to-hidden
  and hidden-to-output weights 1, so the output at step t is the sum of the inputs so far.
* Example 2 (line 2787, Figure 3 bottom): two inputs, a linear hidden unit with input
  weights 1 and -1 and recurrent weight 1 (it holds sum(x1) - sum(x2)), a logistic output
  with weight 5, "effectively a hard threshold at 0": is the first input's sum the larger?
* Example 3 (line 2801, Figure 4): parity. The output y^(t-1) feeds back into two
  hard-threshold hidden units, h1 = AND(y^(t-1), x^(t)) and h2 = OR(...), and
  y^(t) = XOR = h2 AND NOT h1; the dummy y^(0) = 0 makes the first parity bit the input.

Each builder returns ``(model, variables)`` with the weights set by hand, so the exact
outputs can be tested. Examples 1 and 2 run on the library's own :class:`Recurrent` +
:class:`ElmanCell` with a ``Dense`` readout (:class:`ElmanReadoutRNN`); Example 3's output
feedback is not an Elman cell, so :class:`OutputFeedbackRNN` is its own small module.
These are not registered models: their weights are the point, not their architecture.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnets.backprop import flax_params_from_elman
from jaxnets.nn.activations import get_activation, hard_threshold
from jaxnets.nn.recurrent import ElmanCell, Recurrent

__all__ = [
    "ElmanReadoutRNN",
    "OutputFeedbackRNN",
    "larger_sum_rnn",
    "parity_rnn",
    "running_sum_rnn",
]


class ElmanReadoutRNN(nn.Module):
    """An Elman RNN with an affine readout at every time step (Lecture 13 eqs. 3-6).

    ``h_t = φ(x_t U + b + h_{t-1} W)``, ``y_t = ψ(h_t V + c)``, h_0 = 0.
    Parameters: ``rnn`` (the :class:`Recurrent`'s ``{"cell": {...}}``) and ``readout``
    (a ``Dense`` kernel (H, O) and bias (O,)); :func:`jaxnets.backprop.elman_params_from_flax`
    turns them into the ``{"U", "b", "W", "V", "c"}`` of the hand-written BPTT.

    Attributes:
      hidden: H hidden units.
      num_outputs: O output units.
      activation: φ, an :class:`ElmanCell` activation (``"tanh"``, ``"relu"``, ``"linear"``).
      output_activation: ψ, an elementwise activation name (``"identity"``, ``"sigmoid"``, ...).

    Call: x (batch, time, features) -> y (batch, time, num_outputs).
    """

    hidden: int = 1
    num_outputs: int = 1
    activation: str = "linear"
    output_activation: str = "identity"

    def setup(self):
        output_unit = get_activation(self.output_activation)
        if output_unit.kind != "elementwise":
            raise ValueError(
                f"output_activation must be an elementwise activation (identity, sigmoid, ...); "
                f"{self.output_activation!r} is a {output_unit.kind} activation"
            )
        self.output_unit = output_unit.fn
        # in setup, not a compact call: there the cell would become this module's child and
        # its params would not nest under rnn/cell
        self.rnn = Recurrent(ElmanCell(hidden=self.hidden, activation=self.activation))
        self.readout = nn.Dense(self.num_outputs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h, _ = self.rnn(x)
        return self.output_unit(self.readout(h))


def _elman_variables(**weights: Any) -> dict[str, Any]:
    """Variables of :class:`ElmanReadoutRNN` from hand-set U, b, W, V, c (nested lists)."""
    dtype = jnp.result_type(float)  # the default float: float64 under jax.enable_x64
    recurrent, readout = flax_params_from_elman(
        {name: jnp.asarray(value, dtype) for name, value in weights.items()}
    )
    return {"params": {"rnn": recurrent, "readout": readout}}


def running_sum_rnn() -> tuple[ElmanReadoutRNN, dict[str, Any]]:
    """Example 1: the running sum, every unit linear and every weight 1 (biases 0).

    ``model.apply(variables, x)`` maps x (batch, time, 1) to y (batch, time, 1) with
    ``y[:, t] = x[:, 0] + ... + x[:, t]``, for real-valued inputs too.
    """
    model = ElmanReadoutRNN(hidden=1, num_outputs=1, activation="linear")
    return model, _elman_variables(U=[[1]], b=[0], W=[[1]], V=[[1]], c=[0])


def larger_sum_rnn() -> tuple[ElmanReadoutRNN, dict[str, Any]]:
    """Example 2: which of two inputs has the larger sum so far.

    The linear hidden unit holds ``d_t = sum_{s<=t} (x1_s - x2_s)`` (input weights 1 and -1,
    recurrent weight 1); the logistic output is ``sigmoid(5 d_t)``. x (batch, time, 2) ->
    y (batch, time, 1): above 0.5 exactly when input 1's sum is larger, below 0.5 exactly
    when input 2's is. Ties: the lecture's net has no output bias, so a tie gives d_t = 0 and
    exactly 0.5, "neither larger". With binary inputs a lead of one gives sigmoid(5) ≈ 0.993.
    """
    model = ElmanReadoutRNN(
        hidden=1, num_outputs=1, activation="linear", output_activation="sigmoid"
    )
    return model, _elman_variables(U=[[1], [-1]], b=[0], W=[[1]], V=[[5]], c=[0])


class OutputFeedbackRNN(nn.Module):
    """One input, ``hidden`` hard-threshold units, one hard-threshold output fed back (Figure 4).

    ``h^(t) = 1[x^(t) u + y^(t-1) w + b > 0]`` and ``y^(t) = 1[h^(t) · v + c > 0]``, started
    from the dummy ``y^(0) = initial_output``. The input term ``x u + b`` is computed for all
    steps before the ``lax.scan``; only the feedback of y is sequential.

    Parameters: ``input_to_hidden`` (Dense kernel (1, H), bias (H,)), ``output_to_hidden``
    w (H,), ``hidden_to_output`` v (H,), ``output_bias`` c (). Hard thresholds have zero
    gradient, so these weights are set by hand (:func:`parity_rnn`), not learned.

    Attributes:
      hidden: H hidden units.
      initial_output: the dummy y^(0).
      unroll: time steps per ``lax.scan`` iteration.

    Call: x (batch, time) -> y (batch, time) in {0, 1}.
    """

    hidden: int = 2
    initial_output: float = 0.0
    unroll: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 2:
            raise ValueError(
                f"OutputFeedbackRNN expects x of shape (batch, time), one scalar input per "
                f"step; got {x.shape}"
            )
        weight_init = nn.initializers.normal(stddev=1.0)
        projected = nn.Dense(self.hidden, name="input_to_hidden")(x[..., None])  # (B, T, H)
        output_to_hidden = self.param("output_to_hidden", weight_init, (self.hidden,))
        hidden_to_output = self.param("hidden_to_output", weight_init, (self.hidden,))
        output_bias = self.param("output_bias", nn.initializers.zeros, ())

        def step(y_prev, projected_t):
            h = hard_threshold(projected_t + y_prev[:, None] * output_to_hidden)
            y = hard_threshold(h @ hidden_to_output + output_bias)
            return y, y

        y0 = jnp.full(x.shape[:1], self.initial_output, projected.dtype)
        _, ys = jax.lax.scan(step, y0, jnp.swapaxes(projected, 0, 1), unroll=self.unroll)
        return jnp.swapaxes(ys, 0, 1)


def parity_rnn(unroll: int = 1) -> tuple[OutputFeedbackRNN, dict[str, Any]]:
    """Example 3: the parity of the inputs so far, from the lecture's truth table.

    The table (line 2821) fixes what each unit computes; its weights (Figure 4, not in the
    text) follow from the Lecture 5 technique, as for the hand-set XOR net:
    h1 = AND = 1[x + y_prev - 1.5 > 0], h2 = OR = 1[x + y_prev - 0.5 > 0],
    y = 1[h2 - h1 - 0.5 > 0]. Every pre-activation is a half-integer on binary inputs, so no
    unit ever sits on its threshold. x (batch, time) in {0, 1} -> y (batch, time) with
    ``y[:, t] = (x[:, 0] + ... + x[:, t]) mod 2``.

    Args:
      unroll: time steps per ``lax.scan`` iteration (does not change the outputs).
    """
    dtype = jnp.result_type(float)
    params = {
        "input_to_hidden": {
            "kernel": jnp.array([[1.0, 1.0]], dtype),
            "bias": jnp.array([-1.5, -0.5], dtype),
        },
        "output_to_hidden": jnp.array([1.0, 1.0], dtype),
        "hidden_to_output": jnp.array([-1.0, 1.0], dtype),
        "output_bias": jnp.array(-0.5, dtype),
    }
    return OutputFeedbackRNN(hidden=2, initial_output=0.0, unroll=unroll), {"params": params}

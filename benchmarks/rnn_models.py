"""The LSTM regressor of the LSTM benchmark three ways: jaxnets' registry model, the plain Flax
model and hand-written jitted step a Flax user writes, and PyTorch's ``nn.LSTM``.

Lectures: seed 004 Lecture 13 "Recurrent Neural Nets" (line 2721) and Lecture 14 "Learning
Long-Term Dependencies" (line 3022: §4 long short-term memory). Each maps x: (batch, time,
features) to (batch, 1) through the last hidden state h_T and a linear readout; the loss is
:func:`half_mse`. jaxnets, flax and torch are imported inside the functions, when a case needs
them. :mod:`benchmarks.rnn` times them.
"""

from __future__ import annotations

import functools

__all__ = ["flax_model", "flax_train_step", "half_mse", "jaxnets_model", "torch_model"]


def jaxnets_model(hidden: int, unroll: int = 1, dtype: str = "float32"):
    """The registry's ``lstm_regressor`` (:class:`jaxnets.models.rnn.SequenceModel`): jaxnets'
    LSTM and a Dense(1) readout of its last hidden state h_T.

    x: (batch, time, features) -> (batch, 1); called as ``apply(variables, x, train=bool)``.
    Parameters: ``recurrent/cell`` (jaxnets' layout: ``input_to_hidden/{kernel (F, 4H),
    bias (4H,)}``, ``hidden_to_hidden (H, 4H)``, gates (i, f, g, o)) and ``readout``.
    ``dtype`` other than float32 is passed on as the model's computation dtype.
    """
    import jax.numpy as jnp

    import jaxnets
    import jaxnets.models  # noqa: F401  (registers the models)

    overrides = {} if dtype == "float32" else {"dtype": jnp.dtype(dtype)}
    return jaxnets.create_model("lstm_regressor", hidden=hidden, unroll=unroll, **overrides)


def flax_model(hidden: int, unroll: int = 1, dtype: str = "float32"):
    """The benchmark's plain Flax model: ``nn.RNN(nn.OptimizedLSTMCell(hidden))`` and a Dense(1)
    readout of h_T (no jaxnets code).

    x: (batch, time, features) -> (batch, 1) float32; called as ``apply(variables, x,
    train=bool)``. Parameters: ``cell/{ii,if,ig,io}/kernel (F, H)`` (no bias),
    ``cell/{hi,hf,hg,ho}/{kernel (H, H), bias (H,)}`` and ``readout``.
    """
    import flax.linen as nn
    import jax.numpy as jnp

    class FlaxLSTMRegressor(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            del train
            cell = nn.OptimizedLSTMCell(hidden, dtype=jnp.dtype(dtype), name="cell")
            _, h = nn.RNN(cell, unroll=unroll, return_carry=True, name="lstm")(x)[0]
            return nn.Dense(1, name="readout")(h.astype(jnp.float32))

    return FlaxLSTMRegressor()


def half_mse(prediction, target):
    """The batch mean of ½ (prediction − target)² (jaxnets' ``squared_error``), in JAX or
    PyTorch."""
    return 0.5 * ((prediction - target) ** 2).mean()


def flax_train_step(model, optimizer):
    """What a Flax user writes: ``(state, (x, y)) -> (state, {"loss"})`` under
    ``jax.jit(donate_argnums=0)``, the loss the batch mean of ½ (model(x) − y)²; ``state`` is a
    ``flax.training.train_state.TrainState``.

    Returns ``(train_step, create_state)``; ``create_state(variables) -> state`` takes the
    variables of ``model.init``.
    """
    import jax
    from flax.training import train_state

    def create_state(variables):
        return train_state.TrainState.create(
            apply_fn=model.apply, params=variables["params"], tx=optimizer
        )

    @functools.partial(jax.jit, donate_argnums=0)
    def train_step(state, batch):
        x, y = batch

        def loss_fn(params):
            return half_mse(state.apply_fn({"params": params}, x, train=True), y)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), {"loss": loss}

    return train_step, create_state


def torch_model(features: int, hidden: int):
    """The eager PyTorch model: ``nn.LSTM(features, hidden, batch_first=True)`` and an
    ``nn.Linear(hidden, 1)`` readout of h_T: x (batch, time, features) -> (batch, 1).

    Attributes ``lstm`` and ``readout``; the LSTM's ``weight_ih_l0`` (4H, F), ``weight_hh_l0``
    (4H, H) and two biases (4H,) are in gate order (i, f, g, o), as jaxnets'.
    """
    from torch import nn

    class TorchLSTMRegressor(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(features, hidden, batch_first=True)
            self.readout = nn.Linear(hidden, 1)

        def forward(self, x):
            _, (h, _) = self.lstm(x)  # h: (layers, batch, H)
            return self.readout(h[-1].float())

    return TorchLSTMRegressor()

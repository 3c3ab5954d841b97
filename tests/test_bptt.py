"""Backprop through time by hand (Lecture 13 §3, eqs. 15-22) against jax.grad of the library's
Recurrent(ElmanCell) + Dense readout, in float64."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import backprop, losses
from jaxnets.nn.recurrent import ElmanCell, GRUCell, LSTMCell, Recurrent

BATCH, TIME, FEATURES, HIDDEN = 4, 6, 3, 5
OUTPUTS = {"squared_error": 2, "softmax_cross_entropy": 2, "binary_cross_entropy": 1}
_jit_bptt = jax.jit(backprop.bptt, static_argnames=("activation", "loss"))


def _rel_error(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b)))


def _problem(loss: str, seed: int, time: int = TIME):
    """Random float64 params {"U", "b", "W", "V", "c"}, inputs (N, T, F) and targets.

    numpy draws the numbers: eager jax.random would compile a sampler per shape.
    """
    outputs = OUTPUTS[loss]
    rng = np.random.default_rng(seed)
    shapes = {
        "U": (FEATURES, HIDDEN),
        "b": (HIDDEN,),
        "W": (HIDDEN, HIDDEN),
        "V": (HIDDEN, outputs),
        "c": (outputs,),
    }
    params = {k: jnp.asarray(0.6 * rng.standard_normal(s)) for k, s in shapes.items()}
    x = jnp.asarray(rng.standard_normal((BATCH, time, FEATURES)))
    if loss == "squared_error":
        targets = jnp.asarray(rng.standard_normal((BATCH, time, outputs)))
    else:
        targets = jnp.asarray(rng.integers(0, 2, (BATCH, time)))
    return params, x, targets


@functools.partial(jax.jit, static_argnames=("activation", "loss"))
def _bptt_and_library_grad(params, x, targets, h0, *, activation, loss):
    """The hand-written BPTT and jax.grad of the jaxnets modules' loss, in one compile.

    The reference loss runs Recurrent(ElmanCell) + nn.Dense on the flax params from the
    converter, summed over t and averaged over the batch.
    """
    recurrent = Recurrent(ElmanCell(hidden=HIDDEN, activation=activation))
    readout = nn.Dense(params["V"].shape[1])
    per_example = jax.vmap(jax.vmap(losses.get_loss(loss).fn))

    def library_loss(recurrent_params, readout_params):
        h, _ = recurrent.apply({"params": recurrent_params}, x, initial_carry=h0)
        r = readout.apply({"params": readout_params}, h)
        return jnp.sum(per_example(r, targets)) / x.shape[0], (h, r)

    (ref_value, (h, r)), ref_grads = jax.value_and_grad(library_loss, (0, 1), has_aux=True)(
        *backprop.flax_params_from_elman(params)
    )
    value, grads = backprop.bptt(params, x, targets, activation=activation, loss=loss, h0=h0)
    trace = backprop.elman_forward(params, x, h0, activation=activation, loss=loss)
    return {
        "value": value,
        "grads": grads,
        "trace": trace,
        "ref_value": ref_value,
        "ref_grads": backprop.elman_params_from_flax(*ref_grads),
        "library_h": h,
        "library_r": r,
    }


def _check_against_library(params, x, targets, h0, activation, loss):
    # the converter's layout is the one the module itself creates
    recurrent = Recurrent(ElmanCell(hidden=HIDDEN, activation=activation))
    created = jax.eval_shape(recurrent.init, jax.random.PRNGKey(0), x)["params"]
    converted = backprop.flax_params_from_elman(params)[0]
    assert jax.tree.map(jnp.shape, created) == jax.tree.map(jnp.shape, converted)

    out = _bptt_and_library_grad(params, x, targets, h0, activation=activation, loss=loss)
    trace, grads, ref = out["trace"], out["grads"], out["ref_grads"]
    np.testing.assert_allclose(trace.h, out["library_h"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(trace.r, out["library_r"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out["value"], out["ref_value"], rtol=1e-12)
    assert set(grads) == set(ref) == {"U", "b", "W", "V", "c"}
    for name in ref:
        assert grads[name].dtype == jnp.float64 and grads[name].shape == params[name].shape
        assert np.linalg.norm(ref[name]) > 0, name
        assert _rel_error(grads[name], ref[name]) < 1e-10, name


@pytest.mark.parametrize(
    ("activation", "loss"),
    [
        ("tanh", "squared_error"),
        ("tanh", "softmax_cross_entropy"),
        ("tanh", "binary_cross_entropy"),
        ("relu", "squared_error"),
        ("relu", "softmax_cross_entropy"),
    ],
)
def test_bptt_matches_jax_grad_of_the_library_modules(activation, loss):
    with jax.enable_x64(True):
        params, x, targets = _problem(loss, seed=len(activation) + len(loss))
        _check_against_library(params, x, targets, None, activation, loss)


def test_bptt_with_a_nonzero_initial_state_and_linear_units():
    with jax.enable_x64(True):
        params, x, targets = _problem("squared_error", seed=7)
        h0 = jnp.asarray(np.random.default_rng(8).standard_normal((BATCH, HIDDEN)))
        _check_against_library(params, x, targets, h0, "linear", "squared_error")


def test_w_gradient_sum_starts_at_the_second_step():
    """Eq. 22 sums Z_{t+1}-bar H_t^T over t = 1..T-1: with h0 = 0 a single step gives W nothing
    to learn, while U, b, V, c still learn; an initial state h0 adds its own h0^T Z_1-bar."""
    with jax.enable_x64(True):
        params, x, targets = _problem("squared_error", seed=3, time=1)
        _, grads = _jit_bptt(params, x, targets, activation="tanh", loss="squared_error")
        np.testing.assert_array_equal(grads["W"], 0.0)
        for name in ("U", "b", "V", "c"):
            assert np.linalg.norm(grads[name]) > 1e-3, name

        h0 = jnp.asarray(np.random.default_rng(4).standard_normal((BATCH, HIDDEN)))
        _, grads = _jit_bptt(params, x, targets, activation="tanh", loss="squared_error", h0=h0)
        trace = backprop.elman_forward(params, x, h0, activation="tanh")
        r_bar = trace.r[:, 0] - targets[:, 0]
        z_bar = (r_bar @ params["V"].T) * (1 - trace.h[:, 0] ** 2)
        np.testing.assert_allclose(grads["W"], h0.T @ z_bar / BATCH, rtol=1e-12)


def test_bptt_is_the_lecture_scalar_recursion_for_one_unit():
    """Eqs. 7-14 for one linear unit, u = w = v = 1 (the running-sum net of Example 1), one
    sequence, loss sum_t (y_t - t_t)^2 / 2: written out by hand for T = 3."""
    with jax.enable_x64(True):
        one = jnp.ones((1, 1), jnp.float64)
        params = {"U": one, "b": jnp.zeros(1), "W": one, "V": one, "c": jnp.zeros(1)}
        x = jnp.array([[[1.0], [2.0], [3.0]]])
        targets = jnp.zeros((1, 3, 1))
        _, grads = backprop.bptt(params, x, targets, activation="linear", loss="squared_error")
    # y = h = running sum (1, 3, 6); y-bar = r-bar = (1, 3, 6);
    # h-bar_3 = 6, h-bar_2 = 3 + 6 = 9, h-bar_1 = 1 + 9 = 10 (z-bar = h-bar: linear units)
    assert float(grads["U"][0, 0]) == 10 * 1 + 9 * 2 + 6 * 3  # eq. 12
    assert float(grads["V"][0, 0]) == 1 * 1 + 3 * 3 + 6 * 6  # eq. 13
    assert float(grads["W"][0, 0]) == 9 * 1 + 6 * 3  # eq. 14: t = 1..T-1 only
    assert float(grads["b"][0]) == 10 + 9 + 6


def test_converters_round_trip_and_reject_gated_cells():
    with jax.enable_x64(True):
        params, _, _ = _problem("squared_error", seed=0)
    back = backprop.elman_params_from_flax(*backprop.flax_params_from_elman(params))
    assert back.keys() == params.keys()
    for name in params:
        np.testing.assert_array_equal(back[name], params[name])

    readout = {"kernel": jnp.ones((HIDDEN, 2)), "bias": jnp.zeros(2)}
    x = jnp.ones((1, 2, FEATURES))
    for cell, message in [(LSTMCell, "square"), (GRUCell, "LSTM or GRU")]:
        shapes = jax.eval_shape(Recurrent(cell(hidden=HIDDEN)).init, jax.random.PRNGKey(0), x)
        with pytest.raises(ValueError, match=message):
            backprop.elman_params_from_flax(shapes["params"], readout)
    with pytest.raises(ValueError, match="Dense readout"):
        backprop.elman_params_from_flax(backprop.flax_params_from_elman(params)[0], {"w": 1})


def test_unsupported_activation_and_loss_are_reported():
    params, x, targets = _problem("squared_error", seed=0)
    with pytest.raises(ValueError, match="Elman activations tanh, relu, linear; got 'sigmoid'"):
        backprop.bptt(params, x, targets, activation="sigmoid")
    with pytest.raises(ValueError, match="supports the losses .* got 'binary_hinge'"):
        backprop.bptt(params, x, targets, loss="binary_hinge")

"""jaxnets.native's oneDNN LSTM against jaxnets' own scan (the pure JAX path), issue 20.

Lecture: seed 004, Lecture 14 §4 (long short-term memory) and Lecture 13 §3 (backprop through
time). The fast path must give the scan's outputs and gradients (of x, the initial carry and
all three parameters) to float32 rounding, in both directions, under vmap (ensembles), and
leave to the scan what it does not compute (float64, lengths, perturbed hidden states).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import native, registry
from jaxnets.gradcheck import gradcheck_model
from jaxnets.native.lstm import lstm_layer
from jaxnets.nn.recurrent import LSTMCell, Recurrent, gradient_flow, make_recurrent

pytestmark = pytest.mark.usefixtures("native_kernels")  # tests/conftest.py


def _calls_onednn(fn, *args) -> bool:
    return "jaxnets_lstm" in jax.jit(fn).lower(*args).as_text()


def _assert_close(fast, pure, tolerance=1e-5):
    """Every leaf within ``tolerance`` of the largest entry of its pure counterpart."""
    for got, want in zip(jax.tree.leaves(fast), jax.tree.leaves(pure), strict=True):
        scale = float(jnp.max(jnp.abs(want)))
        assert scale > 0
        np.testing.assert_allclose(got, want, rtol=0, atol=tolerance * scale)


def _layer_and_inputs(batch, time, features, hidden, reverse=False, seed=0):
    layer = Recurrent(LSTMCell(hidden), reverse=reverse)
    keys = jax.random.split(jax.random.PRNGKey(seed), 5)
    x = jax.random.normal(keys[0], (batch, time, features))
    variables = layer.init(keys[1], x)
    # a bias away from zero and a nonzero initial carry, so every gradient is exercised
    params = jax.tree.map(lambda p: p, variables["params"])
    params["cell"]["input_to_hidden"]["bias"] = 0.5 * jax.random.normal(keys[2], (4 * hidden,))
    carry = tuple(jax.random.normal(k, (batch, hidden)) for k in keys[3:5])
    return layer, {"params": params}, x, carry


def _loss(layer):
    """A scalar reading every output: all hidden states, h_T and c_T, each with its own
    weights, so their cotangents differ."""

    def loss(variables, x, carry):
        outputs, (c, h) = layer.apply(variables, x, initial_carry=carry)
        ramp = jnp.linspace(-1.0, 1.0, outputs.size).reshape(outputs.shape)
        return jnp.sum(jnp.sin(outputs) * ramp) + jnp.sum(h**2) + jnp.sum(jnp.cos(c))

    return loss


def _textbook_lstm(x, h0, c0, w_ih, w_hh, b):
    """Lecture 14 §4's equations as a plain scan: x (N, T, F) -> (y (N, T, H), (h_T, c_T))."""

    def step(carry, x_t):
        h, c = carry
        i, f, g, o = jnp.split(x_t @ w_ih + b + h @ w_hh, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    carry, ys = jax.lax.scan(step, (h0, c0), jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(ys, 0, 1), carry


def _value_and_grads(layer, variables, x, carry):
    return jax.jit(jax.value_and_grad(_loss(layer), argnums=(0, 1, 2)))(variables, x, carry)


SHAPES = {
    "batch 1": (1, 6, 3, 8),
    "hidden 7": (3, 5, 4, 7),
    "hidden 20, one step": (2, 1, 5, 20),
    "hidden 33": (4, 9, 2, 33),
}


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("name", SHAPES)
def test_outputs_and_gradients_equal_the_scans_to_float32_rounding(name, reverse):
    layer, variables, x, carry = _layer_and_inputs(*SHAPES[name], reverse=reverse)
    fast = _value_and_grads(layer, variables, x, carry)
    with native.pure_jax():
        pure = _value_and_grads(layer, variables, x, carry)
        assert not _calls_onednn(_loss(layer), variables, x, carry)
    _assert_close(fast, pure)
    # the fast path really ran: the gradient's program calls oneDNN's forward and backward
    program = jax.jit(jax.grad(_loss(layer))).lower(variables, x, carry).as_text()
    assert "jaxnets_lstm_forward" in program and "jaxnets_lstm_backward" in program
    # without gradients, oneDNN's inference primitive (no workspace) computes the outputs
    apply = jax.jit(lambda v, x, carry: layer.apply(v, x, initial_carry=carry))
    assert "jaxnets_lstm_inference" in apply.lower(variables, x, carry).as_text()
    outputs = apply(variables, x, carry)
    with native.pure_jax():
        _assert_close(outputs, apply(variables, x, carry))


def test_a_backward_pass_finds_or_rebuilds_its_forward_passs_workspace():
    # the library keeps the last few forward passes' workspaces: a pullback run twice reads
    # its workspace twice; one run after more forward passes than the library keeps runs its
    # forward pass again; every time it gives the scan's gradients
    layer, variables, x, carry = _layer_and_inputs(2, 7, 3, 5)
    params = variables["params"]["cell"]
    args = (x, *reversed(carry), params["input_to_hidden"]["kernel"])
    args += (params["hidden_to_hidden"], params["input_to_hidden"]["bias"])
    cotangent = (jnp.cos(x[..., :1] * jnp.ones(5)), (jnp.ones_like(carry[1]), -carry[0]))

    def pullback():
        return jax.vjp(lambda *a: lstm_layer(*a, pure=_textbook_lstm), *args)[1]

    with native.pure_jax():
        want = pullback()(cotangent)
    fast = pullback()
    _assert_close(fast(cotangent), want)
    _assert_close(fast(cotangent), want)
    for scale in range(2, 8):  # more forward passes than the library keeps workspaces
        jax.block_until_ready(lstm_layer(scale * x, *args[1:], pure=_textbook_lstm))
    _assert_close(fast(cotangent), want)


def test_float64_runs_the_scan_and_gradient_checks_pass():
    with jax.enable_x64(True):
        layer, variables, x, carry = _layer_and_inputs(2, 4, 3, 5)
        variables, x, carry = jax.tree.map(lambda a: a.astype(jnp.float64), (variables, x, carry))
        assert not _calls_onednn(_loss(layer), variables, x, carry)
        fast = _value_and_grads(layer, variables, x, carry)
        with native.pure_jax():
            pure = _value_and_grads(layer, variables, x, carry)
        _assert_close(fast, pure, 0.0)
    report = gradcheck_model("lstm_regressor")
    assert report.passed, report


def test_lengths_and_perturbations_keep_the_scan():
    layer, variables, x, carry = _layer_and_inputs(3, 5, 2, 4)
    lengths = jnp.array([5, 2, 3])
    assert _calls_onednn(lambda v, x: layer.apply(v, x), variables, x)
    assert not _calls_onednn(lambda v, x: layer.apply(v, x, lengths), variables, x)
    # gradient_flow perturbs h_t inside the recurrence: the scan's job
    norms = gradient_flow(layer, variables, x[0])
    assert norms.shape == (5,)
    np.testing.assert_allclose(norms[-1], 2.0, rtol=1e-6)  # ‖I‖_F = sqrt(H)
    # an LSTM in another dtype, or another cell, keeps the scan as well
    half = Recurrent(LSTMCell(4, dtype=jnp.bfloat16))
    assert not _calls_onednn(lambda v, x: half.apply(v, x), variables, x)
    gru = make_recurrent("gru", 4)
    assert not _calls_onednn(lambda x: gru.init_with_output(jax.random.PRNGKey(0), x), x)


def test_vmapped_ensemble_members_match_the_scan():
    layer, variables, x, carry = _layer_and_inputs(2, 5, 3, 6)
    members = jax.vmap(lambda k: layer.init(k, x))(jax.random.split(jax.random.PRNGKey(1), 3))
    member_grads = jax.jit(jax.vmap(jax.grad(_loss(layer)), in_axes=(0, None, None)))
    fast = member_grads(members, x, carry)
    with native.pure_jax():
        pure = member_grads(members, x, carry)
    _assert_close(fast, pure)
    assert not np.allclose(
        fast["params"]["cell"]["hidden_to_hidden"][0], fast["params"]["cell"]["hidden_to_hidden"][1]
    )


def test_empty_sequences_run_the_scan():
    layer, variables, x, carry = _layer_and_inputs(2, 3, 4, 5)
    empty = x[:, :0]
    assert not _calls_onednn(lambda v, x: layer.apply(v, x), variables, empty)
    outputs, (c, h) = layer.apply(variables, empty, initial_carry=carry)
    assert outputs.shape == (2, 0, 5)
    np.testing.assert_array_equal(h, carry[1])


def test_wrong_shapes_are_named():
    x, state = jnp.ones((2, 3, 4)), jnp.ones((2, 5))
    with pytest.raises(ValueError, match=r"w_hh \(5, 5\) \(want \(5, 20\)\)"):
        lstm_layer(x, state, state, jnp.ones((4, 20)), jnp.ones((5, 5)), jnp.ones(20), pure=None)


@pytest.mark.parametrize("name", ["lstm_regressor", "seq2seq"])
def test_models_train_on_the_kernel_with_the_scans_numbers(name):
    # seq2seq: the encoder reads lengths (scan), the decoder starts from its carry (oneDNN)
    card = registry.model_card(name)
    model = registry.create_model(name, **{**card.test_config, "hidden": 5})
    x = registry.example_inputs(card, jax.random.PRNGKey(1), batch_size=3)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
    grads = jax.grad(lambda v: jnp.sum(model.apply(v, x) ** 2))
    assert "jaxnets_lstm_backward" in jax.jit(grads).lower(variables).as_text()
    fast = jax.jit(grads)(variables)
    with native.pure_jax():
        pure = jax.jit(grads)(variables)
    _assert_close(fast, pure)

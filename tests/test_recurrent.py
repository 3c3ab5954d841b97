"""Recurrent cells and the lax.scan wrapper: scan equals an explicit loop, the cells equal their
equations, masking / reverse / bidirectional / stacking, and the gradient-flow Jacobians."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jaxnets.nn import recurrent
from jaxnets.nn.recurrent import (
    CELLS,
    Bidirectional,
    Recurrent,
    Stacked,
    gradient_flow,
    make_cell,
    make_recurrent,
    reverse_valid,
)

B, T, F, H = 3, 6, 4, 5
X = jax.random.normal(jax.random.PRNGKey(0), (B, T, F))


@functools.cache
def _layer(kind, reverse=False, unroll=1):
    layer = Recurrent(make_cell(kind, H), reverse=reverse, unroll=unroll)
    variables = jax.jit(layer.init)(jax.random.PRNGKey(1), X)
    # nonzero biases, so that a bias in the wrong place changes the numbers
    variables = jax.tree.map(
        lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(2), p.shape), variables
    )
    return layer, variables


def _apply(layer, variables, x, lengths=None):
    return jax.jit(layer.apply)(variables, x, lengths)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _numpy_loop(kind, params, x):
    """The cells' equations, written out in numpy with a Python loop over time."""
    cell = params["cell"]
    u, b = (
        np.asarray(cell["input_to_hidden"]["kernel"]),
        np.asarray(cell["input_to_hidden"]["bias"]),
    )
    w = np.asarray(cell["hidden_to_hidden"])
    x = np.asarray(x, np.float64)
    h = np.zeros((x.shape[0], H))
    c = np.zeros_like(h)
    outputs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ u + b
        if kind in ("rnn", "relu_rnn", "irnn"):
            a = z + h @ w
            h = np.tanh(a) if kind == "rnn" else np.maximum(a, 0)
        elif kind == "lstm":
            i, f, g, o = np.split(z + h @ w, 4, axis=-1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        else:  # gru, PyTorch's equations
            hb = h @ w + np.asarray(cell["hidden_to_hidden_bias"])
            r = _sigmoid(z[:, :H] + hb[:, :H])
            u_gate = _sigmoid(z[:, H : 2 * H] + hb[:, H : 2 * H])
            n = np.tanh(z[:, 2 * H :] + r * hb[:, 2 * H :])
            h = (1 - u_gate) * n + u_gate * h
        outputs.append(h)
    return np.stack(outputs, axis=1)


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_scan_equals_the_cell_equations_in_an_explicit_loop(kind):
    layer, variables = _layer(kind)
    outputs, carry = _apply(layer, variables, X)
    expected = _numpy_loop(kind, variables["params"], X)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.cell.hidden_state(carry), expected[:, -1], atol=1e-5)


@pytest.mark.parametrize("unroll", [2, 4, True])
def test_unroll_changes_nothing_but_speed(unroll):
    base, variables = _layer("lstm")
    unrolled = Recurrent(make_cell("lstm", H), unroll=unroll)
    np.testing.assert_allclose(
        _apply(unrolled, variables, X)[0], _apply(base, variables, X)[0], rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_lengths_hold_the_state_and_zero_the_outputs_past_each_length(kind):
    layer, variables = _layer(kind)
    lengths = jnp.array([T, 2, 0])
    outputs, carry = _apply(layer, variables, X, lengths)
    truncated, truncated_carry = _apply(layer, variables, X[1:2, :2])
    np.testing.assert_allclose(outputs[1, :2], truncated[0], atol=1e-6)
    assert float(jnp.abs(outputs[1, 2:]).max()) == 0.0 and float(jnp.abs(outputs[2]).max()) == 0
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a[1], b[0], atol=1e-6), carry, truncated_carry
    )
    jax.tree.map(lambda a: np.testing.assert_array_equal(a[2], 0.0), carry)  # empty: initial
    full, _ = _apply(layer, variables, X)
    np.testing.assert_allclose(outputs[0], full[0], atol=1e-6)


def test_reverse_reads_each_sequence_backwards():
    forward, variables = _layer("gru")
    backward = Recurrent(make_cell("gru", H), reverse=True)
    out_b, _ = _apply(backward, variables, X)
    out_f, _ = _apply(forward, variables, X[:, ::-1])
    np.testing.assert_allclose(out_b, out_f[:, ::-1], atol=1e-6)
    # with lengths: only the valid part is reversed, the outputs stay in input order
    lengths = jnp.array([T, 3, 1])
    out_b, _ = _apply(backward, variables, X, lengths)
    out_f, _ = _apply(forward, variables, X[1:2, :3][:, ::-1])
    np.testing.assert_allclose(out_b[1, :3], out_f[0, ::-1], atol=1e-6)
    assert float(jnp.abs(out_b[1, 3:]).max()) == 0.0


def test_reverse_valid_flips_the_prefix_and_is_its_own_inverse():
    x = jnp.arange(10).reshape(2, 5)
    flipped = reverse_valid(x, jnp.array([5, 3]))
    np.testing.assert_array_equal(flipped, [[4, 3, 2, 1, 0], [7, 6, 5, 8, 9]])
    np.testing.assert_array_equal(reverse_valid(flipped, jnp.array([5, 3])), x)


def test_bidirectional_and_stacked_compose_the_layers():
    model = make_recurrent("rnn", H, layers=2, bidirectional=True)
    assert isinstance(model, Stacked) and isinstance(model.layers[0], Bidirectional)
    variables = jax.jit(model.init)(jax.random.PRNGKey(3), X)
    outputs, carries = jax.jit(model.apply)(variables, X)
    assert outputs.shape == (B, T, 2 * H) and len(carries) == 2
    bottom = jax.jit(model.layers[0].apply)({"params": variables["params"]["layers_0"]}, X)[0]
    forward = Recurrent(make_cell("rnn", H))
    top_params = variables["params"]["layers_1"]
    np.testing.assert_allclose(
        outputs[..., :H],
        _apply(forward, {"params": top_params["forward"]}, bottom)[0],
        atol=1e-6,
    )
    backward = Recurrent(make_cell("rnn", H), reverse=True)
    np.testing.assert_allclose(
        outputs[..., H:],
        _apply(backward, {"params": top_params["backward"]}, bottom)[0],
        atol=1e-6,
    )


def test_initialisations_irnn_identity_lstm_forget_bias_orthogonal_blocks():
    _, irnn = _layer("irnn")
    layer = Recurrent(make_cell("irnn", H))
    params = layer.init(jax.random.PRNGKey(0), X)["params"]["cell"]
    np.testing.assert_array_equal(params["hidden_to_hidden"], np.eye(H))
    lstm = Recurrent(make_cell("lstm", H)).init(jax.random.PRNGKey(0), X)["params"]["cell"]
    # gates (i, f, g, o): the forget bias is 1, the input, candidate and output biases 0
    np.testing.assert_array_equal(
        lstm["input_to_hidden"]["bias"], np.concatenate([np.zeros(H), np.ones(H), np.zeros(2 * H)])
    )
    for block in np.split(np.asarray(lstm["hidden_to_hidden"]), 4, axis=1):
        np.testing.assert_allclose(block.T @ block, np.eye(H), atol=1e-5)


def test_identity_relu_rnn_passes_gradients_unchanged_at_init():
    # IRNN with zero input weights: h_t = relu(h_{t-1}), so ∂h_T/∂h_t = I while h > 0
    layer = Recurrent(make_cell("irnn", 2))
    variables = layer.init(jax.random.PRNGKey(0), X[:1])
    variables = jax.tree.map(jnp.zeros_like, variables)
    variables["params"]["cell"]["hidden_to_hidden"] = jnp.eye(2)
    variables["params"]["cell"]["input_to_hidden"]["bias"] = jnp.ones(2)
    norms = gradient_flow(layer, variables, X[0])
    np.testing.assert_allclose(norms, np.sqrt(2.0), rtol=1e-6)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_gradient_flow_equals_the_product_of_step_jacobians(kind):
    """∂h_T/∂h_t = P_h Π_s ∂s_{s+1}/∂s_s E_h over the full state s (the LSTM's is (c, h)),
    where E_h puts a change of h_t into the state and P_h reads h_T out of it."""
    layer, variables = _layer(kind)
    x = X[0]
    norms = np.asarray(gradient_flow(layer, variables, x))
    cell = layer.cell.bind({"params": variables["params"]["cell"]})
    projected = cell.project(x[None])[0]
    weights = cell.recurrent_weights()
    carries = [cell.initial_carry((1,))]
    for t in range(T):
        carries.append(cell.step(weights, carries[-1], projected[t : t + 1])[0])
    flat, unflatten = ravel_pytree(carries[1])
    # state components: E_h maps a change of h into the flat state, P_h = E_h^T reads h
    embed_h = np.asarray(
        jax.jacobian(lambda d: ravel_pytree(cell.perturb_hidden(carries[1], d[None]))[0])(
            jnp.zeros(H)
        )
    )
    product = np.eye(flat.size)
    expected = [np.linalg.norm(embed_h.T @ product @ embed_h)]
    for t in range(T - 1, 0, -1):  # from ∂s_T/∂s_{t+1} to ∂s_T/∂s_t

        def step(state, t=t):
            return ravel_pytree(cell.step(weights, unflatten(state), projected[t : t + 1])[0])[0]

        product = product @ np.asarray(jax.jacobian(step)(ravel_pytree(carries[t])[0]))
        expected.append(np.linalg.norm(embed_h.T @ product @ embed_h))
    np.testing.assert_allclose(norms, expected[::-1], rtol=1e-4, atol=1e-7)


def _plain_autodiff_scan(cell, body, reverse, unroll):
    """The same scan as Recurrent's, differentiated by plain autodiff (no custom VJP)."""

    def run(weights, carry, projected, extras):
        others = {k: v for k, v in weights.items() if k != "hidden_to_hidden"}

        def step(carry, inputs_t):
            projected_t, extras_t = inputs_t
            recurrent_t = cell.recurrent_product(weights, cell.hidden_state(carry))
            return body(others, carry, projected_t, recurrent_t, extras_t)

        return jax.lax.scan(step, carry, (projected, extras), reverse=reverse, unroll=unroll)

    return run


# the VJP's two paths: the Elman and LSTM cells sum projected_t and recurrent_t (one gradient
# for both), the GRU does not; every cell is also gradchecked in tests/test_models.py
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_batched_weight_gradient_equals_plain_autodiff_in_float64(kind, monkeypatch):
    """The custom VJP of the scan (one matmul for the gradient of W) gives autodiff's gradients
    for the parameters, the inputs, the initial carry and hidden_perturbation, with lengths
    (full, partial, empty), forward and reverse, one layer reading the other's outputs."""
    with jax.enable_x64(True):
        forward = Recurrent(make_cell(kind, H), unroll=2)
        backward = Recurrent(make_cell(kind, H), reverse=True)
        x = jax.random.normal(jax.random.PRNGKey(4), (B, T, F), jnp.float64)
        lengths = jnp.array([T, 3, 0])

        def perturbed(key, tree):
            return jax.tree.map(
                lambda p: p.astype(jnp.float64) + 0.3 * jax.random.normal(key, p.shape), tree
            )

        variables = [
            perturbed(jax.random.PRNGKey(5 + i), jax.jit(layer.init)(jax.random.PRNGKey(i), x))
            for i, layer in enumerate((forward, backward))
        ]
        carry0 = perturbed(jax.random.PRNGKey(7), forward.cell.initial_carry((B,)))
        delta = 0.1 * jax.random.normal(jax.random.PRNGKey(8), (T, B, H), jnp.float64)
        weights = jax.random.normal(jax.random.PRNGKey(9), (B, T, H), jnp.float64)

        def loss(variables, x, carry0, delta):
            outputs, carry = forward.apply(variables[0], x, lengths, carry0, delta)
            again, last = backward.apply(variables[1], outputs[..., :F] ** 2 + x, lengths)
            return jnp.sum(weights * (outputs + again)) + sum(
                jnp.sum(jnp.sin(c)) for c in jax.tree.leaves((carry, last))
            )

        args = (variables, x, carry0, delta)
        batched = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(*args)
        monkeypatch.setattr(recurrent, "scan_with_batched_weight_grad", _plain_autodiff_scan)
        plain = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(*args)
        assert jax.tree.structure(batched) == jax.tree.structure(plain)
        for got, want in zip(jax.tree.leaves(batched), jax.tree.leaves(plain), strict=True):
            assert got.dtype == jnp.float64 and float(jnp.max(jnp.abs(want))) > 1e-3
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="unknown cell 'lstn' — did you mean 'lstm'"):
        make_cell("lstn", 4)
    with pytest.raises(ValueError, match="unknown Elman activation 'sigmoid'"):
        Recurrent(make_cell("rnn", 4, activation="sigmoid")).init(jax.random.PRNGKey(0), X)
    layer, variables = _layer("rnn")
    with pytest.raises(ValueError, match=r"expects x of shape \(batch, time, features\)"):
        layer.apply(variables, X[0])
    with pytest.raises(ValueError, match=r"lengths must have shape \(batch,\) = \(3,\)"):
        layer.apply(variables, X, jnp.array([1, 2]))
    with pytest.raises(ValueError, match="layers must be >= 1"):
        make_recurrent("gru", 4, layers=0)


def test_under_x64_parameters_stay_float32_and_float32_sequences_keep_their_dtype():
    """With x64 on (as in the gradient checks) the cells' parameters are float32 like Flax's
    own (the GRU's recurrent bias and the LSTM's forget-gate bias included), and
    gradient_flow of a float32 sequence runs in float32: the norms it gives without x64."""
    layer = Recurrent(make_cell("gru", 2))
    x = X[0, :3]
    with jax.enable_x64(True):
        variables = layer.init(jax.random.PRNGKey(0), x[None])
        lstm = Recurrent(make_cell("lstm", 2)).init(jax.random.PRNGKey(0), x[None])
        dtypes = {leaf.dtype for leaf in jax.tree.leaves((variables, lstm))}
        norms64 = np.asarray(gradient_flow(layer, variables, x))
    assert dtypes == {np.dtype(np.float32)}
    np.testing.assert_allclose(norms64, gradient_flow(layer, variables, x), rtol=1e-6)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_a_bfloat16_cell_computes_in_bfloat16_with_float32_parameters(kind):
    """dtype=bfloat16 (mixed precision): parameters stay float32, the projection, the carry
    (the LSTM's c and h) and the scan run in bfloat16 (the GRU's recurrent bias cast to it
    too), close to the float32 layer."""
    x = X[:, :4]
    full = Recurrent(make_cell(kind, 3))
    half = Recurrent(make_cell(kind, 3, dtype=jnp.bfloat16))
    variables = full.init(jax.random.PRNGKey(0), x)
    variables = jax.tree.map(lambda p: p + 0.1, variables)  # a nonzero recurrent bias
    out, carry = half.apply(variables, x)
    assert {a.dtype for a in jax.tree.leaves((out, carry))} == {jnp.dtype(jnp.bfloat16)}
    np.testing.assert_allclose(np.asarray(out, np.float32), full.apply(variables, x)[0], atol=0.05)


def test_unknown_cells_are_explained_with_loosely_close_matches():
    """The hint names at most the two closest cells, best first ('rn' is loosely close to four:
    rnn, irnn, relu_rnn, gru), and a name close to none gets no hint at all."""
    with pytest.raises(ValueError, match=r"unknown cell 'elman' — did you mean 'relu_rnn', 'lstm'"):
        make_cell("elman", 2)
    choices = "(choose one of rnn, relu_rnn, irnn, lstm, gru)"
    for kind, hint in [("rn", " — did you mean 'rnn', 'irnn'?"), ("xyz", "")]:
        with pytest.raises(ValueError) as error:
            make_cell(kind, 2)
        assert str(error.value) == f"unknown cell {kind!r}{hint} {choices}"


def test_identity_init_is_scale_times_the_identity_in_the_dtype_asked_for():
    """``identity_init()`` is I (scale 1 by default), ``identity_init(s)`` is s·I, built in the
    dtype the caller passes (Flax's initializer signature), and a non-square shape is refused."""
    key = jax.random.PRNGKey(0)
    eye = recurrent.identity_init()(key, (3, 3))
    assert eye.dtype == jnp.float32
    np.testing.assert_array_equal(eye, np.eye(3))
    half = recurrent.identity_init(0.5)(key, (2, 2), jnp.bfloat16)
    assert half.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(half, np.float32), [[0.5, 0.0], [0.0, 0.5]])
    with pytest.raises(ValueError, match=r"needs a square matrix; got shape \(2, 3\)"):
        recurrent.identity_init()(key, (2, 3))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_a_cell_steps_a_batch_with_several_leading_axes(kind):
    """``project`` takes x (..., time, F) and ``initial_carry`` any batch_shape, so a cell
    stepped by hand on a (2, 3) batch must equal the cell equations on the 6 flattened
    sequences: the gates are split along the last (gate) axis, whatever the batch rank."""
    layer, variables = _layer(kind)
    cell = layer.cell.bind({"params": variables["params"]["cell"]})
    x = jax.random.normal(jax.random.PRNGKey(6), (2, 3, 3, F))  # (2, 3) batch, 3 steps
    projected = cell.project(x)
    weights = cell.recurrent_weights()
    carry, outputs = cell.initial_carry((2, 3)), []
    for t in range(x.shape[2]):
        carry, h = cell.step(weights, carry, projected[:, :, t])
        outputs.append(h)
    expected = _numpy_loop(kind, variables["params"], np.reshape(x, (6, 3, F)))
    np.testing.assert_allclose(
        np.stack(outputs, axis=2), expected.reshape(2, 3, 3, H), rtol=1e-5, atol=1e-5
    )


def _equations(jaxpr):
    """Every equation of a jaxpr, those of its sub-jaxprs (scan bodies, custom rules) too."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    yield from _equations(sub)


def test_each_weight_gradient_is_one_matmul_over_all_rows_with_its_transpose_materialised():
    """The speed design of the module docstring, read off the gradient's jaxpr (traced, not
    compiled): the gradient of the input kernel U (F, 4H) and of the recurrent W (H, 4H) is
    each ONE dot over all B·T rows, (F or H, B·T) @ (B·T, 4H), whose left operand is a
    transpose materialised by an optimization barrier, never a dot contracting its left
    operand's leading axis (what plain autodiff of nn.Dense or of a scan writes)."""
    layer = Recurrent(make_cell("lstm", H))
    shapes = jax.eval_shape(layer.init, jax.random.PRNGKey(0), X)
    jaxpr = jax.make_jaxpr(jax.grad(lambda v: jnp.sum(layer.apply(v, X)[0])))(shapes).jaxpr
    equations = list(_equations(jaxpr))
    barriers = {
        v for e in equations if e.primitive.name == "optimization_barrier" for v in e.outvars
    }
    for rows in (F, H):
        dots = [
            e
            for e in equations
            if e.primitive.name == "dot_general" and e.outvars[0].aval.shape == (rows, 4 * H)
        ]
        assert len(dots) == 1, rows
        lhs, rhs = (v.aval.shape for v in dots[0].invars)
        assert (lhs, rhs) == ((rows, B * T), (B * T, 4 * H))
        assert dots[0].params["dimension_numbers"] == (((1,), (0,)), ((), ()))
        assert dots[0].invars[0] in barriers


def test_one_hidden_unit_is_a_valid_cell_and_zero_is_not():
    """A single hidden unit (H = 1) is a valid cell; H = 0 is rejected by name."""
    variables = Recurrent(make_cell("rnn", 1)).init(jax.random.PRNGKey(0), X)
    assert variables["params"]["cell"]["hidden_to_hidden"].shape == (1, 1)
    with pytest.raises(ValueError, match="hidden must be >= 1; got 0"):
        Recurrent(make_cell("rnn", 0)).init(jax.random.PRNGKey(0), X)


def test_make_recurrent_defaults_to_one_forward_layer_and_passes_the_cell_fields_on():
    """One forward layer stepping once per scan iteration unless asked otherwise; the cell's
    own fields (here the LSTM's forget bias) reach every direction of every layer."""
    single = make_recurrent("lstm", 3, forget_bias=2.5)
    assert isinstance(single, recurrent.Recurrent)
    assert (single.reverse, single.unroll, single.cell.forget_bias) == (False, 1, 2.5)
    stacked = make_recurrent("lstm", 3, layers=2, bidirectional=True, unroll=4, forget_bias=2.5)
    directions = [d for layer in stacked.layers for d in (layer.forward, layer.backward)]
    assert [(d.reverse, d.unroll, d.cell.forget_bias) for d in directions] == [
        (False, 4, 2.5),
        (True, 4, 2.5),
    ] * 2

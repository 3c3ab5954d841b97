"""The teaching autodiff engine against jax.vjp / jax.grad (float64), and against the Trainer."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.autodiff import Tape, backward, grad, nn, ops, toposort, value_and_grad, vjp
from jaxnets.data import load_digits
from jaxnets.models.mlp import MLP
from jaxnets.optim import make_optimizer
from jaxnets.train import Trainer


def _rel_error(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b) + 1e-300))


def _positive(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def _normal(rng, shape):
    return rng.standard_normal(shape)


# (engine function, jax function, input shapes, input sampler)
PRIMITIVE_CASES = {
    "add_rows_plus_bias": (ops.add, jnp.add, [(5, 3), (3,)], _normal),
    "add_scalar": (ops.add, jnp.add, [(5, 3), ()], _normal),
    "subtract_column": (ops.subtract, jnp.subtract, [(5, 1), (5, 3)], _normal),
    "multiply_column": (ops.multiply, jnp.multiply, [(5, 1), (5, 3)], _normal),
    "multiply_scalar": (ops.multiply, jnp.multiply, [(), (4,)], _normal),
    "multiply_both_stretched": (ops.multiply, jnp.multiply, [(4, 1), (1, 3)], _normal),
    "divide_by_bias": (ops.divide, jnp.divide, [(5, 3), (3,)], _positive),
    "divide_scalar_by": (ops.divide, jnp.divide, [(), (2, 3)], _positive),
    "maximum_bias": (ops.maximum, jnp.maximum, [(5, 3), (3,)], _normal),
    "negative": (ops.negative, jnp.negative, [(4, 3)], _normal),
    "exp": (ops.exp, jnp.exp, [(4, 3)], _normal),
    "log": (ops.log, jnp.log, [(4, 3)], _positive),
    "tanh": (ops.tanh, jnp.tanh, [(4, 3)], _normal),
    "sigmoid": (ops.sigmoid, jax.nn.sigmoid, [(4, 3)], lambda rng, s: 8 * rng.standard_normal(s)),
    "relu": (ops.relu, jax.nn.relu, [(4, 3)], _normal),
    "matmul": (ops.matmul, jnp.matmul, [(5, 3), (3, 2)], _normal),
    "matmul_vector_matrix": (ops.matmul, jnp.matmul, [(3,), (3, 2)], _normal),
    "matmul_matrix_vector": (ops.matmul, jnp.matmul, [(5, 3), (3,)], _normal),
    "matmul_dot": (ops.matmul, jnp.matmul, [(3,), (3,)], _normal),
    "sum_all": (ops.sum, jnp.sum, [(4, 3)], _normal),
    "sum_axis0": (lambda x: ops.sum(x, axis=0), lambda x: jnp.sum(x, axis=0), [(4, 3)], _normal),
    "sum_axis_neg1_keepdims": (
        lambda x: ops.sum(x, axis=-1, keepdims=True),
        lambda x: jnp.sum(x, axis=-1, keepdims=True),
        [(2, 4, 3)],
        _normal,
    ),
    "sum_axes_0_2": (
        lambda x: ops.sum(x, axis=(0, 2)),
        lambda x: jnp.sum(x, axis=(0, 2)),
        [(2, 4, 3)],
        _normal,
    ),
    "mean_all": (ops.mean, jnp.mean, [(4, 3)], _normal),
    "mean_axis1": (lambda x: ops.mean(x, axis=1), lambda x: jnp.mean(x, axis=1), [(4, 3)], _normal),
    "logsumexp_all": (ops.logsumexp, jax.nn.logsumexp, [(4, 3)], _normal),
    "logsumexp_axis1": (
        lambda x: ops.logsumexp(x, axis=1),
        lambda x: jax.nn.logsumexp(x, axis=1),
        [(4, 3)],
        _normal,
    ),
    "logsumexp_axis0_keepdims": (
        lambda x: ops.logsumexp(x, axis=0, keepdims=True),
        lambda x: jax.nn.logsumexp(x, axis=0, keepdims=True),
        [(4, 3)],
        _normal,
    ),
}


@functools.partial(jax.jit, static_argnums=0)
def _jax_value_and_vjp(fun, g, *inputs):
    """fun(*inputs) and its VJP with g; one compiled program (eager jax compiles every op)."""
    value, vjp_fn = jax.vjp(fun, *inputs)
    return value, vjp_fn(g)


@pytest.mark.parametrize("case", list(PRIMITIVE_CASES))
def test_primitive_vjp_matches_jax(case):
    ours, theirs, shapes, sample = PRIMITIVE_CASES[case]
    rng = np.random.default_rng(list(PRIMITIVE_CASES).index(case))
    inputs = [sample(rng, shape) for shape in shapes]
    value, vjp_fn = vjp(ours, *inputs)
    g = rng.standard_normal(value.shape)
    with jax.enable_x64(True):
        jax_value, jax_grads = _jax_value_and_vjp(theirs, *map(jnp.asarray, [g, *inputs]))
    assert value.shape == jax_value.shape
    assert _rel_error(value, jax_value) < 1e-12
    for ours_bar, jax_bar, x in zip(vjp_fn(g), jax_grads, inputs, strict=True):
        assert ours_bar.shape == x.shape  # un-broadcast back to the input's shape
        assert _rel_error(ours_bar, jax_bar) < 1e-10, case


def test_broadcast_bias_gradient_is_the_sum_over_rows():
    rng = np.random.default_rng(0)
    x, b, g = rng.standard_normal((6, 3)), rng.standard_normal(3), rng.standard_normal((6, 3))
    _, vjp_fn = vjp(ops.add, x, b)
    x_bar, b_bar = vjp_fn(g)
    np.testing.assert_allclose(b_bar, g.sum(axis=0), rtol=1e-14)
    np.testing.assert_array_equal(x_bar, g)


def test_maximum_splits_ties_like_jax():
    x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 5.0])
    x_bar, y_bar = grad(lambda x, y: ops.sum(ops.maximum(x, y)), argnums=(0, 1))(x, y)
    np.testing.assert_array_equal(x_bar, [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(y_bar, [0.5, 0.0, 1.0])


def test_relu_gradient_at_zero_is_zero_like_jax():
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(grad(lambda x: ops.sum(ops.relu(x)))(x), [0.0, 0.0, 1.0])


def test_logsumexp_and_sigmoid_are_stable_at_extreme_inputs():
    x = np.array([[1000.0, 1000.0, -1000.0], [-1000.0, -1001.0, -np.inf]])
    value, vjp_fn = vjp(lambda x: ops.logsumexp(x, axis=1), x)
    np.testing.assert_allclose(value, [1000 + np.log(2), -1000 + np.log1p(np.exp(-1))], rtol=1e-15)
    (x_bar,) = vjp_fn(np.ones(2))
    p = 1 / (1 + np.exp(-1))
    np.testing.assert_allclose(x_bar, [[0.5, 0.5, 0.0], [p, 1 - p, 0.0]], rtol=1e-14, atol=0)
    z = np.array([-800.0, -40.0, 0.0, 40.0, 800.0])
    sig = ops.sigmoid(z)
    assert np.all(np.isfinite(sig))
    np.testing.assert_allclose(sig[1], np.exp(-40) / (1 + np.exp(-40)), rtol=1e-14)
    assert sig[0] == 0.0 and sig[2] == 0.5 and sig[4] == 1.0


def test_tape_records_the_lectures_sequence_of_ops():
    """Lecture 6 Figure 4: logistic(z) = 1 / (1 + exp(-z)) traces as negative, exp, add, divide."""
    tape = Tape()
    z = tape.input(np.array(0.5), name="z")
    y = 1.0 / (1.0 + ops.exp(-z))
    assert str(tape).splitlines() == [
        "z = input ()",
        "t1 = negative(z)",
        "t2 = exp(t1)",
        "t3 = add(1.0, t2)",
        "t4 = divide(1.0, t3)",
    ]
    sig = 1 / (1 + np.exp(-0.5))
    signals = backward(y, np.ones(()))
    assert signals[z] == pytest.approx(sig * (1 - sig), rel=1e-15)
    # The error signal of each intermediate node: y-bar = 1, t3-bar = -1 / t3^2, ...
    t3 = tape.nodes[3]
    assert signals[t3] == pytest.approx(-1 / t3.value**2, rel=1e-15)


def _diamond():
    """x feeds ``a`` twice: through a long path (a -> b -> c) and directly into out."""
    tape = Tape()
    x = tape.input(np.array([0.3, -0.7]), name="x")
    a = ops.exp(x)
    b = a * 3.0
    c = ops.tanh(b)
    out = ops.sum(c * a + x * x)
    return x, a, b, c, out


def test_diamond_graph_visits_each_node_after_all_its_consumers():
    x, a, b, c, out = _diamond()
    order = toposort(out)
    position = {node: i for i, node in enumerate(order)}
    assert order[0] is out and order[-1] is x and len(order) == len(x.tape)
    for node in order:
        for _, parent in node.parents:
            assert position[parent] > position[node]
    # a's two consumers (b, and the product c * a) both come before a.
    consumers = [n for n in order if any(p is a for _, p in n.parents)]
    assert len(consumers) == 2 and all(position[n] < position[a] for n in consumers)


def test_diamond_graph_sums_the_messages_of_every_consumer():
    x, a, b, c, out = _diamond()
    signals = backward(out, np.ones(()))
    ex, th = np.exp(x.value), np.tanh(3 * np.exp(x.value))
    # d/dx [tanh(3 e^x) e^x + x^2] = (1 - th^2) 3 e^x * e^x + th e^x + 2x
    expected = (1 - th**2) * 3 * ex * ex + th * ex + 2 * x.value
    np.testing.assert_allclose(signals[x], expected, rtol=1e-14)
    np.testing.assert_allclose(signals[a], (1 - th**2) * 3 * ex + th, rtol=1e-14)
    with jax.enable_x64(True):
        jax_grad = jax.jit(
            jax.grad(lambda v: jnp.sum(jnp.tanh(3 * jnp.exp(v)) * jnp.exp(v) + v * v))
        )(jnp.asarray(x.value))
    assert _rel_error(signals[x], jax_grad) < 1e-12


def test_nodes_the_output_ignores_are_not_visited_and_get_zero_gradient():
    def f(u, v):
        ops.exp(v)  # computed and recorded, but the output does not depend on it
        return ops.sum(u * u)

    u, v = np.array([1.0, -2.0]), np.array([3.0])
    u_bar, v_bar = grad(f, argnums=(0, 1))(u, v)
    np.testing.assert_array_equal(u_bar, 2 * u)
    np.testing.assert_array_equal(v_bar, [0.0])


def test_grad_takes_pytrees_and_argnums_like_jax():
    rng = np.random.default_rng(1)
    tree = {"w": [rng.standard_normal(3), rng.standard_normal((3, 2))], "c": rng.standard_normal(2)}
    data = rng.standard_normal(3)

    def ours(tree, data, scale):
        w0, w1 = tree["w"]
        return ops.sum(ops.tanh(((w0 * data) @ w1) + tree["c"]) * scale)

    def theirs(tree, data, scale):
        w0, w1 = tree["w"]
        return jnp.sum(jnp.tanh(((w0 * data) @ w1) + tree["c"]) * scale)

    value, (tree_bar, scale_bar) = value_and_grad(ours, argnums=(0, 2))(tree, data, 1.5)
    with jax.enable_x64(True):
        to_jax = lambda t: jax.tree.map(jnp.asarray, t)  # noqa: E731
        jax_value, jax_grads = jax.jit(jax.value_and_grad(theirs, argnums=(0, 2)))(
            to_jax(tree), jnp.asarray(data), 1.5
        )
    assert isinstance(value, float) and value == pytest.approx(float(jax_value), rel=1e-14)
    assert set(tree_bar) == {"w", "c"} and isinstance(tree_bar["w"], list)
    for ours_bar, jax_bar in zip(
        [*tree_bar["w"], tree_bar["c"], scale_bar],
        [*jax_grads[0]["w"], jax_grads[0]["c"], jax_grads[1]],
        strict=True,
    ):
        assert np.shape(ours_bar) == np.shape(jax_bar)
        assert _rel_error(ours_bar, jax_bar) < 1e-12


def _jax_mlp_loss(params, x, labels, activation):
    """The same loss in jax.numpy, written independently (indexing, not one-hot products)."""
    phi = {"tanh": jnp.tanh, "relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid}[activation]
    num_layers = len(params) // 2
    h = x
    for layer in range(1, num_layers):
        h = phi(h @ params[f"W{layer}"] + params[f"b{layer}"])
    z = h @ params[f"W{num_layers}"] + params[f"b{num_layers}"]
    return jnp.mean(jax.nn.logsumexp(z, axis=1) - z[jnp.arange(z.shape[0]), labels])


_jax_mlp_value_and_grad = jax.jit(jax.value_and_grad(_jax_mlp_loss), static_argnums=3)


@pytest.mark.parametrize(
    "sizes, activation",
    [
        ((5, 4), "tanh"),  # softmax regression: no hidden layer
        ((5, 6, 4), "tanh"),
        ((5, 6, 4), "relu"),
        ((5, 7, 3, 4), "sigmoid"),
        ((5, 6, 6, 5, 4), "relu"),
        ((5, 3, 8, 6, 4), "tanh"),
    ],
)
def test_mlp_gradients_match_jax_grad(sizes, activation):
    rng = np.random.default_rng(sum(sizes))
    params = nn.init_mlp(sizes, seed=len(sizes))
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in params.items()}  # b != 0
    x = 2.0 * rng.standard_normal((9, sizes[0]))
    labels = rng.integers(0, sizes[-1], 9)
    value, grads = value_and_grad(nn.mlp_loss)(params, x, labels, activation)
    with jax.enable_x64(True):
        jax_params = {k: jnp.asarray(v) for k, v in params.items()}
        jax_value, jax_grads = _jax_mlp_value_and_grad(
            jax_params, jnp.asarray(x), jnp.asarray(labels), activation
        )
    assert value == pytest.approx(float(jax_value), rel=1e-12)
    assert set(grads) == set(params)
    for key in params:
        assert grads[key].shape == params[key].shape
        assert _rel_error(grads[key], jax_grads[key]) < 1e-10, key
        assert np.linalg.norm(grads[key]) > 0, key


def test_unsupported_inputs_and_shape_mismatches_raise_clear_errors():
    square_sum = lambda x: ops.sum(x * x)  # noqa: E731
    with pytest.raises(TypeError, match=r"arg0.*dtype int64 has no gradient.*np.float64"):
        grad(square_sum)(np.arange(3))
    with pytest.raises(TypeError, match=r"arg0\['w'\].*got a ArrayImpl.*np.asarray"):
        grad(lambda t: square_sum(t["w"]))({"w": jnp.ones(3)})
    with pytest.raises(TypeError, match=r"arg0.*got a str"):
        grad(square_sum)("1.0")
    with pytest.raises(TypeError, match=r"add: argument 1 is a str.*expected a Node"):
        grad(lambda x: ops.sum(x + "a"))(np.ones(2))
    with pytest.raises(ValueError, match=r"add: shapes \(3, 4\) and \(3,\) do not broadcast"):
        grad(lambda x: ops.sum(x + np.ones(3)))(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"last axis of the left operand \(4\) must equal.*\(5\)"):
        grad(lambda w: ops.sum(np.ones((3, 4)) @ w))(np.ones((5, 2)))
    with pytest.raises(TypeError, match=r"scalar output.*shape \(3,\)"):
        grad(lambda x: x * 2.0)(np.ones(3))
    with pytest.raises(ValueError, match=r"argnums=1 asks for argument 1.*1 arguments"):
        grad(square_sum, argnums=1)(np.ones(2))
    kept = Tape().input(np.ones(2))
    with pytest.raises(ValueError, match=r"different traces.*\.value"):
        grad(lambda x: ops.sum(x * kept))(np.ones(2))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\).*\[0, 7\]"):
        nn.mlp_loss(nn.init_mlp((3, 4)), np.ones((2, 3)), np.array([0, 7]))
    with pytest.raises(ValueError, match=r"expected MLP parameters W1, b1"):
        nn.mlp_logits({"W1": np.ones((3, 4))}, np.ones((2, 3)))


def _digits_problem():
    splits = load_digits().split((0.6, 0.2, 0.2), seed=0)
    return splits.train, splits.test


def _train_both(*, activation, hidden, learning_rate, epochs, x64):
    """Train the digits MLP with the engine and with the Trainer from the same init on the
    same minibatches; returns both final params, test accuracies and the engine's losses."""
    train, test = _digits_problem()
    dtype = jnp.float64 if x64 else jnp.float32
    batch_size = 32
    with jax.enable_x64(x64):
        model = MLP(hidden=(hidden,), num_outputs=10, activation=activation)
        trainer = Trainer(model, "softmax_cross_entropy", make_optimizer("sgd", learning_rate))
        x, y = jnp.asarray(train.x, dtype), jnp.asarray(train.y)
        state = trainer.init(jax.random.PRNGKey(0), x[:1])
        # Flax creates float32 parameters (param_dtype) even under x64: widen them by hand.
        params = jax.tree.map(lambda p: p.astype(dtype), state.params)
        state = state.replace(params=params, opt_state=trainer.optimizer.init(params))
        init = nn.params_from_flax(state.params)
        order = nn.minibatch_order(len(train), batch_size, epochs, seed=0)
        for idx in order.reshape(-1, batch_size):
            state, _ = trainer.train_step(state, (x[idx], y[idx]))
        jax_params = nn.params_from_flax(state.params)
        jax_logits = np.asarray(trainer.predict(state, jnp.asarray(test.x, dtype)))
    jax_predictions = np.argmax(jax_logits, axis=1)
    params, losses = nn.train_mlp(
        init,
        train.x,
        train.y,
        activation=activation,
        learning_rate=learning_rate,
        batch_size=batch_size,
        epochs=epochs,
        seed=0,
    )
    predictions = np.argmax(nn.mlp_logits(params, test.x, activation), axis=1)
    return {
        "params": params,
        "jax_params": jax_params,
        "accuracy": nn.accuracy(params, test.x, test.y, activation),
        "jax_accuracy": float(np.mean(jax_predictions == test.y)),
        "test_size": len(test),
        "changed_predictions": int(np.sum(predictions != jax_predictions)),
        "losses": losses,
    }


def test_trains_digits_like_the_jax_trainer_in_float64():
    run = _train_both(activation="tanh", hidden=64, learning_rate=0.5, epochs=3, x64=True)
    for key, value in run["params"].items():
        assert _rel_error(value, run["jax_params"][key]) < 1e-9, key
    assert run["changed_predictions"] == 0
    assert run["accuracy"] == run["jax_accuracy"]
    assert run["accuracy"] > 0.9
    assert run["losses"][-10:].mean() < 0.3 * run["losses"][:10].mean()


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_trains_digits_like_the_float32_jax_trainer(activation):
    run = _train_both(activation=activation, hidden=64, learning_rate=0.2, epochs=30, x64=False)
    for key, value in run["params"].items():
        assert _rel_error(value, run["jax_params"][key]) < 1e-5, key
    assert run["changed_predictions"] <= 1
    assert abs(run["accuracy"] - run["jax_accuracy"]) * run["test_size"] < 1.5  # <= 1 example
    assert run["accuracy"] > 0.95

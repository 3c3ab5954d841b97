"""Hand-written backprop (error signals) against jax.grad, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import backprop, create_model, losses
from jaxnets.nn.activations import get_activation

ACTIVATIONS = [
    "identity",
    "relu",
    "leaky_relu",
    "abs",
    "elu",
    "softplus",
    "sigmoid",
    "tanh",
    "hard_tanh",
]
LOSSES = ["squared_error", "softmax_cross_entropy", "binary_cross_entropy"]
WIDTHS = [3, 5, 4, 6, 2]
_jit_backprop = jax.jit(
    backprop.backprop, static_argnames=("activation", "loss")
)  # input 3, hidden widths 5, 4, 6 (up to depth 4)


def _rel_error(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b)))


def _targets(loss, rng, n, outputs):
    if loss == "squared_error":
        return jnp.asarray(rng.standard_normal((n, outputs)))
    return jnp.asarray(rng.integers(0, max(outputs, 2), n))


def _problem(depth, loss, seed):
    """Random float64 layers (depth of them), inputs (7, 3) and targets for ``loss``.

    numpy draws the numbers: eager jax.random would compile a sampler per shape.
    """
    outputs = {"squared_error": 2, "softmax_cross_entropy": 3, "binary_cross_entropy": 1}[loss]
    widths = [*WIDTHS[:depth], outputs]
    rng = np.random.default_rng(seed)
    layers = [
        (
            jnp.asarray(rng.standard_normal((widths[i], widths[i + 1]))),
            jnp.asarray(0.5 * rng.standard_normal(widths[i + 1])),
        )
        for i in range(depth)
    ]
    x = jnp.asarray(1.5 * rng.standard_normal((7, widths[0])))
    return layers, x, _targets(loss, rng, 7, outputs)


def _autodiff_loss(layers, x, t, activation, loss, **options):
    zs, _ = backprop.mlp_forward(layers, x, activation, **options)
    return jnp.mean(jax.vmap(losses.get_loss(loss).fn)(zs[-1], t))


def _independent_forward_loss(layers, x, t, g, loss):
    """The same loss written without any backprop code: jax.grad's reference."""
    h = x
    for w, b in layers[:-1]:
        h = g(h @ w + b)
    w, b = layers[-1]
    return jnp.mean(jax.vmap(losses.get_loss(loss).fn)(h @ w + b, t))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backprop_matches_jax_grad(activation, loss):
    g = get_activation(activation).fn
    with jax.enable_x64(True):
        for depth in (1, 2, 3, 4):
            layers, x, t = _problem(depth, loss, depth)
            value, grads = backprop.backprop(layers, x, t, activation=activation, loss=loss)
            ref_value, ref_grads = jax.value_and_grad(_independent_forward_loss)(
                layers, x, t, g, loss
            )
            assert grads[0][0].dtype == jnp.float64
            np.testing.assert_allclose(value, ref_value, rtol=1e-12)
            for (dw, db), (rw, rb) in zip(grads, ref_grads, strict=True):
                assert dw.shape == rw.shape and db.shape == rb.shape
                assert np.linalg.norm(rw) > 0
                assert _rel_error(dw, rw) < 1e-10, (depth, "W")
                assert _rel_error(db, rb) < 1e-10, (depth, "b")


@pytest.mark.parametrize(("activation", "options"), [("leaky_relu", 0.3), ("elu", 0.7)])
def test_backprop_activation_options(activation, options):
    kw = {"negative_slope": options} if activation == "leaky_relu" else {"alpha": options}
    with jax.enable_x64(True):
        layers, x, t = _problem(3, "squared_error", 9)
        _, grads = backprop.backprop(
            layers, x, t, activation=activation, loss="squared_error", **kw
        )
        ref = jax.grad(_autodiff_loss)(layers, x, t, activation, "squared_error", **kw)
        default = jax.grad(_autodiff_loss)(layers, x, t, activation, "squared_error")
    assert _rel_error(grads[0][0], ref[0][0]) < 1e-10
    assert _rel_error(grads[0][0], default[0][0]) > 1e-3  # the option mattered


def test_hard_threshold_passes_no_error_signal():
    with jax.enable_x64(True):
        layers, x, t = _problem(3, "squared_error", 3)
        _, grads = backprop.backprop(
            layers, x, t, activation="hard_threshold", loss="squared_error"
        )
    # Only the output layer learns; every earlier layer's gradient is exactly zero.
    assert np.linalg.norm(grads[-1][0]) > 0
    for dw, db in grads[:-1]:
        np.testing.assert_array_equal(dw, 0.0)
        np.testing.assert_array_equal(db, 0.0)


def test_lecture_error_signals_for_one_hidden_layer():
    # seed 004 §4 (line 1314): y-bar = y - t, W2-bar = y-bar h^T, h-bar = W2^T y-bar,
    # z-bar = h-bar * sigma'(z), W1-bar = z-bar x^T, for ONE example (N = 1).
    w1 = jnp.array([[1.0, -1.0], [0.5, 2.0]])  # (in, out) kernel
    b1 = jnp.array([0.0, 0.5])
    w2 = jnp.array([[2.0], [-1.0]])
    b2 = jnp.array([0.25])
    x = jnp.array([[1.0, 2.0]])
    t = jnp.array([[1.0]])
    z = x @ w1 + b1
    h = jax.nn.sigmoid(z)
    y = h @ w2 + b2
    y_bar = y - t
    z_bar = (y_bar @ w2.T) * h * (1 - h)
    _, grads = backprop.backprop(
        [(w1, b1), (w2, b2)], x, t, activation="sigmoid", loss="squared_error"
    )
    np.testing.assert_allclose(grads[1][0], h.T @ y_bar, rtol=1e-6)
    np.testing.assert_allclose(grads[0][0], x.T @ z_bar, rtol=1e-6)
    np.testing.assert_allclose(grads[0][1], z_bar[0], rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "activation", "loss", "outputs"),
    [
        ("mlp_tanh", "tanh", "softmax_cross_entropy", 3),
        ("mlp_sigmoid_head", "relu", "binary_cross_entropy", 1),
        ("mlp_regression", "softplus", "squared_error", 2),
    ],
)
def test_backprop_matches_registered_mlp(name, activation, loss, outputs):
    model = create_model(name, hidden=(6, 5, 4), num_outputs=outputs, activation=activation)
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.standard_normal((8, 3)))
        # Shapes from an abstract init; values from numpy (no per-shape sampler compiles).
        shapes = jax.eval_shape(model.init, jax.random.PRNGKey(1), x)["params"]
        params = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape)), shapes)
        t = _targets(loss, rng, 8, outputs)

        def model_loss(p):
            outputs = model.apply({"params": p}, x)
            return jnp.mean(jax.vmap(losses.get_loss(loss).fn)(outputs, t))

        # One compile each is cheaper than compiling every eager op on first use.
        ref_value, ref = jax.jit(jax.value_and_grad(model_loss))(params)
        layers = backprop.layers_from_mlp_params(params)
        value, grads = _jit_backprop(layers, x, t, activation=activation, loss=loss)
    assert len(layers) == 4
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    ours = backprop.mlp_params_from_layers(grads)
    assert jax.tree.structure(ours) == jax.tree.structure(ref)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        assert _rel_error(a, b) < 1e-10


def _param_shapes(name):
    model = create_model(name, hidden=(3,), num_outputs=2)
    return jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.ones((1, 4)))["params"]


def test_converter_rejects_parametrised_activations():
    with pytest.raises(ValueError, match="act_0"):
        backprop.layers_from_mlp_params(_param_shapes("mlp_prelu"))
    with pytest.raises(ValueError, match="hidden_0 is not a Dense layer"):
        backprop.layers_from_mlp_params(_param_shapes("mlp_maxout"))
    layers = backprop.layers_from_mlp_params(_param_shapes("mlp_elu"))
    assert [(w.shape, b.shape) for w, b in layers] == [((4, 3), (3,)), ((3, 2), (2,))]


def test_unsupported_activation_and_loss_are_reported():
    layers = [(jnp.ones((2, 1)), jnp.zeros(1))]
    x, t = jnp.ones((1, 2)), jnp.ones((1, 1))
    with pytest.raises(ValueError, match="prelu' is a module activation"):
        backprop.backprop(layers, x, t, activation="prelu", loss="squared_error")
    with pytest.raises(KeyError, match="did you mean 'tanh'"):
        backprop.backprop(layers, x, t, activation="tahn", loss="squared_error")
    with pytest.raises(ValueError, match="supports the losses"):
        backprop.backprop(layers, x, t, activation="tanh", loss="binary_hinge")

"""The activation zoo: values at chosen points, gradients, learned and random slopes, maxout,
RBF, and the name table's errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.nn import activations as act

Z = jnp.array([-2.0, -0.5, 0.0, 0.5, 2.0])

EXPECTED = {
    "identity": [-2.0, -0.5, 0.0, 0.5, 2.0],
    "relu": [0.0, 0.0, 0.0, 0.5, 2.0],
    "leaky_relu": [-0.02, -0.005, 0.0, 0.5, 2.0],
    "abs": [2.0, 0.5, 0.0, 0.5, 2.0],
    "elu": [np.expm1(-2.0), np.expm1(-0.5), 0.0, 0.5, 2.0],
    "softplus": [np.log1p(np.exp(-2.0)), np.log1p(np.exp(-0.5)), np.log(2.0), 0.974077, 2.126928],
    "sigmoid": [0.119203, 0.377541, 0.5, 0.622459, 0.880797],
    "tanh": [-0.964028, -0.462117, 0.0, 0.462117, 0.964028],
    "hard_tanh": [-1.0, -0.5, 0.0, 0.5, 1.0],
    "hard_threshold": [0.0, 0.0, 0.0, 1.0, 1.0],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_elementwise_values(name):
    fn = act.get_activation(name).fn
    np.testing.assert_allclose(fn(Z), EXPECTED[name], rtol=1e-5, atol=1e-6)


def test_activation_options_change_values():
    np.testing.assert_allclose(act.leaky_relu(Z, negative_slope=0.2)[:2], [-0.4, -0.1])
    np.testing.assert_allclose(act.elu(Z, alpha=2.0)[0], 2.0 * np.expm1(-2.0), rtol=1e-6)
    leaky = act.make_activation("leaky_relu", negative_slope=0.3)
    np.testing.assert_allclose(leaky(Z, False), [-0.6, -0.15, 0.0, 0.5, 2.0], rtol=1e-6)


def test_elu_does_not_overflow_for_large_inputs():
    # The unused exp branch of where() would otherwise give inf * 0 = nan gradients.
    grad = jax.grad(lambda z: jnp.sum(act.elu(z)))(jnp.array([1000.0, -1000.0]))
    np.testing.assert_array_equal(grad, [1.0, 0.0])


def test_elu_slope_at_zero_is_alpha_from_the_left():
    # ELU is differentiable at 0 for alpha = 1 (both sides have slope 1); a min(z, 0) inside
    # would split the gradient at the tie and give 0.5 * alpha
    for alpha in (1.0, 2.0):
        slope = jax.grad(lambda z, a=alpha: act.elu(z, alpha=a))(0.0)
        assert float(slope) == alpha


def test_hard_threshold_gradient_is_exactly_zero():
    grad = jax.grad(lambda z: jnp.sum(act.hard_threshold(z) * jnp.arange(5.0)))(Z)
    np.testing.assert_array_equal(grad, np.zeros(5))
    assert not act.get_activation("hard_threshold").trainable


def test_prelu_learns_its_slope():
    z = jnp.array([[-2.0, 3.0], [-1.0, -4.0]])
    upstream = jnp.array([[1.0, 2.0], [3.0, 5.0]])
    prelu = act.PReLU(init_slope=0.25)
    variables = prelu.init(jax.random.PRNGKey(0), z)
    np.testing.assert_allclose(variables["params"]["slope"], [0.25, 0.25])
    np.testing.assert_allclose(prelu.apply(variables, z), [[-0.5, 3.0], [-0.25, -1.0]])

    def loss(params):
        return jnp.sum(prelu.apply({"params": params}, z) * upstream)

    grad = jax.grad(loss)(variables["params"])["slope"]
    # dL/da_j = sum over examples of upstream * min(0, z): unit 0: -2*1 + -1*3, unit 1: -4*5.
    np.testing.assert_allclose(grad, [-5.0, -20.0])


def test_rrelu_train_samples_slopes_in_range_and_eval_uses_mean():
    rrelu = act.RReLU(lower=0.1, upper=0.3)
    z = jnp.concatenate([-jnp.linspace(0.5, 3.0, 200), jnp.linspace(0.5, 3.0, 200)])
    variables = rrelu.init(jax.random.PRNGKey(0), z)
    assert variables == {}

    def train(seed):
        return rrelu.apply(variables, z, train=True, rngs={"dropout": jax.random.PRNGKey(seed)})

    a, b = train(1), train(2)
    neg = z < 0
    slopes_a = a[neg] / z[neg]
    assert np.all((slopes_a >= 0.1) & (slopes_a <= 0.3))
    assert np.std(slopes_a) > 0.03  # each unit draws its own slope (U[0.1, 0.3] std is 0.058)
    assert np.max(np.abs(a[neg] - b[neg])) > 0.1  # another rng, other slopes
    np.testing.assert_array_equal(a[~neg], z[~neg])
    np.testing.assert_array_equal(train(1), a)  # deterministic given the rng
    np.testing.assert_allclose(rrelu.apply(variables, z)[neg], 0.2 * z[neg], rtol=1e-6)


def test_maxout_equals_max_of_pieces():
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 4))
    layer = act.Maxout(features=3, pieces=4)
    variables = layer.init(jax.random.PRNGKey(1), x)
    kernel = variables["params"]["pieces"]["kernel"]
    bias = variables["params"]["pieces"]["bias"]
    assert kernel.shape == (4, 3, 4)
    pieces = [x @ kernel[:, :, k] + bias[:, k] for k in range(4)]
    np.testing.assert_allclose(layer.apply(variables, x), np.max(pieces, axis=0), rtol=1e-6)


def test_maxout_with_two_pieces_can_be_abs():
    # With k = 2 maxout recovers absolute value rectification: max(z, -z) = |z| (seed 002).
    layer = act.Maxout(features=1, pieces=2)
    kernel = jnp.array([[[1.0, -1.0]]])
    params = {"pieces": {"kernel": kernel, "bias": jnp.zeros((1, 2))}}
    x = Z[:, None]
    np.testing.assert_allclose(layer.apply({"params": params}, x)[:, 0], jnp.abs(Z))


def test_rbf_peaks_at_its_centre():
    layer = act.RBF(features=3, init_sigma=2.0)
    x = jnp.zeros((1, 2))
    variables = layer.init(jax.random.PRNGKey(0), x)
    centers = variables["params"]["centers"]
    np.testing.assert_allclose(jnp.exp(variables["params"]["log_sigma"]), [2.0] * 3, rtol=1e-6)
    at_centres = layer.apply(variables, centers)  # row j is the input c_j
    np.testing.assert_allclose(jnp.diag(at_centres), [1.0] * 3, rtol=1e-6)
    assert np.all(at_centres[~np.eye(3, dtype=bool)] < 1.0)
    # One unit of distance 2 = sigma away: exp(-1/2).
    shifted = centers[:1] + jnp.array([[2.0, 0.0]])
    np.testing.assert_allclose(layer.apply(variables, shifted)[0, 0], np.exp(-0.5), rtol=1e-6)


def test_rbf_default_width_is_sqrt_of_input_dim():
    variables = act.RBF(features=2).init(jax.random.PRNGKey(0), jnp.zeros((1, 9)))
    np.testing.assert_allclose(jnp.exp(variables["params"]["log_sigma"]), [3.0, 3.0], rtol=1e-6)


def test_unknown_activation_lists_close_matches():
    with pytest.raises(KeyError, match="'relu'") as err:
        act.get_activation("rleu")
    assert str(err.value).startswith("unknown activation 'rleu' — did you mean 'relu'")
    assert "known: identity, relu" in str(err.value)
    with pytest.raises(KeyError, match="did you mean 'leaky_relu'"):
        act.make_activation("leaky")


def test_bad_options_and_kinds_are_reported():
    with pytest.raises(TypeError, match="accepts negative_slope"):
        act.make_activation("leaky_relu", slope=0.1)
    with pytest.raises(TypeError, match="accepts init_slope"):
        act.make_activation("prelu", slope=0.1)
    with pytest.raises(ValueError, match="make_layer"):
        act.make_activation("maxout")
    with pytest.raises(ValueError, match="not a layer"):
        act.make_layer("tanh", 4)
    with pytest.raises(ValueError, match="lower <= upper"):
        act.RReLU(lower=0.5, upper=0.1).init(jax.random.PRNGKey(0), Z)


def test_table_kinds():
    kinds = {name: spec.kind for name, spec in act.ACTIVATIONS.items()}
    assert kinds["prelu"] == kinds["rrelu"] == "module"
    assert kinds["maxout"] == kinds["rbf"] == "layer"
    assert sum(k == "elementwise" for k in kinds.values()) == 10

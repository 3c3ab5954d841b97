"""NICE (seed 004, Lecture 15 §1, line 3300): coupling and scaling layers, the flow, the
Gaussian baseline, the 2-D toy densities and the experiment.

Two paths that must agree are checked against each other: decode against encode (exact
inverses), each layer's log-determinant against ``slogdet`` of its ``jax.jacfwd`` Jacobian,
the change-of-variables density against a Riemann sum (it must integrate to 1), and the
Gaussian baseline and priors against scipy.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from test_experiments import load_experiment

from jaxnets.data.embedded import make_two_moons
from jaxnets.data.toy2d import rings, toy2d_dataset, two_moons
from jaxnets.models.nice import (
    NICE,
    fit_gaussian,
    gaussian_log_likelihood,
    get_prior,
)
from jaxnets.nn.coupling import AdditiveCoupling, DiagonalScaling, coupling_partition


def _as64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


@functools.cache
def _layer(kind: str, features: int, parity: int = 0):
    """(module, variables) with float32 parameters; the scaling gets nonzero log-scales (its
    zero initialisation is the identity, which would make the checks trivial)."""
    if kind == "coupling":
        module = AdditiveCoupling(features, hidden=6, layers=2, parity=parity, activation="tanh")
    elif kind == "scaling":
        module = DiagonalScaling(features)
    else:
        module = NICE(features=features, num_coupling=3, hidden=6, layers=1, activation="tanh")
    variables = jax.jit(module.init)(jax.random.PRNGKey(features), jnp.zeros((1, features)))
    variables = jax.tree_util.tree_map_with_path(
        lambda path, p: (
            jax.random.uniform(jax.random.PRNGKey(7), p.shape, minval=-0.6, maxval=0.6)
            if "log_scale" in jax.tree_util.keystr(path)
            else p
        ),
        variables,
    )
    return module, variables


# jitted with the (hashable) module static: eager flax would compile every primitive separately
@functools.partial(jax.jit, static_argnums=0)
def _forward(module, variables, x):
    """The data-to-latent map with its per-example log|det|."""
    method = NICE.encode if isinstance(module, NICE) else type(module).__call__
    return module.apply(variables, x, method=method)


@functools.partial(jax.jit, static_argnums=0)
def _backward(module, variables, y):
    """The latent-to-data map (the generator)."""
    method = NICE.decode if isinstance(module, NICE) else type(module).inverse
    return module.apply(variables, y, method=method)


LAYERS = [("coupling", 0), ("coupling", 1), ("scaling", 0), ("flow", 0)]


@pytest.mark.parametrize("kind,parity", LAYERS)
def test_inverse_undoes_forward_both_ways_float32(kind, parity):
    module, variables = _layer(kind, 5, parity)
    x = jax.random.normal(jax.random.PRNGKey(1), (64, 5))
    y, _ = _forward(module, variables, x)
    assert float(jnp.max(jnp.abs(y - x))) > 0.05  # the map is not the identity
    np.testing.assert_allclose(_backward(module, variables, y), x, atol=1e-6, rtol=0)
    x_again, _ = _forward(module, variables, _backward(module, variables, x))
    np.testing.assert_allclose(x_again, x, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "kind,parity,features",
    [("coupling", 0, 2), ("coupling", 1, 5), ("scaling", 0, 5), ("flow", 0, 2), ("flow", 0, 5)],
)
def test_log_det_equals_slogdet_of_the_jacobian(kind, parity, features):
    module, variables = _layer(kind, features, parity)
    x = jax.random.normal(jax.random.PRNGKey(2), (3, features))
    with jax.enable_x64(True):
        variables, x = _as64(variables), _as64(x)

        def one(x_i):
            return _forward(module, variables, x_i[None])[0][0]

        jacobians = np.asarray(jax.jit(jax.vmap(jax.jacfwd(one)))(x))
        _, log_det = _forward(module, variables, x)
    sign, expected = np.linalg.slogdet(jacobians)
    np.testing.assert_array_equal(sign, 1.0)
    np.testing.assert_allclose(log_det, expected, atol=1e-12)
    if kind != "scaling":  # a coupling really mixes coordinates: off-diagonal terms
        assert np.max(np.abs(jacobians * (1 - np.eye(features)))) > 1e-3
    if kind == "coupling":  # Eq. 3: the kept coordinates pass through unchanged
        kept, changed = coupling_partition(features, parity)
        kept_rows = jacobians[:, kept]
        np.testing.assert_array_equal(
            kept_rows[:, :, kept], np.broadcast_to(np.eye(len(kept)), (3, len(kept), len(kept)))
        )
        np.testing.assert_array_equal(kept_rows[:, :, changed], 0.0)


@pytest.mark.parametrize("prior", ["logistic", "gaussian"])
def test_density_integrates_to_one(prior):
    """Change of variables (Eq. 1) numerically: Σ p(x) h² over a wide grid is 1. Leaving out
    the log-determinant (Σ s = 0.4 here) would give e^{∓0.4}, off by a third."""
    logistic_flow, variables = _layer("flow", 2)
    module = logistic_flow.clone(prior=prior)  # the prior has no parameters
    params = {**variables["params"], "scaling": {"log_scale": jnp.array([0.5, -0.1])}}
    variables = {"params": params}
    with jax.enable_x64(True):
        axis = jnp.linspace(-30.0, 30.0, 601)
        grid = jnp.stack(jnp.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
        log_p = jax.jit(module.apply)(_as64(variables), grid)
        total = float(jnp.sum(jnp.exp(log_p)) * (axis[1] - axis[0]) ** 2)
    assert abs(total - 1.0) < 1e-3, total


def test_priors_match_scipy():
    z = np.linspace(-40.0, 40.0, 33).reshape(3, 11)  # far tails too (no overflow)
    with jax.enable_x64(True):
        logistic = get_prior("logistic").log_density(jnp.asarray(z))
        gaussian = get_prior("gaussian").log_density(jnp.asarray(z))
    np.testing.assert_allclose(logistic, scipy.stats.logistic.logpdf(z).sum(-1), rtol=1e-12)
    np.testing.assert_allclose(gaussian, scipy.stats.norm.logpdf(z).sum(-1), rtol=1e-12)
    with pytest.raises(ValueError, match="unknown prior 'cauchy'; choose one of logistic"):
        NICE(prior="cauchy")


def test_gaussian_baseline_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 3)) @ np.array([[2.0, 0, 0], [0.9, 0.5, 0], [0.1, -0.3, 1.5]])
    with jax.enable_x64(True):
        mean, cov = jax.jit(fit_gaussian)(jnp.asarray(x))
        x_new = jnp.asarray(rng.standard_normal((7, 3)) * 2)
        log_p = jax.jit(gaussian_log_likelihood)(x_new, mean, cov)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x.T, bias=True), rtol=1e-12)  # ML: divided by n
    expected = scipy.stats.multivariate_normal(x.mean(0), np.cov(x.T, bias=True)).logpdf(x_new)
    np.testing.assert_allclose(log_p, expected, rtol=1e-10)


@pytest.mark.parametrize("prior", ["logistic", "gaussian"])
def test_sample_is_decode_of_prior_draws(prior):
    logistic_flow, variables = _layer("flow", 5)
    module = logistic_flow.clone(prior=prior)
    sample = jax.jit(lambda v, key: module.apply(v, key, 50, method=NICE.sample))
    key = jax.random.PRNGKey(5)
    first, again = sample(variables, key), sample(variables, key)
    other = sample(variables, jax.random.PRNGKey(6))
    assert first.shape == (50, 5) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert np.min(np.abs(first - other)) > 0
    draws = {"logistic": jax.random.logistic, "gaussian": jax.random.normal}[prior](key, (50, 5))
    decoded = _backward(module, variables, draws)
    np.testing.assert_allclose(first, decoded, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: AdditiveCoupling(1), "at least 2 features"),
        (lambda: AdditiveCoupling(4, parity=2), "parity must be 0"),
        (lambda: AdditiveCoupling(4, layers=0), "layers >= 1"),
        (lambda: AdditiveCoupling(4, activation="maxout"), "elementwise activation"),
        (lambda: NICE(num_coupling=0), "num_coupling must be >= 1"),
        (lambda: NICE(features=1), "at least 2 features"),
        (lambda: NICE(activation="rbf"), "elementwise activation"),
    ],
)
def test_bad_layer_settings_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_wrong_feature_count_is_named():
    module, variables = _layer("coupling", 2)
    with pytest.raises(ValueError, match=r"built for inputs \(\.\.\., 2\); got shape \(4, 3\)"):
        module.apply(variables, jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"NICE expects x of shape \(batch, 2\); got \(2,\)"):
        NICE().apply({}, jnp.zeros(2))


def test_toy_densities():
    moons = two_moons(300, noise=0.05, seed=3)
    assert moons.shape == (300, 2) and moons.dtype == np.float32
    np.testing.assert_array_equal(moons, make_two_moons(300, noise=0.05, seed=3).x)
    circles = rings(3000, noise=0.0, num_rings=3, seed=1)
    radius = np.linalg.norm(circles, axis=1)
    for k in (1, 2, 3):  # radii k/3, each ring's share proportional to its circumference
        on_ring = np.isclose(radius, k / 3, atol=1e-5)
        assert abs(on_ring.mean() - k / 6) < 0.03
    assert np.isclose(radius, [[1 / 3], [2 / 3], [1.0]], atol=1e-5).any(0).all()
    np.testing.assert_array_equal(rings(50, seed=4), rings(50, seed=4))
    assert not np.array_equal(rings(50, seed=4), rings(50, seed=5))
    data = toy2d_dataset("rings", 40, noise=0.1, seed=2)
    assert data.name == "rings" and data.x.shape == (40, 2) and not data.y.any()
    np.testing.assert_array_equal(data.x, rings(40, noise=0.1, seed=2))


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: two_moons(0), "n must be a positive whole number"),
        (lambda: rings(10.5), "n must be a positive whole number"),
        (lambda: two_moons(10, noise=-0.1), "noise is the standard deviation"),
        (lambda: rings(10, noise=float("nan")), "must be finite and >= 0"),
        (lambda: rings(10, num_rings=0), "num_rings must be a positive"),
        (lambda: toy2d_dataset("spirals", 10, noise=0.1), "choose one of two_moons, rings"),
    ],
)
def test_bad_toy_density_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_experiment_config_is_validated():
    experiment = load_experiment("nice")
    with pytest.raises(ValueError, match="one noise level per data set"):
        experiment.Config(noises=(0.1,))
    with pytest.raises(ValueError, match="unknown data sets"):
        experiment.Config(datasets=("spirals",), noises=(0.1,))

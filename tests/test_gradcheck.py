"""Gradcheck passes on correct gradients and catches a planted wrong one."""

import jax
import jax.numpy as jnp
import pytest

from jaxnets.gradcheck import GradcheckError, gradcheck


@jax.custom_vjp
def _wrong_tanh(x):
    return jnp.tanh(x)


def _wrong_fwd(x):
    return jnp.tanh(x), x


def _wrong_bwd(x, g):
    # deliberately wrong: 1 - tanh(x) instead of 1 - tanh(x)^2
    return (g * (1.0 - jnp.tanh(x)),)


_wrong_tanh.defvjp(_wrong_fwd, _wrong_bwd)


def _params():
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    return {
        "hidden": {"kernel": jax.random.normal(k1, (3, 4)), "bias": jnp.zeros(4)},
        "out": {"kernel": jax.random.normal(k2, (4, 2))},
    }


X = jax.random.normal(jax.random.PRNGKey(1), (5, 3))


def _loss(params, activation=jnp.tanh):
    h = activation(X @ params["hidden"]["kernel"] + params["hidden"]["bias"])
    return jnp.sum((h @ params["out"]["kernel"]) ** 2)


@pytest.mark.parametrize("mode", ["full", "directions"])
def test_correct_gradients_pass_in_float64(mode):
    report = gradcheck(_loss, _params(), mode=mode)
    assert report.passed and report.mode == mode
    assert report.worst.rel_error < 1e-8  # float64 central differences are this good
    assert {leaf.path for leaf in report.leaves} == {"hidden/bias", "hidden/kernel", "out/kernel"}


@pytest.mark.parametrize("mode", ["full", "directions"])
def test_planted_wrong_gradient_is_caught_and_named(mode):
    def wrong(params):
        return _loss(params, _wrong_tanh)

    with pytest.raises(GradcheckError, match="parameter 'hidden/(kernel|bias)'") as info:
        gradcheck(wrong, _params(), mode=mode)
    assert "out/kernel" not in str(info.value).split("\n")[0]
    report = gradcheck(wrong, _params(), mode=mode, raise_on_failure=False)
    assert not report.passed
    errors = {leaf.path: leaf.rel_error for leaf in report.leaves}
    assert errors["out/kernel"] < 1e-8 and errors["hidden/kernel"] > 1e-3


def test_float32_differences_would_not_be_precise_enough():
    # The check runs in float64 even for float32 params: a float32 central difference at
    # eps=1e-6 would be pure rounding noise.
    params = jax.tree.map(lambda p: p.astype(jnp.float32), _params())
    assert gradcheck(_loss, params).worst.rel_error < 1e-8


def test_auto_mode_switches_on_size():
    assert gradcheck(_loss, _params(), max_full_size=10).mode == "directions"
    assert gradcheck(_loss, _params()).mode == "full"


@pytest.mark.parametrize("mode", ["full", "directions"])
def test_the_loss_is_traced_a_fixed_number_of_times_whatever_the_leaf_count(mode):
    # one program for the gradient and one for the batched differences: a model with
    # hundreds of leaves must not compile once per leaf (directions mode once did: 60 s
    # instead of 6 s for googlenet_small)
    def traces_for(leaves):
        params = {f"w{i}": jnp.full((2,), 0.1 * (i + 1)) for i in range(leaves)}
        traced = []

        def loss(p):
            traced.append(None)
            return sum(jnp.sum(jnp.tanh(w) ** 2) for w in p.values())

        assert gradcheck(loss, params, mode=mode).passed
        return len(traced)

    assert traces_for(2) == traces_for(7) <= 3

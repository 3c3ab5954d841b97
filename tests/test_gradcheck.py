"""Gradcheck passes on correct gradients and catches a planted wrong one: in float64
whatever the parameters' dtype, in full and directions mode, with a fixed number of traces,
naming the leaf it was planted in; tolerances that would accept anything are refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradcheck_helpers import planted_gradient

from jaxnets.gradcheck import (
    GradcheckError,
    gradcheck,
)


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
    """ "auto" is full for trees of at most ``max_full_size`` entries (4096 by default): the
    bound itself is full, one entry more is directions."""
    size = sum(leaf.size for leaf in jax.tree.leaves(_params()))  # 3·4 + 4 + 4·2 = 24
    assert gradcheck(_loss, _params(), max_full_size=10).mode == "directions"
    assert gradcheck(_loss, _params(), max_full_size=size).mode == "full"
    assert gradcheck(_loss, _params(), max_full_size=size - 1).mode == "directions"
    assert gradcheck(_loss, _params()).mode == "full"
    # 4097 entries under the default bound: directions (in full mode: 4097 differences)
    big = {"w": np.linspace(-1.0, 1.0, 4097)}
    assert gradcheck(lambda p: jnp.sum(jnp.sin(p["w"])), big).mode == "directions"


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


# --- planted wrong gradients in one leaf of a tree whose other leaves are right ------------


def _weighted_sin(x):
    """sum_k (k + 1) sin(x_k): its gradient's entries (k + 1) cos(x_k) all differ, so a
    permutation of two of them changes the gradient."""
    return jnp.sum(jnp.arange(1.0, x.size + 1).reshape(x.shape) * jnp.sin(x))


def _swap_first_two(g):
    flat = g.ravel()
    return flat.at[jnp.array([0, 1])].set(flat[jnp.array([1, 0])]).reshape(g.shape)


CORRUPTIONS = {
    "sign flip": lambda g: -g,
    "two entries permuted": _swap_first_two,
    "zeroed": jnp.zeros_like,
    "scaled by 1.01": lambda g: 1.01 * g,
    "scaled by 2": lambda g: 2.0 * g,
}

# the leaf each corruption is planted in: not always the same one, nor the first or the last
PLANTED_IN = {
    "sign flip": "dense/kernel",
    "two entries permuted": "scale",
    "zeroed": "dense/bias",
    "scaled by 1.01": "dense/kernel",
    "scaled by 2": "scale",
}


def _tree_params():
    rng = np.random.default_rng(3)
    # entries in [-1, 1]: cos > 0.5, so no gradient entry is near zero
    return {
        "dense": {"kernel": rng.uniform(-1, 1, (2, 3)), "bias": rng.uniform(-1, 1, 3)},
        "scale": rng.uniform(-1, 1, 4),
    }


def _tree_loss(planted_path, corrupt):
    """Sum of _weighted_sin over the leaves, with the wrong backward rule in one of them."""
    wrong = planted_gradient(_weighted_sin, corrupt)

    def loss(params):
        leaves = jax.tree_util.tree_leaves_with_path(params)
        return sum(
            (wrong if _path_name(path) == planted_path else _weighted_sin)(leaf)
            for path, leaf in leaves
        )

    return loss


def _path_name(path):
    return "/".join(str(k.key) for k in path)


@pytest.mark.parametrize("mode", ["full", "directions"])
@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_each_planted_wrong_gradient_fails_naming_its_leaf(corruption, mode):
    planted = PLANTED_IN[corruption]
    loss = _tree_loss(planted, CORRUPTIONS[corruption])
    with pytest.raises(GradcheckError) as info:
        gradcheck(loss, _tree_params(), mode=mode)
    first_line, _title, _header, *rows, _worst = str(info.value).split("\n")
    assert f"parameter {planted!r}" in first_line
    flagged = [row.split()[0] for row in rows if row.endswith("FAIL")]
    assert flagged == [planted]  # only the planted leaf's row is marked in the report
    report = gradcheck(loss, _tree_params(), mode=mode, raise_on_failure=False)
    errors = {leaf.path: leaf.rel_error for leaf in report.leaves}
    assert set(errors) == {"dense/bias", "dense/kernel", "scale"}
    assert report.worst.path == planted and errors[planted] > 1e-3
    assert all(error < 1e-8 for path, error in errors.items() if path != planted)


@pytest.mark.parametrize("mode", ["full", "directions"])
def test_a_scaled_gradient_has_the_relative_error_of_its_scale(mode):
    """a = c n gives rel = |c - 1| / (c + 1) whatever n is, along any direction too: the
    checker's number is the formula, not just "large"."""
    for scale in (1.01, 2.0):
        loss = _tree_loss("scale", lambda g, c=scale: c * g)
        report = gradcheck(loss, _tree_params(), mode=mode, raise_on_failure=False)
        error = {leaf.path: leaf.rel_error for leaf in report.leaves}["scale"]
        assert error == pytest.approx((scale - 1) / (scale + 1), rel=1e-7)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tol": float("inf")}, "tol must be in"),
        ({"tol": 1.0}, "tol must be in"),
        ({"tol": 0.0}, "tol must be in"),
        ({"tol": -1e-6}, "tol must be in"),
        ({"tol": float("nan")}, "tol must be in"),
        ({"eps": 0.0}, "eps must be"),
        ({"eps": -1e-5}, "eps must be"),
        ({"eps": float("inf")}, "eps must be"),
        ({"atol": -1.0}, "atol must be"),
    ],
)
def test_tolerances_that_would_accept_anything_are_rejected(kwargs, message):
    """rel lies in [0, 1], so tol >= 1 (``--tol inf``) would pass even a sign-flipped
    gradient, which this planted one is."""
    loss = _tree_loss("scale", lambda g: -g)
    with pytest.raises(ValueError, match=message):
        gradcheck(loss, _tree_params(), **kwargs)


def test_full_mode_over_several_chunks_checks_every_coordinate_with_one_program():
    """300 coordinates are differenced in chunks of 16, the last one padded: a wrong entry
    in the padded chunk is caught, and the loss is traced as often as for a tiny tree (the
    padded chunk has the shape of the others, so it reuses their program)."""
    x = np.random.default_rng(5).uniform(-1, 1, 300)

    def last_entry_doubled(g):
        return g.at[-1].multiply(2.0)

    traced = []

    def loss(p, forward=_weighted_sin):
        traced.append(None)
        return forward(p["w"])

    report = gradcheck(loss, {"w": x}, mode="full", raise_on_failure=False)
    assert report.passed and report.worst.size == 300
    traces = len(traced)
    small = gradcheck(loss, {"w": x[:5]}, mode="full")
    assert small.passed and len(traced) - traces == traces
    wrong = planted_gradient(_weighted_sin, last_entry_doubled)
    report = gradcheck(lambda p: loss(p, wrong), {"w": x}, mode="full", raise_on_failure=False)
    # one entry of 300, 2 (k + 1) cos x_k instead of (k + 1) cos x_k: rel ≈ |g_k| / 2‖g‖
    assert not report.passed and report.worst.rel_error > 1e-3


def test_a_non_finite_gradient_fails_whatever_the_leaf_order():
    """√w at w = 0: an infinite analytic gradient, NaN differences, so a NaN relative error.
    It fails and is named even when it is not the first leaf (NaN compares false both ways:
    ranked by plain max it was never the worst, and the report passed)."""

    def loss(p):
        return jnp.sum(p["a"] ** 2) + jnp.sum(jnp.sqrt(p["b"]))

    params = {"a": np.ones(2), "b": np.zeros(1)}
    with pytest.raises(GradcheckError, match="parameter 'b'") as info:
        gradcheck(loss, params)
    rows = str(info.value).split("\n")[3:-1]
    assert [row.split()[0] for row in rows if row.endswith("FAIL")] == ["b"]

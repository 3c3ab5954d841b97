"""Gradcheck passes on correct gradients and catches a planted wrong one."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.gradcheck import (
    GradcheckError,
    GradcheckReport,
    LeafCheck,
    _map_in_chunks,
    gradcheck,
    gradcheck_model,
    model_loss_at,
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


def _planted(forward, corrupt):
    """``forward`` with a custom VJP whose backward returns ``corrupt(true gradient)``.

    The finite differences see only ``forward``; ``jax.grad`` sees the corrupted rule, so the
    checker's analytic side is exactly the wrong gradient we plant.
    """

    @jax.custom_vjp
    def f(x):
        return forward(x)

    def fwd(x):
        return forward(x), x

    def bwd(x, g):
        return (g * corrupt(jax.grad(forward)(x)),)

    f.defvjp(fwd, bwd)
    return f


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
    wrong = _planted(_weighted_sin, corrupt)

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


# --- the relative error formula, rel(a, n) = ‖a − n‖ / (‖a‖ + ‖n‖) -------------------------


def _linear_with_gradient(numeric, analytic):
    """f(x) = numeric · x, whose central differences equal ``numeric`` exactly at x = 0 (for
    entries 0 and 1, which are exact in binary), while its custom VJP claims ``analytic``."""
    numeric, analytic = jnp.asarray(numeric, jnp.float64), jnp.asarray(analytic, jnp.float64)
    return _planted(lambda x: jnp.vdot(numeric, x), lambda _: analytic)


def _check_leaf(numeric, analytic, **kwargs):
    f = _linear_with_gradient(numeric, analytic)
    report = gradcheck(lambda p: f(p["w"]), {"w": np.zeros(len(numeric))}, mode="full", **kwargs)
    (leaf,) = report.leaves
    return report, leaf


@pytest.mark.parametrize(
    "analytic, numeric, expected",
    [
        ([3.0, 4.0], [0.0, 0.0], 1.0),  # 5 / (5 + 0)
        ([1.0, 0.0], [0.0, 1.0], np.sqrt(2) / 2),  # √2 / (1 + 1); |‖a‖ − ‖n‖| would give 0
        ([-1.0, 0.0], [1.0, 0.0], 1.0),  # a sign flip: 2 / (1 + 1)
        ([2.0, -1.0], [2.0, -1.0], 0.0),  # agreement
        ([1.0, 1.0], [1.0, 0.0], 1 / (1 + np.sqrt(2))),  # 1 / (√2 + 1)
    ],
)
def test_relative_error_and_norms_equal_hand_computed_values(analytic, numeric, expected):
    with jax.enable_x64(True):
        report, leaf = _check_leaf(numeric, analytic, raise_on_failure=False)
    assert leaf.rel_error == pytest.approx(expected, abs=1e-12)
    assert leaf.analytic_norm == pytest.approx(np.linalg.norm(analytic), abs=1e-12)
    assert leaf.numeric_norm == pytest.approx(np.linalg.norm(numeric), abs=1e-12)
    assert report.passed == (expected < 1e-6)


def test_relative_error_on_random_vectors_is_the_formula():
    """Away from the special cases above: a − n and |‖a‖ − ‖n‖| differ by orders here."""
    rng = np.random.default_rng(0)
    numeric, analytic = rng.standard_normal(5), rng.standard_normal(5)
    with jax.enable_x64(True):
        _, leaf = _check_leaf(numeric, analytic, raise_on_failure=False)
    expected = np.linalg.norm(analytic - numeric) / (
        np.linalg.norm(analytic) + np.linalg.norm(numeric)
    )
    assert leaf.rel_error == pytest.approx(expected, rel=1e-9)


def test_gradients_below_atol_agree_and_above_it_are_compared():
    """The atol branch: an analytic 1e-10 against an exact zero difference is rounding-level
    agreement under the default atol 1e-9, and a total disagreement (rel 1) under 1e-11; an
    analytic 1e-8 is one under the default too (the default is no looser than 1e-8). atol = 0
    is allowed (every nonzero gradient is compared) and two exactly-zero gradients still
    agree there (rel 0, not 0 / 0)."""
    with jax.enable_x64(True):
        report, leaf = _check_leaf([0.0, 0.0], [1e-10, 0.0])
        assert leaf.rel_error == 0.0 and report.passed
        _, leaf = _check_leaf([0.0, 0.0], [1e-10, 0.0], atol=1e-11, raise_on_failure=False)
        assert leaf.rel_error == pytest.approx(1.0)
        _, leaf = _check_leaf([0.0, 0.0], [1e-8, 0.0], raise_on_failure=False)
        assert leaf.rel_error == pytest.approx(1.0)
        _, leaf = _check_leaf([0.0, 0.0], [1e-100, 0.0], atol=0.0, raise_on_failure=False)
        assert leaf.rel_error == pytest.approx(1.0)
        report, leaf = _check_leaf([0.0, 0.0], [0.0, 0.0], atol=0.0)
        assert leaf.rel_error == 0.0 and report.passed


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


# --- a registered model's loss as the gradient checks see it ----------------------------------


def test_model_loss_at_is_the_mean_squared_error_of_a_fixed_float64_batch():
    """linear_regression's tiny config (4 inputs -> 3 outputs) under its card's squared error:
    float64 parameters, and the loss is the batch MEAN of ½‖x W + b − y‖², so along the bias
    its second difference is exactly ‖δ‖² (the Hessian in b is the identity), whatever x and
    y; the fixed batch depends on the seed only. In W the Hessian is (XᵀX / B) ⊗ I₃, of rank
    3·min(B, 4): 9 of 12 for the default batch of B = 3 examples."""
    loss_fn, params = model_loss_at("linear_regression", batch_size=5)
    shapes = {k: (v.shape, v.dtype) for k, v in params["dense"].items()}
    assert shapes == {"kernel": ((4, 3), np.float64), "bias": ((3,), np.float64)}
    delta = np.array([0.3, -0.2, 0.5])
    with jax.enable_x64(True):
        at = jax.jit(
            lambda s: loss_fn(
                {"dense": {**params["dense"], "bias": params["dense"]["bias"] + s * delta}}
            )
        )
        base = float(at(0.0))
        second = float(at(1.0) + at(-1.0)) - 2 * base
        other = float(model_loss_at("linear_regression", seed=1, batch_size=5)[0](params))
        again = float(loss_fn(params))
    assert second == pytest.approx(float(delta @ delta), rel=1e-9)
    assert again == base and abs(other - again) > 1e-3
    # gradcheck_model checks that loss at its seed, in the mode asked for
    report = gradcheck_model("linear_regression", mode="directions", seed=1)
    assert report.mode == "directions" and report.passed
    assert [leaf.path for leaf in report.leaves] == ["dense/bias", "dense/kernel"]
    with jax.enable_x64(True):
        loss_1, params_1 = model_loss_at("linear_regression", seed=1)
        grads = jax.grad(loss_1)(params_1)["dense"]
        kernel_hessian = jax.hessian(
            lambda kernel: loss_1({"dense": {**params_1["dense"], "kernel": kernel}})
        )(params_1["dense"]["kernel"])
    assert np.linalg.matrix_rank(np.asarray(kernel_hessian).reshape(12, 12), tol=1e-10) == 9
    norms = [leaf.analytic_norm for leaf in report.leaves]
    np.testing.assert_allclose(
        norms, [np.linalg.norm(grads[k]) for k in ("bias", "kernel")], rtol=1e-12
    )


def test_norms_summing_to_exactly_atol_are_still_compared():
    """atol is exclusive: only norms summing to LESS than atol count as agreement."""
    analytic = [1e-10, 0.0]
    atol = float(np.linalg.norm(analytic))  # + ‖numeric‖ = 0: the sum is exactly atol
    with jax.enable_x64(True):
        _, leaf = _check_leaf([0.0, 0.0], analytic, atol=atol, raise_on_failure=False)
    assert leaf.rel_error == 1.0


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
    wrong = _planted(_weighted_sin, last_entry_doubled)
    report = gradcheck(lambda p: loss(p, wrong), {"w": x}, mode="full", raise_on_failure=False)
    # one entry of 300, 2 (k + 1) cos x_k instead of (k + 1) cos x_k: rel ≈ |g_k| / 2‖g‖
    assert not report.passed and report.worst.rel_error > 1e-3


class _Affine(NamedTuple):
    weight: np.ndarray
    shift: np.ndarray


def test_leaves_in_lists_and_tuples_are_named_by_their_index():
    """Dict keys and list/tuple indices name a leaf; a named tuple's leaves by their field
    (JAX's attribute key, printed ".field"), so two fields never share a name."""
    params = {
        "layers": [np.ones(2), np.full(3, 0.5)],
        "pair": (np.zeros(1),),
        "affine": _Affine(np.ones(2), np.zeros(2)),
    }
    report = gradcheck(lambda p: sum(jnp.sum(jnp.tanh(v)) for v in jax.tree.leaves(p)), params)
    assert [leaf.path for leaf in report.leaves] == [
        "affine/.weight",
        "affine/.shift",
        "layers/0",
        "layers/1",
        "pair/0",
    ]


def test_the_report_table_names_each_column_flags_failures_and_gives_the_verdict():
    with jax.enable_x64(True):
        bad, _ = _check_leaf([0.0, 1.0], [1.0, 0.0], raise_on_failure=False)
        good, _ = _check_leaf([0.0, 1.0], [0.0, 1.0])
    lines = str(bad).splitlines()
    assert lines[0] == f"gradcheck (full, eps={bad.eps:g}, tol={bad.tol:g}, float64)"
    assert lines[1].split() == ["leaf", "size", "rel", "error", "|grad|"]
    assert lines[2].split()[0] == "w" and lines[2].endswith("FAIL")
    # orthogonal unit vectors: rel = √2 / (1 + 1)
    assert lines[-1] == f"worst: w ({np.sqrt(2) / 2:.2e}) -> FAIL"
    good_lines = str(good).splitlines()
    assert not good_lines[2].endswith("FAIL") and good_lines[-1].endswith("-> PASS")


def test_gradcheck_model_is_gradcheck_of_model_loss_at_with_the_same_seed_and_options():
    """Same seed for the batch and the random directions (0 by default), options passed on:
    the report equals the one of gradcheck on model_loss_at, leaf for leaf. The default mode
    is "auto": full for this 15-parameter model."""
    for kwargs in ({}, {"mode": "directions", "seed": 2}):
        report = gradcheck_model("linear_regression", tol=0.5, **kwargs)
        loss_fn, params = model_loss_at("linear_regression", seed=kwargs.get("seed", 0))
        direct = gradcheck(loss_fn, params, tol=0.5, **kwargs)
        assert report == direct and report.tol == 0.5
        assert report.mode == kwargs.get("mode", "full")


def test_a_leaf_exactly_at_the_tolerance_is_flagged_and_passing_leaves_carry_no_flag():
    """tol is exclusive: rel_error == tol fails (``passed`` is rel_error < tol), and the
    table flags exactly the failing rows."""
    report = GradcheckReport(
        (LeafCheck("ok", 2, 1e-9, 1.0, 1.0), LeafCheck("edge", 3, 1e-6, 2.0, 2.0)),
        "full",
        1e-5,
        1e-6,
    )
    rows = str(report).splitlines()
    assert not report.passed
    assert rows[2].startswith("ok") and rows[2].endswith("1.000e+00")
    assert rows[3].startswith("edge") and rows[3].endswith("2.000e+00  FAIL")


@pytest.mark.parametrize("num_directions", [None, 20])
def test_directions_mode_probes_each_leaf_along_num_directions_unit_vectors(num_directions):
    """A one-entry leaf has two unit directions, ±1: its k directional derivatives are ±g, so
    the numeric norm is √k |g|, k = 6 by default (unit per direction; normalized over all
    k directions at once they would give |g|). 20 directions run as a padded second chunk
    of 16 (a (20, n) array of directions), and the other leaf still checks out."""
    params = {"b": np.array([0.4]), "w": np.array([0.3, -0.7, 1.1])}

    def loss(p):
        return 3.0 * jnp.sum(jnp.sin(p["b"])) + jnp.sum(jnp.tanh(p["w"]) ** 2)

    kwargs = {} if num_directions is None else {"num_directions": num_directions}
    report = gradcheck(loss, params, mode="directions", **kwargs)
    b = {leaf.path: leaf for leaf in report.leaves}["b"]
    g = 3.0 * np.cos(0.4)
    assert b.analytic_norm == pytest.approx(g, rel=1e-12)
    assert b.numeric_norm == pytest.approx(np.sqrt(num_directions or 6) * g, rel=1e-8)
    assert report.passed and report.worst.rel_error < 1e-8


def test_map_in_chunks_calls_the_batched_function_on_chunks_of_16_rows():
    """The documented chunk size (16: XLA:CPU runs per-example convolution kernels slowly in
    larger batches): 37 rows of (37, 3) are 3 calls on (16, 3), the last one padded with
    copies of row 0, and the result is the function of each row, in order, unpadded."""
    xs = jnp.asarray(np.arange(111.0).reshape(37, 3))
    seen = []

    def batched(chunk):
        seen.append(chunk.shape)
        return jnp.sum(chunk**2, axis=1)

    out = _map_in_chunks(batched, xs)
    assert seen == [(16, 3)] * 3
    np.testing.assert_array_equal(out, np.sum(np.asarray(xs) ** 2, axis=1))


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


# --- model_loss_at / gradcheck_model defaults ---------------------------------------------


def test_model_loss_at_is_the_training_mode_loss_with_a_fixed_dropout_key():
    """The loss is taken in training mode: an MLP whose dropout drops every hidden unit
    (rate 1) has an output that ignores the hidden layer, so the hidden kernel's gradient is
    exactly zero (in evaluation mode dropout is the identity and it is not). At rate 0.5 the
    dropout mask comes from a fixed key: the loss is a deterministic function of the params."""
    loss_fn, params = model_loss_at("mlp_regression", overrides={"dropout_rate": 1.0})
    with jax.enable_x64(True):
        grads = jax.grad(loss_fn)(params)
    assert np.all(np.asarray(grads["hidden_0"]["kernel"]) == 0)
    assert np.any(np.asarray(grads["out"]["bias"]) != 0)
    loss_fn, params = model_loss_at("mlp_regression", overrides={"dropout_rate": 0.5})
    with jax.enable_x64(True):
        first, second = float(loss_fn(params)), float(loss_fn(params))
    assert first == second and np.isfinite(first)

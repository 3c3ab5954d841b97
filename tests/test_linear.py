"""Tests of jaxnets.models.linear: cards, closed form vs gradient descent, ridge, polynomial
features, and the perceptron learning algorithm."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.svm import SVC

from jaxnets import create_model, list_models, model_card
from jaxnets.data import make_linearly_separable, make_polynomial_regression, xor_truth_table
from jaxnets.models.linear import (
    LinearModel,
    fit_least_squares,
    fit_linear_gd,
    perceptron_mistake_bound,
    perceptron_train,
    polynomial_features,
)

PRESETS = {
    "linear_regression": ("regression", "squared_error", 1),
    "logistic_regression": ("binary", "binary_cross_entropy", 1),
    "softmax_regression": ("classification", "softmax_cross_entropy", 10),
    "linear_svm": ("binary", "binary_hinge", 1),
    "multiclass_svm": ("classification", "multiclass_hinge", 10),
    "perceptron": ("binary", "perceptron_criterion", 1),
}


def _regression_problem(n: int = 200, d: int = 3, k: int = 1, seed: int = 0):
    """Well-conditioned float64 data: standard-normal inputs, linear targets plus noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    W = rng.standard_normal((d, k))
    t = X @ W + 0.7 + 0.1 * rng.standard_normal((n, k))
    return X, (t[:, 0] if k == 1 else t)


def _max_diff(a, b) -> float:
    return max(jax.tree.leaves(jax.tree.map(lambda u, v: float(jnp.abs(u - v).max()), a, b)))


# --- registry and the module -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_registered_with_cards(name):
    task, loss, outputs = PRESETS[name]
    card = model_card(name)
    assert (card.family, card.task, card.loss) == ("linear", task, loss)
    assert "line" in card.lecture and card.reference and card.description
    model = create_model(name)
    x = jnp.ones((2, *card.input_shape))
    variables = model.init(jax.random.key(0), x)
    assert model.apply(variables, x).shape == (2, outputs)
    tiny = create_model(name, **card.test_config)
    assert tiny.init(jax.random.key(0), jnp.ones((1, 4)))["params"]["dense"]["kernel"].shape[0] == 4


def test_all_linear_presets_listed():
    assert set(PRESETS) <= set(list_models())
    assert model_card("softmax_regression").input_shape == (64,)


def test_linear_model_flattens_images_and_computes_xw_plus_b():
    model = LinearModel(num_outputs=3)
    x = jax.random.normal(jax.random.key(1), (5, 8, 8))
    variables = model.init(jax.random.key(2), x)
    kernel = variables["params"]["dense"]["kernel"]
    assert kernel.shape == (64, 3)
    expected = x.reshape(5, 64) @ kernel + variables["params"]["dense"]["bias"]
    np.testing.assert_allclose(model.apply(variables, x), expected, rtol=1e-6)
    np.testing.assert_allclose(model.apply(variables, x.reshape(5, 64)), expected, rtol=1e-6)


# --- closed form and gradient descent -----------------------------------------------------


@pytest.mark.parametrize("l2", [0.0, 0.3])
@pytest.mark.parametrize("k", [1, 2])
def test_closed_form_and_gradient_descent_agree(l2, k):
    with jax.enable_x64(True):
        X, t = _regression_problem(k=k)
        closed = fit_least_squares(X, t, l2=l2)
        learned, costs = fit_linear_gd(X, t, lr=0.5, steps=400, l2=l2)
        assert closed["params"]["dense"]["kernel"].dtype == jnp.float64
        assert closed["params"]["dense"]["kernel"].shape == (3, k)
        assert _max_diff(closed, learned) < 1e-5
        assert costs.shape == (400,) and np.all(np.diff(np.asarray(costs)) <= 1e-12)
        # Both minimise the same cost; its gradient at the closed form vanishes.
        model = LinearModel(num_outputs=k)
        residual = model.apply(closed, X) - (t[:, None] if k == 1 else t)
        grad_w = X.T @ residual / len(X) + l2 * closed["params"]["dense"]["kernel"]
        assert np.abs(grad_w).max() < 1e-10 and np.abs(residual.mean(0)).max() < 1e-10


def test_first_gradient_step_is_the_lecture_update():
    """From zero weights, y = 0, so Eq. 21 gives W = lr/N Xᵀt and b = lr mean(t)."""
    with jax.enable_x64(True):
        X, t = _regression_problem()
        variables, costs = fit_linear_gd(X, t, lr=0.1, steps=1)
        np.testing.assert_allclose(
            variables["params"]["dense"]["kernel"][:, 0], 0.1 * X.T @ t / 200
        )
        np.testing.assert_allclose(variables["params"]["dense"]["bias"], [0.1 * t.mean()])
        np.testing.assert_allclose(costs[0], 0.5 * np.mean(t**2))


def test_ridge_matches_sklearn_and_leaves_the_bias_unpenalised():
    with jax.enable_x64(True):
        X, t = _regression_problem(n=50, d=4, seed=1)
        params = fit_least_squares(X, t, l2=0.2)["params"]["dense"]
        # Our cost is 1/(2N)||.||² + l2/2 ||W||², i.e. sklearn's ||.||² + alpha||W||² with
        # alpha = N l2; sklearn's intercept is unpenalised too.
        reference = Ridge(alpha=50 * 0.2).fit(X, t)
        np.testing.assert_allclose(params["kernel"][:, 0], reference.coef_, rtol=1e-9)
        np.testing.assert_allclose(params["bias"][0], reference.intercept_, rtol=1e-9)
        shifted = fit_least_squares(X, t + 100.0, l2=0.2)["params"]["dense"]
        np.testing.assert_allclose(shifted["kernel"], params["kernel"], atol=1e-9)
        np.testing.assert_allclose(shifted["bias"], params["bias"] + 100.0, atol=1e-9)
        heavier = fit_least_squares(X, t, l2=5.0)["params"]["dense"]["kernel"]
        assert np.linalg.norm(heavier) < 0.5 * np.linalg.norm(params["kernel"])


def test_fit_errors_name_the_function_and_the_problem():
    """Each message starts with the name of the function called, then says what is wrong."""
    X, t = _regression_problem(n=10)
    with pytest.raises(
        ValueError, match=r"^fit_least_squares: t must be \(n,\) or \(n, K\) with n = 10"
    ):
        fit_least_squares(X, t[:9])
    with pytest.raises(ValueError, match=r"^fit_least_squares: X must be a \(n, D\) design matrix"):
        fit_least_squares(X[:, 0], t)
    with pytest.raises(ValueError, match="^fit_least_squares: l2 must be >= 0"):
        fit_least_squares(X, t, l2=-1.0)
    with pytest.raises(ValueError, match="^fit_linear_gd: l2 must be >= 0"):
        fit_linear_gd(X, t, lr=0.1, steps=5, l2=-1.0)


# --- polynomial features ------------------------------------------------------------------


def test_polynomial_features_values_and_constant_column():
    x = jnp.array([0.5, 2.0, -1.0])
    np.testing.assert_allclose(
        polynomial_features(x, 3), [[0.5, 0.25, 0.125], [2, 4, 8], [-1, 1, -1]]
    )
    with_one = polynomial_features(x[:, None], 2, include_constant=True)
    np.testing.assert_allclose(with_one, [[1, 0.5, 0.25], [1, 2, 4], [1, -1, 1]])
    with pytest.raises(ValueError, match=r"\(n,\) or \(n, 1\)"):
        polynomial_features(jnp.ones((3, 2)), 2)
    with pytest.raises(ValueError, match="degree must be >= 1"):
        polynomial_features(x, 0)


def test_polynomial_regression_recovers_a_cubic_exactly():
    with jax.enable_x64(True):
        data = make_polynomial_regression(30, degree=3, noise=0.0, seed=4, x_range=(-1.0, 1.0))
        x, t = data.x.astype(np.float64), data.y.astype(np.float64)
        features = polynomial_features(x, 3)
        variables = fit_least_squares(features, t)
        np.testing.assert_allclose(LinearModel(1).apply(variables, features), t, atol=1e-6)
        # The lecture's bias-free form: a constant column and no bias fits the same function.
        dummy = fit_least_squares(
            polynomial_features(x, 3, include_constant=True), t, fit_bias=False
        )
        assert float(dummy["params"]["dense"]["bias"][0]) == 0.0
        np.testing.assert_allclose(
            dummy["params"]["dense"]["kernel"][0, 0], variables["params"]["dense"]["bias"][0]
        )
        np.testing.assert_allclose(
            dummy["params"]["dense"]["kernel"][1:],
            variables["params"]["dense"]["kernel"],
            atol=1e-8,
        )


def test_higher_degree_overfits_the_noisy_sine():
    """seed 004 §2.1 §6: train error falls with the degree while held-out error rises."""
    with jax.enable_x64(True):
        train = make_polynomial_regression(10, noise=0.3, seed=0)
        test = make_polynomial_regression(200, noise=0.3, seed=1)

        def rms(variables, features, targets):
            predictions = LinearModel(1).apply(variables, features)
            return float(jnp.sqrt(jnp.mean((predictions - targets) ** 2)))

        def errors(degree):
            f_train = polynomial_features(train.x.astype(np.float64), degree)
            f_test = polynomial_features(test.x.astype(np.float64), degree)
            variables = fit_least_squares(f_train, train.y.astype(np.float64))
            return rms(variables, f_train, train.y), rms(variables, f_test, test.y)

        (tr1, te1), (tr3, te3), (tr9, te9) = errors(1), errors(3), errors(9)
        assert tr9 < 1e-4 < tr3 < tr1  # degree 9 interpolates the 10 points
        assert te3 < te1 and te3 < te9


# --- the perceptron -----------------------------------------------------------------------


def _reference_perceptron(X, t, epochs, order=None):
    """The lecture's pseudocode as a Python loop: if z s <= 0, w += s x. Epoch e visits the
    examples in ``order(e)`` (index order by default)."""
    w, b, history = np.zeros(X.shape[1]), 0.0, []
    for epoch in range(epochs):
        mistakes = 0
        visits = range(len(X)) if order is None else order(epoch)
        for x_i, t_i in ((X[i], t[i]) for i in visits):
            s = 2 * t_i - 1
            if s * (x_i @ w + b) <= 0:
                w, b, mistakes = w + s * x_i, b + s, mistakes + 1
        history.append(mistakes)
        if mistakes == 0:
            break
    return w, b, history


def test_perceptron_scan_equals_the_python_loop():
    with jax.enable_x64(True):
        data = make_linearly_separable(60, dim=2, margin=0.05, seed=2)
        X = data.x.astype(np.float64)
        result = perceptron_train(X, data.y, max_epochs=50, shuffle=False)
        w, b, history = _reference_perceptron(X, data.y, 50)
        np.testing.assert_allclose(result.weights, w, atol=1e-12)
        np.testing.assert_allclose(result.bias, b, atol=1e-12)
        assert int(result.epochs) == len(history) and bool(result.converged)
        np.testing.assert_array_equal(result.mistakes[: len(history)], history)
        assert np.all(np.asarray(result.mistakes[len(history) :]) == 0)


def _perceptron_order(seed, n):
    """The example order perceptron_train(..., seed, shuffle=True) uses in epoch e: a
    permutation of 0..n-1 drawn with jax.random from the seed's key folded with e, a fresh
    one each epoch."""
    key = jax.random.key(seed)
    return lambda epoch: np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))


def test_perceptron_shuffle_visits_a_fresh_permutation_each_epoch():
    """shuffle=True equals the Python loop run over each epoch's permutation; an ignored
    shuffle (index order) or one permutation reused every epoch would give other weights."""
    with jax.enable_x64(True):
        data = make_linearly_separable(40, dim=2, margin=0.05, seed=2)
        X, t = data.x.astype(np.float64), data.y
        in_order = perceptron_train(X, t, max_epochs=50, shuffle=False)
        seen = [np.append(in_order.weights, in_order.bias)]
        for seed in (0, 1):
            result = perceptron_train(X, t, max_epochs=50, seed=seed)
            w, b, history = _reference_perceptron(X, t, 50, _perceptron_order(seed, len(X)))
            assert len(history) >= 3  # several epochs with mistakes: each epoch's order counts
            np.testing.assert_allclose(result.weights, w, atol=1e-12)
            np.testing.assert_allclose(result.bias, b, atol=1e-12)
            np.testing.assert_array_equal(result.mistakes[: len(history)], history)
            assert bool(result.converged) and int(result.epochs) == len(history)
            seen.append(np.append(result.weights, result.bias))
        # index order and the two seeds' shuffles end at three different separating planes
        assert min(np.abs(u - v).max() for i, u in enumerate(seen) for v in seen[i + 1 :]) > 1e-3
        # without shuffling the seed plays no part
        other_seed = perceptron_train(X, t, max_epochs=50, seed=1, shuffle=False)
        np.testing.assert_array_equal(other_seed.weights, in_order.weights)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_perceptron_converges_within_novikoffs_bound(seed):
    data = make_linearly_separable(200, dim=3, margin=0.05, seed=seed)
    result = perceptron_train(data.x, data.y, max_epochs=200, seed=seed)
    assert bool(result.converged) and int(result.mistakes[int(result.epochs) - 1]) == 0
    predictions = create_model("perceptron").apply(result.variables, data.x)[:, 0] > 0
    np.testing.assert_array_equal(predictions, data.y == 1)  # zero training errors
    svm = SVC(kernel="linear", C=1e8).fit(data.x, data.y)
    bound = perceptron_mistake_bound(data.x, data.y, svm.coef_[0], svm.intercept_[0])
    updates = int(result.mistakes.sum())
    assert 0 < updates <= bound
    again = perceptron_train(data.x, data.y, max_epochs=200, seed=seed)
    np.testing.assert_array_equal(again.weights, result.weights)


def test_perceptron_never_converges_on_xor():
    table = xor_truth_table()
    result = perceptron_train(table.x, table.y, max_epochs=30, seed=0)
    assert not bool(result.converged) and int(result.epochs) == 30
    assert np.all(np.asarray(result.mistakes) >= 1)  # every epoch misclassifies something


def test_perceptron_single_epoch_with_the_default_seed():
    """max_epochs=1, the fewest allowed (0 is refused), runs exactly one epoch, and an omitted
    seed is seed 0: the result is the Python loop over seed 0's permutation for one epoch.
    On XOR one epoch's order matters: seed 1's epoch ends at other weights."""
    table = xor_truth_table()
    X, t = np.asarray(table.x, np.float64), np.asarray(table.y)
    result = perceptron_train(table.x, table.y, max_epochs=1)
    w, b, history = _reference_perceptron(X, t, 1, _perceptron_order(0, len(X)))
    np.testing.assert_array_equal(result.weights, w)
    assert float(result.bias) == b and int(result.epochs) == 1 and not bool(result.converged)
    np.testing.assert_array_equal(result.mistakes, history)
    seed_1 = perceptron_train(table.x, table.y, max_epochs=1, seed=1)
    assert np.abs(np.append(seed_1.weights - w, seed_1.bias - b)).max() > 0.5
    with pytest.raises(ValueError, match="^perceptron_train: max_epochs must be >= 1; got 0"):
        perceptron_train(table.x, table.y, max_epochs=0)


def test_perceptron_input_errors():
    table = xor_truth_table()
    with pytest.raises(ValueError, match="labels t must be 0 or 1"):
        perceptron_train(table.x, 2 * table.y - 1)
    with pytest.raises(ValueError, match=r"need X \(n, D\) and t \(n,\)"):
        perceptron_train(table.x, table.y[:3])
    with pytest.raises(ValueError, match="does not separate"):
        perceptron_mistake_bound(table.x, table.y, np.array([1.0, 1.0]), -0.5)


def test_perceptron_mistake_bound_is_novikoffs_radius_over_margin_squared():
    """(R / γ)² in the augmented space x' = (x, 1), by a loop over the examples: R the largest
    ‖x'_i‖, γ the smallest signed distance s_i (w·x_i + b) / ‖(w, b)‖ (Novikoff 1962)."""
    X = np.array([[2.0, 1.0], [0.5, 3.0], [-1.0, -0.5], [-2.5, 0.5], [1.0, -1.5]])
    t = np.array([1, 1, 0, 0, 1])
    w, b = np.array([3.0, 1.0]), 0.5  # not a unit vector: the bound normalises (w, b)
    norm = np.sqrt(w @ w + b * b)
    radius = max(np.sqrt(x @ x + 1.0) for x in X)
    gamma = min((2 * ti - 1) * (w @ x + b) / norm for x, ti in zip(X, t, strict=True))
    assert gamma > 0
    assert perceptron_mistake_bound(X, t, w, b) == pytest.approx((radius / gamma) ** 2, rel=1e-12)


def test_perceptron_mistake_bound_rejects_a_hyperplane_through_an_example():
    """γ = 0 (the origin lies on x_1 + x_2 = 0) is no separation: R / γ would be infinite."""
    X = np.array([[1.0, 1.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="does not separate"):
        perceptron_mistake_bound(X, np.array([1, 1]), np.array([1.0, 1.0]), 0.0)


def _np_ridge_gd(X, t, lr, steps, l2):
    """Seed 004 §2.1 Eq. 21 plus the ridge term, by a NumPy loop from zero: the cost
    J = 1/(2N) Σ‖x W + b − t‖² + (l2/2)‖W‖² at each iterate, then W -= lr (Xᵀ(y − t)/N + l2 W),
    b -= lr mean(y − t)."""
    w, b, costs = np.zeros((X.shape[1], t.shape[1])), np.zeros(t.shape[1]), []
    for _ in range(steps):
        residual = X @ w + b - t
        costs.append(0.5 * np.mean(np.sum(residual**2, axis=1)) + 0.5 * l2 * np.sum(w**2))
        w, b = w - lr * (X.T @ residual / len(X) + l2 * w), b - lr * residual.mean(0)
    return w, b, np.array(costs)


def test_gradient_descent_steps_and_costs_equal_the_numpy_loop():
    """Every iterate's cost and the final parameters, with and without the ridge term (l2
    defaults to 0), on a shape no other test compiles."""
    rng = np.random.default_rng(7)
    X, t = rng.normal(size=(7, 2)), rng.normal(size=(7, 2))
    with jax.enable_x64(True):
        for l2 in (0.4, None):
            kwargs = {} if l2 is None else {"l2": l2}
            variables, costs = fit_linear_gd(X, t, lr=0.3, steps=5, **kwargs)
            w, b, want = _np_ridge_gd(X, t, 0.3, 5, l2 or 0.0)
            dense = variables["params"]["dense"]
            np.testing.assert_allclose(costs, want, rtol=1e-12, err_msg=f"l2={l2}")
            np.testing.assert_allclose(dense["kernel"], w, rtol=1e-12, err_msg=f"l2={l2}")
            np.testing.assert_allclose(dense["bias"], b, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="^fit_linear_gd: l2 must be >= 0"):
        fit_linear_gd(X, t, lr=0.1, steps=5, l2=-0.5)


def test_perceptron_defaults_and_dtype():
    """100 epochs by default (XOR never converges, so all of them run); inputs are promoted
    to at least float32 (integers and float32 stay float32 even with x64 on, float64 stays)."""
    table = xor_truth_table()
    result = perceptron_train(table.x, table.y)
    assert result.mistakes.shape == (100,) and int(result.epochs) == 100
    with jax.enable_x64(True):
        X = np.array([[2, 1], [-1, -2], [1, 3]])
        t = np.array([1, 0, 1])
        for dtype, want in [
            (np.int32, jnp.float32),
            (np.float32, jnp.float32),
            (np.float64, jnp.float64),
        ]:
            assert perceptron_train(X.astype(dtype), t).weights.dtype == want


def test_integer_data_are_fitted_in_floating_point():
    """Integer X and t (counts, say) are promoted to at least float32 before solving: the fit
    equals NumPy's least squares with a column of ones."""
    X = np.array([[0, 1], [1, 0], [2, 1], [3, 2], [1, 3], [2, 2]])
    t = np.array([1, 2, 4, 7, 5, 6])
    dense = fit_least_squares(X, t)["params"]["dense"]
    assert dense["kernel"].dtype == jnp.float32
    coef = np.linalg.lstsq(np.c_[X, np.ones(len(X))], t.astype(np.float64), rcond=None)[0]
    np.testing.assert_allclose(dense["kernel"][:, 0], coef[:2], rtol=1e-4)
    np.testing.assert_allclose(dense["bias"][0], coef[2], rtol=1e-4)
    with jax.enable_x64(True):  # at least float32, not the default float: still float32
        assert fit_least_squares(X, t)["params"]["dense"]["kernel"].dtype == jnp.float32
        assert fit_linear_gd(X, t, lr=0.01, steps=1)[1].dtype == jnp.float32
    with pytest.raises(ValueError, match=r"^fit_linear_gd: t must be"):
        fit_linear_gd(X, t[:5], lr=0.1, steps=1)


def test_the_fit_computes_in_the_wider_dtype_of_x_and_t():
    """float64 inputs with float32 targets (or the other way round) are fitted in float64."""
    X, t = _regression_problem(n=20, d=2)
    with jax.enable_x64(True):
        for xd, td in [(np.float64, np.float32), (np.float32, np.float64)]:
            kernel = fit_least_squares(X.astype(xd), t.astype(td))["params"]["dense"]["kernel"]
            assert kernel.dtype == jnp.float64, (xd, td)

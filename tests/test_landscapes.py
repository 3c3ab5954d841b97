"""2-D costs, their minimizers, optimizer trajectories and the contour plot."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.landscapes import (
    hessian_eigenvalues,
    logistic_data,
    logistic_regression,
    plot_trajectories,
    quadratic,
    rosenbrock,
    trajectory,
)
from jaxnets.optim import make_optimizer

KAPPA = 20.0


@pytest.fixture(scope="module")
def logistic_xt():
    return logistic_data(n=30, offset=2.0, seed=3)


@pytest.fixture(scope="module")
def problems(logistic_xt):
    return {
        "quadratic": quadratic(KAPPA),
        "rosenbrock": rosenbrock(a=1.5, b=20.0),
        "logistic": logistic_regression(*logistic_xt),
    }


def _closed_form_grad(name, theta, xt):
    """Gradients derived by hand, in numpy float64."""
    if name == "quadratic":
        return np.array([theta[0], KAPPA * theta[1]])
    if name == "rosenbrock":
        a, b = 1.5, 20.0
        ravine = theta[1] - theta[0] ** 2
        return np.array([-2 * (a - theta[0]) - 4 * b * theta[0] * ravine, 2 * b * ravine])
    x, t = xt
    p = 1 / (1 + np.exp(-(x @ theta)))
    return (p - t) @ x / len(t)


@pytest.mark.parametrize("name", ["quadratic", "rosenbrock", "logistic"])
def test_gradient_matches_the_closed_form(name, problems, logistic_xt):
    points = np.random.default_rng(0).normal(size=(5, 2)) * 2
    with jax.enable_x64(True):
        grad = jax.grad(problems[name].cost)
        for theta in points:
            np.testing.assert_allclose(
                grad(jnp.asarray(theta)),
                _closed_form_grad(name, theta, logistic_xt),
                rtol=1e-12,
                atol=1e-12,
            )


@pytest.mark.parametrize("name", ["quadratic", "rosenbrock", "logistic"])
def test_minimizer_is_a_stationary_point_of_least_cost(name, problems):
    problem = problems[name]
    around = problem.minimizer + np.random.default_rng(1).normal(size=(200, 2)) * 0.5
    with jax.enable_x64(True):
        grad_norm = float(jnp.linalg.norm(jax.grad(problem.cost)(jnp.asarray(problem.minimizer))))
        others = np.asarray(jax.vmap(problem.cost)(jnp.asarray(around)))
    assert grad_norm < 1e-10
    assert np.all(others > problem.min_cost)
    assert np.all(hessian_eigenvalues(problem.cost, problem.minimizer) > 0)  # a strict minimum


def test_minimizers_in_closed_form():
    assert quadratic(7.0).min_cost == 0.0 and np.all(quadratic(7.0).minimizer == 0.0)
    banana = rosenbrock(a=-0.5, b=3.0)
    np.testing.assert_array_equal(banana.minimizer, [-0.5, 0.25])
    assert banana.min_cost == 0.0


def test_hessian_eigenvalues_are_the_curvatures():
    np.testing.assert_allclose(hessian_eigenvalues(quadratic(KAPPA).cost, [3.0, -1.0]), [1, KAPPA])
    # Rosenbrock's Hessian at (a, a²) by hand: [[2 + 8ba², -4ba], [-4ba, 2b]]
    a, b = 1.5, 20.0
    by_hand = np.array([[2 + 8 * b * a**2, -4 * b * a], [-4 * b * a, 2 * b]])
    np.testing.assert_allclose(
        hessian_eigenvalues(rosenbrock(a, b).cost, [a, a * a]), np.linalg.eigvalsh(by_hand)
    )


def test_off_centre_inputs_worsen_the_conditioning():
    def condition(offset):
        problem = logistic_regression(*logistic_data(offset=offset))
        low, high = hessian_eigenvalues(problem.cost, problem.minimizer)
        return high / low

    assert condition(2.0) > 5 * condition(0.0)


def test_gd_on_the_quadratic_is_the_closed_form_iterate():
    """θ_k = (I − αA)^k θ_0 with A = diag(1, κ), for every k, including oscillation (αA > 1)."""
    lr, steps, start = 1.8 / KAPPA, 40, np.array([-3.0, 0.7])
    with jax.enable_x64(True):
        path, costs = trajectory(quadratic(KAPPA).cost, make_optimizer("sgd", lr), start, steps)
    contraction = np.eye(2) - lr * np.diag([1.0, KAPPA])
    expected = np.stack([np.linalg.matrix_power(contraction, k) @ start for k in range(steps + 1)])
    assert path.dtype == jnp.float64 and path.shape == (steps + 1, 2)
    np.testing.assert_allclose(path, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(costs, 0.5 * (expected[:, 0] ** 2 + KAPPA * expected[:, 1] ** 2))
    assert np.all(np.sign(path[1:, 1]) == -np.sign(path[:-1, 1]))  # 1 − 1.8 < 0: it zigzags


@pytest.mark.parametrize("name", ["quadratic", "rosenbrock", "logistic"])
def test_first_sgd_step_is_start_minus_lr_times_gradient(name, problems, logistic_xt):
    problem, lr = problems[name], 0.01
    path, costs = trajectory(problem.cost, make_optimizer("sgd", lr), problem.start, 3)
    start = np.asarray(problem.start)
    expected = start - lr * _closed_form_grad(name, start, logistic_xt)
    np.testing.assert_allclose(path[0], start)
    np.testing.assert_allclose(path[1], expected, rtol=1e-5)
    assert float(costs[1]) == pytest.approx(float(problem.cost(path[1])), rel=1e-6)


def test_momentum_is_the_lecture_recurrence(problems):
    """p ← μp − α∇E(θ), θ ← θ + p (seed 004 Lecture 7 eqs. 8-9) on the Rosenbrock ravine."""
    problem, lr, mu, steps = problems["rosenbrock"], 2e-3, 0.9, 60
    theta, p, expected = np.asarray(problem.start), np.zeros(2), [np.asarray(problem.start)]
    for _ in range(steps):
        p = mu * p - lr * _closed_form_grad("rosenbrock", theta, None)
        theta = theta + p
        expected.append(theta)
    with jax.enable_x64(True):
        optimizer = make_optimizer("momentum", lr, momentum=mu)
        path, _ = trajectory(problem.cost, optimizer, np.asarray(problem.start), steps)
    np.testing.assert_allclose(path, np.stack(expected), rtol=1e-10, atol=1e-12)
    # momentum moved it further along the ravine than plain GD at the same rate
    with jax.enable_x64(True):
        gd, _ = trajectory(problem.cost, make_optimizer("sgd", lr), problem.start, steps)
    distance = lambda q: np.linalg.norm(np.asarray(q[-1]) - problem.minimizer)  # noqa: E731
    assert distance(path) < distance(gd)


def test_unstable_learning_rate_overflows_to_non_finite_costs():
    problem = quadratic(KAPPA)
    _, costs = trajectory(problem.cost, make_optimizer("sgd", 2.5 / KAPPA), problem.start, 400)
    assert np.isfinite(costs[0]) and not np.isfinite(costs[-1])


def test_plot_shows_every_path_within_the_window(problems):
    import matplotlib.pyplot as plt

    problem = problems["logistic"]
    paths = {
        name: trajectory(problem.cost, make_optimizer(name, 0.5), problem.start, 20)[0]
        for name in ("sgd", "adam")
    }
    fig = plot_trajectories(problem, paths, levels=9, resolution=40)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert {"sgd", "adam", "minimum"} <= set(labels)
    assert (*ax.get_xlim(), *ax.get_ylim()) == pytest.approx(problem.extent)
    contours = [c for c in ax.collections if hasattr(c, "levels")]
    levels = contours[0].levels
    assert len(levels) == 9
    np.testing.assert_allclose(levels[1:] / levels[:-1], levels[1] / levels[0])  # log-spaced
    plt.close(fig)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: quadratic(0.5), "condition must be >= 1"),
        (lambda: rosenbrock(b=0.0), "b must be > 0"),
        (lambda: logistic_regression(np.zeros((4, 3)), np.zeros(4)), r"expected x \(n, 2\)"),
        (lambda: logistic_regression(np.ones((2, 2)), np.array([0.0, 2.0])), "must be 0 or 1"),
        (lambda: logistic_regression(*logistic_data(noise=0.0)), "linearly separable"),
        (lambda: trajectory(quadratic().cost, make_optimizer("sgd", 0.1), [1.0], 3), r"\(2,\)"),
        (lambda: trajectory(quadratic().cost, make_optimizer("sgd", 0.1), [1.0, 1.0], 0), "steps"),
    ],
)
def test_bad_arguments_are_explained(build, message):
    with pytest.raises((ValueError, RuntimeError), match=message):
        build()

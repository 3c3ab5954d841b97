"""Linear regression: closed form vs gradient descent, and overfitting with polynomial features.

Lecture: seed 004 §2.1 "Linear regression" (line 163): the least-squares solution in closed
form and by gradient descent reach the same weights; polynomial feature maps of growing
degree fit the training points ever better while the error on new points first falls,
then rises (overfitting).

Every seed draws its own data (the multivariate problem, the 10 training points and the test
points), so each claim is checked on ``seeds`` independent data sets; tables show the means.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.data import make_polynomial_regression
from jaxnets.experiment import Claim, Run, format_table, parse_config
from jaxnets.models.linear import LinearModel, fit_least_squares, fit_linear_gd, polynomial_features
from jaxnets.sweep import SeededConfig, sweep_seeds
from jaxnets.validation import check_config


@dataclasses.dataclass(frozen=True)
class Config(SeededConfig):
    """Closed form vs gradient descent; a polynomial-degree sweep on noisy sin(2πx)."""

    n_train: int = 10
    """training points of the degree sweep (the lecture's picture uses about 10)"""
    n_test: int = 1000
    """held-out points drawn from the same curve and noise"""
    noise: float = 0.3
    """standard deviation of the target noise"""
    max_degree: int = 9
    """largest polynomial degree in the sweep"""
    l2: float = 0.0
    """ridge penalty of every fit (0: plain least squares)"""
    gd_examples: int = 200
    """examples of the multivariate problem on which closed form and GD are compared"""
    gd_features: int = 5
    """its input features (independent standard normals: a well-conditioned problem)"""
    gd_steps: int = 2000
    """gradient-descent steps"""
    gd_learning_rate: float = 0.5
    """gradient-descent step size"""

    SMOKE = dict(n_test=50, gd_steps=500)

    def __post_init__(self):
        check_config(self, zero_ok=("l2", "noise", "seed"))
        for field in ("n_train", "gd_examples"):
            if getattr(self, field) < 2:
                raise ValueError(
                    f"{field} must be >= 2 (a line needs two points); got {getattr(self, field)}"
                )


def _mse(variables, X, t) -> float:
    y = LinearModel(t.shape[1]).apply(variables, X)
    return float(jnp.mean(jnp.sum((y - t) ** 2, axis=1)))


def _features(x, degree, mean=None, std=None):
    """Polynomial features of x (n, 1), standardised with the training statistics."""
    phi = polynomial_features(jnp.asarray(x, jnp.float64), degree)
    if mean is None:
        mean, std = phi.mean(0), phi.std(0)
    return (phi - mean) / std, mean, std


def _closed_form_vs_gd(cfg: Config, run: Run, seed: int) -> dict[str, float]:
    """Both solvers on t = X w + b + noise with X (gd_examples, gd_features) ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.standard_normal((cfg.gd_examples, cfg.gd_features)))
    w, b = rng.standard_normal((cfg.gd_features, 1)), rng.standard_normal()
    t = X @ w + b + cfg.noise * jnp.asarray(rng.standard_normal((cfg.gd_examples, 1)))
    closed = fit_least_squares(X, t, l2=cfg.l2)
    by_gd, costs = fit_linear_gd(X, t, cfg.gd_learning_rate, cfg.gd_steps, l2=cfg.l2)
    for step in range(0, cfg.gd_steps, max(1, cfg.gd_steps // 100)):
        run.log(variant="gradient_descent", seed=seed, step=step, train_cost=float(costs[step]))
    diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), closed, by_gd)
    return {
        "max_param_difference": max(jax.tree.leaves(diff)),
        "closed_form_train_mse": _mse(closed, X, t),
        "gd_train_mse": _mse(by_gd, X, t),
        "gd_first_cost": float(costs[0]),
        "gd_last_cost": float(costs[-1]),
    }


def _degree_sweep(cfg: Config, train, test):
    rows = {}
    for degree in range(cfg.max_degree + 1):
        if degree == 0:  # the constant model: the bias alone is the training mean
            X_train = jnp.zeros((len(train), 1), jnp.float64)
            X_test = jnp.zeros((len(test), 1), jnp.float64)
        else:
            X_train, mean, std = _features(train.x, degree)
            X_test, *_ = _features(test.x, degree, mean, std)
        variables = fit_least_squares(X_train, jnp.asarray(train.y, jnp.float64), l2=cfg.l2)
        rows[f"degree {degree}"] = {
            "train_mse": _mse(variables, X_train, jnp.asarray(train.y, jnp.float64)),
            "test_mse": _mse(variables, X_test, jnp.asarray(test.y, jnp.float64)),
        }
    return rows


def _plot(run: Run, cfg: Config, train, rows) -> None:
    import matplotlib.pyplot as plt

    degrees = list(range(cfg.max_degree + 1))
    fig, (ax_curve, ax_fit) = plt.subplots(1, 2, figsize=(11, 4))
    ax_curve.plot(degrees, [rows[f"degree {d}"]["train_mse"] for d in degrees], "o-", label="train")
    ax_curve.plot(degrees, [rows[f"degree {d}"]["test_mse"] for d in degrees], "s-", label="test")
    ax_curve.set(
        xlabel="polynomial degree",
        ylabel="mean squared error",
        yscale="log",
        title=f"{cfg.n_train} training points: train vs test error",
    )
    ax_curve.legend()
    grid = np.linspace(0, 1, 400)[:, None]
    ax_fit.plot(grid, np.sin(2 * np.pi * grid), "k--", lw=1, label="sin(2πx)")
    ax_fit.scatter(train.x, train.y, color="k", zorder=3, label="training points")
    for degree in sorted({1, min(3, cfg.max_degree), cfg.max_degree}):
        X, mean, std = _features(train.x, degree)
        variables = fit_least_squares(X, jnp.asarray(train.y, jnp.float64), l2=cfg.l2)
        G, *_ = _features(grid, degree, mean, std)
        ax_fit.plot(grid, LinearModel(1).apply(variables, G), label=f"degree {degree}")
    ax_fit.set(ylim=(-2, 2), xlabel="x", ylabel="t", title="least-squares fits")
    ax_fit.legend(fontsize=8)
    run.savefig(fig, "degree_sweep")


def _repetition(cfg: Config, run: Run, seed: int):
    """One seed's data: rows (closed form vs GD, and each degree of the sweep), and (the
    training points, the degree below the top one that generalises best).

    Seed s draws the training points from 3s, the test points from 3s + 1 and the
    multivariate problem from 3s + 2, so no two draws share a stream."""
    k = 3 * seed
    train = make_polynomial_regression(cfg.n_train, noise=cfg.noise, seed=k)
    test = make_polynomial_regression(cfg.n_test, noise=cfg.noise, seed=k + 1)
    with jax.enable_x64(True):  # agreement to 1e-5 is a float64 statement
        agreement = _closed_form_vs_gd(cfg, run, k + 2)
        rows = _degree_sweep(cfg, train, test)
    top = f"degree {cfg.max_degree}"
    best = min((r for r in rows if r != top), key=lambda r: rows[r]["test_mse"])
    print(f"seed {seed}: max |Δparam| = {agreement['max_param_difference']:.2e}, best {best}")
    return {"closed_form_vs_gd": agreement, **rows}, (train, best)


def main(cfg: Config) -> dict:
    cfg = cfg.sized()
    run = Run("linear_regression", cfg, root=cfg.out)
    top = f"degree {cfg.max_degree}"
    sweep = sweep_seeds(cfg.seed_range, functools.partial(_repetition, cfg, run))
    with jax.enable_x64(True):
        _plot(run, cfg, sweep.first[0], sweep.rows[0])
    sweeps, bests = sweep.rows, [best for _, best in sweep.extras]
    results = sweep.results
    print(
        format_table(
            {k: v for k, v in results.items() if k != "closed_form_vs_gd"},
            ["train_mse", "test_mse"],
        )
    )
    ratio = lambda metric: [  # noqa: E731
        rows[top][metric] / rows[best][metric] for rows, best in zip(sweeps, bests, strict=True)
    ]
    best_degrees = ", ".join(sorted(set(bests)))
    claims = [
        # float64 GD to convergence agrees to ~1e-12: far below the threshold, not near it
        Claim(
            "closed form and gradient descent reach the same weights",
            "max_param_difference",
            sweep.values("closed_form_vs_gd", "max_param_difference"),
            1e-5,
            "below",
            margin=9e-6,
        ),
        # the top degree interpolates the points: its training error is rounding-sized
        Claim(
            f"the highest degree fits the training points better than the degree that "
            f"generalises best ({best_degrees}; train_mse ratio top/best)",
            "train_mse_ratio",
            ratio("train_mse"),
            1.0,
            "below",
            margin=0.9,
        ),
        Claim(
            "...but generalises worse: it overfits (test_mse ratio top/best)",
            "test_mse_ratio",
            ratio("test_mse"),
            1.0,
            "above",
            margin=1.0,
        ),
    ]
    return run.write_summary(results, claims)


if __name__ == "__main__":
    main(parse_config(Config))

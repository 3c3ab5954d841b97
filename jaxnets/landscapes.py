"""Two-parameter cost functions, optimizer trajectories on them, and contour plots.

Lecture: seed 004, Lecture 7 "Optimization" (line 1841): §2 visualizing gradient descent on
contour plots of a cost over two weights (the gradient is orthogonal to the level sets);
§4.5 instability and oscillations of a too-large learning rate, and momentum; §4.8 badly
conditioned curvature: a ravine (the Rosenbrock function, Figure 5) and unnormalized,
off-centre inputs (Figure 6); seed 001 (gradient descent, "learning rate matters").

Every cost is a pure jax function of a (2,) parameter vector returning a scalar, so
``jax.grad``, ``jax.hessian`` and Optax apply to it unchanged; its float type follows the
input (float64 under ``jax.enable_x64``). A :class:`Landscape` bundles a cost with its
minimizer (closed form, or Newton's method in float64), a starting point and a plotting
window. :func:`trajectory` runs any Optax optimizer on it as one compiled ``lax.scan``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "Landscape",
    "hessian_eigenvalues",
    "logistic_data",
    "logistic_regression",
    "plot_trajectories",
    "quadratic",
    "rosenbrock",
    "trajectory",
]

Cost = Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True, eq=False)
class Landscape:
    """A 2-parameter cost with its minimizer, a starting point and a plotting window.

    Attributes:
      name: short label for tables and titles.
      cost: ``theta (2,) -> ()``, pure jax (hashable by identity, so it can be a static jit
        argument).
      minimizer: (2,) float64, the global minimizer.
      min_cost: the cost at ``minimizer`` (float64).
      start: (2,) the starting point of the trajectories.
      extent: ``(x_min, x_max, y_min, y_max)`` of the contour plot.
    """

    name: str
    cost: Cost
    minimizer: np.ndarray
    min_cost: float
    start: tuple[float, float]
    extent: tuple[float, float, float, float]


def _cost_in_float64(cost: Cost, theta: np.ndarray) -> float:
    with jax.enable_x64(True):
        return float(cost(jnp.asarray(theta, jnp.float64)))


def _landscape(name, cost, minimizer, start, extent) -> Landscape:
    minimizer = np.asarray(minimizer, np.float64)
    return Landscape(
        name=name,
        cost=cost,
        minimizer=minimizer,
        min_cost=_cost_in_float64(cost, minimizer),
        start=tuple(float(s) for s in start),
        extent=tuple(float(e) for e in extent),
    )


def _quadratic_cost(theta: jax.Array, condition: float) -> jax.Array:
    return 0.5 * (theta[0] ** 2 + condition * theta[1] ** 2)


def quadratic(
    condition: float = 50.0,
    start: tuple[float, float] = (-8.0, 1.0),
    extent: tuple[float, float, float, float] = (-9.0, 9.0, -1.5, 1.5),
) -> Landscape:
    """The ill-conditioned quadratic ``E(θ) = ½(θ₀² + κ θ₁²) = ½ θᵀAθ``, ``A = diag(1, κ)``.

    Its curvature is 1 along θ₀ and κ = ``condition`` along θ₁ (condition number κ); the
    minimizer is the origin with cost 0. Gradient descent with learning rate α iterates
    ``θ_k = (I − αA)^k θ_0``: stable iff α < 2/κ, oscillating along θ₁ when 1/κ < α < 2/κ.
    """
    if condition < 1:
        raise ValueError(f"condition must be >= 1 (largest/smallest curvature); got {condition}")
    cost = functools.partial(_quadratic_cost, condition=float(condition))
    return _landscape(f"quadratic (κ={condition:g})", cost, (0.0, 0.0), start, extent)


def _rosenbrock_cost(theta: jax.Array, a: float, b: float) -> jax.Array:
    return (a - theta[0]) ** 2 + b * (theta[1] - theta[0] ** 2) ** 2


def rosenbrock(
    a: float = 1.0,
    b: float = 100.0,
    start: tuple[float, float] = (-1.2, 1.0),
    extent: tuple[float, float, float, float] = (-1.6, 1.6, -0.6, 1.6),
) -> Landscape:
    """The Rosenbrock function ``E(θ) = (a − θ₀)² + b(θ₁ − θ₀²)²``: a curved ravine (lecture
    Figure 5). Minimizer ``(a, a²)`` with cost 0; (-1.2, 1) is the classic start."""
    if b <= 0:
        raise ValueError(f"b must be > 0 (the ravine's steepness); got {b}")
    cost = functools.partial(_rosenbrock_cost, a=float(a), b=float(b))
    return _landscape("Rosenbrock", cost, (a, a * a), start, extent)


def logistic_data(
    n: int = 40, offset: float = 2.0, noise: float = 0.8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A small fixed 2-feature, 2-class data set for logistic regression without a bias.

    Class t ∈ {0, 1} has mean ``offset·(1, 1) ± 0.5·(1, −1)`` (the sign is + for t = 1) and
    isotropic Gaussian noise of std ``noise``, so a line through the origin separates the
    classes except for the overlap the noise creates (a finite minimizer). A large
    ``offset`` makes the inputs off-centre: the cost's curvature along w₀ + w₁ dwarfs that
    along w₀ − w₁ (lecture Figure 6(b)).

    Returns:
      ``x`` (n, 2) float64 inputs and ``t`` (n,) float64 labels, half of each class.
    """
    if n < 2:
        raise ValueError(f"n must be >= 2 (at least one example of each class); got {n}")
    rng = np.random.default_rng(seed)
    t = (np.arange(n) % 2).astype(np.float64)
    centre = offset * np.ones(2) + 0.5 * np.outer(2 * t - 1, [1.0, -1.0])
    return centre + noise * rng.standard_normal((n, 2)), t


def _logistic_cost(w: jax.Array, x: np.ndarray, t: np.ndarray) -> jax.Array:
    z = jnp.asarray(x, w.dtype) @ w
    # −t log σ(z) − (1−t) log(1−σ(z)) = softplus(z) − t z, stable for large |z|
    return jnp.mean(jax.nn.softplus(z) - jnp.asarray(t, w.dtype) * z)


def _newton_minimizer(cost: Cost, start: np.ndarray, steps: int = 50) -> np.ndarray:
    """Newton's method in float64 for a smooth, strictly convex cost of a (2,) vector."""

    def newton_step(_, theta):
        return theta - jnp.linalg.solve(jax.hessian(cost)(theta), jax.grad(cost)(theta))

    @jax.jit
    def minimize(theta):
        theta = jax.lax.fori_loop(0, steps, newton_step, theta)
        return theta, jnp.linalg.norm(jax.grad(cost)(theta))

    with jax.enable_x64(True):
        theta, gradient_norm = minimize(jnp.asarray(start, jnp.float64))
        theta, gradient_norm = np.asarray(theta), float(gradient_norm)
    if not gradient_norm < 1e-10:
        raise RuntimeError(
            f"Newton's method did not converge: |grad| = {gradient_norm:.3g} after {steps} "
            "steps, expected < 1e-10 (are the classes linearly separable through the origin? "
            "then no finite minimizer exists; add noise)"
        )
    return theta


def logistic_regression(
    x: np.ndarray,
    t: np.ndarray,
    start: tuple[float, float] = (-3.0, 4.0),
    margin: float = 1.5,
) -> Landscape:
    """Mean cross-entropy of logistic regression with two weights and no bias.

    ``E(w) = mean_i[softplus(x_i·w) − t_i x_i·w]`` with gradient ``mean_i[(σ(x_i·w) − t_i)
    x_i]``; the minimizer has no closed form and is found by Newton's method in float64.

    Args:
      x: (n, 2) inputs; t: (n,) labels in {0, 1} (see :func:`logistic_data`).
      start: the starting point of the trajectories.
      margin: the plotting window spans start and minimizer plus this much on every side.
    """
    x, t = np.asarray(x, np.float64), np.asarray(t, np.float64)
    if x.ndim != 2 or x.shape[1] != 2 or t.shape != (x.shape[0],):
        raise ValueError(
            f"expected x (n, 2) and t (n,) with the same n; got x {x.shape} and t {t.shape}"
        )
    if not np.all((t == 0) | (t == 1)):
        raise ValueError(f"labels t must be 0 or 1; got values {np.unique(t)}")
    cost = functools.partial(_logistic_cost, x=x, t=t)
    minimizer = _newton_minimizer(cost, np.zeros(2))
    corners = np.stack([minimizer, np.asarray(start)])
    low, high = corners.min(0) - margin, corners.max(0) + margin
    extent = (low[0], high[0], low[1], high[1])
    return _landscape("logistic regression", cost, minimizer, start, extent)


def hessian_eigenvalues(cost: Cost, theta: np.ndarray) -> np.ndarray:
    """Eigenvalues (2,), ascending, of the cost's Hessian at ``theta`` (2,), in float64: the
    curvatures along the principal directions; their ratio is the condition number."""
    with jax.enable_x64(True):
        hessian = jax.hessian(cost)(jnp.asarray(theta, jnp.float64))
        return np.linalg.eigvalsh(np.asarray(hessian))


@functools.partial(jax.jit, static_argnames=("cost", "optimizer", "steps"))
def _trajectory(cost, optimizer, start, steps):
    def step(carry, _):
        theta, opt_state = carry
        value, grad = jax.value_and_grad(cost)(theta)
        updates, opt_state = optimizer.update(grad, opt_state, theta)
        return (optax.apply_updates(theta, updates), opt_state), (theta, value)

    (last, _), (thetas, values) = jax.lax.scan(
        step, (start, optimizer.init(start)), None, length=steps
    )
    path = jnp.concatenate([thetas, last[None]])
    return path, jnp.concatenate([values, cost(last)[None]])


def trajectory(
    cost: Cost, optimizer: optax.GradientTransformation, start, steps: int
) -> tuple[jax.Array, jax.Array]:
    """Run ``steps`` updates of ``optimizer`` on ``cost`` from ``start``: one compiled scan.

    Args:
      cost: ``theta (2,) -> ()``; optimizer: an Optax transformation (e.g. from
        :func:`jaxnets.optim.make_optimizer`); both are static (one compile per pair).
      start: (2,) starting point, cast to JAX's default float (float64 under
        ``jax.enable_x64``, float32 otherwise).
      steps: number of updates.
    Returns:
      ``path`` (steps + 1, 2), the start and each iterate, and ``costs`` (steps + 1,), the
      cost at each point of the path (inf/nan once an unstable run overflows).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    start = jnp.asarray(start, dtype=jnp.result_type(float))
    if start.shape != (2,):
        raise ValueError(f"start must be a point (2,) in the plane; got shape {start.shape}")
    return _trajectory(cost, optimizer, start, steps)


def plot_trajectories(
    landscape: Landscape,
    paths: Mapping[str, np.ndarray],
    *,
    ax=None,
    levels: int = 14,
    resolution: int = 200,
    title: str | None = None,
):
    """Contours of ``cost − min_cost`` at log-spaced levels with the paths overlaid.

    Args:
      landscape: the cost, its minimizer (a star) and the window ``extent``.
      paths: label -> (steps + 1, 2) iterates (e.g. from :func:`trajectory`); a path that
        leaves the window is clipped to it.
      ax: an Axes to draw in (a panel of a larger figure), or None for a new figure.
      levels: number of contour levels, geometrically spaced so that the ravine's floor and
        its walls both show.
      resolution: grid points per axis.
    Returns:
      the matplotlib Figure holding ``ax``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5), layout="constrained")
    x_min, x_max, y_min, y_max = landscape.extent
    xs, ys = np.linspace(x_min, x_max, resolution), np.linspace(y_min, y_max, resolution)
    grid = jnp.stack(jnp.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    gap = np.asarray(jax.jit(jax.vmap(landscape.cost))(grid)).reshape(resolution, resolution)
    gap = np.maximum(gap - landscape.min_cost, 0.0)
    top = float(gap.max())
    bottom = max(float(np.quantile(gap, 0.002)), top * 1e-8)
    ax.contour(
        xs,
        ys,
        gap,
        levels=np.geomspace(bottom, top, levels),
        norm=LogNorm(bottom, top),
        cmap="viridis",
        linewidths=0.8,
    )
    for label, path in paths.items():
        path = np.asarray(path)
        # dots on the first iterates show the step sizes; later ones would bury the contours
        ax.plot(path[:, 0], path[:, 1], ".-", lw=1, ms=3, markevery=slice(0, 40), label=label)
    ax.plot(*landscape.start, "ko", ms=5)
    ax.plot(*landscape.minimizer, "r*", ms=12, label="minimum")
    ax.set(
        xlim=(x_min, x_max),
        ylim=(y_min, y_max),
        xlabel="θ₀",
        ylabel="θ₁",
        title=title or landscape.name,
    )
    ax.legend(fontsize=7, loc="best")
    return ax.figure

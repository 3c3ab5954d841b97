"""How fast an optimizer gets there: steps to the minimum of a 2-D cost, and the steps,
examples and seconds an ensemble of networks needs to bring its training loss to a target.

Lecture: seed 004, Lecture 7 "Optimization" (line 1841): §4.5 (Figure 3) a learning rate
between 1/λ_max and 2/λ_max oscillates along the steepest direction and one above 2/λ_max
diverges along it; §3 minibatch steps are noisier but cheaper; §4.6 a constant rate leaves
the loss fluctuating. experiments/optimizers.py races optimizers with these functions on the
costs of :mod:`jaxnets.landscapes` and on digits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

from jaxnets.landscapes import Landscape, hessian_eigenvalues, trajectory
from jaxnets.train import Trainer, evaluate_ensemble, train_ensemble

__all__ = [
    "Curve",
    "curvature_range",
    "gd_growth",
    "race",
    "timed_ensemble_curve",
    "to_target",
]

Curve = tuple[list[int], list[float], np.ndarray]
"""An ensemble's training curve: (steps (k,), seconds (k,), losses (k, members))."""


def curvature_range(problem: Landscape) -> tuple[float, float]:
    """(λ_min, λ_max): the Hessian's eigenvalues at the minimizer (their ratio is the
    condition number; 2/λ_max is gradient descent's stability limit there)."""
    low, high = hessian_eigenvalues(problem.cost, problem.minimizer)
    return float(low), float(high)


def race(
    problem: Landscape, optimizer: optax.GradientTransformation, steps: int, tolerance: float
) -> tuple[np.ndarray, dict[str, float]]:
    """``steps`` updates of ``optimizer`` from ``problem.start``: the path (steps + 1, 2) and
    ``{"steps_to_minimum", "reached_minimum", "final_distance"}``, where the minimum counts as
    reached once cost − min_cost <= ``tolerance`` × its initial value (steps_to_minimum is
    ``steps`` when it never is)."""
    path, costs = trajectory(problem.cost, optimizer, problem.start, steps)
    path, gaps = np.asarray(path), np.asarray(costs) - problem.min_cost
    hits = np.flatnonzero(gaps <= tolerance * gaps[0])
    return path, {
        "steps_to_minimum": int(hits[0]) if hits.size else steps,
        "reached_minimum": float(hits.size > 0),
        "final_distance": float(np.linalg.norm(path[-1] - problem.minimizer)),
    }


def gd_growth(path: np.ndarray) -> dict[str, float]:
    """How a path (steps + 1, 2) moved along each axis, axis 1 the steep one: ``steep_growth``
    and ``shallow_growth`` (|θ at the end| / |θ at the start|), and ``steep_sign_flips`` (the
    fraction of steps that flip θ₁'s sign: 1 when gradient descent oscillates)."""
    steep = path[:, 1]
    return {
        "steep_growth": float(abs(steep[-1]) / abs(steep[0])),
        "shallow_growth": float(abs(path[-1, 0]) / abs(path[0, 0])),
        "steep_sign_flips": float(np.mean(np.sign(steep[1:]) != np.sign(steep[:-1]))),
    }


def timed_ensemble_curve(
    trainer: Trainer,
    states: Any,
    train: tuple[Any, Any],
    *,
    steps: int,
    every: int,
    batch_size: int,
    log: Callable[..., None] | None = None,
) -> tuple[Curve, Any]:
    """Train stacked ``states`` (one member per seed, :func:`jaxnets.train.init_ensemble`) for
    ``steps`` minibatch steps (:func:`jaxnets.train.train_ensemble` with ``steps=``), stopping every
    ``every`` steps to evaluate each member's loss on the whole of ``train`` = (x, y).

    The clock runs only around the compiled training calls (compiled before it starts), so
    neither compilation nor the evaluations count. ``log`` (e.g. a run's ``log`` with the
    variant bound) gets each evaluation: ``step``, ``seconds``, ``train_loss`` (the members'
    mean) and ``member_train_loss``. Returns (the :data:`Curve` at steps 0, every, 2 every, ...
    up to ``steps``; the final states).
    """

    def advance(states):
        return train_ensemble(trainer, states, train, steps=every, batch_size=batch_size)[0]

    def train_loss(states) -> np.ndarray:  # (members,)
        return np.asarray(
            evaluate_ensemble(trainer, states, *train, batch_size=len(train[0]))["loss"]
        )

    jax.block_until_ready(advance(states))  # compile outside the clock
    done, seconds, losses = [0], [0.0], [train_loss(states)]
    while done[-1] < steps:
        start = time.perf_counter()
        states = jax.block_until_ready(advance(states))
        seconds.append(seconds[-1] + time.perf_counter() - start)
        done.append(done[-1] + every)
        losses.append(train_loss(states))
    if log is not None:
        for step, second, loss in zip(done, seconds, losses, strict=True):
            log(
                step=step,
                seconds=second,
                train_loss=float(np.mean(loss)),
                member_train_loss=loss.tolist(),
            )
    return (done, seconds, np.stack(losses)), states


def to_target(curve: Curve, target: float, batch_size: int) -> list[dict[str, float]]:
    """Per member of ``curve``: the first evaluation at which its training loss is <= target
    (``steps_to_target``, ``examples_to_target`` = steps × batch_size, ``seconds_to_target``;
    the last evaluation when it never is, with ``reached_target`` 0), its final loss, and
    ``late_train_loss``, the mean over the last fifth of the evaluations: a constant rate
    leaves the minibatch loss fluctuating (§4.6), so one evaluation is a random draw from the
    fluctuations, and their mean is not."""
    steps, seconds, losses = curve
    late = max(1, (len(steps) - 1) // 5)
    rows = []
    for member in losses.T:
        below = np.flatnonzero(member <= target)
        hit = below[0] if below.size else len(steps) - 1
        rows.append(
            {
                "steps_to_target": steps[hit],
                "examples_to_target": steps[hit] * batch_size,
                "seconds_to_target": seconds[hit],
                "reached_target": float(below.size > 0),
                "final_train_loss": float(member[-1]),
                "late_train_loss": float(np.mean(member[-late:])),
            }
        )
    return rows

"""Optimizer behaviour: trajectories on 2-D costs, then optimizers, schedules and batch sizes
on digits.

Lectures: seed 004, Lecture 7 "Optimization" (line 1841): §2 contour plots of a cost over two
weights; §3 stochastic gradient descent and the mini-batch size; §4.5 instability and
oscillations of a too-large learning rate, and momentum; §4.6 fluctuations and learning-rate
decay; §4.8 badly conditioned curvature (a ravine, off-centre inputs) and Adam; seed 001
(minibatch SGD: "comparing to GD, SGD needs more steps, but each step is cheaper").

(a) GD, momentum, Nesterov, RMSprop and Adam on an ill-conditioned quadratic, the Rosenbrock
    ravine and a logistic-regression cost with off-centre inputs (jaxnets.landscapes). The
    learning rates come from each problem's scale, not from tuning per optimizer: the GD
    family uses α = c/λ_max, λ_max the largest Hessian eigenvalue at the minimum (c = 1 never
    overshoots the steepest direction there); RMSprop and Adam, whose steps are about α long
    whatever the gradient's size, use α = f·‖θ₀ − θ*‖.
(b) An MLP on the digits training set: the same optimizers, learning-rate schedules and batch
    sizes, each row varying one thing from momentum SGD with batch 32 and a constant rate.
    Each row trains ``seeds`` members at once (:func:`jaxnets.convergence.timed_ensemble_curve`:
    one compiled program over stacked states; every member its own initial weights and stream
    of shuffled epochs, the same in every row), measuring the full training loss every
    ``eval_every`` steps. Wall time counts only the compiled training steps of all members
    together; it is plotted but no claim rests on it (it differs between machines): the cost
    of minibatch steps is counted in examples processed. The digits claims compare each
    member with itself (same initial weights) in two rows: they are checked once per member.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnets import create_model, landscapes, model_card
from jaxnets.convergence import curvature_range, gd_growth, race, timed_ensemble_curve, to_target
from jaxnets.data import load_digits
from jaxnets.experiment import Claim, Run, format_table, mean_over_seeds, parse_config
from jaxnets.optim import OPTIMIZERS, make_optimizer
from jaxnets.sweep import ExperimentConfig
from jaxnets.train import Trainer, evaluate_ensemble, init_ensemble
from jaxnets.validation import check_batch_size, check_config

ADAPTIVE = ("rmsprop", "adam", "adamw")
LABELS = {"sgd": "GD", "nesterov": "Nesterov"}


@dataclasses.dataclass(frozen=True)
class Config(ExperimentConfig):
    """Optimizer trajectories on 2-D costs; optimizers, schedules and batch sizes on digits."""

    optimizers: tuple[str, ...] = ("sgd", "momentum", "nesterov", "rmsprop", "adam")
    """update rules compared (jaxnets.optim.OPTIMIZERS; the claims need sgd and momentum)"""
    steps: int = 2000
    """updates per trajectory on the 2-D problems"""
    condition: float = 50.0
    """condition number of the quadratic"""
    gd_lr_times_curvature: float = 1.0
    """GD/momentum/Nesterov learning rate on a 2-D problem, in units of 1/λ_max at the minimum"""
    adaptive_lr_times_distance: float = 0.02
    """RMSprop/Adam learning rate on a 2-D problem, in units of the start-to-minimum distance"""
    tolerance: float = 1e-6
    """a 2-D run has reached the minimum once cost − min_cost <= tolerance × its initial value"""
    digits_steps: int = 1500
    """optimizer updates per digits row"""
    eval_every: int = 25
    """steps between evaluations of the full training loss"""
    target_loss: float = 0.1
    """training cross-entropy whose first crossing defines steps and seconds to target"""
    hidden: tuple[int, ...] = (128,)
    """MLP hidden widths"""
    batch_size: int = 32
    """minibatch size of the optimizer and schedule rows"""
    batch_sizes: tuple[int, ...] = (8, 128, 0)
    """other minibatch sizes compared with momentum SGD (0: the full training set, batch GD)"""
    sgd_learning_rate: float = 0.1
    """learning rate of SGD, momentum and Nesterov on digits"""
    adaptive_learning_rate: float = 1e-3
    """learning rate of RMSprop and Adam on digits"""
    split_seed: int = 0
    """seed of the stratified 60/20/20 digits split (only the training part is trained on)"""

    # the 2-D problems, then the digits rows
    SMOKE = dict(optimizers=("sgd", "momentum"), steps=60)
    SMOKE |= dict(digits_steps=20, eval_every=5, hidden=(16,), seeds=1, batch_sizes=(0,))

    def __post_init__(self):
        unknown = set(self.optimizers) - set(OPTIMIZERS)
        if unknown or not {"sgd", "momentum"} <= set(self.optimizers):
            raise ValueError(
                f"optimizers must come from {', '.join(OPTIMIZERS)} and include sgd and "
                f"momentum (the claims compare them); got {', '.join(self.optimizers)}"
            )
        check_config(self, zero_ok=("split_seed", "batch_sizes"))
        if self.condition < 1:
            raise ValueError(
                f"condition must be >= 1 (largest/smallest curvature); got {self.condition}"
            )
        if self.digits_steps % self.eval_every:
            raise ValueError(
                f"digits_steps ({self.digits_steps}) must be a multiple of eval_every "
                f"({self.eval_every})"
            )
        if 0 not in self.batch_sizes:
            raise ValueError(
                f"batch_sizes must include 0 (full-batch GD, which the claims compare with); "
                f"got {self.batch_sizes}"
            )
        if not self.hidden:
            raise ValueError("hidden must hold at least one width (an MLP has hidden layers)")


# -- (a) trajectories on 2-D costs ----------------------------------------------------------


def _landscape_runs(cfg: Config, run: Run):
    """Every optimizer on every problem: results rows, claims' numbers and the figure."""
    import matplotlib.pyplot as plt

    problems = {
        "quadratic": landscapes.quadratic(cfg.condition),
        "rosenbrock": landscapes.rosenbrock(),
        "logistic": landscapes.logistic_regression(*landscapes.logistic_data()),
    }
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained")
    results, lr_max = {}, {}
    for ax, (key, problem) in zip(axes, problems.items(), strict=True):
        lr_max[key] = curvature_range(problem)[1]
        distance = float(np.linalg.norm(np.asarray(problem.start) - problem.minimizer))
        paths = {}
        for name in cfg.optimizers:
            lr = (
                cfg.adaptive_lr_times_distance * distance
                if name in ADAPTIVE
                else cfg.gd_lr_times_curvature / lr_max[key]
            )
            path, row = race(problem, make_optimizer(name, lr), cfg.steps, cfg.tolerance)
            paths[f"{LABELS.get(name, name)} (α={lr:.3g})"] = path
            results[f"{key}/{name}"] = {"learning_rate": lr, **row}
        landscapes.plot_trajectories(
            problem, paths, ax=ax, title=f"{problem.name}, {cfg.steps} steps"
        )
    run.savefig(fig, "trajectories")
    return problems["quadratic"], lr_max, results


def _learning_rate_regimes(cfg: Config, run: Run, problem, lr_max: float, steps: int = 30):
    """GD on the quadratic with a small, an oscillating and an unstable learning rate
    (lecture Figure 3): per-axis growth of the iterates after ``steps`` steps."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2), layout="constrained")
    regimes = {}
    for ax, multiple in zip(axes, (0.5, 1.9, 2.1), strict=True):
        lr = multiple / lr_max
        path = np.asarray(
            landscapes.trajectory(problem.cost, make_optimizer("sgd", lr), problem.start, steps)[0]
        )
        regimes[multiple] = gd_growth(path)
        landscapes.plot_trajectories(
            problem, {f"GD α={multiple}/λ_max": path}, ax=ax, title=f"α = {multiple}/λ_max"
        )
    run.savefig(fig, "learning_rates")
    return regimes


def _conditioning(offset: float) -> float:
    low, high = curvature_range(
        landscapes.logistic_regression(*landscapes.logistic_data(offset=offset))
    )
    return high / low


# -- (b) digits: optimizers, schedules, batch sizes -----------------------------------------


@dataclasses.dataclass(frozen=True)
class _Row:
    """One digits configuration."""

    optimizer: str
    learning_rate: float
    schedule: str
    batch_size: int


def _digits_rows(cfg: Config, n: int) -> dict[str, _Row]:
    """label -> row: each varies one thing from momentum, constant rate, cfg.batch_size; the
    last one adds cosine decay to the smallest (noisiest) batch size."""

    def row(name, schedule="constant", batch_size=cfg.batch_size):
        lr = cfg.adaptive_learning_rate if name in ADAPTIVE else cfg.sgd_learning_rate
        return _Row(name, lr, schedule, batch_size)

    rows = {name: row(name) for name in cfg.optimizers}
    rows |= {f"momentum {s} decay": row("momentum", schedule=s) for s in ("step", "cosine")}
    for b in cfg.batch_sizes:
        label = "full batch" if b == 0 or b >= n else f"batch {b}"
        rows[f"momentum {label}"] = row("momentum", batch_size=min(b or n, n))
    noisiest = min(r.batch_size for r in rows.values())
    if noisiest != cfg.batch_size:
        rows[f"momentum batch {noisiest} cosine decay"] = row("momentum", "cosine", noisiest)
    return rows


def _find(rows: dict[str, _Row], optimizer: str, schedule: str, batch_size: int) -> str:
    """The label of the row with these settings."""
    return next(
        label
        for label, r in rows.items()
        if (r.optimizer, r.schedule, r.batch_size) == (optimizer, schedule, batch_size)
    )


def _digits_runs(cfg: Config, run: Run, splits):
    """Train every row: returns the rows, results per row and curves (steps, seconds, losses)."""
    train = (jnp.asarray(splits.train.x), jnp.asarray(splits.train.y))
    test = (jnp.asarray(splits.test.x), jnp.asarray(splits.test.y))
    # initial weights (and minibatch streams) shared by every row; each row brings its own
    # optimizer state, so each row has its own Trainer
    base = Trainer(create_model("mlp", hidden=cfg.hidden), model_card("mlp").loss, optax.identity())
    keys = jax.random.split(jax.random.PRNGKey(0), cfg.seeds)
    initial = init_ensemble(base, keys, train[0][:1])
    rows, results, members, curves = _digits_rows(cfg, len(train[0])), {}, {}, {}
    for label, row in rows.items():
        optimizer = make_optimizer(
            row.optimizer, row.learning_rate, schedule=row.schedule, total_steps=cfg.digits_steps
        )
        states = initial.replace(opt_state=jax.vmap(optimizer.init)(initial.params))
        trainer = Trainer(base.model, base.loss, optimizer)
        curves[label], states = timed_ensemble_curve(
            trainer,
            states,
            train,
            steps=cfg.digits_steps,
            every=cfg.eval_every,
            batch_size=row.batch_size,
            log=functools.partial(run.log, variant=label),
        )
        accuracy = evaluate_ensemble(trainer, states, *test, batch_size=len(test[0]))["accuracy"]
        members[label] = [  # each member's own first crossing of the target
            {**member, "test_accuracy": float(a)}
            for member, a in zip(
                to_target(curves[label], cfg.target_loss, row.batch_size), accuracy, strict=True
            )
        ]
        results[label] = {
            "batch_size": row.batch_size,
            "learning_rate": row.learning_rate,
            **mean_over_seeds(members[label]),
        }
    return rows, results, members, curves


def _plot_digits(run: Run, cfg: Config, curves) -> None:
    import matplotlib.pyplot as plt

    fig, (ax_steps, ax_time) = plt.subplots(1, 2, figsize=(13, 4.6), layout="constrained")
    for i, (label, (steps, seconds, member_losses)) in enumerate(curves.items()):
        losses = member_losses.mean(axis=1)
        style = "--" if "decay" in label else ":" if "batch" in label else "-"
        ax_steps.plot(steps, losses, style, color=f"C{i}", label=label)
        ax_time.plot(seconds, losses, style, color=f"C{i}", label=label)
    for ax, xlabel in ((ax_steps, "optimizer steps"), (ax_time, "training seconds (all members)")):
        ax.axhline(cfg.target_loss, color="k", lw=0.8, ls="-.")
        ax.set(xlabel=xlabel, ylabel="training cross-entropy (mean of members)", yscale="log")
    ax_time.set_xscale("symlog", linthresh=0.1)
    ax_time.set_xlim(left=0)
    ax_steps.legend(fontsize=7, ncol=2)
    ax_steps.set_title(f"digits MLP: loss vs steps (dash-dot: target {cfg.target_loss:g})")
    ax_time.set_title("loss vs wall time: small batches take cheap steps")
    run.savefig(fig, "digits_training")


# -- claims ------------------------------------------------------------------------------------


def _claims(cfg: Config, landscape_results, regimes, conditioning, rows, members) -> list[Claim]:
    """The 2-D problems are deterministic: one value each. On digits every claim compares the
    same member (same initial weights) across two rows: one value per member (seed)."""
    full_size = max(r.batch_size for r in rows.values())
    smallest_size = min(r.batch_size for r in rows.values())
    sgd, base = (_find(rows, name, "constant", cfg.batch_size) for name in ("sgd", "momentum"))
    full, smallest = (_find(rows, "momentum", "constant", b) for b in (full_size, smallest_size))
    step_decay = _find(rows, "momentum", "step", cfg.batch_size)
    noisy_cosine = _find(rows, "momentum", "cosine", smallest_size)

    def ratio(a, b):
        return a / max(b, 1e-12)

    def per_member(metric: str, top: str, bottom: str) -> list[float]:
        pairs = zip(members[top], members[bottom], strict=True)
        return [ratio(a[metric], b[metric]) for a, b in pairs]

    quadratic = {name: landscape_results[f"quadratic/{name}"] for name in ("sgd", "momentum")}
    ravine = {name: landscape_results[f"rosenbrock/{name}"] for name in ("sgd", "momentum")}
    return [
        Claim(
            "on the quadratic, momentum reaches the minimum in at most half the steps of GD at "
            "the same learning rate (steps ratio momentum/GD)",
            "steps_ratio",
            ratio(quadratic["momentum"]["steps_to_minimum"], quadratic["sgd"]["steps_to_minimum"]),
            0.5,
            "below",
            margin=0.1,
        ),
        # exactly: θ₁ is multiplied by 1 − αλ_max = −0.9 every step, so it flips sign at every
        # step (fraction 1); the claim asks for most steps
        Claim(
            "GD with 1/λ_max < α < 2/λ_max oscillates along the steep direction: θ₁ flips sign "
            "at most steps (fraction of steps that flip it, α = 1.9/λ_max)",
            "sign_flip_fraction",
            regimes[1.9]["steep_sign_flips"],
            0.5,
            "above",
            margin=0.4,
        ),
        # exactly 1.1**30 = 17.4 and (1 - 2.1/κ)**30 = 0.28 at κ = 50
        Claim(
            "GD with α > 2/λ_max is unstable: the steep coordinate grows (|θ₁| after 30 steps / "
            "|θ₁| at the start, α = 2.1/λ_max)",
            "steep_growth",
            regimes[2.1]["steep_growth"],
            1.0,
            "above",
            margin=5.0,
        ),
        Claim(
            "...while it still converges along the shallow direction (|θ₀| after 30 steps / "
            "|θ₀| at the start)",
            "shallow_growth",
            regimes[2.1]["shallow_growth"],
            1.0,
            "below",
            margin=0.5,
        ),
        Claim(
            f"in the Rosenbrock ravine momentum ends far closer to the minimum than GD at the "
            f"same learning rate after {cfg.steps} steps (distance ratio momentum/GD)",
            "distance_ratio",
            ratio(ravine["momentum"]["final_distance"], ravine["sgd"]["final_distance"]),
            0.1,
            "below",
            margin=0.05,
        ),
        Claim(
            "off-centre inputs make the logistic-regression cost badly conditioned (Hessian "
            "condition number at the minimum, offset 2 / centred)",
            "condition_ratio",
            conditioning["offset"] / conditioning["centred"],
            5.0,
            "above",
            margin=5.0,
        ),
        Claim(
            "on digits, momentum reaches the target loss in fewer steps than SGD at the same "
            "learning rate (steps ratio momentum/SGD; SGD's steps are the budget if it misses)",
            "steps_ratio",
            per_member("steps_to_target", base, sgd),
            1.0,
            "below",
            margin=0.2,
        ),
        Claim(
            f"minibatch SGD needs at least as many steps as full-batch GD (momentum; steps "
            f"ratio batch {smallest_size} / batch {full_size})",
            "steps_ratio",
            per_member("steps_to_target", smallest, full),
            1.0,
            "above",
            margin=0.2,
        ),
        Claim(
            f"...but its steps are cheaper: batch {cfg.batch_size} reaches the target after "
            f"processing fewer examples than full-batch GD (examples ratio batch "
            f"{cfg.batch_size} / batch {full_size})",
            "examples_ratio",
            per_member("examples_to_target", base, full),
            1.0,
            "below",
            margin=0.5,
        ),
        Claim(
            "decaying the learning rate too early (steps of 0.1x at 1/3 and 2/3 of the run) "
            "ends at a higher loss than a constant rate (ratio of the mean training losses over "
            "the last fifth of the run, lecture Figure 4)",
            "late_loss_ratio",
            per_member("late_train_loss", step_decay, base),
            1.0,
            "above",
            margin=0.5,
        ),
        Claim(
            f"with noisy minibatches of {smallest_size}, cosine decay removes the fluctuations "
            "and ends at less than half the loss of a constant rate (ratio of the mean training "
            "losses over the last fifth of the run)",
            "late_loss_ratio",
            per_member("late_train_loss", noisy_cosine, smallest),
            0.5,
            "below",
            margin=0.1,
        ),
    ]


def main(cfg: Config) -> dict:
    cfg = cfg.sized()
    splits = load_digits().split((0.6, 0.2, 0.2), seed=cfg.split_seed)
    check_batch_size(cfg.batch_size, len(splits.train))
    run = Run("optimizers", cfg, root=cfg.out)
    problem, lr_max, landscape_results = _landscape_runs(cfg, run)
    regimes = _learning_rate_regimes(cfg, run, problem, lr_max["quadratic"])
    conditioning = {"offset": _conditioning(2.0), "centred": _conditioning(0.0)}
    rows, digits, members, curves = _digits_runs(cfg, run, splits)
    _plot_digits(run, cfg, curves)
    print(format_table(landscape_results, ["learning_rate", "steps_to_minimum", "final_distance"]))
    columns = ["steps_to_target", "examples_to_target", "reached_target", "final_train_loss"]
    print(format_table(digits, [*columns, "late_train_loss", "test_accuracy"]))
    results = {
        **landscape_results,
        **{f"quadratic/gd lr {m}/λ_max": r for m, r in regimes.items()},
        "logistic/conditioning": {f"condition_{k}": v for k, v in conditioning.items()},
        **{f"digits/{label}": row for label, row in digits.items()},
    }
    return run.write_summary(
        results, _claims(cfg, landscape_results, regimes, conditioning, rows, members)
    )


if __name__ == "__main__":
    main(parse_config(Config))

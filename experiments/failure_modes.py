"""Training failures and their fixes on handwritten digits, diagnosed per layer.

Lecture: seed 004, Lecture 7 "Optimization" §4 "Problems, diagnostics, and workarounds"
(line 1950): §4.3 symmetries (line 1968: zero init leaves all hidden units identical, "no
learning will occur"; random init breaks the symmetry), §4.5 instability (line 1985: too
large a learning rate overshoots and the cost shoots up), §4.7 dead and saturated units
(line 2037: large initial weights saturate sigmoidal units, "choose the scale of the random
initialization ... in the middle of their dynamic range"; ReLUs "can die if z is consistently
negative").

A small MLP is trained with plain SGD on a fixed stratified split of sklearn's 8x8 digits in
nine variants, each a failure or its fix, from ``seeds`` initialisations (and shuffles) each;
the claims are checked on every seed, the table shows means over seeds.

The too-high learning rates are not fixed numbers but a clear multiple of the stability limit
of gradient descent, α = ``too_high_lr_factor`` × 2/λ_max, λ_max of the full training loss at
the initial parameters estimated per seed (:mod:`jaxnets.failures`, which also holds the bad
initialisations). Near the limit the outcome is not
robust: the old fixed α = 1 for tanh, about 2 × 2/λ_max, ended at a training loss of 0.0027 on
one CPU and 26 on another; here 1.5 × 2/λ_max still trains the tanh net (loss ~0.001), while
3x gives ~40 and 10x ~150, against chance ln 10 = 2.3, from the first epoch on.

Per variant the script measures, with
:mod:`jaxnets.diagnostics`: the first step's per-layer gradient norms and update/parameter
ratio, and after training the dead and saturated unit fractions (on the training set) and the
largest difference between hidden units' weights. It prints one table, checks the lecture's
claims from these numbers, and saves loss curves and diagnostics as figures.

Table columns: ``train_loss`` (mean minibatch loss of the last epoch), ``test_accuracy``,
``dead_*`` / ``saturated_*`` (share of all hidden units dead / saturated on the training set,
at init and after training; saturation only for tanh), ``unit_difference`` (largest difference
between two hidden units' weight vectors of a layer, after training: 0 means identical),
``killed`` (``dead_after`` − ``dead_at_init``: the share of units training killed),
``grad_<layer>`` (gradient norm of the first step) and ``update_ratio`` (largest
||update|| / ||params|| of a layer in the first step; left out when every layer is zero);
for the too-high rates also ``lambda_max_at_init`` and the ``learning_rate`` it gave.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import create_model, failures
from jaxnets.data import load_digits
from jaxnets.diagnostics import hidden_activations, step_norms, symmetry_check
from jaxnets.experiment import Claim, Run, format_table, parse_config
from jaxnets.failures import Transform, top_hessian_eigenvalue
from jaxnets.sweep import SeededConfig, SeedSweep, sweep_seeds
from jaxnets.train import JSONLLogger, Trainer, TrainState, fit
from jaxnets.validation import check_batch_size, check_config


@dataclasses.dataclass(frozen=True)
class Config(SeededConfig):
    """Too-high learning rate, dead ReLUs, saturated tanh units and symmetric init on digits."""

    epochs: int = 60
    """training epochs per variant"""
    batch_size: int = 32
    """minibatch size (plain SGD)"""
    hidden: tuple[int, ...] = (64, 64)
    """MLP hidden widths: two or more layers, so the per-layer numbers can differ"""
    learning_rate: float = 0.1
    """the good learning rate"""
    too_high_lr_factor: float = 10.0
    """the too-high learning rate of the tanh and ReLU nets, in units of the stability limit
    2/λ_max (λ_max: largest Hessian eigenvalue of the training loss at the initial parameters)"""
    power_iterations: int = 30
    """power-iteration steps that estimate λ_max"""
    dead_bias: float = -3.0
    """initial hidden bias that makes every ReLU dead from the start"""
    leaky_slope: float = 0.3
    """negative slope of the leaky ReLU that fixes the dead-bias init"""
    saturating_scale: float = 16.0
    """factor on the default (LeCun normal) initial kernels that saturates tanh units"""
    constant_weight: float = 0.05
    """every weight of the constant-init variant (biases 0)"""
    split_seed: int = 0
    """seed of the stratified 60/20/20 train/val/test split"""

    SMOKE = dict(epochs=2, seeds=1, hidden=(16, 16), power_iterations=5)

    def __post_init__(self):
        check_config(
            self, zero_ok=("seed", "split_seed"), any_sign=("dead_bias", "constant_weight")
        )
        if len(self.hidden) < 2 or min(self.hidden) < 2:
            raise ValueError(
                f"hidden must be at least 2 layers of at least 2 units (symmetry needs units to "
                f"compare); got {self.hidden}"
            )
        if self.too_high_lr_factor <= 2:
            raise ValueError(
                "too_high_lr_factor must be > 2 (clearly above the stability limit); got "
                f"{self.too_high_lr_factor}"
            )
        if not self.leaky_slope < 1:
            raise ValueError(f"leaky_slope must be in (0, 1); got {self.leaky_slope}")


class Variant(NamedTuple):
    """One training run.

    Attributes:
      activation: hidden-unit name (jaxnets.nn.ACTIVATIONS).
      learning_rate: the SGD step size; ``None``: ``too_high_lr_factor`` × 2/λ_max of the
        variant's own initial parameters.
      init: default (LeCun normal) params as numpy arrays -> this variant's initial params.
      lesson: what the run shows, printed next to its name.
    """

    activation: str
    learning_rate: float | None
    init: Transform
    lesson: str


def _variants(cfg: Config) -> dict[str, Variant]:
    lr = cfg.learning_rate
    keep = lambda params: params  # noqa: E731
    return {
        "tanh": Variant("tanh", lr, keep, "good learning rate and init scale (the fix)"),
        "tanh_high_lr": Variant("tanh", None, keep, "too-high learning rate: the loss grows"),
        "tanh_large_init": Variant(
            "tanh",
            lr,
            failures.scale_kernels(cfg.saturating_scale),
            "large initial weights: saturated units",
        ),
        "relu": Variant("relu", lr, keep, "good learning rate, random init (the fix)"),
        "relu_high_lr": Variant("relu", None, keep, "too-high learning rate kills ReLUs"),
        "relu_negative_bias": Variant(
            "relu", lr, failures.hidden_bias(cfg.dead_bias), "negative bias init: dead ReLUs"
        ),
        "leaky_negative_bias": Variant(
            "leaky_relu", lr, failures.hidden_bias(cfg.dead_bias), "leaky units still get gradient"
        ),
        "zero_init": Variant("relu", lr, failures.zero_params, "zero init: symmetric units"),
        "constant_init": Variant(
            "relu",
            lr,
            failures.constant_kernels(cfg.constant_weight),
            "constant init: symmetric units",
        ),
    }


def make_trainer(cfg: Config, activation: str) -> Trainer:
    """The MLP of the given hidden activation with an SGD whose learning rate is set per state."""
    options = (("negative_slope", cfg.leaky_slope),) if activation == "leaky_relu" else ()
    model = create_model(
        "mlp", hidden=cfg.hidden, activation=activation, activation_options=options
    )
    # The learning rate lives in the optimizer state, so variants that differ only in it (or
    # in the init) share one Trainer and its compiled programs.
    return Trainer(model, "softmax_cross_entropy", failures.settable_sgd())


def _initial_state(trainer: Trainer, variant: Variant, seed: int, x: np.ndarray) -> TrainState:
    """The variant's initial parameters and an SGD state (its learning rate set later)."""
    state = trainer.init(jax.random.PRNGKey(seed), x[:1])
    # on the host: numpy spares each little transform a compile
    params = jax.tree.map(jnp.asarray, variant.init(jax.device_get(state.params)))
    return state.replace(params=params, opt_state=trainer.optimizer.init(params))


def _diagnose(
    run: Run, name: str, variant: Variant, trainer: Trainer, cfg: Config, splits, seed: int
):
    """Train one variant from one seed; returns ({name: its table row}, what the figure
    needs)."""
    first_batch = (splits.train.x[: cfg.batch_size], splits.train.y[: cfg.batch_size])
    x, y = jnp.asarray(splits.train.x), jnp.asarray(splits.train.y)
    state = _initial_state(trainer, variant, seed, splits.train.x)
    curvature = {}
    learning_rate = variant.learning_rate
    if learning_rate is None:
        key = jax.random.PRNGKey(seed)
        lambda_max = float(
            top_hessian_eigenvalue(trainer, state.params, x, y, key, cfg.power_iterations)
        )
        learning_rate = cfg.too_high_lr_factor * 2 / lambda_max
        curvature = {"lambda_max_at_init": lambda_max, "learning_rate": learning_rate}
    state = failures.with_learning_rate(state, learning_rate)
    _, first_step = step_norms(trainer, state, first_batch)
    init_activations = hidden_activations(trainer.model, {"params": state.params}, x)
    # a too-high rate may overflow the loss: fit then ends after that epoch instead of raising
    logger = [JSONLLogger(run.metrics_path, variant=name, seed=seed)] if run.writes else []
    result = fit(
        trainer,
        state,
        (x, y),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        callbacks=logger,
        progress=False,
        on_non_finite="stop",
    )
    state, losses = result.state, [logs["train_loss"] for logs in result.history]
    if result.non_finite_step is not None:
        print(
            f"{name} seed {seed}: the loss became {losses[-1]} at step {result.non_finite_step} "
            f"(epoch {len(losses)}); stopped"
        )
    activations = hidden_activations(trainer.model, {"params": state.params}, x)
    at_init = failures.unit_fractions(init_activations, variant.activation, "at_init")
    after = failures.unit_fractions(activations, variant.activation, "after")
    test = trainer.evaluate(state, splits.test.x, splits.test.y, batch_size=len(splits.test))
    row = {
        **curvature,
        "train_loss": losses[-1],  # mean minibatch loss of the last epoch
        "test_accuracy": float(test["accuracy"]),
        **at_init,
        **after,
        "killed": after["dead_after"] - at_init["dead_at_init"],
        "unit_difference": max(s.max_difference for s in symmetry_check(state.params).values()),
        **{f"grad_{layer}": norm for layer, norm in first_step.grad.items()},
    }
    # an all-zero layer has no relative update (zero init): left out rather than inf
    finite_ratios = [r for r in first_step.update_ratio.values() if math.isfinite(r) and r > 0]
    if finite_ratios:
        row["update_ratio"] = max(finite_ratios)
    extras = {
        "losses": losses,
        "grad": first_step.grad,
        "init_activations": jax.device_get(init_activations),
    }
    return {name: row}, extras


def _grouped_bars(ax, names: list[str], series: dict[str, list[float]]) -> None:
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        ax.bar(np.arange(len(names)) + i * width, values, width, label=label)
    ticks = np.arange(len(names)) + 0.4 - width / 2
    ax.set_xticks(ticks, names, rotation=40, ha="right", fontsize=8)
    ax.legend(fontsize=8)


def _plot(run: Run, results: dict, extras: dict) -> None:
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(2, 2, figsize=(13, 9), layout="constrained")
    ax = axes[0, 0]
    for name in names:
        losses = extras[name]["losses"]
        ax.plot(range(1, len(losses) + 1), losses, label=name)
    ax.axhline(math.log(10), color="gray", ls=":", label="chance (ln 10)")
    ax.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss curves")
    ax.legend(fontsize=7, ncol=2)

    layers = list(extras[names[0]]["grad"])
    # zero gradients (dead or symmetric layers) are drawn at the axis floor, not dropped
    grads = {layer: [max(extras[n]["grad"][layer], 1e-8) for n in names] for layer in layers}
    _grouped_bars(axes[0, 1], names, grads)
    axes[0, 1].set(yscale="log", ylabel="||gradient|| (0 drawn at 1e-8)", title="first step")

    fractions = {
        "dead": [results[n]["dead_after"] for n in names],
        "saturated": [results[n].get("saturated_after", 0.0) for n in names],
    }
    _grouped_bars(axes[1, 0], names, fractions)
    axes[1, 0].set(ylim=(0, 1.05), ylabel="fraction of hidden units", title="after training")

    ax = axes[1, 1]
    for name in ("tanh", "tanh_large_init"):
        values = np.concatenate([h.ravel() for h in extras[name]["init_activations"].values()])
        ax.hist(values, bins=50, range=(-1, 1), density=True, alpha=0.6, label=name)
    ax.set(
        xlabel="activation h of a hidden unit on a training example",
        ylabel="density",
        title="tanh activations at init (§4.7: not at the ends of the range)",
    )
    ax.legend(fontsize=8)
    run.savefig(fig, "failure_modes")


def _claims(sweeps: dict[str, SeedSweep], cfg: Config) -> list[Claim]:
    """The lecture's claims, each read off one variant's rows (one per seed): (text, variant,
    metric, threshold, direction, margin). Each margin keeps every seed clearly on its side:
    a few test examples (one is 1/359 = 0.28% of the test set), a few hidden units (one is
    1/128 of them), and for the exact symmetries, half the threshold."""
    too_high = f"{cfg.too_high_lr_factor:g} x the stability limit 2/λ_max"
    checks = [
        (
            f"learning rate {too_high} makes the tanh net's training loss grow above "
            "chance (ln 10)",
            "tanh_high_lr",
            "train_loss",
            math.log(10),
            "above",
            10.0,
        ),
        # the fix is judged on what the instability ruins, the training loss, and on test
        # accuracy at the 90% the leaky fix below is held to: this plain-SGD net generalises
        # to about 96%, so a 95% threshold would sit within a test example or two of some
        # seeds' accuracy
        (
            f"learning rate {cfg.learning_rate:g} trains the same net: training loss under 0.1",
            "tanh",
            "train_loss",
            0.1,
            "below",
            0.05,
        ),
        (
            f"learning rate {cfg.learning_rate:g} trains the same net to 90% test accuracy",
            "tanh",
            "test_accuracy",
            0.9,
            "above",
            0.03,
        ),
        # "killed": dead after training minus dead at init. Some ReLUs are dead from the
        # start (a random init can make a unit negative on every digit: 0-6% of them here),
        # which is the init's doing, not the learning rate's; counted among the dead, 0.1's
        # share ranged 3-12% over 8 seeds, while the share it kills stays at 0-5.5%
        (
            f"learning rate {too_high} kills over half of the ReLUs (share dead after "
            "training minus dead at init)",
            "relu_high_lr",
            "killed",
            0.5,
            "above",
            0.2,
        ),
        (
            f"learning rate {cfg.learning_rate:g} kills under 10% of the ReLUs",
            "relu",
            "killed",
            0.1,
            "below",
            0.02,
        ),
        (
            f"hidden bias {cfg.dead_bias:g} leaves over 90% of the ReLUs dead after training",
            "relu_negative_bias",
            "dead_after",
            0.9,
            "above",
            0.05,
        ),
        (
            f"leaky ReLUs from the same bias {cfg.dead_bias:g} still reach 90% test accuracy",
            "leaky_negative_bias",
            "test_accuracy",
            0.9,
            "above",
            0.02,
        ),
        (
            f"init scale x{cfg.saturating_scale:g} saturates over half of the tanh units",
            "tanh_large_init",
            "saturated_at_init",
            0.5,
            "above",
            0.1,
        ),
        (
            "the default init saturates under 10% of the tanh units",
            "tanh",
            "saturated_at_init",
            0.1,
            "below",
            0.05,
        ),
        (
            f"init scale x{cfg.saturating_scale:g} costs test accuracy: under 90%",
            "tanh_large_init",
            "test_accuracy",
            0.9,
            "below",
            0.05,
        ),
        (
            "zero init leaves the hidden units identical",
            "zero_init",
            "unit_difference",
            1e-6,
            "below",
            5e-7,
        ),
        (
            "constant init leaves the hidden units identical",
            "constant_init",
            "unit_difference",
            1e-6,
            "below",
            5e-7,
        ),
        ("random init breaks the symmetry", "relu", "unit_difference", 1e-6, "above", 0.1),
        (
            "zero init does not learn: test accuracy under 20%",
            "zero_init",
            "test_accuracy",
            0.2,
            "below",
            0.05,
        ),
    ]
    return [
        Claim(text, metric, sweeps[variant].values(variant, metric), threshold, direction, margin)
        for text, variant, metric, threshold, direction, margin in checks
    ]


def main(cfg: Config) -> dict:
    cfg = cfg.sized()
    splits = load_digits().split((0.6, 0.2, 0.2), seed=cfg.split_seed)
    print(f"digits: {len(splits.train)} train / {len(splits.test)} test; MLP {cfg.hidden}")
    check_batch_size(cfg.batch_size, len(splits.train))
    run = Run("failure_modes", cfg, root=cfg.out)
    trainers: dict[str, Trainer] = {}
    sweeps = {}
    for name, variant in _variants(cfg).items():
        if variant.activation not in trainers:
            trainers[variant.activation] = make_trainer(cfg, variant.activation)
        trainer = trainers[variant.activation]
        diagnose = functools.partial(_diagnose, run, name, variant, trainer, cfg, splits)
        sweeps[name] = sweep_seeds(cfg.seed_range, diagnose)
        print(f"{name:>20}: {variant.lesson}")
    results = {name: sweep.results[name] for name, sweep in sweeps.items()}
    extras = {name: sweep.first for name, sweep in sweeps.items()}  # the figure: first seed
    _plot(run, results, extras)
    columns = list(dict.fromkeys(m for row in results.values() for m in row))
    print(format_table(results, columns))
    return run.write_summary(results, _claims(sweeps, cfg))


if __name__ == "__main__":
    main(parse_config(Config))

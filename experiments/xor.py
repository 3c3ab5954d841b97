"""XOR: the hand-set networks of the lectures, and XOR learned from many seeds at once.

Lectures: seed 000 "Multilayer Perceptrons" (line 220: hard-threshold units computing OR and
AND, y = OR and not AND), seed 002 "Back to XOR" (line 347-560: the ReLU network with
W = [[1,1],[1,1]], c = [0,-1], w = [1,-2], b = 0 that solves XOR exactly), seed 004 §3
(line 971: a linear model cannot represent XOR; one hidden layer can).

The learned part trains many nets from random inits at once (one compiled vmap over stacked
states) and counts how many reach 100% accuracy: with 2 hidden units some nets get stuck in a
local minimum; wider nets escape it. Each of ``seeds`` repetitions draws its own ``nets``
initialisations; the claims are checked on every repetition, tables show the means.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import numpy as np

from jaxnets import create_model
from jaxnets.experiment import Claim, Run, format_table, parse_config
from jaxnets.models.mlp import xor_data, xor_handset
from jaxnets.optim import make_optimizer
from jaxnets.sweep import ExperimentConfig, check_activation, sweep_seeds
from jaxnets.train import Trainer
from jaxnets.train.ensemble import init_ensemble, train_ensemble
from jaxnets.validation import check_config


class XORSeedResults(NamedTuple):
    """Per-seed outcome of :func:`train_xor_seeds` (leading axis: seed)."""

    accuracy: jax.Array  # (num_seeds,) fraction of the 4 XOR points classified correctly
    loss: jax.Array  # (num_seeds,) final mean binary cross-entropy
    loss_curve: jax.Array  # (num_seeds, steps) loss before each step


def train_xor_seeds(
    num_seeds: int = 32,
    steps: int = 500,
    lr: float = 0.1,
    *,
    optimizer: str = "adam",
    activation: str = "tanh",
    hidden: int = 2,
    seed: int = 0,
) -> XORSeedResults:
    """Train the ``xor_mlp`` net (2 -> hidden -> 1 logit) from ``num_seeds`` random inits.

    All seeds train at once as an ensemble (:mod:`jaxnets.train.ensemble`): one ``jax.jit``
    of ``jax.vmap`` over stacked states of a ``lax.scan`` of full-batch steps on the 4 XOR
    points, minimising mean binary cross-entropy with the Optax optimizer ``optimizer``.
    Small nets get stuck in local minima from some inits: count seeds with accuracy 1.
    """
    model = create_model("xor_mlp", hidden=(hidden,), activation=activation)
    trainer = Trainer(model, "binary_cross_entropy", make_optimizer(optimizer, lr))
    x, t = xor_data()
    keys = jax.random.split(jax.random.PRNGKey(seed), num_seeds)
    states, history = train_ensemble(trainer, init_ensemble(trainer, keys, x), (x, t), steps=steps)
    final = jax.vmap(lambda state: trainer.evaluate(state, x, t, batch_size=4))(states)
    return XORSeedResults(final["accuracy"], final["loss"], history.step_metrics["loss"])


@dataclasses.dataclass(frozen=True)
class Config(ExperimentConfig):
    """Hand-set XOR nets and learned XOR over many seeds."""

    nets: int = 256
    """nets trained at once per width and repetition"""
    widths: tuple[int, ...] = (2, 3, 8)
    """hidden widths to compare"""
    steps: int = 1000
    """full-batch Adam steps"""
    learning_rate: float = 0.1
    """Adam learning rate"""
    activation: str = "tanh"
    """hidden activation of the learned nets"""

    SMOKE = dict(seeds=1, nets=16, widths=(2, 8), steps=300)

    def __post_init__(self):
        check_config(self)
        if not self.widths:
            raise ValueError("widths must hold at least one hidden width to compare")
        check_activation(self.activation)


def _plot(run: Run, curves: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.5), squeeze=False)
    for ax, (width, (loss_curve, solved)) in zip(axes[0], curves.items(), strict=True):
        for curve, ok in zip(loss_curve[:64], solved[:64], strict=True):
            ax.plot(curve, color="C2" if ok else "C3", alpha=0.35, lw=0.8)
        ax.set(
            title=f"{width} hidden units: {solved.mean():.0%} of nets solve XOR",
            xlabel="step",
            ylabel="cross-entropy",
            yscale="log",
        )
    fig.suptitle("learned XOR, one curve per net (green: 100% accuracy, red: stuck)")
    run.savefig(fig, "xor_seeds")


def _learn(cfg: Config, run: Run, width: int, seed: int):
    """One repetition at one width: ({variant: row}, (loss curves (nets, steps), which nets
    reached 100% accuracy (nets,)))."""
    learned = jax.device_get(
        train_xor_seeds(
            cfg.nets,
            cfg.steps,
            cfg.learning_rate,
            hidden=width,
            activation=cfg.activation,
            seed=seed,
        )
    )
    solved = learned.accuracy == 1.0
    variant = f"learned_{width}_hidden"
    for step in range(0, cfg.steps, max(1, cfg.steps // 50)):
        losses_at_step = learned.loss_curve[:, step]
        run.log(
            variant=variant,
            seed=seed,
            step=step,
            median_loss=float(np.median(losses_at_step)),
            max_loss=float(np.max(losses_at_step)),
        )
    row = {
        "nets": cfg.nets,
        "nets_at_100pct": int(solved.sum()),
        "fraction_solved": float(solved.mean()),
        "median_final_loss": float(np.median(learned.loss)),
        "max_final_loss": float(np.max(learned.loss)),
    }
    return {variant: row}, (learned.loss_curve, solved)


def main(cfg: Config) -> dict:
    cfg = cfg.sized()
    run = Run("xor", cfg, root=cfg.out)
    x, t = xor_data()
    results, claims = {}, []
    for kind in ("relu", "hard_threshold"):
        model, variables = xor_handset(kind)
        outputs = np.asarray(model.apply(variables, x))[:, 0]
        print(f"hand-set {kind} net on X = [[0,0],[0,1],[1,0],[1,1]]: {outputs.tolist()}")
        results[f"handset_{kind}"] = {"max_abs_error": float(np.max(np.abs(outputs - t)))}
        # integer weights on 0/1 inputs: every output is an exactly representable integer on
        # any machine, so the exact claim (error 0) needs no margin
        claims.append(
            Claim(
                f"the hand-set {kind} net outputs exactly [0, 1, 1, 0]",
                "max_abs_error",
                results[f"handset_{kind}"]["max_abs_error"],
                0.0,
                "below",
            )
        )
    sweeps = {}
    for width in cfg.widths:
        sweeps[width] = sweep_seeds(cfg.seed_range, functools.partial(_learn, cfg, run, width))
        results.update(sweeps[width].results)
    widest, narrowest = max(cfg.widths), min(cfg.widths)
    claims.append(
        # A net's loss is its mean cross-entropy over the 4 points; below ln(2)/4 every point
        # has -log p(correct) < ln 2, i.e. p(correct) > 1/2: all 4 points are classified
        # right. The worst net's loss, not the accuracy count, measures how far it is from
        # the edge, so the margin asks every net to be well inside.
        Claim(
            f"with {widest} hidden units every net learns XOR (the worst of {cfg.nets} nets' "
            "loss is below ln(2)/4, which implies 100% accuracy)",
            "max_final_loss",
            sweeps[widest].values(f"learned_{widest}_hidden", "max_final_loss"),
            math.log(2) / 4,
            "below",
            margin=0.1,
        )
    )
    if narrowest < widest:
        claims.append(
            Claim(
                f"with {narrowest} hidden units some nets get stuck in a local minimum "
                f"(fraction of {cfg.nets} nets at 100% accuracy)",
                "fraction_solved",
                sweeps[narrowest].values(f"learned_{narrowest}_hidden", "fraction_solved"),
                1.0,
                "below",
                margin=0.1,
            )
        )
    _plot(run, {width: sweep.first for width, sweep in sweeps.items()})
    learned_rows = {k: v for k, v in results.items() if k.startswith("learned")}
    print(
        format_table(
            learned_rows, ["nets", "nets_at_100pct", "median_final_loss", "max_final_loss"]
        )
    )
    return run.write_summary(results, claims)


if __name__ == "__main__":
    main(parse_config(Config))

"""What each generalization tool buys on a deliberately small training set of digits.

Lecture: seed 004, Lecture 12 "Generalization" (line 2500): §2 train/validation/test
discipline; §3 capacity, and training vs test error as it grows; §4 reducing overfitting:
reducing capacity (§4.1), early stopping at the validation minimum (§4.2), weight decay
(§4.3), ensembles (§4.4), data augmentation (§4.5) and stochastic regularization, dropout
(§4.6). Seed 001 on regularisation.

Every variant trains ``members`` MLPs at once, one per seed, as one vmapped state
(:func:`jaxnets.train.train_ensemble`: one compile), on the same ``train_size`` digits; the
table shows the mean and spread over members of test accuracy and loss. The members of the
baseline, averaged, are the ensemble. The weight-decay strength is chosen on validation. A
capacity sweep trains MLPs of growing width; and per-example gradient norms (``vmap(grad)``)
of a net trained on labels with some flipped show which training digits it finds hardest:
the flipped ones come first.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from jaxnets import create_model
from jaxnets.data import load_digits, random_shift
from jaxnets.experiment import Claim, Run, format_table, parse_config
from jaxnets.optim import make_optimizer
from jaxnets.regularizers import make_regularizer
from jaxnets.train import (
    Trainer,
    ensemble_accuracy,
    ensemble_probabilities,
    init_ensemble,
    train_ensemble,
)
from jaxnets.viz import image_grid


@dataclasses.dataclass(frozen=True)
class Config:
    """Baseline, early stopping, weight decay, dropout, augmentation and an ensemble on digits."""

    train_size: int = 150
    """training digits (the small training set that makes overfitting show)"""
    val_size: int = 300
    """validation digits (the remaining ~1350 are the test set)"""
    members: int = 8
    """seeds per variant, trained at once; also the ensemble's size"""
    hidden: int = 256
    """hidden units of the one-hidden-layer ReLU MLP"""
    epochs: int = 300
    batch_size: int = 32
    learning_rate: float = 1e-2
    """Adam's learning rate (high enough that training past the validation minimum overfits)"""
    weight_decays: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    """L2 strengths tried; the best on validation is reported"""
    dropout: float = 0.5
    max_shift: int = 1
    """augmentation: random shifts of up to this many pixels"""
    widths: tuple[int, ...] = (2, 8, 32, 128, 512)
    """hidden widths of the capacity sweep"""
    flip_fraction: float = 0.1
    """share of training labels flipped for the per-example gradient-norm demonstration"""
    seed: int = 0
    out: str = "runs"
    """root folder of run directories"""
    smoke: bool = False
    """tiny run for the tests"""


@dataclasses.dataclass(frozen=True)
class _Variant:
    dropout: float = 0.0
    weight_decay: float = 0.0
    augment: bool = False
    early_stopping: bool = False
    hidden: int | None = None

    def __str__(self) -> str:
        changed = [
            f"{field.name}={getattr(self, field.name)}"
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != field.default
        ]
        return ", ".join(changed) or "baseline"


def _train(cfg: Config, data, variant: _Variant, train_labels=None):
    """Train ``cfg.members`` seeds of one variant; returns (trainer, states, history)."""
    train, val, _ = data
    model = create_model(
        "mlp", hidden=(variant.hidden or cfg.hidden,), dropout_rate=variant.dropout
    )
    augment = (
        functools.partial(random_shift, image_shape=(8, 8), max_shift=cfg.max_shift)
        if variant.augment
        else None
    )
    trainer = Trainer(
        model,
        "softmax_cross_entropy",
        make_optimizer("adam", cfg.learning_rate),
        regularizer=make_regularizer("l2", variant.weight_decay),
        augment=augment,
    )
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.members)
    states = init_ensemble(trainer, keys, train.x[: cfg.batch_size])
    labels = train.y if train_labels is None else train_labels
    states, history = train_ensemble(
        trainer,
        states,
        (train.x, labels),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        val=(val.x, val.y),
        restore_best=variant.early_stopping,
    )
    print(
        f"  trained {cfg.members} x [{variant}]: mean validation loss at the end "
        f"{history.val_loss[-1].mean():.3f}, lowest {history.val_loss.min(0).mean():.3f}"
    )
    return trainer, states, history


def _scores(trainer, states, split) -> dict[str, np.ndarray]:
    probabilities = np.asarray(ensemble_probabilities(trainer, states, split.x))
    picked = probabilities[:, np.arange(len(split.y)), np.asarray(split.y)]
    loss = -np.log(np.maximum(picked, 1e-12)).mean(axis=1)
    return {"accuracy": np.mean(probabilities.argmax(-1) == split.y, axis=1), "loss": loss}


def _row(trainer, states, data) -> dict[str, float]:
    train, val, test = data
    row = {}
    for name, split in (("train", train), ("val", val), ("test", test)):
        scores = _scores(trainer, states, split)
        row[f"{name}_accuracy"] = float(scores["accuracy"].mean())
        row[f"{name}_loss"] = float(scores["loss"].mean())
    row["test_accuracy_std"] = float(_scores(trainer, states, test)["accuracy"].std())
    return row


def _capacity_sweep(cfg: Config, data, run: Run) -> dict[int, dict[str, float]]:
    import matplotlib.pyplot as plt

    curves = {}
    for width in cfg.widths:
        trainer, states, _ = _train(cfg, data, _Variant(hidden=width))
        curves[width] = _row(trainer, states, data)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for split in ("train", "test"):
            ax.plot(
                cfg.widths, [curves[w][f"{split}_{metric}"] for w in cfg.widths], "o-", label=split
            )
        ax.set(
            xscale="log",
            xlabel="hidden units",
            ylabel=f"mean {metric}",
            title=f"capacity: {metric} ({cfg.train_size} training digits)",
        )
        ax.legend()
    run.savefig(fig, "capacity")
    return curves


def _flipped_label_search(cfg: Config, data, run: Run) -> dict[str, float]:
    """Flip a share of the training labels, train with early stopping, and rank the training
    digits by the norm of their own loss gradient."""
    train = data[0]
    rng = np.random.default_rng(cfg.seed)
    flipped = rng.choice(len(train.y), round(cfg.flip_fraction * len(train.y)), replace=False)
    labels = np.asarray(train.y).copy()
    labels[flipped] = (labels[flipped] + rng.integers(1, 10, len(flipped))) % 10
    trainer, states, _ = _train(cfg, data, _Variant(early_stopping=True), train_labels=labels)
    first = jax.tree.map(lambda leaf: leaf[0], states)
    norms = np.asarray(trainer.per_example_grad_norms(first, train.x, labels))
    ranking = np.argsort(-norms)
    top = ranking[: len(flipped)]
    found = len(np.intersect1d(top, flipped))
    predicted = np.asarray(trainer.predict(first, train.x)).argmax(-1)
    shown = ranking[:16]
    fig = image_grid(
        np.asarray(train.x)[shown].reshape(-1, 8, 8),
        titles=[
            f"{'FLIPPED ' if i in flipped else ''}label {labels[i]}, net {predicted[i]}"
            for i in shown
        ],
        cols=4,
        signed=False,
        size=2.0,
        suptitle="training digits with the largest per-example gradient norm",
    )
    run.savefig(fig, "hardest_digits")
    return {
        "flipped": len(flipped),
        "flipped_in_top": found,
        "precision": found / len(flipped),
        "chance": cfg.flip_fraction,
    }


def main(cfg: Config) -> dict:
    if cfg.smoke:
        cfg = dataclasses.replace(
            cfg, members=2, hidden=16, epochs=3, weight_decays=(1e-3,), widths=(2, 8)
        )
    digits = load_digits()
    train, val, test = digits.split(
        (cfg.train_size, cfg.val_size, len(digits) - cfg.train_size - cfg.val_size), seed=cfg.seed
    )
    data = (train, val, test)
    print(
        f"digits: {len(train)} train / {len(val)} val / {len(test)} test; "
        f"{cfg.members} seeds per variant, trained as one vmapped ensemble"
    )
    run = Run("generalization", cfg, root=cfg.out)

    results, histories = {}, {}
    trainer, baseline_states, histories["baseline"] = _train(cfg, data, _Variant())
    results["baseline"] = _row(trainer, baseline_states, data)
    ensemble, members = ensemble_accuracy(
        ensemble_probabilities(trainer, baseline_states, test.x), test.y
    )
    trainer, states, histories["early stopping"] = _train(cfg, data, _Variant(early_stopping=True))
    results["early stopping"] = _row(trainer, states, data)
    results["early stopping"]["best_epoch"] = float(histories["early stopping"].best_epoch.mean())
    decay_rows = {}
    for strength in cfg.weight_decays:
        trainer, states, _ = _train(cfg, data, _Variant(weight_decay=strength))
        decay_rows[strength] = _row(trainer, states, data)
    best_decay = min(decay_rows, key=lambda s: decay_rows[s]["val_loss"])
    results[f"weight decay {best_decay:g}"] = decay_rows[best_decay]
    trainer, states, histories["dropout"] = _train(cfg, data, _Variant(dropout=cfg.dropout))
    results[f"dropout {cfg.dropout:g}"] = _row(trainer, states, data)
    trainer, states, histories["augmentation"] = _train(cfg, data, _Variant(augment=True))
    results[f"shifts of <= {cfg.max_shift} px"] = _row(trainer, states, data)
    results[f"ensemble of {cfg.members}"] = {
        "test_accuracy": ensemble,
        "mean_member_test_accuracy": float(members.mean()),
    }
    print(
        format_table(
            results, ["train_loss", "val_loss", "test_loss", "test_accuracy", "test_accuracy_std"]
        )
    )
    print("weight decay sweep (validation loss picks the strength):")
    print(
        format_table(
            {f"L2 {s:g}": row for s, row in decay_rows.items()},
            ["train_loss", "val_loss", "test_accuracy"],
        )
    )
    _plot_curves(run, histories)

    capacity = _capacity_sweep(cfg, data, run)
    print("capacity sweep:")
    print(
        format_table(
            {f"{w} hidden": row for w, row in capacity.items()},
            ["train_loss", "test_loss", "train_accuracy", "test_accuracy"],
        )
    )
    search = _flipped_label_search(cfg, data, run)
    print(
        f"per-example gradient norms: {search['flipped_in_top']} of the {search['flipped']} "
        f"flipped labels are among the {search['flipped']} largest norms "
        f"(precision {search['precision']:.2f}; chance {search['chance']:.2f})"
    )
    results["flipped-label search"] = search
    for width, row in capacity.items():
        results[f"capacity {width}"] = row

    claims = [
        Claim(
            f"the ensemble of {cfg.members} is at least as accurate as its mean member",
            "test_accuracy",
            ensemble,
            float(members.mean()),
            "above",
        ),
        Claim(
            "early stopping lowers the test loss below the baseline trained to the end",
            "test_loss",
            results["early stopping"]["test_loss"],
            results["baseline"]["test_loss"],
            "below",
        ),
        Claim(
            f"random shifts of up to {cfg.max_shift} pixel lower the test loss below the "
            "baseline's",
            "test_loss",
            results[f"shifts of <= {cfg.max_shift} px"]["test_loss"],
            results["baseline"]["test_loss"],
            "below",
        ),
        Claim(
            "per-example gradient norms rank flipped labels first (precision of the top "
            "k = number flipped) far above chance (3x the flipped share)",
            "precision",
            search["precision"],
            3 * cfg.flip_fraction,
            "above",
        ),
    ]
    return run.write_summary(results, claims)


def _plot_curves(run: Run, histories) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for i, (name, history) in enumerate(histories.items()):
        epochs = np.arange(1, len(history.train_loss) + 1)
        axes[0].plot(epochs, history.train_loss.mean(1), color=f"C{i}", label=name)
        axes[1].plot(epochs, history.val_loss.mean(1), color=f"C{i}", label=name)
    axes[0].set(yscale="log", xlabel="epoch", ylabel="training loss (mean over seeds)")
    axes[1].set(xlabel="epoch", ylabel="validation loss (mean over seeds)")
    axes[1].legend(fontsize=8)
    run.savefig(fig, "curves")


if __name__ == "__main__":
    main(parse_config(Config))

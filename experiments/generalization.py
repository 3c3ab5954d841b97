"""What each generalization tool buys on a deliberately small training set of digits.

Lecture: seed 004, Lecture 12 "Generalization" (line 2500): §2 train/validation/test
discipline; §3 capacity, and training vs test error as it grows; §4 reducing overfitting:
reducing capacity (§4.1), early stopping at the validation minimum (§4.2), weight decay
(§4.3), ensembles (§4.4), data augmentation (§4.5) and stochastic regularization, dropout
(§4.6). Seed 001 on regularisation.

Every variant trains ``seeds`` x ``members`` MLPs at once, one per initialisation and
shuffling seed, as one vmapped state (:func:`jaxnets.train.train_ensemble`: one compile), on
the same ``train_size`` digits; the table shows the mean and spread over members of test
accuracy and loss. Member ``i`` of every variant starts from the same initialisation, so the
claims compare variants member for member; each of the ``seeds`` groups of ``members`` is one
repetition of a claim, and the baseline's members of a group, averaged, are that group's
ensemble. The weight-decay strength is chosen on validation. A capacity sweep trains MLPs of
growing width; and per-example gradient norms (``vmap(grad)``) of a net trained on labels with
some flipped show which training digits it finds hardest: the flipped ones come first (one
net per seed, each with its own flipped labels).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from jaxnets import create_model
from jaxnets.data import load_digits, random_shift
from jaxnets.experiment import Claim, Run, format_table, mean_over_seeds, parse_config
from jaxnets.optim import make_optimizer
from jaxnets.regularizers import make_regularizer
from jaxnets.sweep import TrainingConfig
from jaxnets.train import (
    Trainer,
    ensemble_accuracy,
    ensemble_probabilities,
    init_ensemble,
    train_ensemble,
)
from jaxnets.validation import check_batch_size, check_config
from jaxnets.viz import image_grid


@dataclasses.dataclass(frozen=True)
class Config(TrainingConfig, epochs=300, batch_size=32, learning_rate=1e-2):
    """Baseline, early stopping, weight decay, dropout, augmentation and an ensemble on digits
    (Adam at a learning rate high enough that training past the validation minimum
    overfits)."""

    train_size: int = 150
    """training digits (the small training set that makes overfitting show)"""
    val_size: int = 300
    """validation digits (the remaining ~1350 are the test set)"""
    members: int = 8
    """nets per group, each its own initialisation and shuffling; the ensemble's size"""
    hidden: int = 256
    """hidden units of the one-hidden-layer ReLU MLP"""
    weight_decays: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    """L2 strengths tried; the best on validation is reported (none: no sweep)"""
    dropout: float = 0.5
    max_shift: int = 1
    """augmentation: random shifts of up to this many pixels"""
    widths: tuple[int, ...] = (2, 8, 32, 128, 512)
    """hidden widths of the capacity sweep (none: no sweep)"""
    flip_fraction: float = 0.1
    """share of training labels flipped for the per-example gradient-norm demonstration"""

    SMOKE = dict(seeds=2, members=2, hidden=16, epochs=3, weight_decays=(), widths=())

    def __post_init__(self):
        check_config(
            self,
            zero_ok=("seed", "max_shift", "weight_decays"),
            fractions=("dropout", "flip_fraction"),
        )
        check_batch_size(self.batch_size, self.train_size)


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


@functools.cache
def _trainer(cfg: Config, variant: _Variant) -> Trainer:
    """One Trainer per variant, so that training it again (the flipped-label search, once per
    seed) reuses its compiled programs."""
    model = create_model(
        "mlp", hidden=(variant.hidden or cfg.hidden,), dropout_rate=variant.dropout
    )
    augment = (
        functools.partial(random_shift, image_shape=(8, 8), max_shift=cfg.max_shift)
        if variant.augment
        else None
    )
    return Trainer(
        model,
        "softmax_cross_entropy",
        make_optimizer("adam", cfg.learning_rate),
        regularizer=make_regularizer("l2", variant.weight_decay),
        augment=augment,
    )


def _train(cfg: Config, data, variant: _Variant, train_labels=None, members=None, seed=None):
    """Train ``members`` nets of one variant (default: ``seeds`` x ``members``), member ``i``
    from the ``i``-th key of ``seed`` (default ``cfg.seed``) whatever the variant; returns
    (trainer, states, history)."""
    members = members or cfg.seeds * cfg.members
    train, val, _ = data
    trainer = _trainer(cfg, variant)
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed if seed is None else seed), members)
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
        f"  trained {members} x [{variant}]: mean validation loss at the end "
        f"{history.val_loss[-1].mean():.3f}, lowest {history.val_loss.min(0).mean():.3f}"
    )
    return trainer, states, history


def _scores(trainer, states, split) -> dict[str, np.ndarray]:
    probabilities = np.asarray(ensemble_probabilities(trainer, states, split.x))
    picked = probabilities[:, np.arange(len(split.y)), np.asarray(split.y)]
    loss = -np.log(np.maximum(picked, 1e-12)).mean(axis=1)
    return {"accuracy": np.mean(probabilities.argmax(-1) == split.y, axis=1), "loss": loss}


def _seed_rows(trainer, states, data, seeds: int) -> list[dict[str, float]]:
    """One row per group of members (a seed): its members' mean accuracy and loss per split."""
    rows = [{} for _ in range(seeds)]
    for name, split in zip(("train", "val", "test"), data, strict=True):
        for metric, per_member in _scores(trainer, states, split).items():
            for row, group in zip(rows, np.split(per_member, seeds), strict=True):
                row[f"{name}_{metric}"] = float(group.mean())
    return rows


def _row(trainer, states, data, seeds: int = 1) -> dict[str, float]:
    """The mean over seeds of :func:`_seed_rows`, and the spread of test accuracy over nets."""
    row = mean_over_seeds(_seed_rows(trainer, states, data, seeds))
    row["test_accuracy_std"] = float(_scores(trainer, states, data[2])["accuracy"].std())
    return row


def _ensembles(trainer, states, test, seeds: int) -> list[dict[str, float]]:
    """Per group of members: the test loss and accuracy of the group's averaged prediction
    (the ensemble), and its members' mean test loss and accuracy."""
    probabilities = np.split(np.asarray(ensemble_probabilities(trainer, states, test.x)), seeds)
    y = np.asarray(test.y)
    rows = []
    for group in probabilities:
        accuracy, members = ensemble_accuracy(group, y)
        picked = group[:, np.arange(len(y)), y]  # (members, n)
        rows.append(
            {
                "test_loss": float(-np.log(np.maximum(picked.mean(0), 1e-12)).mean()),
                "test_accuracy": accuracy,
                "mean_member_test_loss": float(-np.log(np.maximum(picked, 1e-12)).mean()),
                "mean_member_test_accuracy": float(members.mean()),
            }
        )
    return rows


def _capacity_sweep(cfg: Config, data, run: Run) -> dict[int, dict[str, float]]:
    import matplotlib.pyplot as plt

    curves = {}
    for width in cfg.widths:
        trainer, states, _ = _train(cfg, data, _Variant(hidden=width), members=cfg.members)
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


def _flipped_label_search(cfg: Config, data, run: Run, seed: int) -> dict[str, float]:
    """Flip a share of the training labels (which ones: ``seed``), train one net with early
    stopping, and rank the training digits by the norm of their own loss gradient."""
    train = data[0]
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(train.y), round(cfg.flip_fraction * len(train.y)), replace=False)
    labels = np.asarray(train.y).copy()
    labels[flipped] = (labels[flipped] + rng.integers(1, 10, len(flipped))) % 10
    trainer, states, _ = _train(
        cfg, data, _Variant(early_stopping=True), train_labels=labels, members=1, seed=seed
    )
    first = jax.tree.map(lambda leaf: leaf[0], states)
    norms = np.asarray(trainer.per_example_grad_norms(first, train.x, labels))
    ranking = np.argsort(-norms)
    top = ranking[: len(flipped)]
    found = len(np.intersect1d(top, flipped))
    if seed != cfg.seed:
        return {"flipped": len(flipped), "flipped_in_top": found, "precision": found / len(flipped)}
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
    }


def main(cfg: Config) -> dict:
    cfg = cfg.sized()
    digits = load_digits()
    if cfg.train_size + cfg.val_size >= len(digits):
        raise ValueError(
            f"train_size + val_size = {cfg.train_size} + {cfg.val_size} leaves no test digits "
            f"of the {len(digits)}; keep their sum below {len(digits)}"
        )
    train, val, test = digits.split(
        (cfg.train_size, cfg.val_size, len(digits) - cfg.train_size - cfg.val_size), seed=cfg.seed
    )
    data = (train, val, test)
    print(
        f"digits: {len(train)} train / {len(val)} val / {len(test)} test; {cfg.seeds} seeds x "
        f"{cfg.members} nets per variant, trained as one vmapped ensemble"
    )
    run = Run("generalization", cfg, root=cfg.out)

    def train_variant(name: str, variant: _Variant):
        """Train all seeds of ``variant``; its per-seed rows, and the table's mean row."""
        trainer, states, histories[name] = _train(cfg, data, variant)
        run.log(
            variant=name,
            train_loss=histories[name].train_loss.mean(1).tolist(),
            val_loss=histories[name].val_loss.mean(1).tolist(),
        )
        rows = _seed_rows(trainer, states, data, cfg.seeds)
        per_seed[name] = rows
        results[name] = _row(trainer, states, data, cfg.seeds)
        return trainer, states

    results, histories, per_seed = {}, {}, {}
    trainer, baseline_states = train_variant("baseline", _Variant())
    ensembles = _ensembles(trainer, baseline_states, test, cfg.seeds)
    train_variant("early stopping", _Variant(early_stopping=True))
    results["early stopping"]["best_epoch"] = float(histories["early stopping"].best_epoch.mean())
    decay_rows = {}
    for strength in cfg.weight_decays:
        trainer, states, _ = _train(cfg, data, _Variant(weight_decay=strength))
        decay_rows[strength] = _row(trainer, states, data, cfg.seeds)
    if decay_rows:  # none tried: the sweep is left out
        best_decay = min(decay_rows, key=lambda s: decay_rows[s]["val_loss"])
        results[f"weight decay {best_decay:g}"] = decay_rows[best_decay]
    train_variant(f"dropout {cfg.dropout:g}", _Variant(dropout=cfg.dropout))
    shifts = f"shifts of <= {cfg.max_shift} px"
    train_variant(shifts, _Variant(augment=True))
    results[f"ensemble of {cfg.members}"] = mean_over_seeds(ensembles)
    print(
        format_table(
            results, ["train_loss", "val_loss", "test_loss", "test_accuracy", "test_accuracy_std"]
        )
    )
    if decay_rows:
        print("weight decay sweep (validation loss picks the strength):")
        print(
            format_table(
                {f"L2 {s:g}": row for s, row in decay_rows.items()},
                ["train_loss", "val_loss", "test_accuracy"],
            )
        )
    _plot_curves(run, histories)

    capacity = _capacity_sweep(cfg, data, run) if cfg.widths else {}
    if capacity:
        print("capacity sweep:")
        print(
            format_table(
                {f"{w} hidden": row for w, row in capacity.items()},
                ["train_loss", "test_loss", "train_accuracy", "test_accuracy"],
            )
        )
    searches = [_flipped_label_search(cfg, data, run, seed) for seed in cfg.seed_range]
    search = mean_over_seeds(searches)
    print(
        f"per-example gradient norms: {search['flipped_in_top']:.3g} of the "
        f"{search['flipped']:.3g} flipped labels are among the {search['flipped']:.3g} "
        f"largest norms (precision {search['precision']:.2f}; chance {cfg.flip_fraction:.2f}; "
        f"mean of {cfg.seeds} seeds)"
    )
    results["flipped-label search"] = {**search, "chance": cfg.flip_fraction}
    for width, row in capacity.items():
        results[f"capacity {width}"] = row

    def test_loss_reduction(variant: str) -> list[float]:
        """Per seed: the baseline's mean test loss minus ``variant``'s (same initialisations)."""
        return [
            base["test_loss"] - other["test_loss"]
            for base, other in zip(per_seed["baseline"], per_seed[variant], strict=True)
        ]

    claims = [
        Claim(
            # §4.4: for a convex loss the averaged prediction beats the average loss, and
            # "ensembles of networks often generalize quite a bit better than single networks"
            f"the ensemble of {cfg.members} has a lower test loss than its members' mean "
            "(mean member's minus ensemble's)",
            "test_loss_reduction",
            [e["mean_member_test_loss"] - e["test_loss"] for e in ensembles],
            0.0,
            "above",
            # convexity makes it positive on any machine; 0.01 nats asks for a clear gain
            margin=0.01,
        ),
        Claim(
            "early stopping lowers the test loss below the baseline trained to the end "
            "(baseline's minus early stopping's)",
            "test_loss_reduction",
            test_loss_reduction("early stopping"),
            0.0,
            "above",
            margin=0.02,
        ),
        Claim(
            f"random shifts of up to {cfg.max_shift} pixel lower the test loss below the "
            "baseline's (baseline's minus augmented)",
            "test_loss_reduction",
            test_loss_reduction(shifts),
            0.0,
            "above",
            margin=0.02,
        ),
        Claim(
            "per-example gradient norms rank flipped labels first (precision of the top "
            "k = number flipped) far above chance (3x the flipped share)",
            "precision",
            [s["precision"] for s in searches],
            3 * cfg.flip_fraction,
            "above",
            margin=0.2,
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

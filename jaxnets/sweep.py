"""What experiment scripts share besides their run directory: the base of every ``Config``
(seeds, the ``--smoke`` preset, the output root) and the loop over seeds.

A script's ``Config`` subclasses :class:`ExperimentConfig`, :class:`SeededConfig` (which
adds the first seed) or :class:`TrainingConfig` (which adds epochs, batch size and learning
rate, their defaults set as class keywords) and declares its smoke sizes once, next to its
fields::

    @dataclasses.dataclass(frozen=True)
    class Config(TrainingConfig, epochs=30):
        hidden: int = 64  # with a docstring below it, which --help shows

        SMOKE = dict(epochs=1, hidden=4)  # a class attribute, not a field

``main`` begins with ``cfg = cfg.sized()``, and ``--help`` lists the preset
(:func:`jaxnets.experiment.parse_config`). A study that is repeated over seeds is one function
``one_seed(seed) -> (rows, extra)``; :func:`sweep_seeds` runs it for every seed, logs each
seed's rows and averages them into the table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

from jaxnets.experiment import Run, mean_over_seeds
from jaxnets.nn import get_activation
from jaxnets.train import FitResult, Trainer, evaluate, fit

__all__ = [
    "ExperimentConfig",
    "SeedSweep",
    "SeededConfig",
    "TrainingConfig",
    "check_activation",
    "fit_and_test",
    "fit_from_seed",
    "seed_keys",
    "sweep_classifier",
    "sweep_seeds",
]

ConfigT = TypeVar("ConfigT", bound="ExperimentConfig")
Rows = dict[str, dict[str, float]]
"""One seed's results: variant -> metric -> value."""


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """The fields every experiment has. Subclasses set ``SMOKE``, the field values of the
    tiny run the tests use."""

    seeds: int = 3
    """independent repetitions (each its own initialisation, and data where the script says
    so); every claim is checked on each"""
    smoke: bool = False
    """tiny run for the tests: the sizes of the config's SMOKE preset (listed above)"""
    out: str = "runs"
    """root folder of run directories"""

    SMOKE = {}  # a class attribute (no annotation, so not a field); never mutated

    def sized(self: ConfigT) -> ConfigT:
        """This config as the run uses it: with the ``SMOKE`` values when ``smoke`` is set."""
        return dataclasses.replace(self, **self.SMOKE) if self.smoke else self

    def pick(self, *names: str) -> dict[str, Any]:
        """The fields ``names`` as keyword arguments: ``create_model("nice",
        **cfg.pick("hidden", "layers"))`` where the config names a model's hyperparameters
        as the model does."""
        return {name: getattr(self, name) for name in names}

    @property
    def seed_range(self) -> range:
        """The seeds of the repetitions: 0, 1, ..., seeds - 1."""
        return range(self.seeds)


@dataclasses.dataclass(frozen=True)
class SeededConfig(ExperimentConfig):
    """An experiment whose repetitions start at a chosen seed."""

    seed: int = 0
    """first seed (repetition i uses seed + i)"""

    @property
    def seed_range(self) -> range:
        """The seeds of the repetitions: seed, seed + 1, ..., seed + seeds - 1."""
        return range(self.seed, self.seed + self.seeds)


@dataclasses.dataclass(frozen=True)
class TrainingConfig(SeededConfig):
    """An experiment that trains by minibatches. A subclass sets its own defaults of these
    fields as class keywords, ``class Config(TrainingConfig, epochs=4, batch_size=32,
    learning_rate=3e-3)``, or redeclares a field whose meaning it narrows, with its own
    docstring; its description names the optimizer and schedule."""

    epochs: int = 1
    """passes over the training set"""
    batch_size: int = 32
    """examples per minibatch"""
    learning_rate: float = 1e-3
    """the optimizer's learning rate (its peak, when a schedule decays it)"""

    def __init_subclass__(cls, **defaults: Any):
        super().__init_subclass__()
        fields = {f.name: f for f in dataclasses.fields(TrainingConfig)}
        unknown = sorted(set(defaults) - set(fields))
        if unknown:
            raise TypeError(f"class keywords set defaults of {', '.join(fields)}; got {unknown}")
        # a field annotated in the subclass itself takes the new default in its old place
        annotations = cls.__dict__.get("__annotations__", {})
        for name, value in defaults.items():
            annotations[name] = fields[name].type
            setattr(cls, name, value)
        cls.__annotations__ = annotations


@dataclasses.dataclass(frozen=True)
class SeedSweep:
    """What :func:`sweep_seeds` returns: per seed, its rows and what else its study returned.

    Attributes:
      seeds: the seeds, in the order they ran.
      rows: per seed, ``{variant: {metric: value}}``.
      extras: per seed, the study's second return value (states, data, figure panels).
    """

    seeds: list[int]
    rows: list[Rows]
    extras: list[Any]

    @property
    def results(self) -> Rows:
        """The table: per variant of the first seed, the mean over seeds of each metric."""
        return {
            variant: mean_over_seeds([rows[variant] for rows in self.rows])
            for variant in self.rows[0]
        }

    def values(self, variant: str, metric: str) -> list[float]:
        """``metric`` of ``variant`` once per seed (what a :class:`Claim` checks)."""
        return [rows[variant][metric] for rows in self.rows]

    @property
    def first(self) -> Any:
        """The first seed's extra (the figures show the first seed)."""
        return self.extras[0]


def sweep_seeds(
    seeds: Iterable[int],
    one_seed: Callable[[int], tuple[Rows, Any]],
    run: Run | None = None,
) -> SeedSweep:
    """Run ``one_seed(seed) -> (rows, extra)`` for every seed, in order; with ``run``, append
    each seed's rows to its ``metrics.jsonl`` as one row ``{"seed", "<variant> <metric>": value}``.
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("sweep_seeds needs at least one seed; got none (seeds must be >= 1)")
    sweep = SeedSweep([], [], [])
    for seed in seeds:
        rows, extra = one_seed(seed)
        if run is not None:
            run.log(seed=seed, **{f"{v} {m}": x for v, row in rows.items() for m, x in row.items()})
        sweep.seeds.append(seed)
        sweep.rows.append(rows)
        sweep.extras.append(extra)
    return sweep


def fit_from_seed(
    trainer: Trainer,
    seed: int,
    train: Any,
    sample: Any,
    *,
    run: Run | None = None,
    init: Callable | None = None,
    **options: Any,
) -> FitResult:
    """Initialise ``trainer``'s state from ``PRNGKey(seed)`` on ``sample`` (a batch of inputs,
    ``(b, *input_shape)``) and :func:`~jaxnets.train.fit` it on ``train``.

    ``run``: fit appends its epochs to the run's ``metrics.jsonl``. ``init``: the function that
    builds the state (default ``trainer.init``; pass ``jax.jit(trainer.init)`` to compile it
    once). ``options``: fit's keywords (``epochs`` and ``batch_size`` are required).
    """
    state = (init or trainer.init)(jax.random.PRNGKey(seed), sample)
    metrics_path = run.metrics_path if run is not None else None
    return fit(trainer, state, train, metrics_path=metrics_path, **options)


def sweep_classifier(
    trainer: Trainer,
    splits: Any,
    seeds: Iterable[int],
    *,
    run: Run,
    label: str,
    init: Callable | None = None,
    **options: Any,
) -> SeedSweep:
    """Train a classifier from every seed on ``splits.train``, validating on ``splits.val``,
    and score it on ``splits.test`` (each split ``.x`` (n, *input_shape), ``.y`` (n,)).

    Rows: ``{label: {"test_accuracy", "val_accuracy"}}`` (validation: the last epoch's);
    extras: each seed's :class:`~jaxnets.train.FitResult`. The sample that builds the state is
    the first training example; ``init`` and ``options`` as in :func:`fit_from_seed`.
    """

    def one_seed(seed: int) -> tuple[Rows, FitResult]:
        result, test = fit_and_test(
            trainer, seed, splits, run=run, label=label, init=init, **options
        )
        row = {
            "test_accuracy": test["accuracy"],
            "val_accuracy": result.history[-1]["val_accuracy"],
        }
        return {label: row}, result

    return sweep_seeds(seeds, one_seed)


def fit_and_test(
    trainer: Trainer,
    seed: int,
    splits: Any,
    *,
    run: Run,
    label: str,
    init: Callable | None = None,
    **options: Any,
) -> tuple[FitResult, dict[str, float]]:
    """:func:`fit_from_seed` on ``splits.train`` (the first example builds the state),
    validating on ``splits.val``; returns the fit and :func:`~jaxnets.train.evaluate`'s
    ``{"loss", "accuracy"}`` on ``splits.test``. ``label`` names the progress bar."""
    result = fit_from_seed(
        trainer,
        seed,
        splits.train,
        splits.train.x[:1],
        run=run,
        init=init,
        val=splits.val,
        desc=f"{label} seed {seed}",
        **options,
    )
    return result, evaluate(trainer, result.state, splits.test)


def check_activation(name: str) -> None:
    """Refuse an unknown activation name with a ValueError (which tyro reports as a usage
    error) naming the known ones; for configs' ``__post_init__``."""
    try:
        get_activation(name)
    except KeyError as err:
        raise ValueError(err.args[0]) from None


def seed_keys(seeds: Iterable[int]) -> jax.Array:
    """``PRNGKey(seed)`` of every seed, stacked: (len(seeds), 2), the keys of an ensemble
    (:func:`jaxnets.train.init_ensemble`) whose member i is the run from the i-th seed."""
    return jnp.stack([jax.random.PRNGKey(seed) for seed in seeds])

"""jaxnets.sweep: the experiments' config base (smoke presets, seeds) and their seed loops."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from jaxnets import create_model, sweep
from jaxnets.data import load_digits
from jaxnets.experiment import Run, parse_config
from jaxnets.optim import make_optimizer
from jaxnets.train import Trainer, evaluate, fit


@dataclasses.dataclass(frozen=True)
class _Config(sweep.SeededConfig):
    """A config for the tests."""

    epochs: int = 30
    """training epochs"""
    width: int = 64

    SMOKE = dict(epochs=2, seeds=1)

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1; got {self.epochs}")


def test_sized_applies_the_smoke_preset_only_when_smoke_is_set():
    full = _Config(width=8, seed=5)
    assert full.sized() is full
    smoke = _Config(smoke=True, width=8, seed=5).sized()
    # the preset's fields change, the others keep what was asked for
    assert (smoke.epochs, smoke.seeds, smoke.width, smoke.seed) == (2, 1, 8, 5)
    assert sweep.ExperimentConfig(smoke=True).sized() == sweep.ExperimentConfig(
        smoke=True
    )  # no preset
    assert "SMOKE" not in {f.name for f in dataclasses.fields(_Config)}  # not a CLI flag


def test_pick_names_fields_as_keywords():
    assert _Config(width=8).pick("width", "epochs") == {"width": 8, "epochs": 30}


def test_seed_range_starts_at_the_first_seed():
    assert list(sweep.ExperimentConfig(seeds=3).seed_range) == [0, 1, 2]
    assert list(_Config(seeds=3, seed=7).seed_range) == [7, 8, 9]


def test_help_lists_the_smoke_preset_and_the_inherited_fields(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(_Config, ["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--smoke sets epochs=2, seeds=1" in out
    for flag in ("--seeds", "--seed", "--smoke", "--out", "--epochs", "--width"):
        assert flag in out
    assert "first seed (repetition i uses seed + i)" in out  # the base class' field doc
    assert parse_config(_Config, ["--seed", "3", "--smoke"]).sized().epochs == 2


def test_sweep_seeds_averages_per_variant_and_logs_each_seed(tmp_path):
    run = Run("sweep", {"seeds": 3}, root=tmp_path)

    def one_seed(seed):
        rows = {"a": {"loss": float(seed), "acc": 1.0 - seed / 10}, "b": {"loss": 10.0 * seed}}
        return rows, f"extra {seed}"

    swept = sweep.sweep_seeds(range(4, 7), one_seed, run)
    assert swept.seeds == [4, 5, 6] and swept.first == "extra 4"
    assert list(swept.results) == ["a", "b"]
    assert swept.results["a"] == pytest.approx({"loss": 5.0, "acc": 0.5})
    assert swept.results["b"] == pytest.approx({"loss": 50.0})
    assert swept.values("b", "loss") == [40.0, 50.0, 60.0]
    logged = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    assert logged[1] == {"seed": 5, "a loss": 5.0, "a acc": 0.5, "b loss": 50.0}
    with pytest.raises(ValueError, match="at least one seed"):
        sweep.sweep_seeds([], one_seed)


@pytest.fixture(scope="module")
def digits():
    splits = load_digits().split((0.6, 0.2, 0.2), seed=0)
    trainer = Trainer(
        create_model("softmax_regression"), "softmax_cross_entropy", make_optimizer("sgd", 0.1)
    )
    return trainer, splits


def test_fit_from_seed_is_init_from_the_seed_then_fit(digits, tmp_path):
    trainer, splits = digits
    options = {"epochs": 2, "batch_size": 64, "progress": False}
    run = Run("fit", {}, root=tmp_path)
    result = sweep.fit_from_seed(trainer, 3, splits.train, splits.train.x[:1], run=run, **options)
    state = trainer.init(jax.random.PRNGKey(3), splits.train.x[:1])
    expected = fit(trainer, state, splits.train, **options)
    for got, want in zip(
        jax.tree.leaves(result.state.params), jax.tree.leaves(expected.state.params), strict=True
    ):
        np.testing.assert_array_equal(got, want)
    assert len(run.metrics_path.read_text().splitlines()) == 2  # fit logged its 2 epochs
    # another seed starts elsewhere
    other = sweep.fit_from_seed(trainer, 4, splits.train, splits.train.x[:1], **options)
    assert not np.array_equal(
        other.state.params["dense"]["kernel"], state.params["dense"]["kernel"]
    )


def test_sweep_classifier_rows_are_each_seeds_test_and_last_val_accuracy(digits, tmp_path):
    trainer, splits = digits
    run = Run("classifier", {}, root=tmp_path)
    options = {"epochs": 2, "batch_size": 64, "progress": False}
    swept = sweep.sweep_classifier(trainer, splits, [0, 1], run=run, label="softmax", **options)
    for seed, rows, result in zip(swept.seeds, swept.rows, swept.extras, strict=True):
        again, test = sweep.fit_and_test(trainer, seed, splits, run=run, label="softmax", **options)
        assert test == evaluate(trainer, again.state, splits.test)
        assert rows["softmax"] == {
            "test_accuracy": test["accuracy"],
            "val_accuracy": result.history[-1]["val_accuracy"],
        }
    accuracies = swept.values("softmax", "test_accuracy")
    assert swept.results["softmax"]["test_accuracy"] == pytest.approx(np.mean(accuracies))
    assert accuracies[0] != accuracies[1]  # two initialisations, two outcomes


def test_seed_keys_are_each_seeds_prng_key():
    keys = sweep.seed_keys(range(2, 5))
    assert keys.shape == (3, 2)
    np.testing.assert_array_equal(keys[1], jax.random.PRNGKey(3))


def test_check_activation_names_the_unknown_one():
    sweep.check_activation("tanh")
    with pytest.raises(ValueError, match="unknown activation 'relux'"):
        sweep.check_activation("relux")


def test_training_config_takes_its_defaults_as_class_keywords(capsys):
    @dataclasses.dataclass(frozen=True)
    class Trained(sweep.TrainingConfig, epochs=4, learning_rate=3e-3):
        """Trained for the test (Adam)."""

        width: int = 8

    names = [f.name for f in dataclasses.fields(Trained)]
    assert names == ["seeds", "smoke", "out", "seed", "epochs", "batch_size", "learning_rate"] + [
        "width"
    ]
    config = Trained()
    assert (config.epochs, config.batch_size, config.learning_rate) == (4, 32, 3e-3)
    assert sweep.TrainingConfig().epochs == 1  # the base keeps its own defaults
    with pytest.raises(SystemExit):
        parse_config(Trained, ["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "passes over the training set (default: 4)" in out
    with pytest.raises(TypeError, match="got \\['epoch'\\]"):

        class Misspelt(sweep.TrainingConfig, epoch=3):
            pass

"""The pretrained models that ship with jaxnets (issue 19): each reaches its card's metric on
its card's test split with the stored float16 weights, the loader refuses unknown names, and
experiments/pretrained.py writes files that load back to the metric it records."""

import json
import platform

import jax
import numpy as np
import pytest
from test_experiments import load_experiment

import jaxnets
from jaxnets.data import load_word_corpus
from jaxnets.models.nplm import token_log_probs
from jaxnets.pretrained import (
    WEIGHTS_DIR,
    Pretrained,
    PretrainedError,
    available,
    check_rebuilds,
    load_pretrained,
    load_test_split,
)
from jaxnets.weights import load_weights

# what each shipped model must at least reach on its test split (the card records the value)
FLOORS = {
    "lenet5": ("test_accuracy", "above", 0.98),  # experiments/cnn.py's claim
    "mlp": ("test_accuracy", "above", 0.97),  # experiments/digits.py's claim
    "char_lm": ("test_bits_per_char", "below", 2.3),
    "nplm": ("test_perplexity", "below", 80.0),
}


def test_digits_lenet5_reaches_its_recorded_test_accuracy_in_one_line():
    accuracy = jaxnets.load_pretrained("lenet5").test_metric()
    card = json.loads((WEIGHTS_DIR / "lenet5.json").read_text())
    assert card["metric"]["name"] == "test_accuracy" and accuracy == card["metric"]["value"]
    assert card["metric"]["examples"] == 359  # the 20% test split of the 1797 digits


def test_the_shipped_models_are_the_four_of_the_issue_and_fit_in_10_mb():
    assert available() == sorted(FLOORS)
    assert sum(p.stat().st_size for p in WEIGHTS_DIR.iterdir()) < 10e6


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_shipped_model_reaches_its_recorded_metric_on_its_recorded_test_split(name):
    pretrained = load_pretrained(name)
    card = pretrained.card
    assert card["name"] == name
    assert card["command"] == f"python experiments/pretrained.py --models {name}"
    metric, direction, floor = FLOORS[name]
    assert card["metric"]["name"] == metric
    value = pretrained.test_metric()
    np.testing.assert_allclose(value, card["metric"]["value"], rtol=1e-6)
    assert value > floor if direction == "above" else value < floor
    # rounding to float16 moved the metric by less than 1% from the trained float32 weights'
    np.testing.assert_allclose(value, card["metric"]["float32_value"], rtol=0.01)
    _, test_y = load_test_split(card["data"])
    assert len(test_y) == card["metric"]["examples"]


def _on_the_cards_python(name: str):
    """Skip (saying why) on another Python than the one whose standard library made the
    text model's corpus: there the corpus rebuilt from the card differs."""
    made_on = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())["data"]["python_version"]
    return pytest.mark.skipif(
        platform.python_version() != made_on,
        reason=f"the {name} corpus is the standard library of Python {made_on}; its metric is "
        "checked on the shipped test split on every Python",
    )


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=_on_the_cards_python(n)) for n in ("char_lm", "nplm")]
)
def test_on_the_cards_python_its_data_spec_rebuilds_the_shipped_test_split(name):
    """The text models' metric is computed on the shipped test split (so it does not depend on
    the Python running the test); on the Python that made the card, the card's data spec
    rebuilds exactly that split."""
    card = load_pretrained(name).card
    x, y = load_test_split(card["data"])
    assert len(x) == card["metric"]["examples"] and x.dtype == np.int32
    rebuilt_x, rebuilt_y = check_rebuilds(card["data"]).test
    np.testing.assert_array_equal(rebuilt_x, x)
    np.testing.assert_array_equal(rebuilt_y, y)


@pytest.mark.parametrize("name", ["lenet5", "char_lm"])
def test_files_hold_float16_that_load_as_the_same_float32_values(name):
    stored = jax.tree.leaves(load_weights(WEIGHTS_DIR / f"{name}.weights").variables)
    loaded = jax.tree.leaves(load_pretrained(name).variables)
    assert {a.dtype for a in stored} == {np.dtype(np.float16)}
    assert {a.dtype for a in loaded} == {np.dtype(np.float32)}
    for a, b in zip(stored, loaded, strict=True):
        np.testing.assert_array_equal(a.astype(np.float32), b)


@_on_the_cards_python("nplm")
def test_nplm_perplexity_equals_the_one_token_log_probs_gives():
    model, variables, card = load_pretrained("nplm")
    corpus = load_word_corpus(**card["data"]["arguments"])
    log_probs = token_log_probs(model, variables, corpus.test, corpus.vocab.eos_id)
    np.testing.assert_allclose(np.exp(-log_probs.mean()), card["metric"]["value"], rtol=1e-5)


def test_unknown_name_lists_the_available_ones_and_the_closest():
    with pytest.raises(
        PretrainedError, match=r"'lenet'.*char_lm, lenet5, mlp, nplm; did you mean 'lenet5'"
    ):
        load_pretrained("lenet")


def test_a_corpus_with_another_vocabulary_than_the_card_is_refused():
    card = load_pretrained("char_lm").card
    data = card["data"] | {"vocab": card["data"]["vocab"][:-1]}
    with pytest.raises(PretrainedError, match="another vocabulary than the card's"):
        check_rebuilds(data)


def test_smoke_run_writes_files_that_load_back_to_the_recorded_metric(tmp_path):
    experiment = load_experiment("pretrained")
    cfg = experiment.Config(smoke=True, out=str(tmp_path), models=("mlp",))
    summary = experiment.main(cfg)
    (run,) = (tmp_path / "pretrained").iterdir()
    assert sorted(p.name for p in run.glob("mlp.*")) == ["mlp.json", "mlp.weights"]
    model, variables, card = load_pretrained("mlp", run)
    assert card["training"]["epochs"] == 1 and card["hyperparameters"]["hidden"] == [512]
    assert card["command"].startswith("python experiments/pretrained.py --models mlp --smoke")
    row = summary["results"]["mlp (test_accuracy)"]
    assert (
        row["stored_metric"]
        == card["metric"]["value"]
        == Pretrained(model, variables, card).test_metric()
    )
    assert all(claim["holds"] for claim in summary["claims"])
    with pytest.raises(PretrainedError, match=r"available ones are mlp"):
        load_pretrained("lenet5", run)


def test_the_card_command_parses_back_to_the_config_that_wrote_it():
    from jaxnets.experiment import parse_config

    experiment = load_experiment("pretrained")
    flags = ["--models", "nplm", "--seed", "3", "--nplm-epochs", "2", "--smoke"]
    cfg = parse_config(experiment.Config, flags)
    line = experiment.command(cfg, "nplm")
    assert line == "python experiments/pretrained.py --models nplm --smoke --seed 3 --nplm-epochs 2"
    assert parse_config(experiment.Config, line.split()[2:]) == cfg

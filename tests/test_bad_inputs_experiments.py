"""Bad experiment configs are refused before a run directory exists (issue 17).

Every field of the 15 experiment ``Config`` dataclasses is checked in ``__post_init__`` (tyro
prints the ValueError as a usage error); a batch size larger than the training split, which
needs the split, is refused in ``main`` before ``Run(...)``. No case starts JAX work.
"""

from pathlib import Path

import pytest
from test_experiments import load_experiment

from jaxnets.experiment import parse_config

ROOT = Path(__file__).resolve().parent.parent
NAN, INF = float("nan"), float("inf")


BAD_CONFIGS = [
    ("char_rnn", {"seed": -1}, r"seed must be >= 0; got -1"),
    ("char_rnn", {"learning_rate": NAN}, r"learning_rate must be a finite number > 0; got nan"),
    ("char_rnn", {"temperatures": (1.0, -0.5)}, r"every entry of temperatures must be >= 0"),
    ("char_rnn", {"window": 0}, r"window must be >= 1; got 0"),
    ("char_rnn", {"prompt": ""}, r"prompt must hold at least one character"),
    ("cnn", {"split_seed": -1}, r"split_seed must be >= 0"),
    ("cnn", {"resnet_widths": (8, 0, 32)}, r"every entry of resnet_widths must be >= 1"),
    ("cnn", {"learning_rate": INF}, r"learning_rate must be a finite number > 0; got inf"),
    ("cnn", {"lenet_activation": "tanhh"}, r"unknown activation 'tanhh'"),
    ("digits", {"hidden": ()}, r"hidden must hold at least one width"),
    ("digits", {"mlp_weight_decay": -1e-3}, r"mlp_weight_decay must be >= 0"),
    ("digits", {"augment_shift": -1}, r"augment_shift must be >= 0"),
    ("digits", {"epochs": 2.5}, r"epochs must be an integer >= 1; got 2\.5"),
    ("failure_modes", {"hidden": (64,)}, r"hidden must be at least 2 layers"),
    ("failure_modes", {"leaky_slope": 1.5}, r"leaky_slope must be in \(0, 1\)"),
    ("failure_modes", {"dead_bias": NAN}, r"dead_bias must be a finite number; got nan"),
    ("failure_modes", {"seed": -2}, r"seed must be >= 0"),
    ("generalization", {"batch_size": 200}, r"batch_size=200 is larger than the training split"),
    ("generalization", {"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ("generalization", {"weight_decays": (1e-3, NAN)}, r"every entry of weight_decays must be a"),
    ("generalization", {"members": 0}, r"members must be >= 1"),
    ("language_model", {"vocab_size": 2}, r"vocab_size must be >= 3 \(<eos>, <unk>"),
    ("language_model", {"margin": 1.5}, r"margin must be in \[0, 1\)"),
    ("language_model", {"contexts": (3, 0)}, r"every entry of contexts must be >= 1"),
    ("language_model", {"max_files": 0}, r"max_files must be >= 1"),
    ("linear_regression", {"n_train": 1}, r"n_train must be >= 2"),
    ("linear_regression", {"noise": -0.1}, r"noise must be >= 0"),
    ("linear_regression", {"gd_learning_rate": 0.0}, r"gd_learning_rate must be > 0"),
    ("long_term", {"cells": ("lstm", "lstn")}, r"cells must be one or more of .*lstm"),
    ("long_term", {"lengths": ()}, r"give at least one length"),
    ("long_term", {"clip_norms": (-1.0,)}, r"every entry of clip_norms must be >= 0"),
    ("long_term", {"threshold": 0.0}, r"threshold must be > 0"),
    ("nice", {"batch_size": 3000}, r"batch_size=3000 is larger than the training split \(2500"),
    ("nice", {"round_trip_tolerance": 0.0}, r"round_trip_tolerance must be > 0"),
    ("nice", {"seed": -1}, r"seed must be >= 0"),
    ("optimizers", {"batch_sizes": (8, 128)}, r"batch_sizes must include 0"),
    ("optimizers", {"tolerance": NAN}, r"tolerance must be a finite number > 0"),
    ("optimizers", {"batch_sizes": (8, -1, 0)}, r"every entry of batch_sizes must be >= 0"),
    ("pixelcnn", {"kernel": 4}, r"kernel must be odd"),
    ("pixelcnn", {"splits": (0.5, 0.2, 0.2)}, r"splits three fractions > 0 summing to 1"),
    ("pixelcnn", {"threshold": 1.0}, r"threshold must be in \[0, 1\)"),
    ("pixelcnn", {"patience": 0}, r"patience must be >= 1"),
    ("pretrained", {"models": ("resnet18",)}, r"models must name some of lenet5, mlp"),
    ("revnet", {"features": 3}, r"features must be even and >= 2"),
    ("revnet", {"depths": (8, 8)}, r"depths must hold at least two different depths"),
    ("revnet", {"train_batch_size": 0}, r"train_batch_size must be >= 1"),
    ("seq2seq_execute", {"reverse_source": ()}, r"reverse_source must list at least one"),
    ("seq2seq_execute", {"digits": 0}, r"digits must be >= 1"),
    ("seq2seq_execute", {"clip_norm": -1.0}, r"clip_norm must be > 0"),
    ("wavenet", {"batch_size": 300}, r"batch_size=300 is larger than the training split \(256"),
    ("wavenet", {"dilations": (1, 0)}, r"every entry of dilations must be >= 1"),
    ("wavenet", {"temperature": NAN}, r"temperature must be a finite number >= 0"),
    ("xor", {"widths": ()}, r"widths must hold at least one hidden width"),
    ("xor", {"activation": "tahn"}, r"unknown activation 'tahn'"),
    ("xor", {"learning_rate": 0.0}, r"learning_rate must be > 0; got 0\.0"),
]


@pytest.mark.parametrize(
    "name, fields, match",
    BAD_CONFIGS,
    ids=[f"{name}-{'-'.join(fields)}" for name, fields, _ in BAD_CONFIGS],
)
def test_bad_config_field_is_refused(name, fields, match):
    config = load_experiment(name).Config
    with pytest.raises((ValueError, TypeError), match=match):
        config(**fields)


def test_every_experiment_default_config_is_valid():
    names = sorted(p.stem for p in (ROOT / "experiments").glob("*.py"))
    assert len(names) == 16
    assert {name for name, _, _ in BAD_CONFIGS} == set(names)  # every experiment has cases
    for name in names:
        load_experiment(name).Config()  # raises if a default broke its own checks


def test_negative_seed_on_the_command_line_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(load_experiment("xor").Config, ["--seeds", "-1"])
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "seeds must be >= 1; got -1" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "name, fields, match",
    [
        ("digits", {"batch_size": 2000}, r"batch_size=2000 is larger than the training split"),
        ("failure_modes", {"batch_size": 2000}, r"batch_size=2000 is larger than the training"),
        ("optimizers", {"batch_size": 2000}, r"batch_size=2000 is larger than the training"),
        ("pixelcnn", {"batch_size": 2000}, r"batch_size=2000 is larger than the training"),
        ("revnet", {"train_batch_size": 2000}, r"train_batch_size=2000 is larger than the"),
        ("generalization", {"val_size": 1700}, r"train_size \+ val_size = 150 \+ 1700 leaves no"),
        (
            "language_model",
            {"batch_size": 10**6, "max_files": 30, "vocab_size": 50, "seeds": 1},
            r"batch_size=1000000 is larger than the training split",
        ),
    ],
)
def test_batch_larger_than_the_training_split_is_refused_before_the_run_directory(
    tmp_path, name, fields, match
):
    experiment = load_experiment(name)
    with pytest.raises(ValueError, match=match):
        experiment.main(experiment.Config(out=str(tmp_path), **fields))
    assert list(tmp_path.iterdir()) == []  # no half-written run

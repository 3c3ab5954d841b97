"""Train the small pretrained models that ship with jaxnets (issue 19) and write their weights
files and cards.

Each model is trained once, from ``seed``, by the recipe of the experiment that studies it:
LeNet-5 on 32x32 digits and the MLP on 8x8 digits (experiments/cnn.py and
experiments/digits.py: the same split, optimizer, schedule, augmentation and epochs), the
character LSTM on the standard library's source (experiments/char_rnn.py; its card scores
the first ``char_test_windows`` test windows) and the NPLM on its docstrings and comments
(experiments/language_model.py, smaller: the first files only, a smaller vocabulary). The
weights are rounded to float16 and written with :func:`jaxnets.weights.save_weights` to
``<weights_dir>/<name>.weights``, with a card ``<name>.json`` (see :mod:`jaxnets.pretrained`)
whose metric is measured on the rounded weights by :meth:`jaxnets.pretrained.Pretrained.
test_metric`, as the tests measure it. The claims: rounding to float16 moves no model's test
metric by more than 1%, and all files together stay under 10 MB.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import platform
from pathlib import Path
from typing import Any, NamedTuple

import jax

import jaxnets
from jaxnets import create_model, model_card
from jaxnets.data import random_shift
from jaxnets.experiment import Claim, Run, dump_json, format_table, parse_config
from jaxnets.optim import make_optimizer
from jaxnets.pretrained import (
    WEIGHTS_DIR,
    load_pretrained,
    load_splits,
    metric_value,
    save_test_split,
    stored_dtype,
)
from jaxnets.regularizers import make_regularizer
from jaxnets.sweep import SeededConfig, fit_from_seed
from jaxnets.train import Trainer
from jaxnets.validation import check_config
from jaxnets.weights import save_weights

MODELS = ("lenet5", "mlp", "char_lm", "nplm")


@dataclasses.dataclass(frozen=True)
class Config(SeededConfig):
    """Train the shipped pretrained models (one seed each) and write their weights and cards."""

    seeds: int = 1
    """one set of weights ships per model: must be 1"""
    models: tuple[str, ...] = MODELS
    """which models to train (lenet5, mlp, char_lm, nplm)"""
    weights_dir: str = ""
    """folder for <name>.weights and <name>.json (empty: the package's
    jaxnets/pretrained_weights; with --smoke, the run directory)"""
    split_seed: int = 0
    """seed of the digits' stratified 60/20/20 split (as experiments/digits.py and cnn.py)"""
    lenet_epochs: int = 60
    """LeNet-5 epochs (Adam 3e-3, cosine, shifts of 2 pixels: experiments/cnn.py)"""
    mlp_epochs: int = 150
    """MLP epochs (Nesterov 0.1, cosine, L2 1e-4, shifts of 1 pixel: experiments/digits.py)"""
    char_max_chars: int = 1_250_000
    """characters of stdlib source read for the char LSTM (80/10/10 split by file)"""
    char_test_windows: int = 500
    """test windows the char LSTM's card scores (the first ones: a fast test)"""
    char_window: int = 64
    """characters per training window of the char LSTM"""
    char_hidden: int = 128
    """LSTM units"""
    char_embed: int = 32
    """char LSTM embedding width"""
    char_epochs: int = 4
    """char LSTM epochs (Adam 3e-3, cosine, gradient clip 1: experiments/char_rnn.py)"""
    nplm_vocab_size: int = 1000
    """NPLM vocabulary, <eos> and <unk> included"""
    nplm_max_files: int = 100
    """the NPLM reads only the first files of the standard library"""
    nplm_embed: int = 32
    """NPLM word-representation width"""
    nplm_hidden: int = 128
    """NPLM hidden units (context K = 3, direct connection, dropout 0.15)"""
    nplm_epochs: int = 4
    """NPLM epochs (Adam 2e-3, cosine, batch 256: experiments/language_model.py)"""

    SMOKE = dict(lenet_epochs=1, mlp_epochs=1, char_max_chars=20_000, char_window=16)
    SMOKE |= dict(char_hidden=8, char_embed=4, char_epochs=1, nplm_vocab_size=60)
    SMOKE |= dict(nplm_max_files=30, nplm_embed=4, nplm_hidden=8, nplm_epochs=1)

    def __post_init__(self):
        check_config(self, zero_ok=("seed", "split_seed", "weights_dir"))
        if self.seeds != 1:
            raise ValueError(
                f"seeds must be 1 (one set of weights ships per model); got {self.seeds}"
            )
        unknown = sorted(set(self.models) - set(MODELS))
        if unknown or not self.models:
            raise ValueError(f"models must name some of {', '.join(MODELS)}; got {self.models}")


class Recipe(NamedTuple):
    """How one pretrained model is built, trained and scored.

    ``model``/``hyperparameters``: the registry builder; ``data``: a
    :func:`jaxnets.pretrained.load_splits` spec; ``metric``: one of
    :data:`jaxnets.pretrained.METRICS`; ``training``: the optimizer name, learning rate
    (cosine-decayed), epochs, batch size, L2 weight decay, gradient clip norm, and random
    image shift in pixels with the image shape it applies to."""

    model: str
    hyperparameters: dict[str, Any]
    data: dict[str, Any]
    metric: str
    training: dict[str, Any]


def recipes(cfg: Config) -> dict[str, Recipe]:
    """The recipe of every model ``cfg`` can train, by pretrained name."""
    digits = dict(split=[0.6, 0.2, 0.2], split_seed=cfg.split_seed, arguments={})
    stratified = "a stratified 60/20/20 train/val/test split drawn by split_seed"
    adam = dict(optimizer="adam", weight_decay=0.0, clip_norm=None, shift=0, image_shape=None)
    return {
        "lenet5": Recipe(
            "lenet5",
            {"activation": "tanh"},
            {"loader": "load_digits_32", **digits}
            | {"description": f"sklearn's digits resized and padded to 32x32, {stratified}"},
            "test_accuracy",
            {**adam, "learning_rate": 3e-3, "epochs": cfg.lenet_epochs, "batch_size": 32}
            | {"shift": 2},
        ),
        "mlp": Recipe(
            "mlp",
            {"hidden": (512,), "activation": "relu"},
            {"loader": "load_digits", **digits}
            | {"description": f"sklearn's 8x8 digits flattened to 64 values, {stratified}"},
            "test_accuracy",
            {**adam, "optimizer": "nesterov", "learning_rate": 0.1, "weight_decay": 1e-4}
            | {"epochs": cfg.mlp_epochs, "batch_size": 32, "shift": 1, "image_shape": (8, 8)},
        ),
        "char_lm": Recipe(
            "char_lm",
            {"embed": cfg.char_embed, "hidden": cfg.char_hidden},
            {
                "loader": "load_char_corpus",
                "arguments": {"max_chars": cfg.char_max_chars, "seed": cfg.seed},
                "window": cfg.char_window,
                "test_examples": cfg.char_test_windows,
                "description": "the Python standard library's source, split by file (drawn by "
                "seed) 80/10/10, cut into windows; the test metric is on the first test windows",
            },
            "test_bits_per_char",
            {**adam, "learning_rate": 3e-3, "epochs": cfg.char_epochs, "batch_size": 32}
            | {"clip_norm": 1.0},
        ),
        "nplm": Recipe(
            "nplm",
            {"context": 3, "embed": cfg.nplm_embed, "hidden": cfg.nplm_hidden}
            | {"direct": True, "dropout": 0.15},
            {
                "loader": "load_word_corpus",
                "arguments": {"vocab_size": cfg.nplm_vocab_size, "seed": cfg.seed}
                | {"max_files": cfg.nplm_max_files},
                "context": 3,
                "description": "the docstrings and comments of the first max_files standard "
                "library files, split by file (drawn by seed) 80/10/10, every token predicted "
                "from the 3 before it",
            },
            "test_perplexity",
            {**adam, "learning_rate": 2e-3, "epochs": cfg.nplm_epochs, "batch_size": 256},
        ),
    }


def command(cfg: Config, name: str) -> str:
    """The command line that rebuilds ``name``'s files with ``cfg``'s non-default fields."""
    words = ["python", "experiments/pretrained.py", "--models", name]
    for field in dataclasses.fields(Config):
        value = getattr(cfg, field.name)
        if field.name in ("models", "out") or value == field.default:
            continue
        flag = "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag[2:])
        else:
            words += [flag, *(map(str, value) if isinstance(value, tuple) else [str(value)])]
    return " ".join(words)


def train(cfg: Config, recipe: Recipe, splits, run: Run):
    """Train ``recipe``'s model from ``cfg.seed`` on ``splits``; returns (model, variables)."""
    t = recipe.training
    model = create_model(recipe.model, **recipe.hyperparameters)
    x_train, _ = splits.train
    steps = t["epochs"] * (len(x_train) // t["batch_size"])
    augment = (
        functools.partial(random_shift, image_shape=t["image_shape"], max_shift=t["shift"])
        if t["shift"]
        else None
    )
    trainer = Trainer(
        model,
        model_card(recipe.model).loss,
        make_optimizer(
            t["optimizer"],
            t["learning_rate"],
            schedule="cosine",
            total_steps=steps,
            clip_norm=t["clip_norm"],
        ),
        regularizer=make_regularizer("l2", t["weight_decay"]),
        augment=augment,
    )
    result = fit_from_seed(
        trainer,
        cfg.seed,
        splits.train,
        x_train[: t["batch_size"]],
        run=run,
        init=jax.jit(trainer.init),
        epochs=t["epochs"],
        batch_size=t["batch_size"],
        val=splits.val,
        desc=recipe.model,
    )
    return model, {"params": result.state.params, **result.state.model_state}


def ship(cfg: Config, name: str, recipe: Recipe, run: Run, folder: Path) -> dict[str, float]:
    """Train ``name``, write its float16 weights and card to ``folder``, and return its
    results row: the card's test metric with the stored (float16) and the trained (float32)
    weights, the parameters, and the bytes written."""
    splits = load_splits(recipe.data)
    model, variables = train(cfg, recipe, splits, run)
    x, y = splits.test
    float32 = metric_value(model, variables, x, y, recipe.metric)
    save_weights(
        folder / f"{name}.weights",
        recipe.model,
        stored_dtype(variables),
        input_shape=x.shape[1:],
        **recipe.hyperparameters,
    )
    data = dict(recipe.data)
    if splits.vocab is not None:  # the corpus depends on the Python: ship the test split
        save_test_split(folder / f"{name}.test.npz", x, y)
        data |= {
            "vocab": splits.vocab,
            "python_version": platform.python_version(),
            "test_file": f"{name}.test.npz",
        }
    parameters = sum(leaf.size for leaf in jax.tree.leaves(variables))
    card = {
        "name": name,
        "model": recipe.model,
        "hyperparameters": recipe.hyperparameters,
        "parameters": parameters,
        "weights_dtype": "float16",
        "data": data,
        "metric": {"name": recipe.metric, "split": "test", "examples": len(x)},
        "rebuild_test_split": "jaxnets.pretrained.check_rebuilds(card['data']).test",
        "training": {"seed": cfg.seed, "schedule": "cosine", **recipe.training},
        "command": command(cfg, name),
        "jaxnets_version": jaxnets.__version__,
        "date": datetime.date.today().isoformat(),
    }
    dump_json(folder / f"{name}.json", card)
    stored = load_pretrained(name, folder).test_metric()
    card["metric"] |= {"value": stored, "float32_value": float32}
    dump_json(folder / f"{name}.json", card)
    size = sum(path.stat().st_size for path in folder.glob(f"{name}.*"))
    return {"stored_metric": stored, "float32_metric": float32, "parameters": parameters} | {
        "bytes": size
    }


def main(cfg: Config) -> dict:
    cfg = cfg.sized()
    run = Run("pretrained", cfg, root=cfg.out)
    folder = Path(cfg.weights_dir or (run.dir if cfg.smoke else WEIGHTS_DIR))
    folder.mkdir(parents=True, exist_ok=True)
    every = recipes(cfg)
    # a row per model, labelled with its metric: "lenet5 (test_accuracy)"
    results = {
        f"{name} ({every[name].metric})": ship(cfg, name, every[name], run, folder)
        for name in cfg.models
    }
    changes = [abs(r["stored_metric"] / r["float32_metric"] - 1) for r in results.values()]
    total = sum(row["bytes"] for row in results.values())
    print(format_table(results, ["stored_metric", "float32_metric", "parameters", "bytes"]))
    print(f"wrote {', '.join(cfg.models)} to {folder}")
    claims = [
        Claim(
            "rounding the weights to float16 moves no model's test metric by more than 1% "
            "(metric: the stored weights' test metric / the float32 weights' - 1, in absolute "
            "value, per model)",
            "relative_change",
            changes,
            0.01,
            "below",
        ),
        Claim(
            "the weights files and cards take less than 10 MB together",
            "megabytes",
            [total / 1e6],
            10.0,
            "below",
        ),
    ]
    return run.write_summary(results, claims)


if __name__ == "__main__":
    main(parse_config(Config))

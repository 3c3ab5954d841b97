"""Small pretrained models that ship with the package (issue 19), and the test metric each
card records.

``jaxnets/pretrained_weights/`` holds, per model, ``<name>.weights`` (a
:mod:`jaxnets.weights` file whose floating arrays are float16) and ``<name>.json``, its card:
the registry model and hyperparameters, the data (``data``: the loader, its arguments and how
the split is drawn, so :func:`load_splits` rebuilds it), the metric reached on the test split
with the stored weights, the command that reproduces the files
(``python experiments/pretrained.py --models NAME``), the jaxnets version and the date::

    model, variables, card = jaxnets.load_pretrained("lenet5")
    jaxnets.load_pretrained("lenet5").test_metric()  # == card["metric"]["value"]

The stored float16 arrays are cast to float32 on loading; the recorded metric is measured on
exactly these (rounded) weights, by :func:`recompute_metric`, the function the tests call too.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import data as datasets
from jaxnets.weights import load_weights

__all__ = [
    "METRICS",
    "WEIGHTS_DIR",
    "Pretrained",
    "PretrainedError",
    "Splits",
    "available",
    "check_rebuilds",
    "load_pretrained",
    "load_splits",
    "load_test_split",
    "metric_value",
    "recompute_metric",
    "save_test_split",
    "stored_dtype",
]

WEIGHTS_DIR = Path(__file__).parent / "pretrained_weights"
METRICS = ("test_accuracy", "test_bits_per_char", "test_perplexity")
_LOADERS = ("load_digits", "load_digits_32", "load_char_corpus", "load_word_corpus")


class PretrainedError(ValueError):
    """Raised for an unknown pretrained name or a card whose data cannot be rebuilt; the
    message says what was asked for and what exists."""


class Splits(NamedTuple):
    """What :func:`load_splits` returns: ``(x, y)`` arrays per split, and the vocabulary.

    Attributes:
      train, val, test: ``(x (n, *input_shape), y (n, ...))`` NumPy arrays; ``test`` holds
        only the card's first ``test_examples`` examples when the data spec names that many.
      vocab: the tokens in id order for a text corpus (characters or words), else None.
    """

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    vocab: list[str] | None


class Pretrained(NamedTuple):
    """What :func:`load_pretrained` returns.

    Attributes:
      model: the linen Module, ``create_model(card["model"], **card["hyperparameters"])``.
      variables: ``{"params": ...}`` as float32 NumPy arrays (float16-rounded values).
      card: the weights card (the parsed ``<name>.json``).
    """

    model: nn.Module
    variables: dict[str, Any]
    card: dict[str, Any]

    def test_metric(self) -> float:
        """The card's metric recomputed on its test split (see :func:`recompute_metric`)."""
        return recompute_metric(self.model, self.variables, self.card["data"], self.card["metric"])


def available(directory: str | Path = WEIGHTS_DIR) -> list[str]:
    """Names of the pretrained models in ``directory`` (default: the shipped ones), each a
    ``<name>.weights`` with its ``<name>.json``."""
    files = Path(directory).glob("*.json")
    return sorted(p.stem for p in files if p.with_suffix(".weights").is_file())


def stored_dtype(variables: Any, dtype: Any = np.float16) -> Any:
    """``variables`` with every floating array rounded to ``dtype`` (how the files store
    them); integer arrays are kept."""
    return jax.tree.map(
        lambda a: (
            np.asarray(a).astype(dtype)
            if np.issubdtype(np.asarray(a).dtype, np.floating)
            else np.asarray(a)
        ),
        jax.device_get(variables),
    )


def load_pretrained(name: str, directory: str | Path = WEIGHTS_DIR) -> Pretrained:
    """The pretrained model ``name`` (one of :func:`available`): its Module, its variables
    (stored float16, returned as float32) and its card. ``directory``: where the files are
    (default: the package's ``pretrained_weights``)."""
    directory = Path(directory)
    card_path, weights_path = directory / f"{name}.json", directory / f"{name}.weights"
    if not (card_path.is_file() and weights_path.is_file()):
        names = available(directory)
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise PretrainedError(
            f"no pretrained model {name!r} in {str(directory)!r}: the available ones are "
            f"{', '.join(names) or 'none'}{hint} (write one with experiments/pretrained.py)"
        )
    weights = load_weights(weights_path)
    card = json.loads(card_path.read_text())
    if "test_file" in card.get("data", {}):  # shipped next to the card: resolve it here
        card["data"]["test_file"] = str(directory / card["data"]["test_file"])
    return Pretrained(weights.model(), stored_dtype(weights.variables, np.float32), card)


def save_test_split(path: str | Path, x: np.ndarray, y: np.ndarray) -> None:
    """Write a text model's test split (x (n, ...), y (n, ...) token ids) to ``path``
    (compressed ``.npz``, in the smallest unsigned integer type that holds the ids), so its
    card's metric does not depend on the Python whose standard library made the corpus."""
    dtype = np.min_scalar_type(int(max(np.max(x), np.max(y))))
    np.savez_compressed(path, x=np.asarray(x, dtype), y=np.asarray(y, dtype))


def load_test_split(data: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """A card's test split: the shipped ``data["test_file"]`` (int32 ids) where the card has
    one (the text models), else rebuilt by :func:`load_splits` (the digits)."""
    if "test_file" in data:
        with np.load(data["test_file"]) as arrays:
            return arrays["x"].astype(np.int32), arrays["y"].astype(np.int32)
    return load_splits(data).test


def _vocab_tokens(vocab: Any) -> list[str]:
    if isinstance(vocab, datasets.CharVocab):
        return [*vocab.specials, *vocab.chars]
    return list(vocab.words)


def load_splits(data: Mapping[str, Any]) -> Splits:
    """Rebuild the train/val/test arrays a card's ``data`` spec describes.

    ``data["loader"]``: a :mod:`jaxnets.data` function, called with ``data["arguments"]``:

    - ``load_digits`` / ``load_digits_32``: split by ``dataset.split(data["split"],
      seed=data["split_seed"])`` into images (n, 64) or (n, 32, 32, 1) and labels (n,);
    - ``load_char_corpus``: each split cut by ``sequence_windows(ids, data["window"])`` into
      (n, window) inputs and targets;
    - ``load_word_corpus``: each split cut by ``context_windows(ids, data["context"],
      start_id=<eos>)`` into (n, context) contexts and (n,) next words.

    ``data["test_examples"]`` (optional) keeps the first that many test examples.
    """
    loader = data.get("loader")
    if loader not in _LOADERS:
        raise PretrainedError(f"data loader {loader!r} is not one of {', '.join(_LOADERS)}")
    loaded = getattr(datasets, loader)(**data.get("arguments", {}))
    if loader in ("load_digits", "load_digits_32"):
        parts = loaded.split(tuple(data["split"]), seed=data["split_seed"])
        arrays = [(np.asarray(p.x), np.asarray(p.y)) for p in parts]
        vocab = None
    else:
        vocab = _vocab_tokens(loaded.vocab)
        if loader == "load_char_corpus":
            cut = lambda ids: datasets.sequence_windows(ids, data["window"])  # noqa: E731
        else:
            eos = loaded.vocab.eos_id
            cut = lambda ids: datasets.context_windows(ids, data["context"], start_id=eos)  # noqa: E731
        arrays = [cut(ids) for ids in (loaded.train, loaded.val, loaded.test)]
    if data.get("test_examples"):
        arrays[2] = tuple(a[: data["test_examples"]] for a in arrays[2])
    return Splits(*arrays, vocab=vocab)


def metric_value(
    model: nn.Module, variables: Any, x: np.ndarray, y: np.ndarray, metric: str, batch: int = 512
) -> float:
    """``metric`` (one of :data:`METRICS`) of ``model`` on inputs ``x`` (n, ...) and integer
    targets ``y`` (n,) or (n, T), in evaluation mode, by chunks of ``batch`` examples:
    ``test_accuracy`` is the fraction of argmax predictions equal to ``y``;
    ``test_bits_per_char`` and ``test_perplexity`` are the mean cross-entropy over all
    targets (summed in float64) over ln 2, and its exp."""
    if metric not in METRICS:
        raise PretrainedError(f"metric {metric!r} is not one of {', '.join(METRICS)}")

    @jax.jit
    def chunk(x, y):
        logits = model.apply(variables, x, train=False)
        if metric == "test_accuracy":
            return jnp.sum(jnp.argmax(logits, -1) == y)
        log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        return -jnp.take_along_axis(log_p, y[..., None], axis=-1)[..., 0].sum(axis=-1)

    total = sum(
        np.asarray(chunk(x[i : i + batch], y[i : i + batch]), np.float64).sum()
        for i in range(0, len(x), batch)
    )
    mean = total / y.size
    if metric == "test_accuracy":
        return float(mean)
    return float(mean / math.log(2.0) if metric == "test_bits_per_char" else math.exp(mean))


def recompute_metric(
    model: nn.Module, variables: Any, data: Mapping[str, Any], metric: Mapping[str, Any]
) -> float:
    """The card's ``metric["name"]`` of ``model`` on the card's test split
    (:func:`load_test_split`)."""
    x, y = load_test_split(data)
    return metric_value(model, variables, x, y, metric["name"])


def check_rebuilds(data: Mapping[str, Any]) -> Splits:
    """:func:`load_splits` of a card's ``data``, refused with a :class:`PretrainedError` naming
    the Python the card was made on when a text corpus rebuilt here has another vocabulary
    (the standard library differs between Python versions)."""
    splits = load_splits(data)
    if splits.vocab is not None and splits.vocab != data["vocab"]:
        raise PretrainedError(
            f"the {data['loader']} corpus rebuilt here has another vocabulary than the card's "
            f"(made on Python {data.get('python_version')}): the standard library differs"
        )
    return splits

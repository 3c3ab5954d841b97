"""A character-level LSTM language model of Python source, against n-gram baselines.

Lecture: seed 004, Lecture 13 "Recurrent Neural Nets" (line 2721) §4.1: an RNN language model
makes no Markov assumption, each character is a target before it is an input, and it
generates text by sampling a character and feeding it back in; modelling characters instead
of words avoids the huge vocabulary. The n-gram baselines are those of Lecture 10
"Distributed Representations" (line 1352): unigram and add-k bigram counts, and a trigram
interpolated with the lower orders, weights fitted on the validation split.

Corpus: the Python standard library's own source files (:func:`jaxnets.data.load_char_corpus`:
split by file into train/val/test, vocabulary from train). The LSTM trains on windows of the
train split; every model is scored in test bits per character, and the LSTM's samples are
printed at two temperatures.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import create_model
from jaxnets.data import load_char_corpus, sequence_windows
from jaxnets.experiment import Claim, Run, format_table, parse_config
from jaxnets.models.language import fit_interpolated, fit_ngram
from jaxnets.models.rnn import CharLM
from jaxnets.optim import make_optimizer
from jaxnets.train import Trainer, fit


@dataclasses.dataclass(frozen=True)
class Config:
    """LSTM character language model on Python standard-library source vs n-gram baselines."""

    max_chars: int = 1_250_000
    """characters read from the corpus (80% train, 10% val, 10% test)"""
    window: int = 64
    """characters per training sequence (backprop through time over the whole window)"""
    hidden: int = 128
    embed: int = 32
    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 3e-3
    """Adam's peak learning rate (cosine decay to 0)"""
    clip_norm: float = 1.0
    sample_chars: int = 300
    temperatures: tuple[float, ...] = (0.8, 1.0)
    """sampling temperatures (0 takes the most likely character)"""
    prompt: str = "def "
    seed: int = 0
    out: str = "runs"
    """root folder of run directories"""
    smoke: bool = False
    """tiny run for the tests"""


def _bits(nats: float) -> float:
    return nats / math.log(2.0)


def main(cfg: Config) -> dict:
    if cfg.smoke:
        cfg = dataclasses.replace(
            cfg, max_chars=20_000, window=16, hidden=8, embed=4, epochs=1, sample_chars=20
        )
    corpus = load_char_corpus(max_chars=cfg.max_chars, seed=cfg.seed)
    vocab_size = corpus.vocab.size
    print(
        f"Python {corpus.python_version} stdlib source: {len(corpus.train):,} train / "
        f"{len(corpus.val):,} val / {len(corpus.test):,} test characters, "
        f"{vocab_size} symbols"
    )
    run = Run("char_rnn", cfg, root=cfg.out)

    results = {}
    baselines = {
        "unigram": fit_ngram(corpus.train, vocab_size, 1),
        "bigram (add-1)": fit_ngram(corpus.train, vocab_size, 2),
        "trigram (interpolated)": fit_interpolated(corpus.train, corpus.val, vocab_size, order=3),
    }
    for name, model in baselines.items():
        results[name] = {
            "val_bits_per_char": model.bits_per_token(corpus.val),
            "test_bits_per_char": model.bits_per_token(corpus.test),
        }

    x_train, y_train = sequence_windows(corpus.train, cfg.window)
    x_val, y_val = sequence_windows(corpus.val, cfg.window)
    x_test, y_test = sequence_windows(corpus.test, cfg.window)
    model = create_model("char_lm", vocab_size=vocab_size, embed=cfg.embed, hidden=cfg.hidden)
    steps = cfg.epochs * (len(x_train) // cfg.batch_size)
    trainer = Trainer(
        model,
        "sequence_cross_entropy",
        make_optimizer(
            "adam",
            cfg.learning_rate,
            schedule="cosine",
            total_steps=steps,
            clip_norm=cfg.clip_norm,
        ),
    )
    state = trainer.init(jax.random.PRNGKey(cfg.seed), jnp.asarray(x_train[: cfg.batch_size]))
    history = fit(
        trainer,
        state,
        (x_train, y_train),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        val=(x_val, y_val),
        metrics_path=run.metrics_path,
        desc="char LSTM",
    )
    state = history.state
    # per-window mean cross-entropy (nats); windows are equally long, so this is per character
    for split, (x, y) in {"val": (x_val, y_val), "test": (x_test, y_test)}.items():
        loss = trainer.evaluate(state, jnp.asarray(x), jnp.asarray(y), batch_size=256)["loss"]
        results.setdefault("lstm", {})[f"{split}_bits_per_char"] = _bits(float(loss))
    results["lstm"]["parameters"] = sum(p.size for p in jax.tree.leaves(state.params))

    prompt = jnp.asarray(corpus.vocab.encode(cfg.prompt))[None]
    variables = {"params": state.params}
    samples = {}
    for temperature in cfg.temperatures:
        ids = model.apply(
            variables,
            jax.random.PRNGKey(cfg.seed + 1),
            prompt,
            cfg.sample_chars,
            temperature,
            method=CharLM.sample,
        )
        samples[temperature] = cfg.prompt + corpus.vocab.decode(np.asarray(ids[0]))
        print(f"--- sample at temperature {temperature} ---\n{samples[temperature]}\n")
    (run.dir / "samples.txt").write_text(
        "".join(f"--- temperature {t} ---\n{s}\n\n" for t, s in samples.items())
    )
    _plot_curve(run, history.history, results)

    print(format_table(results, ["val_bits_per_char", "test_bits_per_char", "parameters"]))
    claims = [
        Claim(
            "the LSTM beats the interpolated character trigram in test bits per character",
            "test_bits_per_char",
            results["lstm"]["test_bits_per_char"],
            results["trigram (interpolated)"]["test_bits_per_char"],
            "below",
        )
    ]
    return run.write_summary(results, claims)


def _plot_curve(run: Run, history: list[dict], results: dict) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
    steps = [h["step"] for h in history]
    ax.plot(steps, [_bits(h["val_loss"]) for h in history], "o-", label="LSTM (validation)")
    for i, name in enumerate(n for n in results if n != "lstm"):
        ax.axhline(results[name]["val_bits_per_char"], color=f"C{i + 1}", ls="--", label=name)
    ax.set(xlabel="training step", ylabel="bits per character", title="char LM, stdlib source")
    ax.legend(fontsize=8)
    run.savefig(fig, "bits_per_char")


if __name__ == "__main__":
    main(parse_config(Config))

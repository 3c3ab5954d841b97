"""A character-level LSTM language model of Python source, against n-gram baselines.

Lecture: seed 004, Lecture 13 "Recurrent Neural Nets" (line 2721) §4.1: an RNN language model
makes no Markov assumption, each character is a target before it is an input, and it
generates text by sampling a character and feeding it back in; modelling characters instead
of words avoids the huge vocabulary. The n-gram baselines are those of Lecture 10
"Distributed Representations" (line 1352): unigram and add-k bigram counts, and a trigram
interpolated with the lower orders, weights fitted on the validation split.

Corpus: the Python standard library's own source files (:func:`jaxnets.data.load_char_corpus`:
split by file into train/val/test, drawn by ``seed``; vocabulary from train). The LSTM
trains on windows of the train split, ``seeds`` times at once (one vmapped program,
:func:`jaxnets.train.train_ensemble`: each seed its own initialisation and shuffling); every
model is scored in test bits per character (the LSTM's as a mean over seeds, its claim on
every seed), and the first seed's samples are printed at two temperatures.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import create_model
from jaxnets.data import load_char_corpus, sequence_windows
from jaxnets.experiment import Claim, Run, format_table, mean_over_seeds, parse_config
from jaxnets.models.language import fit_interpolated, fit_ngram
from jaxnets.models.rnn import CharLM
from jaxnets.optim import make_optimizer
from jaxnets.sweep import TrainingConfig, seed_keys
from jaxnets.train import Trainer, init_ensemble, train_ensemble
from jaxnets.validation import check_batch_size, check_config


@dataclasses.dataclass(frozen=True)
class Config(TrainingConfig, epochs=4, batch_size=32, learning_rate=3e-3):
    """LSTM character language model on Python standard-library source vs n-gram baselines
    (Adam, learning rate decayed to 0 by a cosine)."""

    max_chars: int = 1_250_000
    """characters read from the corpus (80% train, 10% val, 10% test)"""
    window: int = 64
    """characters per training sequence (backprop through time over the whole window)"""
    hidden: int = 128
    """LSTM units"""
    embed: int = 32
    """width of a character's embedding"""
    clip_norm: float = 1.0
    """largest global norm of a step's gradient (larger ones are scaled down to it)"""
    sample_chars: int = 300
    """characters sampled after the prompt at each temperature"""
    temperatures: tuple[float, ...] = (0.8, 1.0)
    """sampling temperatures (0 takes the most likely character)"""
    prompt: str = "def "

    SMOKE = dict(max_chars=20_000, window=16, hidden=8, embed=4, epochs=1, sample_chars=20)

    def __post_init__(self):
        check_config(self, zero_ok=("sample_chars", "temperatures", "seed"))
        if not self.prompt:
            raise ValueError("prompt must hold at least one character (the samples continue it)")


def _bits(nats: float) -> float:
    return nats / math.log(2.0)


def main(cfg: Config) -> dict:
    cfg = cfg.sized()
    corpus = load_char_corpus(max_chars=cfg.max_chars, seed=cfg.seed)
    vocab_size = corpus.vocab.size
    print(
        f"Python {corpus.python_version} stdlib source: {len(corpus.train):,} train / "
        f"{len(corpus.val):,} val / {len(corpus.test):,} test characters, "
        f"{vocab_size} symbols"
    )
    check_batch_size(cfg.batch_size, (len(corpus.train) - 1) // cfg.window)  # its windows
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
    states = init_ensemble(
        trainer, seed_keys(cfg.seed_range), jnp.asarray(x_train[: cfg.batch_size])
    )
    print(f"training {cfg.seeds} char LSTMs at once ({cfg.epochs} epochs, {steps} steps)")
    states, history = train_ensemble(
        trainer,
        states,
        (x_train, y_train),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        val=(x_val, y_val),
    )
    for epoch, (train_loss, val_loss) in enumerate(
        zip(history.train_loss, history.val_loss, strict=True)
    ):
        run.log(epoch=epoch + 1, train_loss=train_loss.tolist(), val_loss=val_loss.tolist())

    # per-window mean cross-entropy (nats); windows are equally long, so this is per character
    def bits(x, y):
        evaluate = jax.vmap(lambda s: trainer.evaluate(s, x, y, batch_size=256)["loss"])
        return [_bits(loss) for loss in np.asarray(evaluate(states)).tolist()]

    lstm = [
        {"val_bits_per_char": v, "test_bits_per_char": t}
        for v, t in zip(
            bits(jnp.asarray(x_val), jnp.asarray(y_val)),
            bits(jnp.asarray(x_test), jnp.asarray(y_test)),
            strict=True,
        )
    ]
    results["lstm"] = mean_over_seeds(lstm)
    state = jax.tree.map(lambda leaf: leaf[0], states)  # the first seed's samples
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
    run.write_text(
        "samples.txt", "".join(f"--- temperature {t} ---\n{s}\n\n" for t, s in samples.items())
    )
    _plot_curve(run, history.val_loss, steps // cfg.epochs, results)

    print(format_table(results, ["val_bits_per_char", "test_bits_per_char", "parameters"]))
    claims = [
        Claim(
            "the LSTM beats the interpolated character trigram in test bits per character",
            "test_bits_per_char",
            [row["test_bits_per_char"] for row in lstm],
            results["trigram (interpolated)"]["test_bits_per_char"],
            "below",
            margin=0.1,
        )
    ]
    return run.write_summary(results, claims)


def _plot_curve(run: Run, val_loss: np.ndarray, steps_per_epoch: int, results: dict) -> None:
    """Validation bits per character after each epoch, one line per seed (val_loss: (epochs,
    seeds) in nats), against the n-grams'."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
    steps = steps_per_epoch * np.arange(1, len(val_loss) + 1)
    for seed, curve in enumerate(np.asarray(val_loss).T):
        label = "LSTM (validation)" if seed == 0 else None
        ax.plot(steps, _bits(curve), "o-", color="C0", label=label)
    for i, name in enumerate(n for n in results if n != "lstm"):
        ax.axhline(results[name]["val_bits_per_char"], color=f"C{i + 1}", ls="--", label=name)
    ax.set(xlabel="training step", ylabel="bits per character", title="char LM, stdlib source")
    ax.legend(fontsize=8)
    run.savefig(fig, "bits_per_char")


if __name__ == "__main__":
    main(parse_config(Config))

"""Learning to execute: an LSTM encoder-decoder reads a small Python program, writes its output.

Lecture: seed 004, Lecture 13 "Recurrent Neural Nets" (line 2721): §4.2 the encoder-decoder
(the encoder reads the input up to ``<EOS>``, a decoder with its own parameters generates the
output; Sutskever et al. 2014 found that reversing the source helps) and §4.3 "learning to
execute" (Zaremba and Sutskever 2015): programs with additions, subtractions, ``if``/``else``
and ``for`` loops, read and answered one character at a time (Figures 6-7).

Programs come from :func:`jaxnets.data.make_execution_task` (seeded, all distinct, split into
train/val/test, so no test program was seen in training). The decoder trains with teacher
forcing and answers by greedy decoding; the score is exact match of the whole answer on the
test programs, against always predicting the most common training answer. Both source orders
(as written, reversed) are trained, ``seeds`` times each: each seed its own initialisation,
shuffling and train/val/test split of the programs; the table shows means over seeds and the
claim holds on every seed.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import create_model
from jaxnets.data import ExecutionTask, make_execution_task, most_common_answer_accuracy
from jaxnets.experiment import Claim, Run, format_table, mean_over_seeds, parse_config
from jaxnets.models.rnn import Seq2Seq, seq2seq_inputs
from jaxnets.optim import make_optimizer
from jaxnets.sweep import TrainingConfig
from jaxnets.train import Trainer
from jaxnets.validation import check_batch_size, check_config


@dataclasses.dataclass(frozen=True)
class Config(TrainingConfig, epochs=12, batch_size=64, learning_rate=3e-3):
    """LSTM encoder-decoder on generated programs: exact match vs the most common answer
    (Adam, learning rate decayed to 0 by a cosine)."""

    programs: int = 12_000
    """distinct programs generated (80% train, 10% val, 10% test)"""
    digits: int = 2
    """digits of every constant"""
    nesting: int = 1
    """operations per program"""
    hidden: int = 128
    """LSTM units of the encoder and of the decoder"""
    embed: int = 32
    """width of a character's embedding (the encoder and the decoder have one table each)"""
    clip_norm: float = 1.0
    """largest global norm of a step's gradient (larger ones are scaled down to it)"""
    reverse_source: tuple[bool, ...] = (False, True)
    """source orders to train (True reads each program backwards)"""

    SMOKE = dict(programs=300, hidden=8, embed=4, epochs=1, batch_size=32, reverse_source=(True,))

    def __post_init__(self):
        check_config(self, zero_ok=("seed",))
        if not self.reverse_source:
            raise ValueError("reverse_source must list at least one source order (False, True)")


def teacher_forcing_arrays(task: ExecutionTask) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs and targets for teacher forcing.

    Returns ``x`` int32 (n, S + U): the source, then ``<go>`` and the target shifted right;
    ``y`` int32 (n, U): the target ids with the padding after ``<eos>`` set to -1, which
    :func:`jaxnets.losses.sequence_cross_entropy` leaves out.
    """
    targets = task.target_ids
    go = np.full((len(targets), 1), task.vocab.go_id, np.int32)
    decoder_inputs = np.concatenate([go, targets[:, :-1]], axis=1)
    x = np.asarray(seq2seq_inputs(jnp.asarray(task.source_ids), jnp.asarray(decoder_inputs)))
    y = np.where(targets == task.vocab.pad_id, -1, targets).astype(np.int32)
    return x, y


def exact_match(model: Seq2Seq, params, task: ExecutionTask) -> tuple[float, list[str]]:
    """Fraction of ``task``'s programs whose greedy answer equals the printed answer exactly,
    and the predicted answers."""
    decode = jax.jit(
        lambda p, source: model.apply(
            {"params": p},
            source,
            task.target_ids.shape[1],
            task.vocab.go_id,
            method=Seq2Seq.greedy_decode,
        )
    )
    ids = np.asarray(decode(params, jnp.asarray(task.source_ids)))
    predictions = [task.vocab.decode(row) for row in ids]
    right = sum(p == a for p, a in zip(predictions, task.answers, strict=True))
    return right / len(task), predictions


def _stack(arrays) -> jax.Array:
    return jnp.asarray(np.stack(arrays))


def main(cfg: Config) -> dict:
    cfg = cfg.sized()
    task = make_execution_task(cfg.programs, seed=cfg.seed, digits=cfg.digits, nesting=cfg.nesting)
    seeds = cfg.seed_range
    splits = [task.split((0.8, 0.1, 0.1), seed=seed) for seed in seeds]  # (train, val, test)
    vocab_size = task.vocab.size
    source_length = task.source_ids.shape[1]
    train, val, test = splits[0]
    print(
        f"{len(train)} train / {len(val)} val / {len(test)} test programs ({cfg.seeds} splits), "
        f"{source_length} source and {task.target_ids.shape[1]} answer characters at most; "
        f"for example:\n{test.programs[0]}\n-> {test.answers[0]}"
    )
    check_batch_size(cfg.batch_size, len(train))
    run = Run("seq2seq_execute", cfg, root=cfg.out)
    arrays = {
        part: [teacher_forcing_arrays(split[i]) for split in splits]
        for i, part in enumerate(("train", "val"))
    }
    x_train, y_train = (_stack(a) for a in zip(*arrays["train"], strict=True))
    x_val, y_val = (_stack(a) for a in zip(*arrays["val"], strict=True))

    baselines = [most_common_answer_accuracy(tr.answers, te.answers) for tr, _, te in splits]
    results = {"most common answer": {"test_exact_match": float(np.mean(baselines))}}
    examples, histories, matches = [], {}, {}
    for reverse in cfg.reverse_source:
        name = "lstm seq2seq" + (", reversed source" if reverse else "")
        model = create_model(
            "seq2seq",
            source_vocab=vocab_size,
            target_vocab=vocab_size,
            source_length=source_length,
            embed=cfg.embed,
            hidden=cfg.hidden,
            reverse_source=reverse,
        )
        steps = cfg.epochs * (x_train.shape[1] // cfg.batch_size)
        optimizer = make_optimizer(
            "adam", cfg.learning_rate, schedule="cosine", total_steps=steps, clip_norm=cfg.clip_norm
        )
        trainer = Trainer(model, "sequence_cross_entropy", optimizer)
        init = jax.jit(trainer.init)  # one compile; eager flax init runs op by op
        states = [init(jax.random.PRNGKey(seed), x_train[0, : cfg.batch_size]) for seed in seeds]
        # every seed trains on its own split, one after the other (a vmapped epoch over the
        # seeds hung in XLA's CPU runtime at this size: a buffer that never became ready)
        history = []
        for i in range(cfg.epochs):
            rows = []
            for s in range(cfg.seeds):
                states[s], metrics = trainer.train_epoch(
                    states[s], x_train[s], y_train[s], batch_size=cfg.batch_size
                )
                scores = trainer.evaluate(states[s], x_val[s], y_val[s], batch_size=x_val.shape[1])
                rows.append((float(np.mean(metrics["loss"])), jax.device_get(scores)))
            history.append(
                {
                    "epoch": i + 1,
                    "train_loss": [loss for loss, _ in rows],
                    "val_loss": [float(scores["loss"]) for _, scores in rows],
                    "val_accuracy": [float(scores["accuracy"]) for _, scores in rows],
                }
            )
            run.log(variant=name, **history[-1])
            accuracies = ", ".join(f"{a:.3f}" for a in history[-1]["val_accuracy"])
            print(f"{name}, epoch {i + 1}: validation accuracy per character {accuracies}")
        histories[name] = history
        rows = []
        for s, (_, _, test_s) in enumerate(splits):
            params = states[s].params
            accuracy, predictions = exact_match(model, params, test_s)
            rows.append(
                {"test_exact_match": accuracy, "val_char_accuracy": history[-1]["val_accuracy"][s]}
            )
            if s == 0:
                examples = [
                    f"{p!r:>40} -> {pred!r} (answer {a!r})"
                    for p, pred, a in zip(
                        test_s.programs[:8], predictions, test_s.answers, strict=False
                    )
                ]
        matches[name] = [row["test_exact_match"] for row in rows]
        results[name] = mean_over_seeds(rows)
    print("greedy answers of the last model (first seed) on the first test programs:")
    print("\n".join(examples))
    print(format_table(results, ["test_exact_match", "val_char_accuracy"]))
    _plot(run, histories, results)
    best = np.max(list(matches.values()), axis=0)  # per seed, over the source orders
    claims = [
        Claim(
            "the encoder-decoder beats always predicting the most common answer (exact match, "
            "best source order minus the most common answer's, per split)",
            "exact_match_over_baseline",
            best - np.asarray(baselines),
            0.0,
            "above",
            margin=0.1,
        )
    ]
    return run.write_summary(results, claims)


def _plot(run: Run, histories: dict, results: dict) -> None:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    for name, history in histories.items():
        epochs = [h["epoch"] for h in history]
        left.plot(epochs, [np.mean(h["val_accuracy"]) for h in history], "o-", label=name)
    left.legend(fontsize=8)
    left.set(xlabel="epoch", ylabel="validation accuracy per answer character (mean)")
    names = list(results)
    right.barh(names, [results[n]["test_exact_match"] for n in names], color="C0")
    right.set(xlabel="test exact match (whole answer)", xlim=(0, 1))
    fig.suptitle("learning to execute: LSTM encoder-decoder")
    run.savefig(fig, "execute_accuracy")


if __name__ == "__main__":
    main(parse_config(Config))

"""A tiny early-stopped run for tests/test_checkpoint_faults.py, and its subprocess side that
dies by SIGKILL (kill -9: no exception handler, no ``finally``, no flush) at a chosen epoch.

    python tests/checkpoint_fault_worker.py callback DIR METRICS EPOCH
        # killed from a callback, after EPOCH's metrics line and before its checkpoint
    python tests/checkpoint_fault_worker.py save DIR METRICS EPOCH
        # killed while Orbax writes EPOCH's first checkpoint (the best one if EPOCH is best)
"""

from __future__ import annotations

import os
import signal
import sys

import flax.linen as nn
import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxnets.optim import make_optimizer
from jaxnets.train import Callback, EarlyStopping, Trainer, fit

BATCH, EPOCHS, PATIENCE = 8, 60, 3


class TinyNet(nn.Module):
    """5 -> 16 (tanh, dropout) -> 3: small enough to overfit 16 examples in a few epochs."""

    width: int = 16

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.tanh(nn.Dense(self.width)(x))
        h = nn.Dropout(0.1, deterministic=not train)(h)
        return nn.Dense(3)(h)


def data(n: int = 64, seed: int = 0):
    """(x, y): n examples of 5 normal features, 3 classes; the first 16 train, the rest val."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 1).astype(np.int32)
    return x, y


def trainer(width: int = 16) -> Trainer:
    return Trainer(TinyNet(width), "softmax_cross_entropy", make_optimizer("adam", 0.05))


def run(tr: Trainer, checkpoint_dir, metrics_path, callbacks=(), **kwargs):
    """fit under EarlyStopping(val_loss, patience 3) on 16 examples: ``(result, stopper)``."""
    x, y = data()
    stopper = EarlyStopping("val_loss", patience=PATIENCE)
    state = tr.init(jax.random.PRNGKey(0), x[:1])
    result = fit(
        tr,
        state,
        (x[:16], y[:16]),
        val=(x[16:], y[16:]),
        epochs=EPOCHS,
        batch_size=BATCH,
        callbacks=[stopper, *callbacks],
        checkpoint_dir=checkpoint_dir,
        metrics_path=metrics_path,
        progress=False,
        **kwargs,
    )
    return result, stopper


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAt(Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, fit, logs):
        if logs["epoch"] == self.epoch:
            _kill()


def main(mode: str, directory: str, metrics: str, epoch: int) -> None:
    callbacks = []
    if mode == "callback":
        callbacks.append(KillAt(epoch))
    else:  # the first save of the epoch's step: Orbax has started writing, nothing is final
        save = ocp.CheckpointManager.save

        def save_then_die(self, step, *args, **kwargs):
            started = save(self, step, *args, **kwargs)
            if step == epoch * (16 // BATCH):
                _kill()
            return started

        ocp.CheckpointManager.save = save_then_die
    run(trainer(), directory, metrics, callbacks)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))

"""Callbacks that watch :func:`jaxnets.train.fit`: progress bar, JSONL metrics, early stopping.

Lecture: seed 004 §12 "Generalization" (line 2500) and seed 000 (early stopping: stop when
the validation error stops improving and keep the weights of the best epoch).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jax

__all__ = ["Callback", "ProgressBar", "JSONLLogger", "EarlyStopping"]


class Callback:
    """Hooks called by ``fit``. ``on_epoch_end`` returns True to stop training.

    ``logs`` is the epoch's record: ``epoch``, ``step``, ``train_loss`` (and
    ``train_accuracy``), ``val_*`` when validation data is given, ``steps_per_s``.
    """

    def on_fit_start(self, fit: Any) -> None:
        pass

    def on_epoch_end(self, fit: Any, logs: dict[str, float]) -> bool | None:
        return None

    def on_fit_end(self, fit: Any) -> None:
        pass


class ProgressBar(Callback):
    """A tqdm bar over epochs showing loss, the monitored metric and steps/s."""

    def __init__(self, desc: str = "train", leave: bool = True):
        self.desc, self.leave, self._bar = desc, leave, None

    def on_fit_start(self, fit):
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=fit.epochs,
            initial=fit.start_epoch,
            desc=self.desc,
            unit="epoch",
            leave=self.leave,
            dynamic_ncols=True,
            mininterval=0.5,
        )

    def on_epoch_end(self, fit, logs):
        shown = {
            k: logs[k]
            for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
            if k in logs
        }
        self._bar.set_postfix(
            {**{k: f"{v:.4f}" for k, v in shown.items()}, "steps/s": f"{logs['steps_per_s']:.0f}"},
            refresh=False,
        )
        self._bar.update(1)

    def on_fit_end(self, fit):
        self._bar.close()


class JSONLLogger(Callback):
    """Appends each epoch's logs (plus ``extra`` fields, e.g. the variant) to a JSONL file."""

    def __init__(self, path: str | Path, **extra: Any):
        self.path, self.extra = Path(path), extra

    def on_epoch_end(self, fit, logs):
        with self.path.open("a") as f:
            f.write(json.dumps({**self.extra, **logs}) + "\n")


class EarlyStopping(Callback):
    """Stops when ``monitor`` has not improved for ``patience`` epochs; restores the best state.

    Attributes after fit: ``best_epoch``, ``best_value``, ``stopped_epoch`` (None if not stopped).
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        patience: int = 5,
        mode: str | None = None,
        min_delta: float = 0.0,
        restore_best: bool = True,
    ):
        if mode is None:
            mode = "max" if "accuracy" in monitor else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max'; got {mode!r}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1; got {patience}")
        self.monitor, self.patience, self.mode = monitor, patience, mode
        self.min_delta, self.restore_best = min_delta, restore_best

    def on_fit_start(self, fit):
        self.best_value = math.inf if self.mode == "min" else -math.inf
        self.best_epoch, self.stopped_epoch, self._best_state, self._wait = None, None, None, 0

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best_value - self.min_delta
        return value > self.best_value + self.min_delta

    def on_epoch_end(self, fit, logs):
        if self.monitor not in logs:
            raise KeyError(
                f"EarlyStopping monitors {self.monitor!r} but the epoch logs have "
                f"{sorted(logs)}; pass validation data to fit() to get val_* metrics"
            )
        value = logs[self.monitor]
        if self._improved(value):
            self.best_value, self.best_epoch, self._wait = value, logs["epoch"], 0
            if self.restore_best:
                # A host copy: the device state is donated to the next epoch's step.
                self._best_state = jax.device_get(fit.state)
            return False
        self._wait += 1
        if self._wait >= self.patience:
            self.stopped_epoch = logs["epoch"]
            return True
        return False

    def on_fit_end(self, fit):
        if self.restore_best and self._best_state is not None:
            fit.state = jax.device_put(self._best_state)

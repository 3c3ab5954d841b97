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

from jaxnets import distributed

__all__ = ["Callback", "EarlyStopping", "JSONLLogger", "ProgressBar"]


class Callback:
    """Hooks called by ``fit``. ``on_epoch_end`` returns True to stop training.

    ``logs`` is the epoch's record: ``epoch``, ``step``, ``train_loss`` (and
    ``train_accuracy``), ``val_*`` when validation data is given, ``steps_per_s``.

    A callback whose decisions depend on earlier epochs returns that memory from
    :meth:`state_dict`; ``fit`` saves it with each checkpoint and, when it resumes, hands it
    back to :meth:`load_state_dict` right after ``on_fit_start``, so a resumed run decides
    exactly as the uninterrupted one would have.
    """

    def state_dict(self) -> dict[str, Any]:
        """This callback's memory of past epochs as a JSON-serialisable dict; ``{}`` (the
        default) for a callback without any."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back the memory :meth:`state_dict` returned (called after ``on_fit_start``)."""

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
    """Appends each epoch's logs (plus ``extra`` fields, e.g. the variant) to a JSONL file.

    Its state is the file's length after its last line: a resumed run cuts the file back to
    it, dropping the lines of epochs after the restored checkpoint, which it logs again.
    """

    def __init__(self, path: str | Path, **extra: Any):
        self.path, self.extra = Path(path), extra
        self._bytes = None

    def _length(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def on_fit_start(self, fit):
        self._bytes = self._length()

    def state_dict(self):
        return {"path": str(self.path), "bytes": self._bytes}

    def load_state_dict(self, state):
        if self._length() > state["bytes"]:
            with self.path.open("r+b") as f:
                f.truncate(state["bytes"])
        self._bytes = self._length()

    def on_epoch_end(self, fit, logs):
        with self.path.open("a") as f:
            f.write(json.dumps({**self.extra, **logs}) + "\n")
        self._bytes = self._length()


class EarlyStopping(Callback):
    """Stops when ``monitor`` has not improved for ``patience`` epochs; restores the best state.

    Attributes after fit: ``best_epoch``, ``best_value``, ``stopped_epoch`` (None if not stopped).
    With ``restore_best`` the best epoch's state is kept as ``FitResult.best_state`` (and with
    a checkpoint_dir on disk), and becomes ``FitResult.state`` when fit ends.
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
        self.best_epoch, self.stopped_epoch, self._wait = None, None, 0

    def state_dict(self):
        return {
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "wait": self._wait,
        }

    def load_state_dict(self, state):
        self.best_value, self.best_epoch = float(state["best_value"]), state["best_epoch"]
        self.stopped_epoch, self._wait = state["stopped_epoch"], state["wait"]

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
                fit.best_epoch, fit.best_state = logs["epoch"], distributed.to_host(fit.state)
            return False
        self._wait += 1
        if self._wait >= self.patience:
            self.stopped_epoch = logs["epoch"]
            return True
        return False

    def on_fit_end(self, fit):
        if self.restore_best and fit.best_state is not None:
            fit.state = jax.device_put(fit.best_state)

"""``fit`` and ``evaluate``: the training loop around the compiled epoch.

Lectures: seed 004 §7 "Optimization" (line 1841: epochs of minibatch SGD, learning curves)
and §12 "Generalization" (line 2500: validation set, early stopping). One call of the
compiled :meth:`Trainer.train_epoch` runs a whole epoch; Python only runs between epochs.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import distributed
from jaxnets.checkpoint import (
    Checkpointer,
    ForeignCheckpointError,
    fingerprint_differences,
    run_fingerprint,
)
from jaxnets.train.callbacks import Callback, JSONLLogger, ProgressBar
from jaxnets.train.state import TrainState
from jaxnets.train.step import Trainer

__all__ = ["FitResult", "NonFiniteLossError", "evaluate", "fit"]

# What fit does at the first NaN/inf loss: raise NonFiniteLossError, or end training after
# that epoch and report the step in FitResult.non_finite_step.
ON_NON_FINITE = ("raise", "stop")
# Whether fit resumes a checkpoint_dir whose run fingerprint differs: "auto" refuses it.
RESUME = ("auto", "force")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss; the message names the step and the last good checkpoint."""


@dataclasses.dataclass
class FitResult:
    """What ``fit`` returns and callbacks see while it runs.

    Attributes:
      state: the final TrainState (the best one if EarlyStopping restored it).
      history: one logs dict per epoch run in this call.
      epochs: the number of epochs asked for; start_epoch: the epoch this call began at
        (> 0 when it resumed from a checkpoint).
      non_finite_step: with ``on_non_finite="stop"``, the 1-based global step whose loss was
        the first NaN/inf (training ended after its epoch, whose logs are the last in
        ``history``), or the epoch's last step when every loss was finite but the state to
        be checkpointed was not; None when all were finite.
      best_epoch, best_state: the best epoch so far and a host copy of its state, kept by a
        callback such as ``EarlyStopping(restore_best=True)`` (None otherwise); with a
        checkpoint_dir it is also saved under ``checkpoint_dir/best``.
    """

    state: TrainState
    epochs: int
    start_epoch: int = 0
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    stopped_early: bool = False
    non_finite_step: int | None = None
    best_epoch: int | None = None
    best_state: TrainState | None = None


def _arrays(data: Any, name: str, trainer: Trainer) -> tuple[Any, Any]:
    """(x, y) of ``data``: on the device, or on the host for a Trainer with a mesh (which
    sends each epoch's minibatches split over the mesh)."""
    x, y = (data.x, data.y) if hasattr(data, "x") else data
    if len(x) == 0:
        raise ValueError(f"{name} data is empty (0 examples); fit needs at least one batch")
    if len(x) != len(y):
        raise ValueError(f"{name} data has {len(x)} inputs but {len(y)} targets")
    if trainer.mesh is not None:
        return np.asarray(x), np.asarray(y)
    return jnp.asarray(x), jnp.asarray(y)  # device arrays pass through without a copy


def evaluate(
    trainer: Trainer, state: TrainState, data: Any, *, batch_size: int = 1024, prefix: str = ""
) -> dict[str, float]:
    """Mean loss (and accuracy for classifiers) of ``state`` on ``data`` ((x, y) or a dataset
    with ``.x``/``.y``), in evaluation mode; keys get ``prefix`` (e.g. ``"test_"``)."""
    x, y = _arrays(data, "evaluation", trainer)
    metrics = trainer.evaluate(state, x, y, batch_size=min(batch_size, len(x)))
    return {prefix + k: float(v) for k, v in distributed.to_host(metrics).items()}


def fit(
    trainer: Trainer,
    state: TrainState,
    train: Any,
    *,
    epochs: int,
    batch_size: int,
    val: Any = None,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 1,
    metrics_path: str | Path | None = None,
    progress: bool = True,
    desc: str = "train",
    on_non_finite: str = "raise",
    resume: str = "auto",
    fingerprint: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``state`` for ``epochs`` epochs of shuffled minibatches; each epoch is one
    compiled ``lax.scan`` over ``len(train) // batch_size`` steps.

    Args:
      train, val: ``(x, y)`` arrays or datasets with ``.x`` (n, *input_shape) and ``.y`` (n, ...).
      callbacks: e.g. :class:`EarlyStopping`; a tqdm bar is added when ``progress``.
      checkpoint_dir: save a verified Orbax checkpoint (see :mod:`jaxnets.checkpoint`) every
        ``checkpoint_every`` epochs and at the run's last epoch, with the callbacks' state
        (:meth:`Callback.state_dict`) and the run's fingerprint. If the directory already
        holds one, training resumes from the newest good checkpoint (a corrupt newer one is
        warned about and renamed ``<step>.corrupt``) and continues exactly as the
        uninterrupted run would have: same shuffles, dropout keys, early-stopping decisions
        and best state (kept on disk under ``checkpoint_dir/best``). A run that had finished
        (stopped early, or all ``epochs`` done) returns its result without training or
        writing anything.
      metrics_path: append each epoch's logs to this JSONL file. With a checkpoint_dir, a
        resumed run first cuts the file back to its length at the restored checkpoint (or,
        with none yet, to its length when this run first started), so each epoch is logged
        exactly once whatever crashed when.
      on_non_finite: at the first NaN/inf step loss, ``"raise"`` NonFiniteLossError, or
        ``"stop"``: finish that epoch's logs and callbacks, then return with
        ``FitResult.non_finite_step`` set (e.g. to study a diverging learning rate). Either
        way nothing after the last good checkpoint is saved, and a checkpoint is only
        written when the parameters, optimizer state and model state are all finite.
      resume: ``"auto"``: resume only a checkpoint of the same run (same
        :func:`~jaxnets.checkpoint.run_fingerprint`), refusing another run's directory
        with ForeignCheckpointError; ``"force"``: resume it anyway, adopting it as this run.
      fingerprint: extra JSON fields identifying the run beyond what the trainer and data
        tell (e.g. ``{"optimizer": "adam", "learning_rate": 1e-3}``).
    Raises:
      NonFiniteLossError: with ``on_non_finite="raise"``, a step's loss (or the state about
        to be saved) was NaN/inf; the message names the first such step.
      ForeignCheckpointError: ``checkpoint_dir`` holds another run; nothing is written.
      CorruptCheckpointError: ``checkpoint_dir`` holds checkpoints but none verifies.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1; got {epochs}")
    if on_non_finite not in ON_NON_FINITE:
        raise ValueError(
            f"on_non_finite must be 'raise' (NonFiniteLossError at the first NaN/inf loss) or "
            f"'stop' (end after that epoch, FitResult.non_finite_step names the step); got "
            f"{on_non_finite!r}"
        )
    if resume not in RESUME:
        raise ValueError(
            f"resume must be 'auto' (refuse another run's checkpoint_dir) or 'force' (resume "
            f"it anyway); got {resume!r}"
        )
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int):
        raise TypeError(f"checkpoint_every must be an int >= 1; got {checkpoint_every!r}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be an int >= 1 (epochs); got {checkpoint_every}")
    x, y = _arrays(train, "training", trainer)
    trainer.check_batch_size(batch_size)
    trainer.check_data(x, y, state=state, batch_size=batch_size, train=True)
    val_arrays = _arrays(val, "validation", trainer) if val is not None else None
    if val_arrays is not None:  # named before training starts, not after the first epoch
        trainer.check_data(*val_arrays, state=state, name="validation")
    steps_per_epoch = len(x) // batch_size

    state = trainer.place(state)  # restored below onto the same shardings
    run = FitResult(state=state, epochs=epochs)
    all_callbacks = list(callbacks)
    main_process = distributed.is_main_process()  # the others train silently
    logger = JSONLLogger(metrics_path) if metrics_path is not None and main_process else None
    ckpt, finished = None, False
    if checkpoint_dir is not None:
        ckpt = _RunCheckpoints(
            checkpoint_dir, trainer, state, (x, y), batch_size, callbacks, fingerprint
        )
        try:
            finished = ckpt.resume(run, force=resume == "force")
        except BaseException:
            ckpt.close()
            raise
    if progress and main_process:
        all_callbacks.insert(0, ProgressBar(desc))
    if logger is not None:
        all_callbacks.append(logger)
    try:
        for cb in all_callbacks:
            cb.on_fit_start(run)
        if ckpt is not None:
            ckpt.load_callback_states(run, logger)
        for epoch in range(run.start_epoch, run.start_epoch if finished else epochs):
            first_step = int(run.state.step)
            t0 = time.perf_counter()
            run.state, step_metrics = trainer.train_epoch(run.state, x, y, batch_size=batch_size)
            step_metrics = distributed.to_host(step_metrics)  # one transfer; numpy from here on
            step_losses = step_metrics["loss"]
            seconds = time.perf_counter() - t0
            run.non_finite_step = _first_non_finite_step(
                step_losses, first_step, epoch, ckpt, raise_error=on_non_finite == "raise"
            )
            logs = {"epoch": epoch + 1, "step": int(run.state.step)}
            logs.update({f"train_{k}": float(np.mean(v)) for k, v in step_metrics.items()})
            if val_arrays is not None:
                logs.update(evaluate(trainer, run.state, val_arrays, prefix="val_"))
            logs["steps_per_s"] = steps_per_epoch / seconds
            logs["seconds"] = seconds
            run.history.append(logs)
            if any([bool(cb.on_epoch_end(run, logs)) for cb in all_callbacks]):
                run.stopped_early = True
            last = run.stopped_early or epoch + 1 == epochs
            if run.non_finite_step is None and ckpt is not None:
                if last or (epoch + 1) % checkpoint_every == 0:
                    run.non_finite_step = _non_finite_state_step(
                        run.state, first_step, epoch, ckpt, raise_error=on_non_finite == "raise"
                    )
                    if run.non_finite_step is None:
                        ckpt.save(run, epoch + 1, logger)
            if run.stopped_early or run.non_finite_step is not None:
                break
    finally:
        for cb in all_callbacks:
            cb.on_fit_end(run)
        if ckpt is not None:
            ckpt.close()
    run.state = trainer.place(run.state)  # a restored best state goes back onto the mesh
    return run


class _RunCheckpoints:
    """The checkpoints of one fit: the latest ones in ``directory``, the best epoch's state in
    ``directory/best``, each with the run's fingerprint, epoch and callback states in its meta.

    Callbacks with state (overriding :meth:`Callback.state_dict`) are saved in order, with
    their class names in the fingerprint; fit's own metrics logger separately (it exists on
    the main process only)."""

    def __init__(self, directory, trainer, state, data, batch_size, callbacks, extra):
        self.latest = Checkpointer(directory)
        self.directory = self.latest.directory
        self.stateful = [cb for cb in callbacks if _has_state(cb)]
        self.fingerprint = run_fingerprint(trainer, state.params, *data, batch_size, extra)
        self.fingerprint["callbacks"] = [type(cb).__name__ for cb in self.stateful]
        self.best: Checkpointer | None = None  # opened at the first best save or best restore
        self.saved_best_epoch: int | None = None
        self.meta: dict[str, Any] = {}

    def _best(self) -> Checkpointer:
        if self.best is None:
            # two: a crash between saving a new best and the latest checkpoint that names it
            # leaves the previous best, which that latest checkpoint names, on disk
            self.best = Checkpointer(self.directory / "best", max_to_keep=2)
        return self.best

    def _check_fingerprint(self, step: int, meta: dict[str, Any]) -> None:
        differences = fingerprint_differences(meta.get("fingerprint", {}), self.fingerprint)
        if differences:
            raise ForeignCheckpointError(
                f"checkpoint step {step} in {self.directory} was written by another run; "
                "its fingerprint differs in:\n  " + "\n  ".join(differences) + "\nUse a fresh "
                "checkpoint_dir for this run, or fit(..., resume='force') to resume that "
                "checkpoint anyway."
            )

    def resume(self, run: FitResult, *, force: bool) -> bool:
        """Restore the newest good checkpoint into ``run`` (state, start_epoch, best state);
        returns whether that run had finished. Corrupt newer steps are set aside. Another
        run's checkpoint raises ForeignCheckpointError, unless ``force``."""
        check = None if force else self._check_fingerprint
        found = self.latest.restore_latest_good(run.state, check)
        if found is None:
            return False
        step, run.state, self.meta = found
        for newer in [s for s in self.latest.steps() if s > step]:
            self.latest.set_aside(newer, "corrupt")
        run.start_epoch = int(self.meta["epoch"])
        best = self.meta.get("best")
        if best is not None:
            self.saved_best_epoch = run.best_epoch = int(best["epoch"])
            best_state, _ = self._best().restore(run.state, int(best["step"]))
            run.best_state = distributed.to_host(best_state)
            for stale in [s for s in self._best().steps() if s > int(best["step"])]:
                self._best().set_aside(stale, "stale")  # of an attempt that crashed after it
        run.stopped_early = bool(self.meta.get("stopped"))
        return run.stopped_early or run.start_epoch >= run.epochs

    def load_callback_states(self, run: FitResult, logger: JSONLLogger | None) -> None:
        """Give the callbacks (after ``on_fit_start``) the states of the restored checkpoint.
        Before the first checkpoint, the metrics file is cut back to its length when this run
        first started, kept in ``directory/metrics_start.json``."""
        if not self.meta:
            if logger is not None:
                self._metrics_start(logger)
            return
        for cb, (name, cb_state) in zip(self.stateful, self.meta["callbacks"], strict=False):
            if type(cb).__name__ == name:  # differs only under resume="force"
                cb.load_state_dict(cb_state)
        if logger is not None and self.meta.get("metrics") is not None:
            logger.load_state_dict(self.meta["metrics"])

    def _metrics_start(self, logger: JSONLLogger) -> None:
        """A run that died before its first checkpoint logged epochs it will log again: cut the
        metrics file back to where that attempt of the same run found it, or note where it
        is now for such a restart."""
        marker = self.directory / "metrics_start.json"
        start = {"fingerprint": self.fingerprint, **logger.state_dict()}
        earlier = json.loads(marker.read_text()) if marker.exists() else {}
        same_run = all(earlier.get(k) == start[k] for k in ("fingerprint", "path"))
        if same_run:
            logger.load_state_dict(earlier)
        else:
            marker.write_text(json.dumps(start))

    def save(self, run: FitResult, epoch: int, logger: JSONLLogger | None) -> None:
        """Checkpoint the end of ``epoch`` (1-based): the best state first if it changed,
        then the latest state whose meta names it."""
        if run.best_epoch is not None and run.best_epoch != self.saved_best_epoch:
            self._best().save(int(run.best_state.step), run.best_state, {"epoch": run.best_epoch})
            self.saved_best_epoch = run.best_epoch
        best = None
        if run.best_epoch is not None:
            best = {"epoch": run.best_epoch, "step": int(run.best_state.step)}
        meta = {
            "epoch": epoch,
            "stopped": run.stopped_early,
            "fingerprint": self.fingerprint,
            "callbacks": [[type(cb).__name__, cb.state_dict()] for cb in self.stateful],
            "metrics": logger.state_dict() if logger is not None else None,
            "best": best,
        }
        self.latest.save(int(run.state.step), run.state, meta)

    def kept_step(self) -> int | None:
        return self.latest.latest_step()

    def close(self) -> None:
        self.latest.close()
        if self.best is not None:
            self.best.close()


def _has_state(cb: Any) -> bool:
    """Whether ``cb`` overrides :meth:`Callback.state_dict` (duck-typed callbacks need not)."""
    return getattr(type(cb), "state_dict", Callback.state_dict) is not Callback.state_dict


def _first_non_finite_step(
    step_losses: np.ndarray,
    first_step: int,
    epoch: int,
    ckpt: _RunCheckpoints | None,
    *,
    raise_error: bool,
) -> int | None:
    """The 1-based global step of the epoch's first NaN/inf loss, None if all are finite.

    step_losses: (steps,) of the 0-based ``epoch`` whose steps follow step ``first_step``.
    With ``raise_error``, a non-finite loss raises NonFiniteLossError naming the step and the
    last good checkpoint instead."""
    bad = np.flatnonzero(~np.isfinite(step_losses))
    if bad.size == 0:
        return None
    step = first_step + int(bad[0]) + 1
    if raise_error:
        _raise_non_finite(
            f"loss became {step_losses[bad[0]]} at step {step} (epoch {epoch + 1})", ckpt
        )
    return step


@jax.jit
def _finite_flags(leaves: list[jax.Array]) -> jax.Array:
    """(len(leaves),) bool: whether each array holds only finite values."""
    return jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves])


def _non_finite_state_step(
    state: TrainState, first_step: int, epoch: int, ckpt: _RunCheckpoints, *, raise_error: bool
) -> int | None:
    """None if the parameters, optimizer state and model state of ``state`` (the end of the
    0-based ``epoch``, whose steps follow ``first_step``) are finite. Otherwise the epoch's
    last step (the state went bad at or before it although every loss was finite, e.g. with a
    NaN learning rate), or with ``raise_error`` a NonFiniteLossError naming the leaves."""
    named = [
        (jax.tree_util.keystr(path), leaf)
        for path, leaf in jax.tree.leaves_with_path(
            {"params": state.params, "opt_state": state.opt_state, "model_state": state.model_state}
        )
        if jnp.issubdtype(leaf.dtype, jnp.inexact)
    ]
    if not named:
        return None
    flags = distributed.to_host(_finite_flags([leaf for _, leaf in named]))
    bad = [name for (name, _), ok in zip(named, flags, strict=True) if not ok]
    if not bad:
        return None
    if raise_error:
        _raise_non_finite(
            f"every loss was finite, but the state at the end of epoch {epoch + 1} (steps "
            f"{first_step + 1}-{int(state.step)}) holds NaN/inf in {', '.join(bad[:5])}"
            + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""),
            ckpt,
        )
    return int(state.step)


def _raise_non_finite(what: str, ckpt: _RunCheckpoints | None) -> None:
    """Raise NonFiniteLossError saying ``what`` went non-finite and which checkpoint is kept."""
    kept = ckpt.kept_step() if ckpt is not None else None
    where = (
        f"the last good checkpoint (step {kept}) is kept in {ckpt.directory}"
        if kept is not None
        else "no checkpoint was written"
    )
    raise NonFiniteLossError(
        f"{what}; stopping: {where}. Try a smaller learning rate or gradient clipping "
        "(make_optimizer(..., clip_norm=1.0)), and check that the learning rate is finite."
    )

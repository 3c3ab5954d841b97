"""``fit`` and ``evaluate``: the training loop around the compiled epoch.

Lectures: seed 004 §7 "Optimization" (line 1841: epochs of minibatch SGD, learning curves)
and §12 "Generalization" (line 2500: validation set, early stopping). One call of the
compiled :meth:`Trainer.train_epoch` runs a whole epoch; Python only runs between epochs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxnets import distributed
from jaxnets.checkpoint import Checkpointer
from jaxnets.train.callbacks import Callback, JSONLLogger, ProgressBar
from jaxnets.train.state import TrainState
from jaxnets.train.step import Trainer

__all__ = ["fit", "evaluate", "FitResult", "NonFiniteLossError"]

# What fit does at the first NaN/inf loss: raise NonFiniteLossError, or end training after
# that epoch and report the step in FitResult.non_finite_step.
ON_NON_FINITE = ("raise", "stop")


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
        ``history``); None when every loss was finite.
    """

    state: TrainState
    epochs: int
    start_epoch: int = 0
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    stopped_early: bool = False
    non_finite_step: int | None = None


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
    trainer.check_input(x)
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
) -> FitResult:
    """Train ``state`` for ``epochs`` epochs of shuffled minibatches; each epoch is one
    compiled ``lax.scan`` over ``len(train) // batch_size`` steps.

    Args:
      train, val: ``(x, y)`` arrays or datasets with ``.x`` (n, *input_shape) and ``.y`` (n, ...).
      callbacks: e.g. :class:`EarlyStopping`; a tqdm bar is added when ``progress``.
      checkpoint_dir: save an Orbax checkpoint every ``checkpoint_every`` epochs; if the
        directory already holds one, training resumes from it and continues exactly as the
        uninterrupted run would have (same shuffles, same dropout keys).
      metrics_path: append each epoch's logs to this JSONL file.
      on_non_finite: at the first NaN/inf step loss, ``"raise"`` NonFiniteLossError, or
        ``"stop"``: finish that epoch's logs and callbacks, then return with
        ``FitResult.non_finite_step`` set (e.g. to study a diverging learning rate). Either
        way nothing after the last good checkpoint is saved.
    Raises:
      NonFiniteLossError: with ``on_non_finite="raise"``, a step's loss was NaN/inf; the
        message names the first such step.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1; got {epochs}")
    if on_non_finite not in ON_NON_FINITE:
        raise ValueError(
            f"on_non_finite must be 'raise' (NonFiniteLossError at the first NaN/inf loss) or "
            f"'stop' (end after that epoch, FitResult.non_finite_step names the step); got "
            f"{on_non_finite!r}"
        )
    x, y = _arrays(train, "training", trainer)
    trainer.check_input(x)
    if not 1 <= batch_size <= len(x):
        raise ValueError(
            f"batch_size must be in [1, {len(x)}] (the training set size); got {batch_size}"
        )
    trainer.check_batch_size(batch_size)
    val_arrays = _arrays(val, "validation", trainer) if val is not None else None
    if val_arrays is not None:
        trainer.check_input(val_arrays[0])
    steps_per_epoch = len(x) // batch_size

    checkpointer = Checkpointer(checkpoint_dir) if checkpoint_dir is not None else None
    start_epoch = 0
    state = trainer.place(state)  # restored below onto the same shardings
    if checkpointer is not None and checkpointer.latest_step() is not None:
        state, meta = checkpointer.restore(like=state)
        start_epoch = int(meta["epoch"])

    run = FitResult(state=state, epochs=epochs, start_epoch=start_epoch)
    all_callbacks = list(callbacks)
    main_process = distributed.is_main_process()  # the others train silently
    if progress and main_process:
        all_callbacks.insert(0, ProgressBar(desc))
    if metrics_path is not None and main_process:
        all_callbacks.append(JSONLLogger(metrics_path))
    for cb in all_callbacks:
        cb.on_fit_start(run)
    try:
        for epoch in range(start_epoch, epochs):
            first_step = int(run.state.step)
            t0 = time.perf_counter()
            run.state, step_metrics = trainer.train_epoch(run.state, x, y, batch_size=batch_size)
            step_metrics = distributed.to_host(step_metrics)  # one transfer; numpy from here on
            step_losses = step_metrics["loss"]
            seconds = time.perf_counter() - t0
            run.non_finite_step = _first_non_finite_step(
                step_losses, first_step, epoch, checkpointer, raise_error=on_non_finite == "raise"
            )
            logs = {"epoch": epoch + 1, "step": int(run.state.step)}
            logs.update({f"train_{k}": float(np.mean(v)) for k, v in step_metrics.items()})
            if val_arrays is not None:
                logs.update(evaluate(trainer, run.state, val_arrays, prefix="val_"))
            logs["steps_per_s"] = steps_per_epoch / seconds
            logs["seconds"] = seconds
            run.history.append(logs)
            finite = run.non_finite_step is None
            if finite and checkpointer is not None and (epoch + 1) % checkpoint_every == 0:
                checkpointer.save(int(run.state.step), run.state, {"epoch": epoch + 1})
            if any([bool(cb.on_epoch_end(run, logs)) for cb in all_callbacks]):
                run.stopped_early = True
            if run.stopped_early or not finite:
                break
    finally:
        for cb in all_callbacks:
            cb.on_fit_end(run)
        if checkpointer is not None:
            checkpointer.close()
    return run


def _first_non_finite_step(
    step_losses: np.ndarray,
    first_step: int,
    epoch: int,
    checkpointer: Checkpointer | None,
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
    if not raise_error:
        return step
    kept = checkpointer.latest_step() if checkpointer is not None else None
    where = (
        f"the last good checkpoint (step {kept}) is kept in {checkpointer.directory}"
        if kept is not None
        else "no checkpoint was written"
    )
    raise NonFiniteLossError(
        f"loss became {step_losses[bad[0]]} at step {step} (epoch {epoch + 1}); stopping: {where}. "
        "Try a smaller learning rate or gradient clipping (make_optimizer(..., clip_norm=1.0))."
    )

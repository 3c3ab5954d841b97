"""Orbax checkpoints of a :class:`~jaxnets.train.state.TrainState`: save, verify, restore, resume.

Lecture: seed 004 §12 "Generalization" (line 2500): early stopping keeps the parameters of
the best validation epoch; a checkpoint is how a run keeps them, and how it survives a kill.

Each checkpoint ``directory/<step>/`` holds the state's arrays and a JSON ``meta`` dict with a
SHA-256 ``digest`` of the arrays (each leaf's key path, dtype, shape and bytes, in the
pytree's order). Restoring recomputes the digest, so a flipped byte, a truncated file or an
empty step directory is found instead of resuming from wrong numbers;
:meth:`Checkpointer.restore_latest_good` then warns and falls back to the previous step.
Orbax and TensorStore exceptions reach the user as :class:`CheckpointError` naming the
directory and step.

A run's ``fingerprint`` (see :func:`run_fingerprint`) is stored in the meta too, so that a
directory written by another run is refused (:class:`ForeignCheckpointError`) instead of
resumed, and Orbax's ``max_to_keep`` never prunes another run's checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from jaxnets import distributed

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "CorruptCheckpointError",
    "CorruptCheckpointWarning",
    "ForeignCheckpointError",
    "fingerprint_differences",
    "run_fingerprint",
    "tree_digest",
]


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, read or trusted; the message names its directory
    and step."""


class CorruptCheckpointError(CheckpointError):
    """A step directory is unreadable, partial, or its arrays do not match their digest."""


class ForeignCheckpointError(CheckpointError):
    """The checkpoint directory holds another run (its fingerprint differs from this one's)."""


class CorruptCheckpointWarning(UserWarning):
    """A corrupt checkpoint was skipped in favour of an older good one."""


@contextlib.contextmanager
def _orbax_errors(what: str, error: type[CheckpointError] = CheckpointError) -> Iterator[None]:
    """Re-raise any Orbax/TensorStore exception as ``error`` saying ``what`` failed."""
    try:
        yield
    except CheckpointError:
        raise
    except Exception as e:  # Orbax and TensorStore raise many unrelated types
        raise error(f"{what} failed: {type(e).__name__}: {e}") from e


def _host_leaves(tree: Any) -> list[tuple[str, np.ndarray]]:
    """``(key path, NumPy copy)`` of every leaf in pytree order; arrays split over processes
    (FSDP on several hosts) are gathered first, so every process sees the same values."""

    def gathered(leaf):
        if isinstance(leaf, jax.Array) and not (
            leaf.is_fully_addressable or leaf.is_fully_replicated
        ):
            return multihost_utils.process_allgather(leaf, tiled=True)
        return leaf

    host = distributed.to_host(jax.tree.map(gathered, tree))
    return [(jax.tree_util.keystr(p), np.asarray(a)) for p, a in jax.tree.leaves_with_path(host)]


def tree_digest(tree: Any) -> str:
    """SHA-256 (hex) over each leaf's key path, dtype, shape and bytes, in pytree order."""
    h = hashlib.sha256()
    for path, a in _host_leaves(tree):
        h.update(f"{path}|{a.dtype.str}|{a.shape}|".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class Checkpointer:
    """Saves TrainStates (any pytree of arrays) under ``directory/<step>/``, verified.

    Each checkpoint also stores a JSON ``meta`` dict (e.g. the epoch it ends) plus the
    arrays' ``digest``; :meth:`restore` checks it. Orbax keeps the newest ``max_to_keep``.
    """

    def __init__(self, directory: str | Path, *, max_to_keep: int = 3):
        self.directory = Path(directory).absolute()
        with _orbax_errors(f"opening the checkpoint directory {self.directory}"):
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
            )

    def _where(self, step: int) -> str:
        return f"checkpoint step {step} in {self.directory}"

    def save(self, step: int, state: Any, meta: dict[str, Any] | None = None) -> None:
        """Write ``state`` and ``meta`` (plus the state's ``digest``) as checkpoint ``step``;
        blocks until written."""
        meta = {**(meta or {}), "digest": tree_digest(state)}
        with _orbax_errors(f"writing {self._where(step)}"):
            saved = self._manager.save(
                int(step),
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
            )
            self._manager.wait_until_finished()
        if not saved:
            raise CheckpointError(
                f"writing {self._where(step)} failed: that step exists already (Orbax does not "
                "overwrite it); save under a new step or in another directory"
            )

    def steps(self) -> list[int]:
        """The saved steps, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest saved step, or None when the directory holds no checkpoint."""
        return self._manager.latest_step()

    def meta(self, step: int) -> dict[str, Any]:
        """The JSON meta of checkpoint ``step`` (without reading its arrays)."""
        with _orbax_errors(f"reading the meta of {self._where(step)}", CorruptCheckpointError):
            restored = self._manager.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
            )
        meta = restored["meta"]
        if not isinstance(meta, dict) or "digest" not in meta:
            raise CorruptCheckpointError(
                f"{self._where(step)} has no digest in its meta (partial, or not written by "
                f"jaxnets' Checkpointer); got meta {meta!r}"
            )
        return dict(meta)

    def restore(self, like: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """``(state, meta)`` of checkpoint ``step`` (default: latest), shaped and placed like
        ``like``, after checking the arrays against the digest in the meta.

        Raises:
          CorruptCheckpointError: the step is unreadable, partial, or fails its digest.
          FileNotFoundError: the directory holds no checkpoint.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        meta = self.meta(step)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        with _orbax_errors(f"reading the arrays of {self._where(step)}", CorruptCheckpointError):
            state = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
            )["state"]
        digest = tree_digest(state)
        if digest != meta["digest"]:
            raise CorruptCheckpointError(
                f"{self._where(step)} does not match its digest: the arrays read hash to "
                f"{digest[:12]}…, the digest written with them is {meta['digest'][:12]}… "
                "(a damaged file, or arrays of another shape or dtype than ``like``)"
            )
        return state, meta

    def restore_latest_good(
        self, like: Any, check_meta: Callable[[int, dict[str, Any]], None] | None = None
    ) -> tuple[int, Any, dict[str, Any]] | None:
        """``(step, state, meta)`` of the newest checkpoint that restores and verifies, or None
        when the directory holds none. Each corrupt newer step is reported with a
        :class:`CorruptCheckpointWarning` naming the directory and step.

        ``check_meta(step, meta)`` runs before a step's arrays are read and may raise (e.g.
        :class:`ForeignCheckpointError`), which ends the search.

        Raises:
          CorruptCheckpointError: checkpoints exist but none is good.
        """
        failures = []
        for step in reversed(self.steps()):
            try:
                if check_meta is not None:
                    check_meta(step, self.meta(step))
                state, meta = self.restore(like, step)
            except CorruptCheckpointError as e:
                failures.append(str(e))
                warnings.warn(
                    f"skipping corrupt {self._where(step)}: {e}", CorruptCheckpointWarning, 2
                )
                continue
            return step, state, meta
        if failures:
            raise CorruptCheckpointError(
                f"no good checkpoint in {self.directory}; every step failed:\n  "
                + "\n  ".join(failures)
                + "\nMove the directory away (or use a fresh checkpoint_dir) to start over."
            )
        return None

    def set_aside(self, step: int, reason: str) -> Path:
        """Rename ``directory/<step>`` to ``directory/<step>.<reason>[-k]`` (kept for
        inspection, no longer a checkpoint Orbax lists or prunes); returns the new path."""
        source = self.directory / str(step)
        target, k = self.directory / f"{step}.{reason}", 1
        while target.exists():
            k += 1
            target = self.directory / f"{step}.{reason}-{k}"
        if distributed.is_main_process():
            source.rename(target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"jaxnets set_aside {source}")
        self._manager.reload()
        return target

    def close(self) -> None:
        self._manager.close()

    def __repr__(self) -> str:
        return f"Checkpointer({str(self.directory)!r}, latest_step={self.latest_step()})"


# --- run fingerprints ------------------------------------------------------------------------


def _describe(value: Any) -> Any:
    """A JSON value describing ``value`` that is stable across processes: functions by their
    qualified name, modules by class and fields, no memory addresses."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)  # JSON has no NaN/inf; the repr keeps them and every digit
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _describe(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: _describe(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in ("parent", "name")
        }
        return {"class": type(value).__qualname__, **fields}
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


def _optimizer_probe(optimizer: Any, params: Any) -> list[str]:
    """The first element of the first parameter's update in two steps of ``optimizer`` from
    parameters of ones with gradients of 0.1 (``.4g``): learning rate, momentum, decay and
    clipping show in them. Computed on fresh local arrays, so any mesh gives the same."""
    probe = jax.tree.map(lambda p: jnp.ones(p.shape, p.dtype), params)
    grads = jax.tree.map(lambda p: jnp.full(p.shape, 0.1, p.dtype), params)
    opt_state, firsts = optimizer.init(probe), []
    for _ in range(2):
        updates, opt_state = optimizer.update(grads, opt_state, probe)
        firsts.append(f"{float(jnp.ravel(jax.tree.leaves(updates)[0])[0]):.4g}")
    return firsts


def run_fingerprint(
    trainer: Any, params: Any, x: Any, y: Any, batch_size: int, extra: dict | None = None
) -> dict[str, Any]:
    """What identifies a training run, as a flat JSON dict: the model (``trainer.card.name``
    or the module class) and its hyperparameters (the flax module's fields), the loss, the
    optimizer (its state's node types and a two-step update probe, see
    :func:`_optimizer_probe`), the inputs x (n, *input_shape) and labels y (n, ...) as dtype
    and per-example shape, the batch size and the data set size n; plus ``extra`` fields
    (e.g. the optimizer's settings as given to ``make_optimizer``)."""
    model = trainer.model
    opt_types = [
        type(node).__name__
        for node in jax.tree.leaves(
            jax.eval_shape(trainer.optimizer.init, params),
            is_leaf=lambda n: isinstance(n, tuple) and hasattr(n, "_fields"),
        )
    ]
    fingerprint = {
        "model": trainer.card.name if trainer.card is not None else type(model).__qualname__,
        "model.hyperparameters": _describe(model),
        "loss": trainer.loss.name,
        "optimizer.state": opt_types,
        "optimizer.probe": _optimizer_probe(trainer.optimizer, params),
        "input": f"{np.dtype(x.dtype).name} {tuple(x.shape[1:])}",
        "labels": f"{np.dtype(y.dtype).name} {tuple(y.shape[1:])}",
        "batch_size": int(batch_size),
        "train_size": len(x),
    }
    fingerprint.update({str(k): _describe(v) for k, v in (extra or {}).items()})
    return fingerprint


def fingerprint_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"field: checkpoint has A, this run has B"`` for each field that differs."""
    return [
        f"{key}: checkpoint has {saved.get(key, '(none)')!r}, this run has "
        f"{current.get(key, '(none)')!r}"
        for key in sorted(set(saved) | set(current))
        if saved.get(key) != current.get(key)
    ]

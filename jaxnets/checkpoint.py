"""Orbax checkpoints of a :class:`~jaxnets.train.state.TrainState`: save, restore, resume.

Lecture: seed 004 §12 "Generalization" (line 2500): early stopping keeps the parameters of
the best validation epoch; a checkpoint is how a run keeps them, and how it survives a kill.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

__all__ = ["Checkpointer"]


class Checkpointer:
    """Saves TrainStates under ``directory/<step>/`` and restores them exactly.

    Each checkpoint also stores a small JSON ``meta`` dict (e.g. the epoch it ends).
    """

    def __init__(self, directory: str | Path, *, max_to_keep: int = 3):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def save(self, step: int, state: Any, meta: dict[str, Any] | None = None) -> None:
        """Write ``state`` (any pytree of arrays) and ``meta`` as checkpoint ``step``; blocks."""
        self._manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta or {})
            ),
        )
        self._manager.wait_until_finished()

    def latest_step(self) -> int | None:
        """The newest saved step, or None when the directory holds no checkpoint."""
        return self._manager.latest_step()

    def restore(self, like: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """``(state, meta)`` of checkpoint ``step`` (default: latest), shaped like ``like``."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], dict(restored["meta"] or {})

    def close(self) -> None:
        self._manager.close()

    def __repr__(self) -> str:
        return f"Checkpointer({str(self.directory)!r}, latest_step={self.latest_step()})"

"""Where a Trainer's state and minibatches live on a device mesh (issue 16): replicated or
FSDP-split state, minibatches split over the mesh's ``"data"`` axis, and global arrays built
from each process's host rows."""

from __future__ import annotations

import contextlib
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxnets import distributed, native
from jaxnets.checks import check_positive_int
from jaxnets.train.state import TrainState

__all__ = ["MeshPlacement"]

Batch = tuple[jax.Array, jax.Array]


class MeshPlacement:
    """Mixin of :class:`~jaxnets.train.Trainer`: placement on its ``mesh`` (None: one
    device), split by its ``fsdp``/``fsdp_min_size`` and ``reduction_groups`` settings."""

    @property
    def data_devices(self) -> int:
        """How many devices a minibatch is split over (1 without a mesh)."""
        return 1 if self.mesh is None else self.mesh.shape[distributed.DATA_AXIS]

    def state_shardings(self, state: TrainState) -> Any:
        """A NamedSharding per leaf of ``state``: replicated, or split by FSDP (see ``fsdp``)."""
        min_size = self.fsdp_min_size if self.fsdp else None
        return distributed.state_shardings(state, self.mesh, fsdp_min_size=min_size)

    def place(self, state: TrainState) -> TrainState:
        """``state`` on the mesh's devices with :meth:`state_shardings` (unchanged without a
        mesh); a state restored or built elsewhere is placed before it is trained."""
        if self.mesh is None:
            return state
        return jax.device_put(state, self.state_shardings(state))

    def kernels_for_mesh(self) -> contextlib.AbstractContextManager:
        """The context to apply the model in: :func:`jaxnets.native.pure_jax` where the model
        sees a batch split over several devices, else none.

        XLA cannot split oneDNN's custom calls over a mesh: it gathers their operands onto every
        device and each computes the whole batch (ResNet-8 on 8 virtual CPU devices: 145 ms per
        step with XLA's convolutions, 377 ms with oneDNN's). Not needed inside ``shard_map``
        (``reduction_groups``): there the model sees each device's own rows and the kernels
        stay on.
        """
        if self.mesh is None or self.mesh.size == 1:
            return contextlib.nullcontext()
        return native.pure_jax()

    def batch_sharding(self, leading: int = 0) -> NamedSharding:
        """Split the example axis (after ``leading`` unsplit axes) over the data axis."""
        spec = PartitionSpec(*([None] * leading), distributed.DATA_AXIS)
        return NamedSharding(self.mesh, spec)

    def constrain(self, state: TrainState, batch: Batch) -> tuple[TrainState, Batch]:
        """Inside the compiled step: the state as placed, the batch split over the mesh."""
        if self.mesh is None:
            return state, batch
        state = jax.lax.with_sharding_constraint(state, self.state_shardings(state))
        batch = jax.lax.with_sharding_constraint(batch, self.batch_sharding())
        return state, batch

    def check_batch_size(self, batch_size: int) -> None:
        """Raise unless ``batch_size`` is a positive integer (TypeError for bools and floats,
        ValueError below 1) that splits evenly over the mesh's data axis and into
        ``reduction_groups`` (ValueError)."""
        check_positive_int("batch_size", batch_size)
        for parts, what in (
            (self.data_devices, "devices"),
            (self.reduction_groups or 1, "reduction groups"),
        ):
            if batch_size % parts:
                raise ValueError(
                    f"batch_size {batch_size} does not split into {parts} {what}; "
                    f"use a multiple of {parts}"
                )

    def put_rows(self, arrays: tuple[np.ndarray, ...], rows: np.ndarray) -> list[jax.Array]:
        """``a[rows]`` for each host array ``a`` (n, ...), as global arrays of shape
        (*rows.shape, ...) split over the data axis along rows' last axis. Built with
        ``jax.make_array_from_callback``: each process reads from ``a`` only the rows that
        its own devices hold."""
        sharding = self.batch_sharding(rows.ndim - 1)

        def put(a: np.ndarray) -> jax.Array:
            shape = (*rows.shape, *a.shape[1:])
            return jax.make_array_from_callback(
                shape, sharding, lambda index: a[rows[index[: rows.ndim]]]
            )

        return [put(np.asarray(a)) for a in arrays]

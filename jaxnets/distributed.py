"""Devices, meshes and processes: data-parallel training on JAX's own SPMD machinery.

Lecture: seed 004 §7 "Optimization" (line 1841): a minibatch gradient is the mean of the
examples' gradients, so splitting each minibatch over D devices, differentiating each part
and summing over devices is the same step. Nothing here implements that sum: the training
step is compiled once for a :class:`jax.sharding.Mesh` whose ``"data"`` axis spans the
devices, minibatches are sharded along it and parameters replicated (or, with FSDP, sharded
too), and XLA's partitioner inserts the all-reduce. Several processes (hosts) join one mesh
through :func:`jax.distributed.initialize`; every process runs the same program on its
devices and feeds only its own part of each global batch.

Set-up happens once, before JAX starts its backend (the CPU device count is fixed then):
:func:`configure` is what ``--devices N`` of the experiment scripts and ``jaxnets launch``
call. It makes the mesh the *default mesh*, which a :class:`~jaxnets.train.Trainer` built
without ``mesh=`` then uses, so a script trains data-parallel without passing a mesh around.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "LAUNCH_ENV",
    "configure",
    "data_mesh",
    "default_mesh",
    "fsdp_spec",
    "is_main_process",
    "set_default_mesh",
    "state_shardings",
    "to_host",
]

DATA_AXIS = "data"
"""The mesh axis that minibatches (and, with FSDP, large parameters) are split along."""

LAUNCH_ENV = {
    "coordinator": "JAXNETS_COORDINATOR",
    "num_processes": "JAXNETS_NUM_PROCESSES",
    "process_id": "JAXNETS_PROCESS_ID",
    "devices_per_process": "JAXNETS_DEVICES_PER_PROCESS",
}
"""Environment variables that ``jaxnets launch`` sets for each process it starts."""

_DEFAULT_MESH: Mesh | None = None
_CONFIGURED: dict[str, Any] | None = None
# XLA's CPU client runs programs on max(cores, devices) threads, and an all-reduce holds one
# thread per participating device until all have arrived: with exactly as many virtual devices
# as the mesh, on 2 cores, a step whose other work needs a thread now and then deadlocked
# ("only 7 of 8 arrived", benchmarks/partition.py). So a CPU host gets this many times the
# devices asked for; the mesh uses the first ones and the others stay idle.
CPU_DEVICE_SPARE_FACTOR = 2
# jax.distributed notices a dead peer after this many seconds without a heartbeat (JAX's own
# default is 100 s); `jaxnets launch` stops the others sooner, as soon as a process exits.
HEARTBEAT_TIMEOUT_S = 30


def set_default_mesh(mesh: Mesh | None) -> None:
    """Make ``mesh`` the mesh of Trainers built without one (None: one device, no mesh)."""
    global _DEFAULT_MESH
    if mesh is not None and DATA_AXIS not in mesh.axis_names:
        raise ValueError(f"the mesh needs a {DATA_AXIS!r} axis; its axes are {mesh.axis_names}")
    _DEFAULT_MESH = mesh


def default_mesh() -> Mesh | None:
    """The mesh set by :func:`configure` or :func:`set_default_mesh`, or None."""
    return _DEFAULT_MESH


def data_mesh(devices: int | None = None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over the first ``devices`` devices of all processes
    (default: every device). On a CPU host there are as many devices as
    ``jax_num_cpu_devices`` made (see :func:`configure`)."""
    available = jax.devices()
    count = len(available) if devices is None else devices
    if not 1 <= count <= len(available):
        raise ValueError(
            f"asked for {count} devices but JAX sees {len(available)} "
            f"({available[0].platform}); on a CPU host start with --devices {count}, which "
            "sets jax_num_cpu_devices before the backend starts"
        )
    if count % jax.process_count():
        raise ValueError(
            f"{count} devices cannot be split evenly over {jax.process_count()} processes"
        )
    if jax.process_count() > 1:  # the first count / P devices of every process
        per_process = count // jax.process_count()
        chosen = [
            d
            for p in range(jax.process_count())
            for d in [d for d in available if d.process_index == p][:per_process]
        ]
    else:
        chosen = available[:count]
    return Mesh(np.array(chosen), (DATA_AXIS,))


def _env_int(env: Mapping[str, str], key: str) -> int | None:
    text = env.get(LAUNCH_ENV[key])
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{LAUNCH_ENV[key]}={text!r} is not an integer") from None


def configure(
    devices: int | None = None,
    *,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    cluster: bool = False,
    env: Mapping[str, str] | None = None,
) -> Mesh | None:
    """Set up devices and processes before JAX starts, and return the default mesh.

    Args:
      devices: train data-parallel on this many devices in all. On the CPU, the mesh has
        ``devices / processes`` virtual CPU devices of each process (``jax_num_cpu_devices``
        makes :data:`CPU_DEVICE_SPARE_FACTOR` times as many; the spares keep XLA's CPU
        collectives from running out of threads); on GPU or TPU, the first ones. None: one
        device and no mesh, unless launched with several processes (then all of theirs).
      coordinator, num_processes, process_id: join a multi-process run (``host:port`` of
        process 0). Each falls back to the variable of :data:`LAUNCH_ENV` that ``jaxnets
        launch`` sets. Under SLURM with several tasks, :func:`jax.distributed.initialize`
        finds them itself.
      cluster: join the multi-process run that JAX's own cluster detection finds (Open MPI,
        Kubernetes, Cloud TPU slices, SLURM): ``--cluster`` on every host.
      env: the environment to read (default ``os.environ``).
    Returns:
      The mesh now returned by :func:`default_mesh`, or None for a single-device run.
    Raises:
      RuntimeError: JAX's backend already started, so the device count is fixed.
      ValueError: inconsistent counts (devices not divisible by processes, ...).
    """
    global _CONFIGURED
    env = os.environ if env is None else env
    coordinator = coordinator or env.get(LAUNCH_ENV["coordinator"])
    num_processes = num_processes or _env_int(env, "num_processes")
    process_id = process_id if process_id is not None else _env_int(env, "process_id")
    per_process = _env_int(env, "devices_per_process")
    request = dict(
        devices=devices, coordinator=coordinator, num_processes=num_processes, cluster=cluster
    )
    if _CONFIGURED == request:  # configured so already: nothing to do
        return _DEFAULT_MESH
    multi_process = coordinator is not None or num_processes is not None
    if multi_process and (coordinator is None or num_processes is None or process_id is None):
        raise ValueError(
            "a multi-process run needs the coordinator address, the process count and this "
            f"process' id; got {coordinator=}, {num_processes=}, {process_id=}"
        )
    processes = num_processes or 1
    if devices is not None and devices < 1:
        raise ValueError(f"devices must be >= 1; got {devices}")
    if per_process is None and devices is not None:
        if devices % processes:
            raise ValueError(f"--devices {devices} is not divisible by {processes} processes")
        per_process = devices // processes
    if per_process is not None:
        devices = devices or processes * per_process
        try:
            jax.config.update("jax_num_cpu_devices", CPU_DEVICE_SPARE_FACTOR * per_process)
        except RuntimeError:
            raise RuntimeError(
                f"cannot make {per_process} CPU devices: JAX's backend has already started "
                "(the device count is fixed then); configure devices before any JAX operation"
            ) from None
    if _CONFIGURED is not None:
        raise RuntimeError(f"jaxnets.distributed is already configured as {_CONFIGURED}")
    cluster = cluster or _slurm_tasks(env)
    if multi_process or cluster:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        if multi_process:
            jax.distributed.initialize(
                coordinator,
                num_processes,
                process_id,
                heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
            )
        else:
            jax.distributed.initialize(heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S)
    _CONFIGURED = request
    if devices is None and jax.process_count() == 1:
        set_default_mesh(None)
    else:
        set_default_mesh(data_mesh(devices))
    return _DEFAULT_MESH


def _slurm_tasks(env: Mapping[str, str]) -> bool:
    """Whether SLURM started this process as one of several tasks; JAX's own cluster
    detection then supplies the coordinator and ids."""
    return int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in env


def is_main_process() -> bool:
    """Whether this is process 0: the one that writes run directories and prints progress."""
    return jax.process_index() == 0


def fsdp_spec(shape: tuple[int, ...], axis_size: int, min_size: int) -> PartitionSpec:
    """How FSDP splits one array of ``shape`` over a data axis of ``axis_size`` devices: its
    largest dimension divisible by ``axis_size`` is sharded, when the array has at least
    ``min_size`` elements; smaller (or indivisible) arrays are replicated."""
    if axis_size == 1 or math.prod(shape) < min_size:
        return PartitionSpec()
    divisible = [(size, dim) for dim, size in enumerate(shape) if size % axis_size == 0]
    if not divisible:
        return PartitionSpec()
    _, dim = max(divisible)
    return PartitionSpec(*([None] * dim), DATA_AXIS)


def state_shardings(tree: Any, mesh: Mesh, *, fsdp_min_size: int | None = None) -> Any:
    """A NamedSharding for every array leaf of ``tree`` (parameters, optimizer state):
    replicated, or with ``fsdp_min_size`` the :func:`fsdp_spec` of each leaf."""

    def one(leaf):
        shape = np.shape(leaf)
        if fsdp_min_size is None:
            return NamedSharding(mesh, PartitionSpec())
        return NamedSharding(mesh, fsdp_spec(shape, mesh.shape[DATA_AXIS], fsdp_min_size))

    return jax.tree.map(one, tree)


def to_host(tree: Any) -> Any:
    """NumPy copies of a pytree of arrays, including global arrays of a multi-process run
    whose value every process holds (replicated): each process reads its own copy."""

    def one(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            if not leaf.is_fully_replicated:
                raise ValueError(
                    f"an array of shape {leaf.shape} is split over processes "
                    f"({leaf.sharding}); gather it under jit before reading it on the host"
                )
            return np.asarray(leaf.addressable_data(0))
        return np.asarray(leaf)

    return jax.tree.map(one, tree)

"""What one benchmark process times: the JAX step runner, the PyTorch step runner, the shared
fields of a step-timed case, timers, XLA's FLOP count of a step, a measured matmul peak and the
record of a case.

Lecture: seed 004 §7 "Optimization" (line 1841): a training step's cost is what these
benchmarks time. A case module (:mod:`benchmarks.cnn`, :mod:`benchmarks.rnn`) gives
:func:`run_jax_steps` a ``setup`` that builds its jitted step, or :func:`run_torch_steps` its
eager model's loss, and turns the result into a record with :func:`step_record`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence

from benchmarks.common import FRAMEWORKS, choice

__all__ = [
    "DEVICES",
    "DTYPES",
    "STEP_METRICS",
    "StepCase",
    "Timer",
    "fresh_jax_compiles",
    "matmul_peak",
    "run_jax_steps",
    "run_torch_steps",
    "step_flops",
    "step_record",
    "torch_autocast",
    "torch_device",
]

DEVICES = ("cpu", "gpu")
DTYPES = ("float32", "bfloat16")
# What every step record (:func:`step_record`) measures, besides its speed and FLOPs.
STEP_METRICS = ("ms_per_step", "cpu_ms_per_step", "compile_s", "seconds", "first_loss")
STEP_METRICS += ("final_loss",)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepCase:
    """The fields every step-timed case has (keyword-only, after the case's own fields, which
    include a ``framework`` of :data:`benchmarks.common.FRAMEWORKS`, checked here).

    Attributes:
      steps: timed steps, after ``warmup_steps`` untimed ones (the first compiles).
      data_batches: distinct synthetic batches the steps cycle through.
      device: ``"cpu"`` or ``"gpu"`` (JAX's platform is set by the parent process).
      dtype: computation dtype, ``"float32"`` or ``"bfloat16"`` (parameters stay float32).
      seed: of the data and the initial parameters.
      torch_threads: ``torch.set_num_threads`` for the torch case; 0 means every core.
      peak_size: n of the (n, n) @ (n, n) matmul timed for the device's peak (JAX cases).
    """

    steps: int = 20
    warmup_steps: int = 3
    data_batches: int = 4
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0
    torch_threads: int = 0
    peak_size: int = 1024

    def __post_init__(self):
        for name, options in (
            ("framework", FRAMEWORKS),
            ("device", DEVICES),
            ("dtype", DTYPES),
        ):
            choice(name, getattr(self, name), options)
        if self.warmup_steps < 1 or self.peak_size < 1:
            raise ValueError(
                f"warmup_steps (the first compiles) and peak_size must be >= 1; got "
                f"warmup_steps={self.warmup_steps}, peak_size={self.peak_size}"
            )
        if not 1 <= self.data_batches <= self.steps:
            raise ValueError(
                f"need 1 <= data_batches <= steps (the final loss averages the last "
                f"data_batches timed steps); got data_batches={self.data_batches}, "
                f"steps={self.steps}"
            )


class Timer:
    """Wall-clock seconds of a block, and the CPU seconds all of the process' threads spent
    in it (on a busy machine the CPU time is the steadier of the two)."""

    def __enter__(self) -> Timer:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.cpu_seconds = time.process_time() - self._cpu


def fresh_jax_compiles() -> None:
    """Turn JAX's persistent compilation cache off in this process.

    Each case compiles from scratch: a persistent cache (the Makefile sets one for tests)
    would make the reported compile time depend on what ran before.
    """
    import jax

    jax.config.update("jax_enable_compilation_cache", False)


def step_flops(train_step, state, batch) -> float | None:
    """XLA's FLOP count of one jitted ``train_step(state, batch)``; None if the backend gives
    no estimate.

    Counted on the lowered (not yet optimized) program: it is the same on every backend,
    whereas after compilation a GPU's convolutions are library calls the count may miss.
    XLA counts a multiply-add as 2 FLOPs and skips the zero padding taps of convolutions.
    Counted on the pure JAX program: XLA sees no FLOPs in jaxnets' oneDNN custom calls.
    """
    from jaxnets import native

    with native.pure_jax():
        analysis = train_step.lower(state, batch).cost_analysis()
    return float(analysis["flops"]) if analysis and "flops" in analysis else None


def matmul_peak(size: int, dtype: str, trials: int = 3, chain: int = 10) -> float:
    """The device's measured matmul throughput in FLOP/s: the best of ``trials`` timings of
    ``chain`` dispatches of an (n, n) @ (n, n) product in ``dtype`` (2 n^3 FLOPs each)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    # Random operands (a GPU's clock can depend on the bits it multiplies), drawn by NumPy:
    # compiling JAX's threefry sampler costs seconds on a CPU.
    rng = np.random.default_rng(0)
    a, b = (jnp.asarray(rng.random((size, size), np.float32) - 0.5, dtype) for _ in range(2))
    matmul = jax.jit(jnp.matmul)
    jax.block_until_ready(matmul(a, b))
    best = math.inf
    for _ in range(trials):
        t0 = time.perf_counter()
        jax.block_until_ready([matmul(a, b) for _ in range(chain)])
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 * chain / best


def run_jax_steps(config, x_np, y_np, setup: Callable, *, count_flops: bool = True) -> dict:
    """Time ``config.steps`` jitted training steps after ``config.warmup_steps`` untimed ones.

    ``x_np``, ``y_np``: (data_batches, batch, ...) arrays the steps cycle through, put on the
    device first; ``setup(config, sample_x (1, ...)) -> (train_step, state)`` with
    ``train_step(state, (x, y)) -> (state, {"loss": ...})``. ``config`` is a
    :class:`StepCase`. Returns ``timer`` (:class:`Timer` of the timed steps), ``compile_s``
    (first step minus a steady one), every step's ``losses``, ``step_flops`` (XLA's count;
    None without ``count_flops``: XLA counts a ``lax.scan`` body once, not once per iteration),
    ``peak_flops_per_s`` (:func:`matmul_peak`) and the ``device`` kind.
    """
    fresh_jax_compiles()
    import jax

    batches = [(jax.device_put(x), jax.device_put(y)) for x, y in zip(x_np, y_np, strict=True)]
    train_step, state = setup(config, batches[0][0][:1])
    flops = step_flops(train_step, state, batches[0]) if count_flops else None
    jax.block_until_ready((batches, state))

    def run(state, first, count):
        losses = []
        for i in range(first, first + count):
            state, metrics = train_step(state, batches[i % len(batches)])
            losses.append(metrics["loss"])
        return jax.block_until_ready((state, losses))

    t0 = time.perf_counter()
    state, losses = run(state, 0, 1)
    first_s = time.perf_counter() - t0
    state, more = run(state, 1, config.warmup_steps - 1)
    losses += more
    with Timer() as timed:
        state, timed_losses = run(state, config.warmup_steps, config.steps)
    losses += timed_losses
    return {
        "timer": timed,
        "compile_s": max(first_s - timed.seconds / config.steps, 0.0),
        "losses": [float(v) for v in jax.device_get(losses)],
        "step_flops": flops,
        "peak_flops_per_s": matmul_peak(config.peak_size, config.dtype),
        "device": str(jax.devices()[0].device_kind),
    }


def torch_device(config):
    """PyTorch set up for ``config``: ``torch.set_num_threads`` (``torch_threads``, 0: every
    core), the seed, and the device of ``config.device`` (``"gpu"``: CUDA). Returns the
    ``torch.device``; call it before building the model so its initial weights are seeded."""
    import torch

    torch.set_num_threads(config.torch_threads or os.cpu_count() or 1)
    torch.manual_seed(config.seed)
    return torch.device("cuda" if config.device == "gpu" else "cpu")


def torch_autocast(device, dtype: str):
    """``torch.autocast(bfloat16)`` on ``device`` when ``dtype`` is bfloat16, else a no-op."""
    import torch

    if dtype == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_torch_steps(config, optimizer, batches: Sequence, loss_of: Callable, autocast=None) -> dict:
    """Time ``config.steps`` eager PyTorch steps after ``config.warmup_steps`` untimed ones.

    Step i computes ``loss_of(batches[i % len(batches)])`` (a scalar tensor; under
    ``autocast`` when given), backpropagates it and steps ``optimizer``; on a GPU
    (``config.device == "gpu"``) the timer waits for the device. Returns what
    :func:`run_jax_steps` does: ``timer``, ``compile_s`` (None: eager), every step's
    ``losses``, ``peak_flops_per_s`` (None) and the ``device`` name.
    """
    import torch

    gpu = config.device == "gpu"
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    autocast = contextlib.nullcontext() if autocast is None else autocast

    def step(i):
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_of(batches[i % len(batches)])
        loss.backward()
        optimizer.step()
        return loss.detach()

    losses = [step(i) for i in range(config.warmup_steps)]
    sync()
    with Timer() as timed:
        losses += [step(config.warmup_steps + i) for i in range(config.steps)]
        sync()
    return {
        "timer": timed,
        "compile_s": None,
        "losses": torch.stack(losses).float().cpu().tolist(),
        "peak_flops_per_s": None,
        "device": torch.cuda.get_device_name() if gpu else "cpu",
    }


def step_record(config, result: dict, unit: str) -> dict:
    """The JSON record of one timed case: the config's fields, ``{unit}_per_s`` (``batch``
    examples a step), ``steps_per_s``, ``ms_per_step``, ``cpu_ms_per_step`` (CPU time of all
    threads), ``seconds`` (timed steps), ``first_loss`` and ``final_loss`` (mean training loss
    of the first and of the last ``data_batches`` steps) and the rest of ``result``.

    ``result`` is what a runner returned: ``timer`` and either every step's ``losses`` (as
    from :func:`run_jax_steps`; consumed) or ``first_loss`` and ``final_loss``. ``config`` has
    ``steps``, ``batch`` and ``data_batches``. Raises FloatingPointError when a loss is not
    finite.
    """
    result = dict(result)
    timed = result.pop("timer")
    if "losses" in result:
        losses = result.pop("losses")
        parts = (losses[: config.data_batches], losses[-config.data_batches :])
        result["first_loss"], result["final_loss"] = (sum(p) / len(p) for p in parts)
    first, final = result.pop("first_loss"), result.pop("final_loss")
    if not (math.isfinite(first) and math.isfinite(final)):
        raise FloatingPointError(
            f"{config}: training losses {first} (first) and {final} (final) are not finite; "
            f"the benchmark did not train"
        )
    return {
        **dataclasses.asdict(config),
        f"{unit}_per_s": config.steps * config.batch / timed.seconds,
        "steps_per_s": config.steps / timed.seconds,
        "ms_per_step": 1e3 * timed.seconds / config.steps,
        "cpu_ms_per_step": 1e3 * timed.cpu_seconds / config.steps,
        "seconds": timed.seconds,
        "first_loss": first,
        "final_loss": final,
        **result,
    }

"""What every benchmark shares: case configs as command lines, one fresh process per case,
round-robin repeats, medians, machine information and goals; timers, XLA's FLOP count of a
step, a measured matmul peak, the timed loop of jitted steps and the record of a case.

Lecture: seed 004 §7 "Optimization" (line 1841): a training step's cost is what these
benchmarks time. A benchmark module (:mod:`benchmarks.mlp`, :mod:`benchmarks.cnn`) defines a
frozen ``CaseConfig`` dataclass with a ``framework`` field and ``run_case(config) -> record``;
its ``main`` is :func:`case_main`, and :mod:`benchmarks.run` drives it with
:func:`run_round_robin`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = [
    "FRAMEWORKS",
    "Timer",
    "fresh_jax_compiles",
    "step_flops",
    "matmul_peak",
    "run_jax_steps",
    "step_record",
    "case_argv",
    "parse_case",
    "case_main",
    "run_in_process",
    "run_round_robin",
    "spread",
    "summarize",
    "machine_info",
    "make_goal",
    "check_frameworks",
    "utc_now",
]

FRAMEWORKS = ("jaxnets", "flax", "torch")  # every benchmark compares these three
_ROOT = Path(__file__).resolve().parent.parent
_TIMEOUT_S = 900
# JAX_PLATFORMS per --device; torch picks its device from the case config.
_JAX_PLATFORMS = {"cpu": "cpu", "gpu": "cuda"}


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
    """
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
    ``train_step(state, (x, y)) -> (state, {"loss": ...})``. ``config`` also has ``peak_size``
    and ``dtype`` (of the peak matmul). Returns ``timer`` (:class:`Timer` of the timed steps),
    ``compile_s`` (first step minus a steady one), every step's ``losses``, ``step_flops``
    (XLA's count; None without ``count_flops``: XLA counts a ``lax.scan`` body once, not once
    per iteration), ``peak_flops_per_s`` (:func:`matmul_peak`) and the ``device`` kind.
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


def step_record(config, result: dict, unit: str) -> dict:
    """The JSON record of one timed case: the config's fields, ``{unit}_per_s`` (``batch``
    examples a step), ``steps_per_s``, ``ms_per_step``, ``cpu_ms_per_step`` (CPU time of all
    threads), ``seconds`` (timed steps), ``first_loss`` and ``final_loss`` (mean training loss
    of the first and of the last ``data_batches`` steps) and the rest of ``result``.

    ``result`` is what a runner returned (``timer`` and ``losses`` are consumed, as from
    :func:`run_jax_steps`). Raises FloatingPointError when a loss is not finite.
    """
    result = dict(result)
    losses, timed = result.pop("losses"), result.pop("timer")
    first, final = (
        sum(part) / len(part)
        for part in (losses[: config.data_batches], losses[-config.data_batches :])
    )
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


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def case_argv(config) -> list[str]:
    """The command-line flags that rebuild ``config`` in :func:`case_main`: every field
    without a default or differing from it (tuples as several values)."""
    argv = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.default is not dataclasses.MISSING and value == field.default:
            continue
        values = value if isinstance(value, tuple) else (value,)
        argv += [_flag(field.name), *map(str, values)]
    return argv


def _parser(config_cls: type, description: str) -> argparse.ArgumentParser:
    """One flag per dataclass field, typed from its annotation; fields without a default
    are required."""
    p = argparse.ArgumentParser(description=description)
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        hint = hints[field.name]
        required = field.default is dataclasses.MISSING
        default = None if required else field.default
        if typing.get_origin(hint) is tuple:
            (item, *_) = typing.get_args(hint)
            p.add_argument(_flag(field.name), type=item, nargs="+", required=required)
        else:
            p.add_argument(_flag(field.name), type=hint, required=required, default=default)
    return p


def parse_case(config_cls: type, argv: Sequence[str] | None):
    """The ``config_cls`` instance that flags ``argv`` (as :func:`case_argv` writes them) spell."""
    description = (sys.modules[config_cls.__module__].__doc__ or "").split("\n\n")[0]
    args = vars(_parser(config_cls, description).parse_args(argv))
    return config_cls(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in args.items() if v is not None}
    )


def case_main(
    config_cls: type, run_case: Callable[[typing.Any], dict], argv: Sequence[str] | None
) -> dict:
    """A benchmark module's CLI: parse a ``config_cls`` from flags (:func:`parse_case`), run
    it, print the record as the last line of stdout (what :func:`run_in_process` reads)."""
    record = run_case(parse_case(config_cls, argv))
    print(json.dumps(record), flush=True)
    return record


def run_in_process(module: str, config, device: str) -> dict:
    """Run ``python -m <module> <flags of config>`` in a fresh interpreter; return its record.

    ``device`` ("cpu" or "gpu") sets ``JAX_PLATFORMS`` for the child.
    """
    if device not in _JAX_PLATFORMS:
        raise ValueError(f"device must be one of {', '.join(_JAX_PLATFORMS)}; got {device!r}")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    env["JAX_PLATFORMS"] = _JAX_PLATFORMS[device]
    cmd = [sys.executable, "-m", module, *case_argv(config)]
    proc = subprocess.run(
        cmd, cwd=_ROOT, env=env, capture_output=True, text=True, timeout=_TIMEOUT_S
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"benchmark case `{' '.join(cmd[1:])}` failed (exit {proc.returncode}):\n"
            f"{proc.stderr[-4000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_round_robin(
    module: str,
    configs: Sequence,
    repeats: int,
    device: str,
    describe: Callable[[dict], str],
    log: Callable[[str], None] = print,
) -> list[list[dict]]:
    """Run every config ``repeats`` times, each in its own process, round-robin (all cases
    once, then again) so a change in machine load falls on every case alike.

    Returns one list of records per config, in the order of ``configs``; ``describe`` turns a
    record into the text of its log line.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats}")
    records: list[list[dict]] = [[] for _ in configs]
    for r in range(repeats):
        for config, recs in zip(configs, records, strict=True):
            rec = run_in_process(module, config, device)
            recs.append(rec)
            log(f"[{r + 1}/{repeats}] {rec['framework']:7s} {describe(rec)}")
    return records


def spread(values: Sequence[float | None]) -> dict | None:
    """``{"median", "min", "max"}`` of ``values``; None if any value is None (not measured)."""
    if any(v is None for v in values):
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(records: Sequence[dict], identity: Sequence[str], spread_keys: Sequence[str]) -> dict:
    """One case over its repeats: the ``identity`` fields of the first record, a
    :func:`spread` of each of ``spread_keys``, and the raw ``repeats`` (those keys only)."""
    first = records[0]
    return {
        **{k: first[k] for k in identity},
        **{k: spread([r[k] for r in records]) for k in spread_keys},
        "repeats": [{k: r[k] for k in spread_keys} for r in records],
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(records: Sequence[dict], load_before: Sequence[float]) -> dict:
    """Where the records were measured: CPU, cores, load averages (1, 5, 15 min) before and
    after the run, library versions and the devices the cases report."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("jax", "jaxlib", "flax", "optax", "torch", "numpy")},
        "jax_devices": sorted({r["device"] for r in records if r["framework"] != "torch"}),
        "torch_devices": sorted({r["device"] for r in records if r["framework"] == "torch"}),
    }


def make_goal(goal: str, metric: str, value: float, threshold: float, direction: str, **where):
    """A goal record; ``holds`` is computed from value, threshold and direction
    ("below": value <= threshold, "above": value >= threshold)."""
    if direction not in ("below", "above"):
        raise ValueError(f"direction must be 'below' or 'above'; got {direction!r}")
    holds = value <= threshold if direction == "below" else value >= threshold
    return {
        "goal": goal,
        "metric": metric,
        **where,
        "value": value,
        "threshold": threshold,
        "direction": direction,
        "holds": holds,
    }


def check_frameworks(frameworks: Sequence[str], known: Sequence[str] = FRAMEWORKS) -> None:
    """Raise ValueError for a framework not in ``known``, SystemExit when torch is asked for
    but not installed."""
    unknown = sorted(set(frameworks) - set(known))
    if unknown:
        raise ValueError(f"unknown frameworks {unknown}; choose from {', '.join(known)}")
    if "torch" in frameworks and importlib.util.find_spec("torch") is None:
        raise SystemExit(
            "torch is not installed: `pip install torch==2.13.0` (the CPU wheel; `make bench` "
            "does this) or leave it out with --frameworks jaxnets flax"
        )


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (a result's ``created``)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

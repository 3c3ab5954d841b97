"""The LSTM benchmark's plan: which cases :mod:`benchmarks.run` starts for ``--cases lstm``,
their ratios and goals, and its command-line flags.

Lectures: seed 004 Lecture 13 "Recurrent Neural Nets" (line 2721, §3 backprop through time)
and Lecture 14 "Learning Long-Term Dependencies" (line 3022, §4 LSTM). What one case trains
and how it is timed is in :mod:`benchmarks.rnn`.

Per device the cases are: jaxnets at every ``unroll`` of the sweep (CPU: 1, 2, 4, 8 and full;
GPU: 1, 2, 4, 8 and 16), hand-written Flax at the comparison ``unroll`` (CPU 1, GPU 8) and
PyTorch's ``nn.LSTM``. The sizes are H=256, T=100, batch 32 on the CPU and H=1024, T=200,
batch 128 on a GPU (cuDNN's LSTM), both with 64 input features. The goal (CPU): jaxnets' step
at the comparison unroll is at least as fast as PyTorch's. The jaxnets/Flax step-time ratio
is reported without a goal.
"""

from __future__ import annotations

import argparse
import os
import statistics

from benchmarks import common, rnn

__all__ = ["FULL", "SHAPES", "resolve_unroll", "rnn_ratios_and_goals", "run_rnn_benchmark"]

FULL = "full"  # an unroll of every time step
SHAPES = {
    "cpu": {"batch": 32, "time": 100, "features": 64, "hidden": 256},
    "gpu": {"batch": 128, "time": 200, "features": 64, "hidden": 1024},
}
# The unroll of the jaxnets/Flax/PyTorch comparison, and the sweep of jaxnets' step. On the
# CPU the comparison runs at the default, 1 (unrolling measured no faster there); on a GPU at 8
# (not measured here: a while-loop iteration costs kernel launches there). A fully unrolled
# T=100 CPU step compiles for ~3 minutes and runs ~3 s; at T=200 on a GPU 16 is the sweep's end.
_COMPARISON_UNROLL = {"cpu": 1, "gpu": 8}
_SWEEP = {"cpu": (1, 2, 4, 8, FULL), "gpu": (1, 2, 4, 8, 16)}
# Timed steps per process: a few seconds of steps on a 2-core CPU (~0.15 s a step), about a
# second on an H100 (a step is ~0.7 TFLOPs at the GPU sizes); a fully unrolled case times
# _FULL_UNROLL_STEPS.
_STEPS = {"cpu": 20, "gpu": 100}
_FULL_UNROLL_STEPS = 5
_PEAK_SIZE = {"cpu": 1024, "gpu": 8192}
_MIN_SPEEDUP_VS_TORCH = 1.0
_KEYS = (
    "sequences_per_s",
    "ms_per_step",
    "cpu_ms_per_step",
    "compile_s",
    "seconds",
    "first_loss",
    "final_loss",
    "peak_flops_per_s",
)


def resolve_unroll(value: int | str, time: int) -> int:
    """``value`` as a number of time steps per scan iteration: ``"full"`` is ``time``.

    Raises ValueError unless it is ``"full"`` or an integer in [1, time].
    """
    if value == FULL:
        return time
    try:
        steps = int(value)
    except ValueError:
        steps = 0
    if not 1 <= steps <= time:
        raise ValueError(f"unroll must be {FULL!r} or an integer in [1, {time}]; got {value!r}")
    return steps


def rnn_ratios_and_goals(
    cases: list[dict], device: str, comparison_unroll: int
) -> tuple[list[dict], list[dict]]:
    """Ratios per (batch, jaxnets unroll) of summarized LSTM ``cases``, and the goals.

    Each ratio has ``jaxnets_over_torch_sequences_per_s`` (above 1: jaxnets faster),
    ``jaxnets_over_flax_step_time`` (below 1: jaxnets faster; where Flax ran at that unroll),
    ``over_unroll_1_step_time`` (jaxnets' step time over its own at unroll 1), ``step_flops``,
    the median measured ``peak_flops_per_s`` of the JAX processes and ``peak_fraction``
    (jaxnets' at that unroll, and Flax's and PyTorch's where they ran). None where a number is
    missing. Goal, on the CPU at ``comparison_unroll``: jaxnets/PyTorch sequences/s >= 1.0.
    """
    by = {(c["framework"], c["batch"], c["unroll"]): c for c in cases}

    def median(case, key):
        return case[key]["median"] if case and case[key] else None

    # PyTorch has no unroll: its one case per batch compares with every jaxnets unroll.
    torch_cases = {c["batch"]: c for c in cases if c["framework"] == "torch"}
    ratios, goals = [], []
    for batch, unroll in sorted(key[1:] for key in by if key[0] == "jaxnets"):
        jx, fx = by[("jaxnets", batch, unroll)], by.get(("flax", batch, unroll))
        th = torch_cases.get(batch)
        base = by.get(("jaxnets", batch, 1))
        speed = median(jx, "sequences_per_s")
        vs_torch = speed / median(th, "sequences_per_s") if th else None
        flops = jx["step_flops"]
        peaks = [r["peak_flops_per_s"] for c in (jx, fx) if c for r in c["repeats"]]
        peak = statistics.median(peaks) if peaks else None
        ratios.append(
            {
                "batch": batch,
                "unroll": unroll,
                "jaxnets_over_torch_sequences_per_s": vs_torch,
                "jaxnets_over_flax_step_time": (
                    median(jx, "ms_per_step") / median(fx, "ms_per_step") if fx else None
                ),
                "over_unroll_1_step_time": (
                    median(jx, "ms_per_step") / median(base, "ms_per_step") if base else None
                ),
                "step_flops": flops,
                "peak_flops_per_s": peak,
                "peak_fraction": {
                    f: flops * median(c, "sequences_per_s") / batch / peak if peak else None
                    for f, c in (("jaxnets", jx), ("flax", fx), ("torch", th))
                    if c
                },
            }
        )
        if vs_torch is not None and device == "cpu" and unroll == comparison_unroll:
            goals.append(
                common.make_goal(
                    f"LSTM batch {batch}, unroll {unroll}: jaxnets sequences/s / PyTorch "
                    f"nn.LSTM sequences/s >= {_MIN_SPEEDUP_VS_TORCH}",
                    "jaxnets_over_torch_sequences_per_s",
                    vs_torch,
                    _MIN_SPEEDUP_VS_TORCH,
                    "above",
                    batch=batch,
                    unroll=unroll,
                )
            )
    return ratios, goals


def run_rnn_benchmark(
    frameworks: tuple[str, ...] = rnn.FRAMEWORKS,
    *,
    device: str = "cpu",
    batches: tuple[int, ...] | None = None,
    time: int | None = None,
    hidden: int | None = None,
    unroll: int | str | None = None,
    unrolls: tuple[int | str, ...] | None = None,
    steps: int | None = None,
    repeats: int = 3,
    dtype: str = "float32",
    torch_threads: int = 0,
    peak_size: int | None = None,
    log=print,
) -> dict:
    """The LSTM benchmark: every planned case ``repeats`` times, round-robin.

    Sizes, the comparison ``unroll``, the sweep's ``unrolls`` (``"full"`` allowed), ``steps``
    and ``peak_size`` default per device (see the module docstring); jaxnets runs at every
    unroll of the sweep and the comparison, Flax at the comparison unroll, PyTorch once per
    batch. Returns ``{"benchmark": "rnn", "created", "machine", "config", "cases", "ratios",
    "goals"}``; ``cases[i]`` has framework, batch, unroll, time, hidden, steps, dtype, device,
    step_flops, a ``{"median", "min", "max"}`` of each of sequences_per_s, ms_per_step,
    cpu_ms_per_step, compile_s (None for torch), seconds, first_loss, final_loss,
    peak_flops_per_s (None for torch), and the raw ``repeats``; ratios and goals as
    :func:`rnn_ratios_and_goals`.
    """
    common.check_frameworks(frameworks, rnn.FRAMEWORKS)
    if device not in SHAPES:
        raise ValueError(f"device must be one of {', '.join(SHAPES)}; got {device!r}")
    shape = {**SHAPES[device], **{k: v for k, v in (("time", time), ("hidden", hidden)) if v}}
    compare = resolve_unroll(unroll or _COMPARISON_UNROLL[device], shape["time"])
    sweep = sorted(
        {resolve_unroll(u, shape["time"]) for u in unrolls or _SWEEP[device]} | {compare}
    )
    plan = [
        (framework, u)
        for framework in frameworks
        for u in {"jaxnets": sweep, "flax": [compare], "torch": [1]}[framework]
    ]

    def timed_steps(u):
        default = min(_STEPS[device], _FULL_UNROLL_STEPS) if u == shape["time"] else _STEPS[device]
        return steps or default

    configs = [
        rnn.CaseConfig(
            framework=framework,
            **{**shape, "batch": batch},
            unroll=u,
            steps=timed_steps(u),
            data_batches=min(4, timed_steps(u)),
            device=device,
            dtype=dtype,
            torch_threads=torch_threads,
            peak_size=peak_size or _PEAK_SIZE[device],
        )
        for batch in batches or (shape["batch"],)
        for framework, u in plan
    ]
    load_before = os.getloadavg()
    records = common.run_round_robin(
        "benchmarks.rnn",
        configs,
        repeats,
        device,
        lambda r: (
            f"LSTM batch {r['batch']:4d} unroll {r['unroll']:3d}: "
            f"{r['sequences_per_s']:9.1f} sequences/s  {r['ms_per_step']:8.2f} ms/step"
        ),
        log,
    )
    identity = ("framework", "batch", "unroll", "time", "hidden", "steps", "dtype", "device")
    cases = [
        {**common.summarize(recs, identity, _KEYS), "step_flops": recs[0]["step_flops"]}
        for recs in records
    ]
    ratios, goals = rnn_ratios_and_goals(cases, device, compare)
    first = configs[0]
    return {
        "benchmark": "rnn",
        "created": common.utc_now(),
        "machine": common.machine_info([r for recs in records for r in recs], load_before),
        "config": {
            "frameworks": list(frameworks),
            "batches": sorted({c.batch for c in configs}),
            **{k: getattr(first, k) for k in ("time", "features", "hidden")},
            "unroll": compare,
            "unrolls": sweep,
            "repeats": repeats,
            "device": device,
            "dtype": dtype,
            "steps": first.steps,
            "full_unroll_steps": timed_steps(shape["time"]),
            "warmup_steps": first.warmup_steps,
            "data_batches": first.data_batches,
            "optimizer": "adam",
            "learning_rate": first.learning_rate,
            "torch_threads": torch_threads or os.cpu_count(),
            "peak_size": first.peak_size,
        },
        "cases": cases,
        "ratios": ratios,
        "goals": goals,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The LSTM flags of ``python -m benchmarks.run`` (``--batches``, ``--steps``, ``--dtype``,
    ``--repeats``, ``--torch-threads`` and ``--peak-size`` are shared with the other cases)."""
    group = parser.add_argument_group("LSTM")
    group.add_argument("--unroll", default=None, help="comparison unroll: an integer or 'full'")
    group.add_argument("--unrolls", nargs="+", default=None, help="jaxnets' unroll sweep")
    group.add_argument("--time", type=int, default=None, help="sequence length T")
    group.add_argument("--lstm-hidden", type=int, default=None, help="LSTM units H")


def from_arguments(args: argparse.Namespace, frameworks: tuple[str, ...], log) -> dict:
    """:func:`run_rnn_benchmark` with the settings of parsed ``python -m benchmarks.run``
    flags; ``--quick``: 1 repeat of 4 steps, the sweep cut to unroll 1 and the comparison."""
    quick = {"repeats": 1, "steps": 4, "unrolls": (1,)} if args.quick else {}
    return run_rnn_benchmark(
        frameworks,
        device=args.device,
        batches=args.batches and tuple(args.batches),
        time=args.time,
        hidden=args.lstm_hidden,
        unroll=args.unroll,
        unrolls=args.unrolls and tuple(args.unrolls) or quick.get("unrolls"),
        steps=args.steps or quick.get("steps"),
        repeats=args.repeats or quick.get("repeats", 3),
        dtype=args.dtype or "float32",
        torch_threads=args.torch_threads,
        peak_size=args.peak_size,
        log=log,
    )

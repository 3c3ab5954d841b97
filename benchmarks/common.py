"""What every benchmark shares: the driver's settings, one fresh process per case (its config
as flags of :mod:`jaxnets.cli_config`), round-robin repeats, medians, machine information,
the speed ratios against hand-written Flax and PyTorch, goals (among them the regression
goals against the recorded results) and the result's shape.

Lecture: seed 004 §7 "Optimization" (line 1841): a training step's cost is what these
benchmarks time. A case module (:mod:`benchmarks.mlp`, :mod:`benchmarks.cnn`,
:mod:`benchmarks.rnn`, :mod:`benchmarks.ensemble`, :mod:`benchmarks.partition`) declares
``NAME``, ``CASES``, ``RESULT_FILES``, a frozen ``Plan`` dataclass of its options and
``run_benchmark(settings, plan, cases, log) -> result``; a module timed in child processes
also has a frozen ``CaseConfig`` and ``run_case(config) -> record``, and its ``main`` is
:func:`case_main`. A module whose result has ratio rows declares ``WATCHED``, a
:class:`Watched` naming which of its ratios are higher-is-better: :mod:`benchmarks.run`, the
one driver, then adds :func:`regression_goals` against the recorded result of the same device.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from jaxnets.cli_config import config_from_args, config_to_args

__all__ = [
    "FRAMEWORKS",
    "MAX_STEP_TIME_VS_FLAX",
    "REGRESSION_TOLERANCE",
    "Settings",
    "Watched",
    "benchmark_result",
    "case_main",
    "check_frameworks",
    "choice",
    "flax_goal",
    "machine_info",
    "make_goal",
    "median",
    "read_result",
    "regression_goals",
    "run_cases",
    "run_in_process",
    "run_round_robin",
    "spread",
    "summarize",
    "utc_now",
    "versus",
]

FRAMEWORKS = ("jaxnets", "flax", "torch")  # the step benchmarks compare these three
# Goal of issue 2 for every step benchmark: a jaxnets step costs at most 5% more than a
# hand-written jitted Flax step.
MAX_STEP_TIME_VS_FLAX = 1.05
# Goal of issue 20: no watched ratio more than 10% worse than the recorded one.
REGRESSION_TOLERANCE = 0.10
_ROOT = Path(__file__).resolve().parent.parent
_TIMEOUT_S = 900
# JAX_PLATFORMS per --device; torch picks its device from the case config.
_JAX_PLATFORMS = {"cpu": "cpu", "gpu": "cuda"}


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the driver's flags set for every benchmark.

    Attributes:
      device: ``"cpu"`` or ``"gpu"`` (JAX's platform and PyTorch's device in the cases).
      quick: a smoke run: 1 repeat and few steps.
      frameworks: which of :data:`FRAMEWORKS` the step benchmarks (MLP, conv nets, LSTM) run.
      repeats: processes (rounds for the ensemble) per case; None: each benchmark's default.
      torch_threads: ``torch.set_num_threads`` of the PyTorch cases; 0 means every core.
    """

    device: Literal["cpu", "gpu"] = "cpu"
    quick: bool = False
    frameworks: tuple[str, ...] = FRAMEWORKS
    repeats: int | None = None
    torch_threads: int = 0

    def __post_init__(self):
        choice("device", self.device, tuple(_JAX_PLATFORMS))
        unknown = sorted(set(self.frameworks) - set(FRAMEWORKS))
        if unknown:
            raise ValueError(f"unknown frameworks {unknown}; choose from {', '.join(FRAMEWORKS)}")
        if self.repeats is not None and self.repeats < 1:
            raise ValueError(f"repeats must be >= 1; got {self.repeats}")

    def repeats_for(self, default: int) -> int:
        """``repeats`` if given, else 1 with ``quick``, else the benchmark's ``default``."""
        return self.repeats or (1 if self.quick else default)


def choice(name: str, value: Any, options: Sequence) -> None:
    """Raise ValueError naming ``name`` and ``options`` unless ``value`` is one of them."""
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(str, options))}")


def case_main(
    config_cls: type, run_case: Callable[[Any], dict], argv: Sequence[str] | None
) -> dict:
    """A case module's process entry: parse a ``config_cls`` from flags
    (:func:`jaxnets.cli_config.config_from_args`), run it, print the record as the last line
    of stdout (what :func:`run_in_process` reads)."""
    description = (sys.modules[config_cls.__module__].__doc__ or "").split("\n\n")[0]
    record = run_case(config_from_args(config_cls, argv, description))
    print(json.dumps(record), flush=True)
    return record


def run_in_process(module: str, config, device: str) -> dict:
    """Run ``python -m <module> <flags of config>`` in a fresh interpreter; return its record.

    ``device`` ("cpu" or "gpu") sets ``JAX_PLATFORMS`` for the child.
    """
    choice("device", device, tuple(_JAX_PLATFORMS))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    env["JAX_PLATFORMS"] = _JAX_PLATFORMS[device]
    cmd = [sys.executable, "-m", module, *config_to_args(config)]
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


def run_cases(
    module: str,
    configs: Sequence,
    repeats: int,
    device: str,
    describe: Callable[[dict], str],
    log: Callable[[str], None],
) -> tuple[list[list[dict]], dict]:
    """:func:`run_round_robin` (looked up at call time, so tests can replace it), and the
    :func:`machine_info` of the records: ``(records per config, machine)``."""
    load_before = os.getloadavg()
    records = run_round_robin(module, configs, repeats, device, describe, log)
    return records, machine_info([r for recs in records for r in recs], load_before)


def spread(values: Sequence[float | None]) -> dict | None:
    """``{"median", "min", "max"}`` of ``values``; None if any value is None (not measured)."""
    if any(v is None for v in values):
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def median(case: dict | None, key: str) -> float | None:
    """The median of ``case[key]`` (a :func:`spread`); None without a case or a measurement."""
    return case[key]["median"] if case and case[key] else None


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
    choice("direction", direction, ("below", "above"))
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


def versus(by: dict, key: tuple, speed: str) -> tuple[dict | None, float | None, float | None]:
    """jaxnets against the others on one case ``key``: ``by[(framework, *key)]`` are summarized
    cases. Returns (jaxnets' case, its step time over Flax's: below 1 is faster, its ``speed``
    over PyTorch's: above 1 is faster); None where a framework did not run."""
    jx, fx, th = (by.get((f, *key)) for f in FRAMEWORKS)
    vs_flax = median(jx, "ms_per_step") / median(fx, "ms_per_step") if jx and fx else None
    vs_torch = median(jx, speed) / median(th, speed) if jx and th else None
    return jx, vs_flax, vs_torch


def flax_goal(label: str, vs_flax: float, **where) -> dict:
    """The goal of every step benchmark: jaxnets' step time over hand-written Flax's
    <= :data:`MAX_STEP_TIME_VS_FLAX`, on the case ``label`` (``where``: its identity)."""
    return make_goal(
        f"{label}: jaxnets step time / Flax step time <= {MAX_STEP_TIME_VS_FLAX}",
        "jaxnets_over_flax_step_time",
        vs_flax,
        MAX_STEP_TIME_VS_FLAX,
        "below",
        **where,
    )


@dataclasses.dataclass(frozen=True)
class Watched:
    """Which ratios of a benchmark's ``ratios`` rows the regression goals compare with the
    recorded result (:func:`regression_goals`).

    Attributes:
      identity: the fields that name a row, and its jaxnets case in ``cases``
        (e.g. ``("model", "batch")``).
      higher_is_better: each watched ratio -> True for a speed ratio (above 1: jaxnets faster,
        e.g. ``jaxnets_over_torch_images_per_s``), False for a step-time ratio (below 1:
        jaxnets faster, e.g. ``jaxnets_over_flax_step_time``).
    """

    identity: tuple[str, ...]
    higher_is_better: Mapping[str, bool]


def read_result(path: Path) -> dict | None:
    """The benchmark result (JSON) at ``path``; None where there is no file."""
    return json.loads(path.read_text()) if path.is_file() else None


def _work(cases: Sequence[dict], where: dict) -> dict | None:
    """What the jaxnets case at ``where`` (identity field -> value) timed: its plain fields
    (framework, sizes, steps, dtype, device; not the spreads of its measurements); None where
    there is no jaxnets case."""
    for case in cases:
        if case["framework"] == "jaxnets" and all(case.get(k) == v for k, v in where.items()):
            return {k: v for k, v in case.items() if isinstance(v, (str, int, float))}
    return None


def regression_goals(
    result: dict,
    recorded: dict | None,
    watched: Watched,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """A goal for every watched ratio of ``result`` that ``recorded`` (the earlier result of
    the same benchmark and device, or None) also has, for the same row.

    Goal ``"<identity>: <ratio> within 10% of the recorded <value>"``: a higher-is-better
    ratio holds at or above ``(1 - REGRESSION_TOLERANCE)`` x the recorded value, a
    lower-is-better one at or below ``(1 + REGRESSION_TOLERANCE)`` x; the record also has
    ``recorded``. Rows whose jaxnets case timed other work than the recorded one (other
    steps, sizes or dtype, e.g. a ``--quick`` run) are not compared: ``log`` says which. Nor is
    a result recorded on another CPU model: a ratio against PyTorch moves with the CPU (the
    MLP's was 2.5 on a 2-core AMD EPYC and 1.45 on a 2-core Xeon with the same code).
    """
    if recorded is None:
        return []
    cpus = [r.get("machine", {}).get("cpu_model") for r in (result, recorded)]
    if cpus[0] != cpus[1]:
        log(
            f"{result['benchmark']}: not compared with the recorded ratios, measured on another "
            f"CPU ({cpus[1]}; this run: {cpus[0]})"
        )
        return []
    rows = {tuple(r[k] for k in watched.identity): r for r in recorded.get("ratios", [])}
    goals = []
    for row in result["ratios"]:
        before = rows.get(tuple(row[k] for k in watched.identity))
        if before is None:
            continue
        where = {k: row[k] for k in watched.identity}
        label = ", ".join(f"{k} {v}" for k, v in where.items())
        now, then = (_work(r["cases"], where) or {} for r in (result, recorded))
        differing = sorted(k for k in {*now, *then} if now.get(k) != then.get(k))
        if differing:
            log(
                f"{label}: not compared with the recorded ratios, whose jaxnets case timed "
                f"other work ({', '.join(differing)} differ)"
            )
            continue
        for metric, higher in watched.higher_is_better.items():
            value, old = row.get(metric), before.get(metric)
            if value is None or old is None:
                continue
            goal = make_goal(
                f"{label}: {metric} within {REGRESSION_TOLERANCE:.0%} of the recorded {old:.3f}",
                metric,
                value,
                old * (1 - REGRESSION_TOLERANCE if higher else 1 + REGRESSION_TOLERANCE),
                "above" if higher else "below",
                **where,
            )
            goals.append({**goal, "recorded": old})
    return goals


def benchmark_result(name: str, machine: dict, config: dict, cases: list, **rest) -> dict:
    """The shape of every ``<out>/<name>.json``: ``{"benchmark", "created", "machine",
    "config", "cases", **rest}`` (``rest``: e.g. ``ratios`` and ``goals``)."""
    return {
        "benchmark": name,
        "created": utc_now(),
        "machine": machine,
        "config": config,
        "cases": cases,
        **rest,
    }


def check_frameworks(frameworks: Sequence[str]) -> None:
    """Raise SystemExit when torch is asked for but not installed."""
    if "torch" in frameworks and importlib.util.find_spec("torch") is None:
        raise SystemExit(
            "torch is not installed: `pip install torch==2.13.0` (the CPU wheel; `make bench` "
            "does this) or leave it out with --frameworks jaxnets flax"
        )


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (a result's ``created``)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

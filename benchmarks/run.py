"""Run the benchmarks: jaxnets vs hand-written Flax vs PyTorch eager, one process per case.

Lectures: seed 004 §7 "Optimization" (line 1841: SGD step cost against batch size), seed 001
"Vanilla Minibatch Gradient Descent" (line 328), and seed 004 Lecture 10 "Image
Classification" (line 2311: LeNet-5), Lecture 14 §4 "ResNets" (line 3254) and §4 LSTM (line
3022). What each case trains and how it is timed is in :mod:`benchmarks.mlp`,
:mod:`benchmarks.cnn` and :mod:`benchmarks.rnn` (whose plan is :mod:`benchmarks.run_rnn`).

``python -m benchmarks.run --out benchmarks/results`` (what ``make bench`` runs) starts every
case of ``--cases`` (``mlp``, ``lenet5``, ``resnet18``, ``lstm``) ``--repeats`` times, each in a
fresh process of this interpreter, round-robin so a change in machine load falls on every
case alike; writes ``<out>/mlp.json``, ``<out>/cnn.json`` and ``<out>/rnn.json`` (machine,
config, per-case median/min/max, ratios, goals) and prints the markdown tables of
:mod:`benchmarks.readme_table`. ``--device gpu`` runs the conv nets on JAX's GPU and
PyTorch's CUDA device in bfloat16 (``<out>/cnn_gpu.json``), e.g. ``--cases resnet18 --device
gpu``, and the LSTM at H=1024, T=200, batch 128 against cuDNN (``<out>/rnn_gpu.json``, float32
unless ``--dtype bfloat16``). ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

from benchmarks import cnn, common, mlp, run_rnn
from benchmarks.common import check_frameworks as _check_frameworks
from benchmarks.common import utc_now as _now
from benchmarks.readme_table import render_markdown

__all__ = [
    "CASES",
    "run_mlp_benchmark",
    "run_cnn_benchmark",
    "cnn_ratios_and_goals",
    "main",
]

CASES = ("mlp", *cnn.MODELS, "lstm")
FRAMEWORKS = mlp.FRAMEWORKS
# Goals of issue 2: a jaxnets step costs at most 5% more than a hand-written jitted Flax
# step, and beats eager PyTorch by 1.3x where Python overhead dominates (MLP, small batch)
# and by 1.8x on an H100 for the ResNet-18 in bfloat16.
_MAX_STEP_TIME_VS_FLAX = 1.05
_MIN_SPEEDUP_VS_TORCH = 1.3
_TORCH_GOAL_BATCH = 8
_MIN_GPU_SPEEDUP_VS_TORCH = 1.8
_GPU_GOAL_MODEL = "resnet18"
# Conv-net batch sizes and the images each process times, per device: a few seconds of steps
# per process on a 2-core CPU (the ResNet's XLA compile takes longer than its steps), about
# a second of JAX steps on an H100 (a 32x32 ResNet-18 step at batch 512 is ~65 GFLOPs).
_CNN_BATCHES = {
    "cpu": {"lenet5": (32, 256), "resnet18": (32,)},
    "gpu": {"lenet5": (256,), "resnet18": (512,)},
}
_CNN_TIMED_IMAGES = {
    "cpu": {"lenet5": 6400, "resnet18": 256},
    "gpu": {"lenet5": 1_024_000, "resnet18": 512_000},
}
# Mixed precision where it pays: the ResNet on a GPU (jaxnets' LeNet-5 is float32 only).
_CNN_DTYPES = {
    "cpu": {"lenet5": "float32", "resnet18": "float32"},
    "gpu": {"lenet5": "float32", "resnet18": "bfloat16"},
}
_PEAK_SIZE = {"cpu": 1024, "gpu": 8192}
_RESULT_FILES = {
    ("mlp", "cpu"): "mlp.json",
    ("cnn", "cpu"): "cnn.json",
    ("cnn", "gpu"): "cnn_gpu.json",
    ("rnn", "cpu"): "rnn.json",
    ("rnn", "gpu"): "rnn_gpu.json",
}


# -- MLP ----------------------------------------------------------------------------------------
_MLP_KEYS = (
    "steps_per_s",
    "ms_per_step",
    "cpu_ms_per_step",
    "compile_s",
    "seconds",
    "first_loss",
    "final_loss",
)


def _mlp_ratios_and_goals(cases: list[dict]) -> tuple[list[dict], list[dict]]:
    by = {(c["framework"], c["batch"]): c for c in cases}
    ratios, goals = [], []
    for batch in sorted({c["batch"] for c in cases}):
        jx, fx, th = (by.get((f, batch)) for f in FRAMEWORKS)
        vs_flax = jx["ms_per_step"]["median"] / fx["ms_per_step"]["median"] if jx and fx else None
        vs_torch = jx["steps_per_s"]["median"] / th["steps_per_s"]["median"] if jx and th else None
        ratios.append(
            {
                "batch": batch,
                "jaxnets_over_flax_step_time": vs_flax,
                "jaxnets_over_torch_steps_per_s": vs_torch,
            }
        )
        if vs_flax is not None:
            goals.append(
                common.make_goal(
                    f"batch {batch}: jaxnets step time / Flax step time <= "
                    f"{_MAX_STEP_TIME_VS_FLAX}",
                    "jaxnets_over_flax_step_time",
                    vs_flax,
                    _MAX_STEP_TIME_VS_FLAX,
                    "below",
                    batch=batch,
                )
            )
        if vs_torch is not None and batch == _TORCH_GOAL_BATCH:
            goals.append(
                common.make_goal(
                    f"batch {batch}: jaxnets steps/s / PyTorch steps/s >= {_MIN_SPEEDUP_VS_TORCH}",
                    "jaxnets_over_torch_steps_per_s",
                    vs_torch,
                    _MIN_SPEEDUP_VS_TORCH,
                    "above",
                    batch=batch,
                )
            )
    return ratios, goals


def run_mlp_benchmark(
    frameworks: tuple[str, ...] = FRAMEWORKS,
    batches: tuple[int, ...] = (8, 128),
    *,
    repeats: int = 5,
    examples: int = 8192,
    epochs: int = 2,
    hidden: tuple[int, ...] = (512, 512),
    torch_threads: int = 0,
    log=print,
) -> dict:
    """The MLP benchmark (on the CPU): every (framework, batch) case ``repeats`` times.

    Returns ``{"benchmark": "mlp", "created", "machine", "config", "cases", "ratios",
    "goals"}``; ``cases[i]`` has framework, batch, steps (timed per repeat), device, a
    ``{"median", "min", "max"}`` of each of steps_per_s, ms_per_step, cpu_ms_per_step,
    compile_s (None for torch), seconds, first_loss, final_loss, and the raw ``repeats``.
    """
    _check_frameworks(frameworks)
    configs = [
        mlp.CaseConfig(
            framework=f,
            batch=b,
            examples=examples,
            epochs=epochs,
            hidden=tuple(hidden),
            torch_threads=torch_threads,
        )
        for b in batches
        for f in frameworks
    ]
    load_before = os.getloadavg()
    records = common.run_round_robin(
        "benchmarks.mlp",
        configs,
        repeats,
        "cpu",
        lambda r: (
            f"batch {r['batch']:4d}: {r['steps_per_s']:8.1f} steps/s  "
            f"{r['ms_per_step']:7.3f} ms/step"
        ),
        log,
    )
    cases = [
        common.summarize(recs, ("framework", "batch", "steps", "device"), _MLP_KEYS)
        for recs in records
    ]
    ratios, goals = _mlp_ratios_and_goals(cases)
    return {
        "benchmark": "mlp",
        "created": _now(),
        "machine": common.machine_info([r for recs in records for r in recs], load_before),
        "config": {
            "frameworks": list(frameworks),
            "batches": list(batches),
            "repeats": repeats,
            "examples": examples,
            "epochs": epochs,
            "warmup_epochs": configs[0].warmup_epochs,
            "hidden": list(hidden),
            "features": configs[0].features,
            "classes": configs[0].classes,
            "learning_rate": configs[0].learning_rate,
            "momentum": configs[0].momentum,
            "torch_threads": torch_threads or os.cpu_count(),
            "jax_platform": "cpu",
        },
        "cases": cases,
        "ratios": ratios,
        "goals": goals,
    }


# -- conv nets ----------------------------------------------------------------------------------
_CNN_KEYS = (
    "images_per_s",
    "ms_per_step",
    "cpu_ms_per_step",
    "compile_s",
    "seconds",
    "first_loss",
    "final_loss",
    "step_flops",
    "peak_flops_per_s",
)


def cnn_ratios_and_goals(cases: list[dict], device: str) -> tuple[list[dict], list[dict]]:
    """Ratios and goals per (model, batch) of summarized CNN ``cases``.

    Each ratio has ``jaxnets_over_flax_step_time`` (below 1: jaxnets faster),
    ``jaxnets_over_torch_images_per_s`` (above 1: jaxnets faster), ``step_flops`` (XLA's count
    for the Flax step, else jaxnets'), the median measured ``peak_flops_per_s`` of the JAX
    processes and ``peak_fraction[framework] = step_flops * steps/s / peak`` (None where a
    number is missing). Goals: jaxnets/Flax step time <= 1.05 everywhere; on a GPU also
    jaxnets/PyTorch images/s >= 1.8 for the ResNet-18.
    """
    by = {(c["framework"], c["model"], c["batch"]): c for c in cases}
    ratios, goals = [], []
    for model, batch in sorted({(c["model"], c["batch"]) for c in cases}):
        jx, fx, th = (by.get((f, model, batch)) for f in FRAMEWORKS)

        def median(case, key):
            return case[key]["median"] if case and case[key] else None

        vs_flax = median(jx, "ms_per_step") / median(fx, "ms_per_step") if jx and fx else None
        vs_torch = median(jx, "images_per_s") / median(th, "images_per_s") if jx and th else None
        flops = median(fx, "step_flops") or median(jx, "step_flops")
        peaks = [r["peak_flops_per_s"] for c in (jx, fx) if c for r in c["repeats"]]
        peak = statistics.median(peaks) if peaks else None
        fraction = {
            f: flops * median(c, "images_per_s") / batch / peak if flops and peak else None
            for f, c in zip(FRAMEWORKS, (jx, fx, th), strict=True)
            if c
        }
        ratios.append(
            {
                "model": model,
                "batch": batch,
                "jaxnets_over_flax_step_time": vs_flax,
                "jaxnets_over_torch_images_per_s": vs_torch,
                "step_flops": flops,
                "peak_flops_per_s": peak,
                "peak_fraction": fraction,
            }
        )
        if vs_flax is not None:
            goals.append(
                common.make_goal(
                    f"{model} batch {batch}: jaxnets step time / Flax step time <= "
                    f"{_MAX_STEP_TIME_VS_FLAX}",
                    "jaxnets_over_flax_step_time",
                    vs_flax,
                    _MAX_STEP_TIME_VS_FLAX,
                    "below",
                    model=model,
                    batch=batch,
                )
            )
        if vs_torch is not None and device == "gpu" and model == _GPU_GOAL_MODEL:
            goals.append(
                common.make_goal(
                    f"{model} batch {batch} on GPU: jaxnets images/s / PyTorch images/s >= "
                    f"{_MIN_GPU_SPEEDUP_VS_TORCH}",
                    "jaxnets_over_torch_images_per_s",
                    vs_torch,
                    _MIN_GPU_SPEEDUP_VS_TORCH,
                    "above",
                    model=model,
                    batch=batch,
                )
            )
    return ratios, goals


def run_cnn_benchmark(
    models: tuple[str, ...] = cnn.MODELS,
    frameworks: tuple[str, ...] = FRAMEWORKS,
    *,
    batches: tuple[int, ...] | None = None,
    steps: int | None = None,
    repeats: int = 3,
    device: str = "cpu",
    dtype: str | None = None,
    torch_threads: int = 0,
    peak_size: int | None = None,
    log=print,
) -> dict:
    """The conv-net benchmark: every (model, batch, framework) case ``repeats`` times.

    ``batches``, ``steps`` (timed per process), ``dtype`` and ``peak_size`` default per
    device (CPU: LeNet-5 at 32 and 256, ResNet-18 at 32, float32; GPU: LeNet-5 at 256 in
    float32, ResNet-18 at 512 in bfloat16); a given ``dtype`` applies to every model.
    Returns ``{"benchmark": "cnn", "created", "machine", "config", "cases", "ratios",
    "goals"}``; ``cases[i]`` has framework, model, batch, steps, dtype, device, a
    ``{"median", "min", "max"}`` of each of images_per_s, ms_per_step, cpu_ms_per_step,
    compile_s, seconds, first_loss, final_loss, step_flops, peak_flops_per_s (the last three
    None for torch), and the raw ``repeats``; ratios and goals as :func:`cnn_ratios_and_goals`.
    """
    _check_frameworks(frameworks)
    if device not in _CNN_BATCHES:
        raise ValueError(f"device must be one of {', '.join(_CNN_BATCHES)}; got {device!r}")
    peak_size = peak_size or _PEAK_SIZE[device]

    def config(model, batch, framework):
        timed = steps or max(round(_CNN_TIMED_IMAGES[device][model] / batch), 4)
        return cnn.CaseConfig(
            framework=framework,
            model=model,
            batch=batch,
            steps=timed,
            data_batches=min(4, timed),
            device=device,
            dtype=dtype or _CNN_DTYPES[device][model],
            torch_threads=torch_threads,
            peak_size=peak_size,
        )

    configs = [
        config(m, b, f)
        for m in models
        for b in (batches or _CNN_BATCHES[device][m])
        for f in frameworks
    ]
    load_before = os.getloadavg()
    records = common.run_round_robin(
        "benchmarks.cnn",
        configs,
        repeats,
        device,
        lambda r: (
            f"{r['model']:8s} batch {r['batch']:4d}: {r['images_per_s']:9.1f} images/s  "
            f"{r['ms_per_step']:8.2f} ms/step"
        ),
        log,
    )
    identity = ("framework", "model", "batch", "steps", "dtype", "device")
    cases = [common.summarize(recs, identity, _CNN_KEYS) for recs in records]
    ratios, goals = cnn_ratios_and_goals(cases, device)
    first = configs[0]
    return {
        "benchmark": "cnn",
        "created": _now(),
        "machine": common.machine_info([r for recs in records for r in recs], load_before),
        "config": {
            "frameworks": list(frameworks),
            "models": list(models),
            "batches": {m: sorted({c.batch for c in configs if c.model == m}) for m in models},
            "repeats": repeats,
            "device": device,
            "dtypes": {m: next(c.dtype for c in configs if c.model == m) for m in models},
            "warmup_steps": first.warmup_steps,
            "data_batches": first.data_batches,
            "classes": first.classes,
            "learning_rate": first.learning_rate,
            "momentum": first.momentum,
            "torch_threads": torch_threads or os.cpu_count(),
            "peak_size": peak_size,
        },
        "cases": cases,
        "ratios": ratios,
        "goals": goals,
    }


# -- command line -------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="JSON directory")
    p.add_argument(
        "--cases",
        nargs="+",
        choices=CASES,
        default=None,
        help="default: all (CPU), conv nets and lstm (GPU)",
    )
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--repeats", type=int, default=None, help="processes per case (MLP 5, CNN 3)")
    p.add_argument("--quick", action="store_true", help="short run: 1 repeat, few steps")
    p.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=FRAMEWORKS)
    p.add_argument("--batches", nargs="+", type=int, default=None, help="for every case")
    p.add_argument("--torch-threads", type=int, default=0, help="0: every core")
    mlp_args = p.add_argument_group("MLP")
    mlp_args.add_argument("--examples", type=int, default=None, help="training set size (8192)")
    mlp_args.add_argument("--epochs", type=int, default=None, help="timed epochs per process (2)")
    mlp_args.add_argument("--hidden", nargs="+", type=int, default=[512, 512])
    cnn_args = p.add_argument_group("conv nets")
    cnn_args.add_argument("--steps", type=int, default=None, help="timed steps per process")
    cnn_args.add_argument(
        "--dtype",
        choices=cnn.DTYPES,
        default=None,
        help="default: float32; bfloat16 for the ResNet on a GPU",
    )
    cnn_args.add_argument("--peak-size", type=int, default=None, help="n of the peak matmul")
    run_rnn.add_arguments(p)
    return p


def _settings(args, quick: dict, full: dict) -> dict:
    defaults = quick if args.quick else full
    return {k: v if getattr(args, k) is None else getattr(args, k) for k, v in defaults.items()}


def main(argv: list[str] | None = None) -> dict[str, dict]:
    """CLI entry: run, write ``<out>/{mlp,cnn,cnn_gpu,rnn,rnn_gpu}.json``, print the tables.

    Returns the results by benchmark name (``"mlp"``, ``"cnn"``, ``"rnn"``).
    """
    args = _parser().parse_args(argv)
    cases = args.cases or (list(CASES) if args.device == "cpu" else [*cnn.MODELS, "lstm"])
    if "mlp" in cases and args.device != "cpu":
        raise SystemExit(
            "the MLP benchmark runs on the CPU (its PyTorch case is CPU-only); "
            "leave mlp out of --cases with --device gpu"
        )
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    frameworks, batches = tuple(args.frameworks), args.batches and tuple(args.batches)
    results = {}

    def write(name: str, result: dict) -> None:
        # As soon as a benchmark finishes: a failure in the next one keeps this one's file.
        results[name] = result
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / _RESULT_FILES[(name, args.device)]
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(render_markdown(result) + f"\n\nwrote {path}\n")

    if "mlp" in cases:
        settings = _settings(
            args,
            {"repeats": 1, "examples": 2048, "epochs": 1},
            {"repeats": 5, "examples": 8192, "epochs": 2},
        )
        write(
            "mlp",
            run_mlp_benchmark(
                frameworks,
                batches or (8, 128),
                hidden=tuple(args.hidden),
                torch_threads=args.torch_threads,
                log=log,
                **settings,
            ),
        )
    models = tuple(m for m in cnn.MODELS if m in cases)
    if models:
        settings = _settings(args, {"repeats": 1, "steps": 4}, {"repeats": 3, "steps": None})
        write(
            "cnn",
            run_cnn_benchmark(
                models,
                frameworks,
                batches=batches,
                device=args.device,
                dtype=args.dtype,
                torch_threads=args.torch_threads,
                peak_size=args.peak_size,
                log=log,
                **settings,
            ),
        )
    if "lstm" in cases:
        write("rnn", run_rnn.from_arguments(args, frameworks, log))
    return results


if __name__ == "__main__":
    main()

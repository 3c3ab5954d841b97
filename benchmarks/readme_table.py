"""Render benchmark JSON files (written by :mod:`benchmarks.run`) as README's bench block.

``python -m benchmarks.readme_table benchmarks/results/mlp.json benchmarks/results/cnn.json
[--readme README.md]`` prints one titled table per file, joined (and writes them between
README's ``<!-- bench:start -->`` and ``<!-- bench:end -->`` markers). MLP: one row per batch
size with each framework's median steps/s (min-max over the repeats). Conv nets: one row per
(model, batch) with images/s, JAX compile times and the fraction of the measured matmul peak.
Both give the ratio of jaxnets' step time to hand-written Flax's (below 1: jaxnets faster),
of jaxnets' speed to PyTorch's (above 1: jaxnets faster), the machine line and the goals.
LSTM: one row per framework at the comparison unroll with sequences/s, compile time, the
first and last losses, the peak fraction and jaxnets' speed over that framework's (above 1:
jaxnets faster), then jaxnets' unroll sweep. Ensemble: one row per hidden width with the
vmapped and looped milliseconds per ensemble step and the speed-up. Partition: one row per
(model, ``train_step`` or ``train_epoch``) with milliseconds per step without a mesh and on
each mesh, the cost of 8 devices over 1 and of a 1-device mesh over none, and compile times.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["main", "render_markdown"]

_LABELS = {"jaxnets": "jaxnets", "flax": "Flax (hand-written jit)", "torch": "PyTorch eager"}
_SHORT = {"jaxnets": "jaxnets", "flax": "Flax", "torch": "PyTorch"}
_MODEL_LABELS = {"lenet5": "LeNet-5", "resnet18": "ResNet-18"}


def _speed_cell(case: dict | None, key: str) -> str:
    if case is None:
        return "n/a"
    s = case[key]
    return f"{s['median']:.0f} ({s['min']:.0f}-{s['max']:.0f})"


def _ratio_cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(title: str, head: list[str]) -> list[str]:
    """A bold or plain ``title`` line, a blank line and a markdown table's header rows."""
    return [title, "", _row(head), "|" + "---|" * len(head)]


def _frameworks(results: dict) -> list[str]:
    return [f for f in _LABELS if any(c["framework"] == f for c in results["cases"])]


def _machine_line(m: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    return (
        f"{m['cpu_model']}, {m['cores']} cores (load average "
        f"{m['load_average_before'][0]:.1f} at start, {m['load_average_after'][0]:.1f} at end); "
        f"{versions}; JAX device: {', '.join(m['jax_devices']) or 'n/a'}"
        + (f"; PyTorch device: {', '.join(m['torch_devices'])}" if m.get("torch_devices") else "")
        + "."
    )


def _goal_lines(goals: list[dict]) -> list[str]:
    lines = [""] if goals else []
    for g in goals:
        lines.append(f"- {g['goal']}: {g['value']:.2f} ({'holds' if g['holds'] else 'MISSED'})")
    return lines


def _mlp_markdown(results: dict) -> list[str]:
    cases = {(c["framework"], c["batch"]): c for c in results["cases"]}
    ratios = {r["batch"]: r for r in results["ratios"]}
    frameworks = _frameworks(results)
    head = [
        "batch",
        *(f"{_LABELS[f]} steps/s" for f in frameworks),
        "jaxnets / Flax step time",
        "jaxnets / PyTorch steps/s",
    ]
    cfg = results["config"]
    lines = _table(
        f"**MLP 784-{'-'.join(map(str, cfg['hidden']))}-10 on the CPU**",
        head,
    )
    for b in sorted({c["batch"] for c in results["cases"]}):
        lines.append(
            _row(
                [
                    str(b),
                    *(_speed_cell(cases.get((f, b)), "steps_per_s") for f in frameworks),
                    _ratio_cell(ratios[b]["jaxnets_over_flax_step_time"]),
                    _ratio_cell(ratios[b]["jaxnets_over_torch_steps_per_s"]),
                ]
            )
        )
    lines += [
        "",
        f"Median over {cfg['repeats']} processes per cell (min-max in brackets); "
        f"{cfg['examples']} examples, SGD momentum {cfg['momentum']}, lr "
        f"{cfg['learning_rate']}, float32; compile time excluded. "
        + _machine_line(results["machine"]),
    ]
    return lines


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _cnn_markdown(results: dict) -> list[str]:
    cases = {(c["framework"], c["model"], c["batch"]): c for c in results["cases"]}
    frameworks = _frameworks(results)
    jax_frameworks = [f for f in frameworks if f != "torch"]
    cfg = results["config"]
    head = [
        "model",
        "batch",
        *(f"{_LABELS[f]} images/s" for f in frameworks),
        "jaxnets / Flax step time",
        "jaxnets / PyTorch images/s",
        f"compile s ({' / '.join(_SHORT[f] for f in jax_frameworks)})",
        f"fraction of matmul peak ({' / '.join(_SHORT[f] for f in frameworks)})",
    ]
    lines = _table(
        f"**Conv nets on the {cfg['device'].upper()}**",
        head,
    )
    for r in results["ratios"]:
        model, batch = r["model"], r["batch"]
        compile_s = [cases.get((f, model, batch)) for f in jax_frameworks]
        lines.append(
            _row(
                [
                    _MODEL_LABELS[model]
                    + ("" if cfg["dtypes"][model] == "float32" else f" ({cfg['dtypes'][model]})"),
                    str(batch),
                    *(
                        _speed_cell(cases.get((f, model, batch)), "images_per_s")
                        for f in frameworks
                    ),
                    _ratio_cell(r["jaxnets_over_flax_step_time"]),
                    _ratio_cell(r["jaxnets_over_torch_images_per_s"]),
                    " / ".join(
                        f"{c['compile_s']['median']:.1f}" if c else "n/a" for c in compile_s
                    ),
                    " / ".join(_percent(r["peak_fraction"].get(f)) for f in frameworks),
                ]
            )
        )
    lines += [
        "",
        f"Median over {cfg['repeats']} processes per cell (min-max in brackets); synthetic "
        f"32x32 images, SGD momentum {cfg['momentum']}, lr {cfg['learning_rate']}; LeNet-5 as "
        "the lecture's Table 1, ResNet-18 as torchvision's (batch norm in training mode); "
        "compile time excluded from images/s. Peak fraction: XLA's FLOP count of one step "
        f"times steps/s, over a measured {cfg['peak_size']}^3 matmul in the step's dtype "
        f"(float32 unless the model cell says otherwise). " + _machine_line(results["machine"]),
    ]
    return lines


def _loss_cell(case: dict) -> str:
    return f"{case['first_loss']['median']:.3f} → {case['final_loss']['median']:.3f}"


def _rnn_markdown(results: dict) -> list[str]:
    cfg = results["config"]
    cases = {(c["framework"], c["batch"], c["unroll"]): c for c in results["cases"]}
    ratios = {(r["batch"], r["unroll"]): r for r in results["ratios"]}
    torch_cases = {c["batch"]: c for c in results["cases"] if c["framework"] == "torch"}
    head = ["framework", "batch", "unroll", "sequences/s", "ms/step", "compile s"]
    head += ["loss first → last", "fraction of matmul peak", "jaxnets / it (speed)"]
    dtype = "" if cfg["dtype"] == "float32" else f", {cfg['dtype']}"
    lines = _table(
        f"**LSTM (H={cfg['hidden']}, T={cfg['time']}, {cfg['features']} input features{dtype}) "
        f"training step on the {cfg['device'].upper()}**",
        head,
    )
    labels = {"jaxnets": "jaxnets", "flax": "Flax nn.RNN (hand-written jit)"}
    labels["torch"] = "PyTorch nn.LSTM" + (" (cuDNN)" if cfg["device"] == "gpu" else " eager")
    for batch in cfg["batches"]:
        # Speed ratios and peak fractions hang on the jaxnets case (absent in a run without it).
        jx = cases.get(("jaxnets", batch, cfg["unroll"]))
        fractions = ratios[(batch, cfg["unroll"])]["peak_fraction"] if jx else {}
        rows = [cases.get((f, batch, cfg["unroll"])) for f in ("jaxnets", "flax")]
        for case in filter(None, [*rows, torch_cases.get(batch)]):
            f = case["framework"]
            speed = case["sequences_per_s"]["median"]
            ratio = jx["sequences_per_s"]["median"] / speed if jx else None
            compile_s = case["compile_s"]
            lines.append(
                _row(
                    [
                        labels[f],
                        str(batch),
                        "n/a" if f == "torch" else str(case["unroll"]),
                        _speed_cell(case, "sequences_per_s"),
                        f"{case['ms_per_step']['median']:.1f}",
                        "n/a" if compile_s is None else f"{compile_s['median']:.1f}",
                        _loss_cell(case),
                        _percent(fractions.get(f)),
                        "" if f == "jaxnets" else _ratio_cell(ratio),
                    ]
                )
            )
    head = ["batch", "unroll", "jaxnets ms/step", "sequences/s", "compile s"]
    head += ["step time / unroll 1", "jaxnets / PyTorch speed"]
    lines += ["", *_table("jaxnets' `unroll` sweep:", head)]
    for (batch, unroll), r in sorted(ratios.items()):
        case = cases[("jaxnets", batch, unroll)]
        lines.append(
            _row(
                [
                    str(batch),
                    f"{unroll} (full)" if unroll == cfg["time"] else str(unroll),
                    f"{case['ms_per_step']['median']:.1f}",
                    _speed_cell(case, "sequences_per_s"),
                    f"{case['compile_s']['median']:.1f}",
                    _ratio_cell(r["over_unroll_1_step_time"]),
                    _ratio_cell(r["jaxnets_over_torch_sequences_per_s"]),
                ]
            )
        )
    lines += [
        "",
        f"Median over {cfg['repeats']} processes per cell (min-max in brackets); "
        f"{cfg['steps']} timed Adam steps (lr {cfg['learning_rate']}; "
        f"{cfg['full_unroll_steps']} fully unrolled) per process on synthetic "
        "sequences, ½ squared error of a linear readout of the last hidden state; compile "
        "time excluded from sequences/s. Peak fraction: the step's matmul FLOPs (3 passes of "
        "the recurrence, 2 of the input projection) times steps/s, over a measured "
        f"{cfg['peak_size']}^3 matmul in the step's dtype. " + _machine_line(results["machine"]),
    ]
    return lines


def _ensemble_markdown(results: dict) -> list[str]:
    cfg = results["config"]
    lines = [
        f"**{cfg['members']}-member ensemble: one vmapped step vs a Python loop over "
        f"{cfg['members']} jitted models (MLP 64-H-10, Adam, batch {cfg['batch']})**",
        "",
        _row(["hidden H", "vmapped ms/step", "loop ms/step", "vmapped speed-up"]),
        _row(["---"] * 4),
    ]
    for case in results["cases"]:
        v, lp = case["vmapped_ms"], case["loop_ms"]
        lines.append(
            _row(
                [
                    str(case["hidden"]),
                    f"{v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f})",
                    f"{lp['median']:.2f} ({lp['min']:.2f}-{lp['max']:.2f})",
                    _ratio_cell(case["speedup"]),
                ]
            )
        )
    lines += [
        "",
        f"Median (min-max) over {cfg['repeats']} alternating rounds of {cfg['steps']} ensemble "
        "steps each, after a first step that compiles both (after it the members hold the same "
        "parameters both ways). " + _machine_line(results["machine"]),
    ]
    scaling = results.get("member_scaling")
    if scaling:
        limit = scaling["speedup_limit"]
        lines += [
            "",
            f"How far vmapping can go here (hidden {scaling['hidden']}): the vmapped step's "
            "milliseconds for K members, and the line fitted through them.",
            "",
            _row(["K"] + [str(k) for k in scaling["members"]]),
            _row(["---"] * (1 + len(scaling["members"]))),
            _row(["vmapped ms/step"] + [f"{ms:.3f}" for ms in scaling["vmapped_ms"]]),
            "",
            f"Fit: {scaling['fixed_ms']:.3f} ms + {scaling['per_member_ms']:.3f} ms per member; "
            f"one jitted single-model step takes {scaling['single_ms']:.3f} ms, so a loop of K "
            "costs about K times that, and as K grows the speed-up of vmapping tends to "
            + (
                "no measurable limit (the fitted slope is lost in noise)."
                if limit is None
                else f"{scaling['single_ms']:.3f} / {scaling['per_member_ms']:.3f} = "
                f"**{limit:.1f}x** on this device."
            ),
        ]
    return lines


def _ms_cell(spread: dict) -> str:
    return f"{spread['median']:.2f} ({spread['min']:.2f}-{spread['max']:.2f})"


def _partition_markdown(results: dict) -> list[str]:
    cfg = results["config"]
    setups = cfg["setups"]
    meshes = [s for s in setups if s != "none"]
    names = {"none": "no mesh", **{s: f"mesh of {s}" for s in meshes}}
    ratio_keys = [f"{s}_over_1" for s in meshes if s != "1"]
    if "none" in setups and "1" in setups:
        ratio_keys.append("1_over_none")
    ratio_names = {"1_over_none": "mesh of 1 / no mesh"}
    ratio_names.update({f"{s}_over_1": f"{s} devices / 1" for s in meshes})
    head = ["model", "global batch", "timed", *(f"{names[s]} ms/step" for s in setups)]
    head += [ratio_names[k] for k in ratio_keys]
    head.append(f"compile s ({' / '.join(names[s] for s in setups)})")
    on = "virtual CPU devices" if cfg["device"] == "cpu" else "GPUs"
    lines = _table(
        f"**Cost of partitioning: the same global batch on meshes of "
        f"{' and '.join(meshes)} {on}, and without a mesh**",
        head,
    )
    timed = {"step": "`train_step`", "epoch": "`train_epoch`"}
    for case in results["cases"]:
        for timing, label in timed.items():
            lines.append(
                _row(
                    [
                        cfg["labels"][case["model"]],
                        str(case["batch"]),
                        label,
                        *(_ms_cell(case["setups"][s][timing]["ms_per_step"]) for s in setups),
                        *(_ratio_cell(case["ratios"][timing].get(k)) for k in ratio_keys),
                        " / ".join(
                            f"{case['setups'][s][timing]['compile_s']['median']:.1f}"
                            for s in setups
                        ),
                    ]
                )
            )
    drift = max(v["loss_difference"] for c in results["cases"] for v in c["setups"].values())
    lines += [
        "",
        f"Median over {cfg['repeats']} processes (min-max in brackets) of each process' median "
        f"over {cfg['rounds']} rounds that alternate the set-ups; Adam (lr "
        f"{cfg['learning_rate']}) on synthetic data. `train_step`: one call on a minibatch "
        "already on the devices (split over the mesh); `train_epoch`: one epoch per call, per "
        "step, from data on the host (mesh) or the device (no mesh), as `fit` holds it. "
        + (
            "The virtual devices share the machine's cores: a ratio above 1 is what "
            "partitioning costs (smaller kernels, the all-reduce of gradients and batch-norm "
            "statistics, dispatch to every device); below 1, the per-device programs together "
            "use this CPU better than one program does. Neither is a speed-up from more "
            "hardware. Dispatch is synchronous, and the backend has "
            f"{cfg['device_count']} virtual devices (the meshes use the first ones) so that "
            "XLA's CPU collectives have spare threads. "
            if cfg["device"] == "cpu"
            else ""
        )
        + f"Every set-up trains the same steps; the losses differ from the no-mesh run's by at "
        f"most {drift:.1e} (float32 rounding, compounded over the run's steps). "
        + _machine_line(results["machine"]),
    ]
    return lines


def render_markdown(results: dict) -> str:
    """The README block for ``results`` (what :mod:`benchmarks.run`, :mod:`benchmarks.ensemble`
    or :mod:`benchmarks.partition` returns for one benchmark, ``"mlp"``, ``"cnn"``, ``"rnn"``,
    ``"ensemble"`` or ``"partition"``): a title, the table(s), the notes and the goals.

    Missing frameworks (e.g. a run without torch) show as ``n/a``.
    """
    renderers = {
        "mlp": _mlp_markdown,
        "cnn": _cnn_markdown,
        "rnn": _rnn_markdown,
        "ensemble": _ensemble_markdown,
        "partition": _partition_markdown,
    }
    kind = results.get("benchmark")
    if kind not in renderers:
        raise ValueError(f"unknown benchmark {kind!r}; expected one of {', '.join(renderers)}")
    return "\n".join(renderers[kind](results) + _goal_lines(results["goals"]))


def main(argv: list[str] | None = None) -> str:
    """CLI entry: print (and with ``--readme`` write) the block of every given JSON file."""
    p = argparse.ArgumentParser(description="Print the README markdown block of benchmarks.")
    p.add_argument("paths", nargs="*", type=Path, default=[Path("benchmarks/results/mlp.json")])
    p.add_argument("--readme", type=Path, help="write the blocks into this README's bench block")
    args = p.parse_args(argv)
    missing = [str(path) for path in args.paths if not path.is_file()]
    if missing:
        raise SystemExit(f"no benchmark results at {', '.join(missing)}; run `make bench` first")
    text = "\n\n".join(render_markdown(json.loads(path.read_text())) for path in args.paths)
    if args.readme is not None:
        from jaxnets.experiment import replace_block

        args.readme.write_text(replace_block(args.readme.read_text(), "bench", text))
    print(text)
    return text


if __name__ == "__main__":
    main()

"""Render a benchmark JSON (written by :mod:`benchmarks.run`) as a markdown block for README.

``python -m benchmarks.readme_table [benchmarks/results/mlp.json]`` prints the block: one
row per batch size with each framework's median steps/s (min-max over the repeats), the
ratio of jaxnets' step time to hand-written Flax's (below 1 means jaxnets is faster), the
ratio of jaxnets' steps/s to PyTorch's (above 1 means jaxnets is faster), the machine line
and the goals with whether each holds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["render_markdown", "main"]

_LABELS = {"jaxnets": "jaxnets", "flax": "Flax (hand-written jit)", "torch": "PyTorch eager"}


def _steps_cell(case: dict | None) -> str:
    if case is None:
        return "n/a"
    s = case["steps_per_s"]
    return f"{s['median']:.0f} ({s['min']:.0f}-{s['max']:.0f})"


def _ratio_cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def render_markdown(results: dict) -> str:
    """The README block for ``results`` (the dict :func:`benchmarks.run.run_benchmark` returns).

    Missing frameworks (e.g. a run without torch) show as ``n/a``.
    """
    cases = {(c["framework"], c["batch"]): c for c in results["cases"]}
    ratios = {r["batch"]: r for r in results["ratios"]}
    frameworks = [f for f in _LABELS if any(c["framework"] == f for c in results["cases"])]
    batches = sorted({c["batch"] for c in results["cases"]})
    head = [
        "batch",
        *(f"{_LABELS[f]} steps/s" for f in frameworks),
        "jaxnets / Flax step time",
        "jaxnets / PyTorch steps/s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b in batches:
        row = [
            str(b),
            *(_steps_cell(cases.get((f, b))) for f in frameworks),
            _ratio_cell(ratios[b]["jaxnets_over_flax_step_time"]),
            _ratio_cell(ratios[b]["jaxnets_over_torch_steps_per_s"]),
        ]
        lines.append("| " + " | ".join(row) + " |")
    cfg, m = results["config"], results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    lines += [
        "",
        f"Median over {cfg['repeats']} processes per cell (min-max in brackets); "
        f"{cfg['examples']} examples, MLP 784-{'-'.join(map(str, cfg['hidden']))}-10, "
        f"SGD momentum {cfg['momentum']}, lr {cfg['learning_rate']}, float32; "
        f"compile time excluded. {m['cpu_model']}, {m['cores']} cores "
        f"(load average {m['load_average_before'][0]:.1f} at start); {versions}; "
        f"JAX device: {', '.join(m['jax_devices']) or 'n/a'}.",
    ]
    if results["goals"]:
        lines.append("")
        for g in results["goals"]:
            mark = "holds" if g["holds"] else "MISSED"
            lines.append(f"- {g['goal']}: {g['value']:.2f} ({mark})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description="Print the README markdown block of a benchmark.")
    p.add_argument("path", nargs="?", default="benchmarks/results/mlp.json", type=Path)
    p.add_argument("--readme", type=Path, help="write the block into this README's bench block")
    args = p.parse_args(argv)
    if not args.path.is_file():
        raise SystemExit(f"no benchmark results at {args.path}; run `make bench` first")
    text = render_markdown(json.loads(args.path.read_text()))
    if args.readme is not None:
        from jaxnets.experiment import replace_block

        args.readme.write_text(replace_block(args.readme.read_text(), "bench", text))
    print(text)
    return text


if __name__ == "__main__":
    main()

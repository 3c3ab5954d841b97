"""What every experiment script shares: run directories, summaries with claims, the CLI.

Every run writes ``runs/<experiment>/<timestamp>/{config.json, metrics.jsonl,
summary.json, *.png}``. ``summary.json`` has one shape everywhere::

    {"experiment", "config", "results": {variant: {metric: value}},
     "claims": [{"claim", "metric", "value", "threshold", "direction", "holds"}]}

and a claim's ``holds`` is computed from its value and threshold, never typed.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "Claim",
    "Run",
    "parse_config",
    "format_table",
    "latest_summaries",
    "results_markdown",
    "replace_block",
]

ConfigT = TypeVar("ConfigT")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def dump_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON; numpy/jax scalars become numbers."""
    path.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n")


@dataclasses.dataclass(frozen=True)
class Claim:
    """A lecture's claim checked by a run: ``value`` must be ``direction`` of ``threshold``."""

    claim: str
    metric: str
    value: float
    threshold: float
    direction: str  # "above" or "below"

    def __post_init__(self):
        if self.direction not in ("above", "below"):
            raise ValueError(f"direction must be 'above' or 'below'; got {self.direction!r}")

    @property
    def holds(self) -> bool:
        if self.direction == "above":
            return self.value >= self.threshold
        return self.value <= self.threshold

    def __str__(self) -> str:
        verdict = "holds" if self.holds else "FAILS"
        return f"[{verdict}] {self.claim}: {self.value:.4g} ({self.direction} {self.threshold:g})"

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "value": float(self.value), "holds": self.holds}


class Run:
    """A run directory ``<root>/<experiment>/<timestamp>/`` and the files in it."""

    def __init__(self, experiment: str, config: Any, root: str | Path = "runs"):
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        self.experiment = experiment
        self.config = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
        self.dir = Path(root) / experiment / stamp
        self.dir.mkdir(parents=True, exist_ok=False)
        dump_json(self.dir / "config.json", self.config)

    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.jsonl"

    def log(self, **row: Any) -> None:
        """Append one JSON row to ``metrics.jsonl`` (``fit`` appends its epochs there too)."""
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(row, default=_jsonable) + "\n")

    def savefig(self, fig, name: str) -> Path:
        """Save a matplotlib figure as ``<run>/<name>.png`` and close it."""
        import matplotlib.pyplot as plt

        path = self.dir / f"{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        return path

    def write_summary(
        self, results: dict[str, dict[str, float]], claims: list[Claim]
    ) -> dict[str, Any]:
        """Write ``summary.json``, print each claim's verdict and the run directory, and
        return the summary."""
        summary = {
            "experiment": self.experiment,
            "config": self.config,
            "results": results,
            "claims": [c.as_dict() for c in claims],
        }
        dump_json(self.dir / "summary.json", summary)
        for claim in claims:
            print(claim)
        print(f"run directory: {self.dir}")
        return summary


def format_number(value: float) -> str:
    """Counts as integers with thousands separators (61,706), everything else to 4 digits."""
    if float(value).is_integer() and 1000 <= abs(value) < 1e15:  # counts, not overflows
        return f"{int(value):,}"
    return f"{value:.4g}"


def format_table(results: dict[str, dict[str, float]], metrics: list[str] | None = None) -> str:
    """A fixed-width text table: one row per variant, one column per metric."""
    metrics = metrics or sorted({m for row in results.values() for m in row})
    width = max(len("variant"), *(len(v) for v in results))
    lines = [f"{'variant':<{width}}  " + "  ".join(f"{m:>16}" for m in metrics)]
    for variant, row in results.items():
        cells = [f"{format_number(row[m]):>16}" if m in row else f"{'-':>16}" for m in metrics]
        lines.append(f"{variant:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def parse_config(
    config_cls: Callable[..., ConfigT],
    args: list[str] | None = None,
    description: str | None = None,
) -> ConfigT:
    """Build ``config_cls`` (a frozen dataclass) from the command line with tyro.

    ``--help`` lists every field with its default and docstring. A ValueError raised by the
    dataclass' ``__post_init__`` (an invalid value) is printed as one line and exits with 2,
    like any other usage error.
    """
    import tyro  # experiments only: the library itself must not need tyro

    try:
        return tyro.cli(config_cls, args=args, description=description)
    except ValueError as err:
        print(f"error: invalid configuration: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def latest_summaries(root: str | Path = "runs") -> dict[str, dict[str, Any]]:
    """The newest ``summary.json`` of each experiment under ``root``, by experiment name."""
    latest = {}
    for experiment in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        summaries = sorted(experiment.glob("*/summary.json"))
        if summaries:
            latest[experiment.name] = json.loads(summaries[-1].read_text())
    return latest


def results_markdown(summaries: dict[str, dict[str, Any]]) -> str:
    """Markdown: one table per experiment (variants x metrics), then every claim."""
    lines = []
    for name, summary in summaries.items():
        metrics = list(dict.fromkeys(m for row in summary["results"].values() for m in row))
        lines += [
            f"**{name}**",
            "",
            "| variant | " + " | ".join(metrics) + " |",
            "|---|" + "---|" * len(metrics),
        ]
        for variant, row in summary["results"].items():
            cells = [format_number(row[m]) if m in row else "" for m in metrics]
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["| experiment | claim | value | threshold | holds |", "|---|---|---|---|---|"]
    for name, summary in summaries.items():
        for c in summary["claims"]:
            lines.append(
                f"| {name} | {c['claim']} | {format_number(c['value'])} | "
                f"{c['direction']} {c['threshold']:g} | {'yes' if c['holds'] else 'NO'} |"
            )
    return "\n".join(lines)


def replace_block(text: str, marker: str, content: str) -> str:
    """Replace what lies between ``<!-- marker:start -->`` and ``<!-- marker:end -->``."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"README has no {start} ... {end} block")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{content}\n{end}{tail}"


def models_markdown() -> str:
    """A markdown table of every registered model: name, family, task, lecture."""
    from jaxnets import registry

    lines = ["| model | family | task | lecture | description |", "|---|---|---|---|---|"]
    for name in registry.list_models():
        card = registry.model_card(name)
        lines.append(
            f"| `{name}` | {card.family} | {card.task} | {card.lecture} | {card.description} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    # python -m jaxnets.experiment README.md [runs]: regenerate README's generated tables.
    readme = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    text = replace_block(readme.read_text(), "models", models_markdown())
    summaries = latest_summaries(sys.argv[2] if len(sys.argv) > 2 else "runs")
    readme.write_text(replace_block(text, "results", results_markdown(summaries)))
    print(f"updated the model and results tables in {readme}")

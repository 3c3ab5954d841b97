"""What every experiment script shares: run directories, summaries with claims, the CLI.

Every run writes ``runs/<experiment>/<timestamp>/{config.json, metrics.jsonl,
summary.json, *.png}``. ``summary.json`` has one shape everywhere::

    {"experiment", "config", "results": {variant: {metric: value}},
     "claims": [{"claim", "metric", "value", "values", "threshold", "direction", "margin",
                 "slack", "holds"}]}

A claim's ``values`` are one per seed and its ``holds`` is computed from them, the threshold
and the margin, never typed. ``python -m jaxnets.experiment record`` copies each
experiment's newest full-size summary to ``experiments/results/<experiment>.json``, which is
committed; ``python -m jaxnets.experiment readme`` (``make readme``) regenerates README's
tables from those records, so anyone can check them from a clone.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from jaxnets import distributed
from jaxnets.cli_config import config_from_args

__all__ = [
    "Claim",
    "Run",
    "format_table",
    "latest_summaries",
    "mean_over_seeds",
    "parse_config",
    "record_summaries",
    "recorded_summaries",
    "replace_block",
    "results_markdown",
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
    """A lecture's claim checked by a run over several seeds, with a safety margin.

    ``values`` holds the claim's metric once per seed (a single number is one seed). The
    claim holds when every seed's value lies on the ``direction`` side of ``threshold`` by
    at least ``margin`` (in the metric's own units), so that rounding on another machine
    cannot flip it: ``holds`` iff ``slack >= margin``, where ``slack`` is how far the worst
    seed lies beyond the threshold (negative when it misses).

    Example: ``Claim("an MLP reaches 97% on digits", "test_accuracy", (0.981, 0.978,
    0.984), 0.97, "above", margin=0.005)`` holds: the worst seed, 0.978, clears 0.97 by
    0.008 >= 0.005.
    """

    claim: str
    metric: str
    values: tuple[float, ...]
    threshold: float
    direction: str  # "above" or "below"
    margin: float = 0.0

    def __post_init__(self):
        if self.direction not in ("above", "below"):
            raise ValueError(f"direction must be 'above' or 'below'; got {self.direction!r}")
        values = self.values
        values = (values,) if np.ndim(values) == 0 else tuple(np.ravel(values))
        if not values:
            raise ValueError(f"claim {self.claim!r} needs at least one value (one per seed)")
        object.__setattr__(self, "values", tuple(float(v) for v in values))
        if not self.margin >= 0:
            raise ValueError(f"margin must be >= 0; got {self.margin!r}")

    @property
    def value(self) -> float:
        """The mean over seeds (what tables show)."""
        return float(np.mean(self.values))

    @property
    def worst(self) -> float:
        """The seed's value nearest to failing (NaN when any seed gave NaN)."""
        if any(np.isnan(self.values)):
            return float("nan")
        return min(self.values) if self.direction == "above" else max(self.values)

    @property
    def slack(self) -> float:
        """How far the worst seed lies beyond the threshold, in the metric's units."""
        sign = 1.0 if self.direction == "above" else -1.0
        return sign * (self.worst - self.threshold)

    @property
    def holds(self) -> bool:
        return bool(self.slack >= self.margin)  # NaN slack: False

    def __str__(self) -> str:
        verdict = "holds" if self.holds else "FAILS"
        seeds = ", ".join(f"{v:.4g}" for v in self.values)
        return (
            f"[{verdict}] {self.claim}: {self.value:.4g} over {len(self.values)} seed(s) "
            f"[{seeds}] ({self.direction} {self.threshold:g} by >= {self.margin:g}; "
            f"worst seed's slack {self.slack:.3g})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "metric": self.metric,
            "value": self.value,
            "values": list(self.values),
            "threshold": float(self.threshold),
            "direction": self.direction,
            "margin": float(self.margin),
            "slack": self.slack,
            "holds": self.holds,
        }


def mean_over_seeds(rows: list[dict[str, float]]) -> dict[str, float]:
    """Per-seed metric rows -> one row of means (the metrics common to every row)."""
    if not rows:
        raise ValueError("mean_over_seeds needs at least one seed's row")
    metrics = [m for m in rows[0] if all(m in row for row in rows)]
    return {m: float(np.mean([row[m] for row in rows])) for m in metrics}


class Run:
    """A run directory ``<root>/<experiment>/<timestamp>/`` and the files in it.

    In a multi-process run only process 0 has a run directory: on the others (``writes`` is
    False) every method that writes or prints does nothing, so a run writes one directory.
    """

    def __init__(self, experiment: str, config: Any, root: str | Path = "runs"):
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        self.experiment = experiment
        self.config = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
        self.dir = Path(root) / experiment / stamp
        self.writes = distributed.is_main_process()
        if self.writes:
            self.dir.mkdir(parents=True, exist_ok=False)
            dump_json(self.dir / "config.json", self.config)

    @property
    def metrics_path(self) -> Path | None:
        """``metrics.jsonl`` of this run (None on processes that do not write)."""
        return self.dir / "metrics.jsonl" if self.writes else None

    def log(self, **row: Any) -> None:
        """Append one JSON row to ``metrics.jsonl`` (``fit`` appends its epochs there too)."""
        if self.writes:
            with self.metrics_path.open("a") as f:
                f.write(json.dumps(row, default=_jsonable) + "\n")

    def write_text(self, name: str, text: str) -> None:
        """Write ``<run>/<name>`` (samples, neighbour lists)."""
        if self.writes:
            (self.dir / name).write_text(text)

    def savefig(self, fig, name: str) -> Path:
        """Save a matplotlib figure as ``<run>/<name>.png`` and close it."""
        import matplotlib.pyplot as plt

        path = self.dir / f"{name}.png"
        if self.writes:
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
        if self.writes:
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


_DEVICE_HELP = """
Devices and processes (read before the configuration, see jaxnets.distributed):
  --devices N          train data-parallel on N devices (on a CPU host: N virtual CPU
                       devices); the numbers equal the 1-device run to float32 rounding
  --coordinator H:P    join a multi-process run whose process 0 listens on H:P
  --num-processes P    ... of P processes
  --process-id I       ... as process I (jaxnets launch -n P sets all three)
  --cluster            join the multi-process run JAX detects (Open MPI, Kubernetes, Cloud
                       TPU); under SLURM with several tasks this is automatic
"""


def _device_arguments(args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Split the device and process flags off ``args``: (their values, the rest)."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--devices", type=int)
    parser.add_argument("--coordinator")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    parser.add_argument("--cluster", action="store_true")
    known, rest = parser.parse_known_args(args)
    return vars(known), rest


def parse_config(
    config_cls: Callable[..., ConfigT],
    args: list[str] | None = None,
    description: str | None = None,
) -> ConfigT:
    """Build ``config_cls`` (a frozen dataclass) from the command line
    (:func:`jaxnets.cli_config.config_from_args`: tyro, or argparse where tyro is missing), after
    setting up devices and processes from ``--devices`` and friends
    (:func:`jaxnets.distributed.configure`, before JAX starts).

    ``--help`` lists every field with its default and docstring, the values ``--smoke`` sets
    (the config's ``SMOKE`` preset, see :mod:`jaxnets.sweep`) and the device flags. A
    ValueError raised by the dataclass' ``__post_init__`` (an invalid value), or by an
    impossible device set-up, is printed as one line and exits with 2, like any other usage
    error.
    """
    args = sys.argv[1:] if args is None else list(args)
    try:
        devices, args = _device_arguments(args)
        distributed.configure(**devices)
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    text = inspect.cleandoc(description or config_cls.__doc__ or "")  # docstring indents
    smoke = getattr(config_cls, "SMOKE", None)  # jaxnets.sweep.ExperimentConfig's preset
    if smoke:
        text += "\n\n--smoke sets " + ", ".join(f"{k}={v!r}" for k, v in smoke.items())
    try:
        return config_from_args(config_cls, args, description=f"{text}\n{_DEVICE_HELP}")
    except ValueError as err:
        print(f"error: invalid configuration: {err}", file=sys.stderr)
        raise SystemExit(2) from None


RESULTS_DIR = Path(__file__).resolve().parent.parent / "experiments" / "results"
"""Where each experiment's recorded summary is committed: ``<experiment>.json``."""


def latest_summaries(root: str | Path = "runs") -> dict[str, dict[str, Any]]:
    """The newest full-size (not ``--smoke``) ``summary.json`` of each experiment under
    ``root`` (``runs/<experiment>/<time>/summary.json``), by experiment name."""
    latest = {}
    for experiment in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        for path in sorted(experiment.glob("*/summary.json"), reverse=True):
            summary = json.loads(path.read_text())
            if not summary["config"].get("smoke", False):
                latest[experiment.name] = summary
                break
    return latest


def record_summaries(runs: str | Path, results: str | Path, names: list[str] | None = None):
    """Copy the newest full-size summary of each experiment (or only of ``names``) from
    ``runs`` to ``results/<experiment>.json``, the committed record the README's tables
    are generated from. Returns the recorded experiment names."""
    summaries = latest_summaries(runs)
    missing = sorted(set(names or ()) - set(summaries))
    if missing:
        raise FileNotFoundError(f"no full-size run of {', '.join(missing)} under {runs}")
    Path(results).mkdir(parents=True, exist_ok=True)
    recorded = [name for name in summaries if not names or name in names]
    for name in recorded:
        dump_json(Path(results) / f"{name}.json", summaries[name])
    return recorded


def recorded_summaries(results: str | Path = RESULTS_DIR) -> dict[str, dict[str, Any]]:
    """The committed summaries ``results/<experiment>.json``, by experiment name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(results).glob("*.json"))}


def results_markdown(summaries: dict[str, dict[str, Any]]) -> str:
    """Markdown: one table per experiment (variants x metrics), then every claim with its
    per-seed values, threshold and margin."""
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
    lines += [
        "| experiment | claim | mean | per seed | threshold | margin | holds |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, summary in summaries.items():
        for c in summary["claims"]:
            seeds = ", ".join(format_number(v) for v in c.get("values", [c["value"]]))
            lines.append(
                f"| {name} | {c['claim']} | {format_number(c['value'])} | {seeds} | "
                f"{c['direction']} {c['threshold']:g} | {c.get('margin', 0):g} | "
                f"{'yes' if c['holds'] else 'NO'} |"
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
    """A markdown table of every registered model: name, family, module, task, lecture.

    The module column (``jaxnets.models.cnn.LeNet5``) names the file and builder, since
    family names do not match file names.
    """
    from jaxnets import registry

    lines = [
        "| model | family | module | task | lecture | description |",
        "|---|---|---|---|---|---|",
    ]
    for name in registry.list_models():
        card = registry.model_card(name)
        lines.append(
            f"| `{name}` | {card.family} | `{card.module}` | {card.task} | {card.lecture}"
            f" | {card.description} |"
        )
    return "\n".join(lines)


def _main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m jaxnets.experiment",
        description="Record experiment summaries and regenerate README's generated tables.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    readme = sub.add_parser("readme", help="regenerate README's model and results tables")
    readme.add_argument("readme", nargs="?", default="README.md")
    readme.add_argument("--results", default=str(RESULTS_DIR), help="committed summaries")
    record = sub.add_parser(
        "record", help="copy the newest full-size run of each experiment into the results"
    )
    record.add_argument("names", nargs="*", help="experiments to record (default: all)")
    record.add_argument("--runs", default="runs")
    record.add_argument("--results", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)
    if args.command == "record":
        try:
            recorded = record_summaries(args.runs, args.results, args.names)
        except FileNotFoundError as err:
            parser.error(str(err))
        print(f"recorded {', '.join(recorded)} in {args.results}")
        return
    path = Path(args.readme)
    text = replace_block(path.read_text(), "models", models_markdown())
    summaries = recorded_summaries(args.results)
    path.write_text(replace_block(text, "results", results_markdown(summaries)))
    print(f"updated the model and results tables in {path} from {args.results}")


if __name__ == "__main__":
    _main()

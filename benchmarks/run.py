"""Run the benchmarks: jaxnets vs hand-written Flax vs PyTorch eager, the vmapped ensemble and
the cost of partitioning; the one driver of ``make bench``.

Lectures: seed 004 §7 "Optimization" (line 1841: SGD step cost against batch size), seed 001
"Vanilla Minibatch Gradient Descent" (line 328), Lecture 10 "Image Classification" (line
2311), Lecture 12 §4.4 "Ensembles" (line 2500) and Lecture 14 §4 ResNets and LSTM (lines 3254,
3022). Each benchmark is a case module that declares its cases, plan and goals:
:mod:`benchmarks.mlp` (``--cases mlp``), :mod:`benchmarks.cnn` (``lenet5``, ``resnet18``),
:mod:`benchmarks.rnn` (``lstm``), :mod:`benchmarks.ensemble` (``ensemble``) and
:mod:`benchmarks.partition` (``partition``).

``python -m benchmarks.run --out benchmarks/results`` (what ``make bench`` runs) runs every
benchmark of ``--cases`` (default: all on the CPU; the conv nets and the LSTM with ``--device
gpu``). The step benchmarks start every case ``--repeats`` times, each in a fresh process of
this interpreter, round-robin so a change in machine load falls on every case alike. Each
benchmark writes ``<out>/<name>.json`` (``<name>_gpu.json`` on a GPU: machine, config,
per-case median/min/max, ratios, goals) as soon as it finishes and prints the markdown table
of :mod:`benchmarks.readme_table`, whose last lines are the goals, each "holds" or "MISSED"
(a missed goal is reported, not an error: the exit status is 0 either way). Among them, for a
benchmark that declares ``WATCHED`` (the MLP, the conv nets, the LSTM), a regression goal per
watched ratio that the recorded result of the same device (``--recorded``, read before ``--out``
is written) has for the same row and the same work: "<row>: <ratio> within 10% of the recorded
<value>" (:func:`benchmarks.common.regression_goals`). ``--device gpu`` runs the conv nets
on JAX's GPU and PyTorch's CUDA device (the ResNet in bfloat16), e.g. ``--cases resnet18
--device gpu``, and the LSTM at H=1024, T=200, batch 128 against cuDNN. ``--quick`` is a
smoke run. Each benchmark's own options are ``--<group>.<field>`` (``--mlp.hidden 32``,
``--lstm.unroll full``; see ``--help``).

The flags are the fields of :class:`RunConfig`, read by :func:`jaxnets.cli_config.config_from_args`
(tyro, or argparse where tyro is not installed), as experiments read theirs.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from benchmarks import cnn, common, ensemble, mlp, partition, rnn
from benchmarks.readme_table import render_markdown
from jaxnets.cli_config import config_from_args

__all__ = ["BENCHMARKS", "CASES", "DEFAULT_CASES", "RunConfig", "main"]

BENCHMARKS = (mlp, cnn, rnn, ensemble, partition)
# Which benchmark runs each case name of --cases, in the order they run.
CASES = {case: module for module in BENCHMARKS for case in module.CASES}
DEFAULT_CASES = {"cpu": tuple(CASES), "gpu": (*cnn.CASES, *rnn.CASES)}
# The RunConfig field holding each benchmark's plan.
_PLAN_FIELDS = {mlp: "mlp", cnn: "cnn", rnn: "lstm", ensemble: "ensemble", partition: "partition"}


@dataclasses.dataclass(frozen=True)
class RunConfig(common.Settings):
    """What ``python -m benchmarks.run`` runs: the settings of every benchmark
    (:class:`benchmarks.common.Settings`), where the results go, which cases, and each
    benchmark's plan.

    Attributes:
      out: the directory of the JSON results.
      recorded: the directory of the recorded results the regression goals compare with (the
        committed ones); read before ``out`` is written, so it may be ``out``.
      cases: of :data:`CASES` (None: :data:`DEFAULT_CASES` of the device).
      mlp, cnn, lstm, ensemble, partition: each benchmark's options (its ``Plan``).
    """

    out: Path = Path("benchmarks/results")
    recorded: Path = Path("benchmarks/results")
    cases: tuple[str, ...] | None = None
    mlp: mlp.Plan = mlp.Plan()
    cnn: cnn.Plan = cnn.Plan()
    lstm: rnn.Plan = rnn.Plan()
    ensemble: ensemble.Plan = ensemble.Plan()
    partition: partition.Plan = partition.Plan()

    def __post_init__(self):
        super().__post_init__()
        for case in self.cases or ():
            common.choice("case", case, tuple(CASES))
        for module in {CASES[case] for case in self.selected}:
            if self.device not in module.RESULT_FILES:
                raise ValueError(
                    f"the {module.NAME} benchmark runs on the "
                    f"{' or '.join(module.RESULT_FILES)} only; leave "
                    f"{' '.join(module.CASES)} out of --cases with --device {self.device}"
                )

    @property
    def selected(self) -> tuple[str, ...]:
        """The cases to run."""
        return self.cases or DEFAULT_CASES[self.device]


def main(argv: list[str] | None = None) -> dict[str, dict]:
    """CLI entry: run the benchmarks of ``--cases``, write ``<out>/<name>.json`` for each,
    print their tables and goals. Returns the results by benchmark name (``"mlp"``, ``"cnn"``,
    ``"rnn"``, ``"ensemble"``, ``"partition"``)."""
    config = config_from_args(RunConfig, argv, __doc__.split("\n\n")[0])
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    results = {}
    for module in BENCHMARKS:
        cases = tuple(c for c in module.CASES if c in config.selected)
        if not cases:
            continue
        plan = getattr(config, _PLAN_FIELDS[module])
        name = module.RESULT_FILES[config.device]
        # Read first: with --out benchmarks/results this run overwrites the recorded file.
        recorded = common.read_result(config.recorded / name)
        result = module.run_benchmark(config, plan, cases, log)
        # A module without WATCHED (the ensemble, partitioning) gets no regression goals.
        watched = getattr(module, "WATCHED", None)
        if watched is not None:
            if recorded is None:
                log(f"no recorded {config.recorded / name}: no regression goals")
            regression = common.regression_goals(result, recorded, watched, log)
            result["goals"] = [*result["goals"], *regression]
        # Written as soon as it finishes: a failure in the next benchmark keeps this one's file.
        results[module.NAME] = result
        config.out.mkdir(parents=True, exist_ok=True)
        path = config.out / name
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(render_markdown(result) + f"\n\nwrote {path}\n")
    return results


if __name__ == "__main__":
    main()

"""The mutation score of `make mutate` (issue 15): killed / non-equivalent mutants, per module.

Reads mutmut's results (mutants/<module>.py.meta, written by `mutmut run`), takes out the
surviving mutants argued equivalent (in tests/mutation_equivalents_core.py and
tests/mutation_equivalents_layers.py), prints a per-module table and the survivors' diffs, and
exits 1 when the score is under ``--min`` (0.9). Timeouts, "no tests" (no targeted test reaches
the function), suspicious results and mutants not checked yet all count as not killed.

An equivalence entry names the mutant and the line the mutant writes: mutmut numbers mutants
per function, so after an edit a number can name another mutation; an entry whose line no longer
matches is reported as stale and its mutant counts as a survivor again.

Run from the repository root: ``python tests/mutation_score.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import mutation_equivalents_core
import mutation_equivalents_layers
import tomllib

# mutant name -> (a line the mutant writes, without the "+", why it cannot change behaviour)
EQUIVALENT: dict[str, tuple[str, str]] = {
    **mutation_equivalents_core.EQUIVALENT,
    **mutation_equivalents_layers.EQUIVALENT,
}


def _status(exit_code: int | None) -> str:
    from mutmut.stats import status_by_exit_code

    return status_by_exit_code[exit_code]


def _diff(name: str, path: str) -> str:
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    return get_diff_for_mutant(name, path=path)


def _added_lines(diff: str) -> list[str]:
    return [line[1:].strip() for line in diff.splitlines() if line[:1] == "+" and line[:3] != "+++"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min", type=float, default=0.9, help="fail under this score")
    parser.add_argument("--quiet", action="store_true", help="table only, no diffs")
    args = parser.parse_args(argv)

    config = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["mutmut"]
    columns = ("mutants", "killed", "survived", "equivalent", "no tests", "timeout", "not checked")
    rows, survivors, stale = {}, [], []
    for path in config["only_mutate"]:
        meta = Path("mutants") / f"{path}.meta"
        if not meta.exists():
            print(f"{path}: no results (run `make mutate`)")
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        row = Counter(mutants=len(codes))
        for name, code in sorted(codes.items()):
            status = _status(code)
            if status == "survived" and name in EQUIVALENT:
                line, _ = EQUIVALENT[name]
                if line in _added_lines(_diff(name, path)):
                    row["equivalent"] += 1
                    continue
                stale.append(name)
            row[status if status in columns else "survived"] += 1  # suspicious, segfault
            if status not in ("killed", "not checked"):
                survivors.append((name, path, status))
        rows[path] = row

    total = sum(rows.values(), Counter())
    width = max([len(p) for p in rows] + [5])
    header = " ".join(f"{c:>11}" for c in columns)
    print(f"{'module':<{width}} {header}       score  of checked")
    for label, row in [*rows.items(), ("total", total)]:
        scored = row["mutants"] - row["equivalent"]
        checked = scored - row["not checked"]
        score = row["killed"] / scored if scored else 1.0
        of_checked = f"{row['killed'] / checked:>11.1%}" if checked else f"{'-':>11}"
        cells = " ".join(f"{row[c]:>11}" for c in columns)
        print(f"{label:<{width}} {cells} {score:>11.1%} {of_checked}")
    for name in stale:
        print(f"stale equivalence entry (the mutant changed): {name}")
    if survivors:
        print(f"\n{len(survivors)} mutants not killed:")
    for name, path, status in survivors:
        print(f"  {name}: {status}")
        if not args.quiet:
            print("    " + "\n    ".join(_diff(name, path).splitlines()[2:]))
    scored = total["mutants"] - total["equivalent"]
    score = total["killed"] / scored if scored else 1.0
    print(f"\nmutation score: {total['killed']} killed / {scored} non-equivalent = {score:.1%}")
    if total["not checked"]:
        checked = scored - total["not checked"]
        print(
            f"{total['not checked']} mutants not checked yet (run `make mutate` to finish); of "
            f"the {checked} checked: {total['killed']} killed = {total['killed'] / checked:.1%}"
        )
    return 0 if score >= args.min else 1


if __name__ == "__main__":
    sys.exit(main())

"""The documentation a newcomer walks (README.md, ARCHITECTURE.md, docs/*.md): every relative
link leads to a file that exists and every #anchor to a heading of it; every Python sample
runs as written (slow: they train small models)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
SAMPLE = re.compile(r"```python\n(.*?)```", re.S)


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of ``page``: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code is not a link
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_the_docs_pages_exist_and_are_linked_from_the_readme():
    docs = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert len(docs) >= 3
    linked = {t.partition("#")[0] for t in _links(ROOT / "README.md")}
    assert "ARCHITECTURE.md" in linked
    assert {f"docs/{name}" for name in docs} <= linked, "a docs page the README does not link"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    problems = []
    for target in _links(page):
        file, _, anchor = target.partition("#")
        destination = (page.parent / file).resolve() if file else page
        if not destination.exists():
            problems.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
            problems.append(f"{target}: no heading with anchor #{anchor} in {destination.name}")
    assert not problems, f"{page.relative_to(ROOT)}: " + "; ".join(problems)


SAMPLES = [
    pytest.param(code, id=f"{page.relative_to(ROOT)}[{i}]")
    for page in PAGES
    for i, code in enumerate(SAMPLE.findall(page.read_text()))
]


@pytest.mark.slow
@pytest.mark.parametrize("code", SAMPLES)
def test_every_python_sample_runs_as_written(code, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]

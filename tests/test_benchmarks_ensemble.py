"""Tests of benchmarks.ensemble: both ways train the same members, the record and its
README table."""

from __future__ import annotations

import json

import pytest

from benchmarks import ensemble
from benchmarks.readme_table import render_markdown


def test_vmapped_and_looped_members_train_alike_and_render(tmp_path):
    results = ensemble.main(
        [
            "--members",
            "2",
            "--hidden",
            "8",
            "--steps",
            "3",
            "--repeats",
            "2",
            "--out",
            str(tmp_path),
        ]
    )
    case = results["cases"][0]
    # the same steps on the same batches from the same inits: the same parameters
    assert case["max_param_difference"] < 1e-5
    assert case["speedup"] == pytest.approx(
        case["loop_ms"]["median"] / case["vmapped_ms"]["median"]
    )
    goal = results["goals"][0]
    assert goal["holds"] == (goal["value"] >= 4.0)
    on_disk = json.loads((tmp_path / "ensemble.json").read_text())
    assert on_disk["cases"][0]["hidden"] == 8
    table = render_markdown(on_disk)
    assert "2-member ensemble" in table and "| 8 |" in table


def test_bad_arguments_are_usage_errors():
    with pytest.raises(SystemExit):
        ensemble.main(["--members", "1"])

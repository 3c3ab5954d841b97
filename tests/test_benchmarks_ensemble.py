"""Tests of benchmarks.ensemble: both ways train the same members, the record and its
README table."""

from __future__ import annotations

import json

import pytest

from benchmarks import ensemble
from benchmarks import run as bench_run
from benchmarks.readme_table import render_markdown


def test_vmapped_and_looped_members_train_alike_and_render(tmp_path):
    argv = ["--cases", "ensemble", "--repeats", "2", "--out", str(tmp_path)]
    argv += ["--ensemble.members", "2", "--ensemble.hidden", "8", "--ensemble.steps", "3"]
    results = bench_run.main([*argv, "--ensemble.scaling-members", "1", "3"])["ensemble"]
    case = results["cases"][0]
    # the same steps on the same batches from the same inits: the same parameters
    assert case["max_param_difference"] < 1e-5
    assert case["speedup"] == pytest.approx(
        case["loop_ms"]["median"] / case["vmapped_ms"]["median"]
    )
    goal = results["goals"][0]
    assert goal["holds"] == (goal["value"] >= 4.0)
    on_disk = json.loads((tmp_path / "ensemble.json").read_text())
    assert on_disk == results and on_disk["cases"][0]["hidden"] == 8
    assert on_disk["config"] == {
        "members": 2,
        "batch": 32,
        "hidden": [8],
        "steps": 3,
        "repeats": 2,
        "scaling_members": [1, 3],
    }
    table = render_markdown(on_disk)
    assert "2-member ensemble" in table and "| 8 |" in table

    # two sizes: the fitted line passes through both timings, and the limit is its ratio
    scaling = on_disk["member_scaling"]
    assert scaling["members"] == [1, 3] and scaling["hidden"] == 8
    for k, ms in zip(scaling["members"], scaling["vmapped_ms"], strict=True):
        assert scaling["fixed_ms"] + scaling["per_member_ms"] * k == pytest.approx(ms, rel=1e-6)
    if scaling["per_member_ms"] > 0:
        assert scaling["speedup_limit"] == pytest.approx(
            scaling["single_ms"] / scaling["per_member_ms"]
        )
        assert f"**{scaling['speedup_limit']:.1f}x**" in table
    else:
        assert scaling["speedup_limit"] is None and "lost in noise" in table


@pytest.mark.parametrize(
    "fields, flags, message",
    [
        ({"members": 1}, ["--ensemble.members", "1"], "members must be >= 2"),
        ({"steps": 0}, ["--ensemble.steps", "0"], "steps >= 1"),
        (
            {"scaling_members": (4,)},
            ["--ensemble.scaling-members", "4"],
            "two or more distinct ensemble sizes >= 1",
        ),
        ({"scaling_members": (0, 2)}, ["--ensemble.scaling-members", "0", "2"], r"got \[0, 2\]"),
    ],
)
def test_bad_plans_name_what_is_wrong(fields, flags, message):
    with pytest.raises(ValueError, match=message):
        ensemble.Plan(**fields)
    with pytest.raises(SystemExit) as exit_info:  # on the command line: a usage error
        bench_run.main(["--cases", "ensemble", *flags])
    assert exit_info.value.code == 2


def test_member_scaling_rejects_a_single_size():
    with pytest.raises(ValueError, match="two or more distinct"):
        ensemble.member_scaling([4, 4], hidden=8, batch=4, steps=1, repeats=1)

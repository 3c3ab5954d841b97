"""The benchmark goals of issue 20 (benchmarks/common.py, cnn.py, rnn.py, run.py): jaxnets at
least as fast as PyTorch eager for every conv-net case on the CPU, and the regression goals
that hold each watched ratio within 10% of the recorded one, in its own direction. Synthetic
result dicts and a faked process runner: nothing is timed here.
"""

import dataclasses
import json

import pytest

from benchmarks import cnn, common, rnn
from benchmarks import run as bench_run

_SPEED = "jaxnets_over_torch_images_per_s"  # higher is better
_STEP_TIME = "jaxnets_over_flax_step_time"  # lower is better


def _result(ratios, steps=200):
    """A cnn-shaped result: one LeNet-5 row per ratio dict, at batch 32 and 256, and the
    jaxnets case of each row (``steps`` timed steps)."""
    rows = [{"model": "lenet5", "batch": b, **r} for b, r in zip((32, 256), ratios, strict=False)]
    cases = [
        {"framework": "jaxnets", "model": "lenet5", "batch": r["batch"], "steps": steps}
        for r in rows
    ]
    machine = {"cpu_model": "Intel(R) Xeon(R) Processor"}
    return {"benchmark": "cnn", "machine": machine, "cases": cases, "ratios": rows, "goals": []}


def _goals(now, recorded, log=None):
    return common.regression_goals(now, recorded, cnn.WATCHED, log or (lambda _: None))


@pytest.mark.parametrize(
    ("metric", "factor", "holds"),
    [
        (_SPEED, 0.91, True),  # 9% slower than recorded
        (_SPEED, 0.89, False),  # 11% slower
        (_SPEED, 1.50, True),  # faster
        (_STEP_TIME, 1.09, True),  # 9% more step time than recorded
        (_STEP_TIME, 1.11, False),  # 11% more
        (_STEP_TIME, 0.50, True),  # less
    ],
)
def test_regression_goal_holds_within_10_percent_in_its_own_direction(metric, factor, holds):
    recorded = _result([{metric: 0.8}])
    (goal,) = _goals(_result([{metric: 0.8 * factor}]), recorded)
    higher = metric == _SPEED
    assert goal["metric"] == metric and goal["holds"] is holds
    assert goal["value"] == pytest.approx(0.8 * factor) and goal["recorded"] == 0.8
    assert goal["threshold"] == pytest.approx(0.72 if higher else 0.88)
    assert goal["direction"] == ("above" if higher else "below")
    assert (goal["model"], goal["batch"]) == ("lenet5", 32)
    assert goal["goal"] == f"model lenet5, batch 32: {metric} within 10% of the recorded 0.800"


def test_only_ratios_the_recorded_result_has_get_a_regression_goal():
    now = _result([{_SPEED: 0.5, _STEP_TIME: 1.0}, {_SPEED: 0.4, _STEP_TIME: None}])
    # Batch 32: the recorded speed ratio is missing (no PyTorch then); batch 256: the new
    # step-time ratio is (no Flax now). Only the two ratios present in both are compared.
    recorded = _result([{_SPEED: None, _STEP_TIME: 1.0}, {_SPEED: 0.5, _STEP_TIME: 1.0}])
    goals = _goals(now, recorded)
    assert [(g["batch"], g["metric"], g["holds"]) for g in goals] == [
        (32, _STEP_TIME, True),
        (256, _SPEED, False),  # 0.4 < 0.9 * 0.5
    ]
    # A row the recorded result lacks, or no recorded result at all: no regression goal.
    assert _goals(_result([{_SPEED: 0.1}]), _result([])) == []
    assert _goals(now, None) == []


def test_other_work_than_the_recorded_is_not_compared_and_says_why():
    logged = []
    # A --quick run: 4 timed steps where the recorded case timed 200.
    goals = _goals(_result([{_SPEED: 0.1}], steps=4), _result([{_SPEED: 0.5}]), logged.append)
    assert goals == []
    assert logged == [
        "model lenet5, batch 32: not compared with the recorded ratios, whose jaxnets case "
        "timed other work (steps differ)"
    ]


def _speed(images_per_s, batch):
    v = {"images_per_s": images_per_s, "ms_per_step": 1e3 * batch / images_per_s}
    return {k: {"median": x, "min": x, "max": x} for k, x in v.items()}


@pytest.mark.parametrize("model", ["lenet5", "resnet18"])
def test_cnn_has_a_goal_against_pytorch_for_every_case_on_the_cpu(model):
    def goal(torch_images_per_s):
        cases = [
            {"framework": f, "model": model, "batch": 32, **_speed(s, 32), "step_flops": None}
            for f, s in (("jaxnets", 100.0), ("torch", torch_images_per_s))
        ]
        for case in cases:
            case["repeats"] = []
        (g,) = [g for g in cnn.ratios_and_goals(cases, "cpu")[1] if g["metric"] == _SPEED]
        return g

    at_par, behind = goal(100.0), goal(101.0)
    assert at_par["goal"] == f"{model} batch 32: jaxnets images/s / PyTorch images/s >= 1.0"
    assert (at_par["value"], at_par["threshold"], at_par["holds"]) == (1.0, 1.0, True)
    assert behind["value"] == pytest.approx(100 / 101) and not behind["holds"]


def test_watched_names_are_the_ratio_rows_fields():
    # A misspelt name would silently give no regression goal.
    cases = [
        {"framework": f, "model": "lenet5", "batch": 8, **_speed(10.0, 8), "step_flops": None}
        for f in common.FRAMEWORKS
    ]
    for case in cases:
        case["repeats"] = []
    (row,), _ = cnn.ratios_and_goals(cases, "cpu")
    assert {*cnn.WATCHED.identity, *cnn.WATCHED.higher_is_better} <= set(row)
    spread = {"median": 10.0, "min": 10.0, "max": 10.0}
    lstm = [
        {"framework": f, "batch": 8, "unroll": 1, "sequences_per_s": spread, "step_flops": 1.0}
        | {"ms_per_step": spread, "repeats": []}
        for f in common.FRAMEWORKS
    ]
    (row,), _ = rnn.ratios_and_goals(lstm, "cpu", 1)
    assert {*rnn.WATCHED.identity, *rnn.WATCHED.higher_is_better} <= set(row)


def test_driver_compares_with_the_recorded_file_before_overwriting_it(
    monkeypatch, tmp_path, capsys
):
    speeds = {"jaxnets": 500.0, "flax": 500.0, "torch": 1000.0}  # 0.5x PyTorch, 1.0x Flax

    def fake_round_robin(module, configs, repeats, device, describe, log):
        measured = ("cpu_ms_per_step", "compile_s", "seconds", "first_loss", "final_loss")
        measured += ("step_flops", "peak_flops_per_s")
        records = []
        for c in configs:
            speed = speeds[c.framework]
            record = {**dict.fromkeys(measured, 1.0), "images_per_s": speed}
            record["ms_per_step"] = 1e3 * c.batch / speed
            records.append([{**dataclasses.asdict(c), **record, "device": "cpu"}])
        return records

    monkeypatch.setattr(common, "run_round_robin", fake_round_robin)
    monkeypatch.setattr(common, "check_frameworks", lambda frameworks: None)
    argv = ["--cases", "lenet5", "--cnn.batches", "32", "--repeats", "1"]
    argv += ["--out", str(tmp_path), "--recorded", str(tmp_path)]
    first = bench_run.main(argv)["cnn"]
    assert "no recorded" in capsys.readouterr().err
    assert [g["metric"] for g in first["goals"]] == [_STEP_TIME, _SPEED]
    speeds["jaxnets"] = 440.0  # 12% slower: both ratios regress
    second = bench_run.main(argv)["cnn"]
    regression = [g for g in second["goals"] if "recorded" in g]
    # Compared with the first run's ratios, read before the second run's file replaced them.
    assert [(g["metric"], g["recorded"], g["holds"]) for g in regression] == [
        (_STEP_TIME, 1.0, False),
        (_SPEED, 0.5, False),
    ]
    on_disk = json.loads((tmp_path / "cnn.json").read_text())
    assert on_disk["ratios"][0][_SPEED] == pytest.approx(0.44)
    assert on_disk["goals"] == second["goals"]
    out = capsys.readouterr().out
    assert "- model lenet5, batch 32: jaxnets_over_torch_images_per_s within 10% of the " in out
    assert "recorded 0.500: 0.44 (MISSED)" in out


def test_a_result_recorded_on_another_cpu_is_not_compared():
    recorded = {**_result([{_SPEED: 2.5}]), "machine": {"cpu_model": "AMD EPYC"}}
    logged = []
    assert _goals(_result([{_SPEED: 1.0}]), recorded, logged.append) == []
    assert logged == [
        "cnn: not compared with the recorded ratios, measured on another CPU (AMD EPYC; "
        "this run: Intel(R) Xeon(R) Processor)"
    ]

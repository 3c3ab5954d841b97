"""Tests of benchmarks.partition: a tiny run's record (same losses on 1 and 8 devices), the
summary of known timings and the README table."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import partition
from benchmarks import run as bench_run
from benchmarks.readme_table import render_markdown
from jaxnets import distributed

_MACHINE = {
    "cpu_model": "Test CPU",
    "cores": 2,
    "load_average_before": [1.0, 1.0, 1.0],
    "load_average_after": [2.0, 1.0, 1.0],
    "versions": {"jax": "0.0"},
    "jax_devices": ["cpu"],
    "torch_devices": [],
}


def test_tiny_run_trains_alike_on_every_mesh_and_renders(tmp_path):
    # one process (meshes of up to 8 virtual devices) of a 64-8-10 MLP: a minibatch of 16
    # is 2 per device on 8
    argv = ["--cases", "partition", "--partition.models", "mlp", "--partition.hidden", "8"]
    argv += ["--partition.batch", "16", "--partition.steps", "2", "--partition.rounds", "1"]
    results = bench_run.main([*argv, "--repeats", "1", "--out", str(tmp_path)])["partition"]
    on_disk = json.loads((tmp_path / "partition.json").read_text())
    assert on_disk == results
    assert on_disk["benchmark"] == "partition" and on_disk["goals"] == []
    cfg = on_disk["config"]
    # spare devices beside the largest mesh's 8, as jaxnets.distributed.configure makes them
    assert cfg["setups"] == ["none", "1", "8"]
    assert cfg["device_count"] == distributed.CPU_DEVICE_SPARE_FACTOR * 8 > 8
    assert cfg["hyperparameters"]["mlp"] == {"hidden": [8], "num_outputs": 10}
    (case,) = on_disk["cases"]
    assert (case["model"], case["batch"], case["steps"]) == ("mlp", 16, 2)
    losses = [case["setups"][s]["final_loss"] for s in ("none", "1", "8")]
    # the same steps on 1 or 8 devices: the same losses to float32 rounding; 10 classes from a
    # random init start near ln(10) and a few small Adam steps keep them there
    assert max(losses) - min(losses) < 1e-5
    assert all(case["setups"][s]["loss_difference"] < 1e-5 for s in ("1", "8"))
    assert case["setups"]["none"]["loss_difference"] == 0.0
    assert losses[0] == pytest.approx(math.log(10), abs=0.5)
    for timing in partition.TIMINGS:
        (raw,) = case["repeats"]
        ms = {s: raw[s][timing]["ms_per_step"] for s in ("none", "1", "8")}
        assert all(case["setups"][s][timing]["ms_per_step"]["median"] == ms[s] for s in ms)
        assert case["ratios"][timing]["8_over_1"] == pytest.approx(ms["8"] / ms["1"])
        assert case["ratios"][timing]["1_over_none"] == pytest.approx(ms["1"] / ms["none"])
    table = render_markdown(on_disk)
    assert "meshes of 1 and 8 virtual CPU devices" in table
    assert "| MLP 64-8-10 | 16 | `train_step` |" in table
    assert "| MLP 64-8-10 | 16 | `train_epoch` |" in table


def _record(ms: dict[str, tuple[float, float]], compile_s: float) -> dict:
    """A process' record: per set-up (step ms, epoch ms)."""
    return {
        "model": "lstm_classifier",
        "batch": 64,
        "steps": 3,
        "rounds": 2,
        "device": "cpu",
        "setups": list(ms),
        "results": {
            s: {
                "step": {"ms_per_step": step, "rounds_ms": [step], "compile_s": compile_s},
                "epoch": {"ms_per_step": epoch, "rounds_ms": [epoch], "compile_s": compile_s},
                "final_loss": 0.5,
                "loss_difference": 1e-7 if s != "none" else 0.0,
            }
            for s, (step, epoch) in ms.items()
        },
    }


def test_summary_and_table_of_known_timings():
    records = [
        _record({"none": (2.0, 1.0), "1": (1.0, 1.0), "8": (6.0, 3.0)}, compile_s=1.0),
        _record({"none": (4.0, 3.0), "1": (3.0, 2.0), "8": (10.0, 9.0)}, compile_s=3.0),
    ]
    case = partition.summarize_case(records)
    assert case["setups"]["8"]["step"]["ms_per_step"] == {"median": 8.0, "min": 6.0, "max": 10.0}
    assert case["setups"]["none"]["epoch"]["compile_s"] == {"median": 2.0, "min": 1.0, "max": 3.0}
    # medians: step none 3, 1-mesh 2, 8-mesh 8; epoch none 2, 1-mesh 1.5, 8-mesh 6
    assert case["ratios"]["step"] == pytest.approx({"8_over_1": 4.0, "1_over_none": 2 / 3})
    assert case["ratios"]["epoch"] == pytest.approx({"8_over_1": 4.0, "1_over_none": 0.75})
    assert case["setups"]["8"]["loss_difference"] == 1e-7
    results = {
        "benchmark": "partition",
        "machine": _MACHINE,
        "config": {
            "setups": ["none", "1", "8"],
            "device": "cpu",
            "device_count": 8,
            "labels": {"lstm_classifier": "LSTM (H=4, T=20)"},
            "repeats": 2,
            "rounds": 2,
            "learning_rate": 0.001,
        },
        "cases": [case],
        "goals": [],
    }
    table = render_markdown(results)
    row = "| LSTM (H=4, T=20) | 64 | `train_step` | 3.00 (2.00-4.00) | 2.00 (1.00-3.00) | "
    assert row + "8.00 (6.00-10.00) | 4.00x | 0.67x | 2.0 / 2.0 / 2.0 |" in table
    assert "| 6.00 (3.00-9.00) | 4.00x | 0.75x |" in table
    assert "at most 1.0e-07" in table and "Test CPU, 2 cores" in table


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"model": "vgg16"}, "unknown model 'vgg16'"),
        ({"batch": 12}, "global batch 12 does not split over 8 devices"),
        ({"setups": ("none", "two")}, "setups are 'none'"),
        ({"model": "resnet20", "hidden": 8}, "hidden sets the width of mlp or lstm_classifier"),
        ({"rounds": 0}, "steps and rounds must be >= 1"),
    ],
)
def test_case_config_names_what_is_wrong(fields, message):
    with pytest.raises(ValueError, match=message):
        partition.CaseConfig(**{"model": "mlp", "batch": 16, "steps": 2, **fields})
    if fields.keys() == {"model"}:  # a plan names its models too
        with pytest.raises(ValueError, match=message):
            partition.Plan(models=(fields["model"],))

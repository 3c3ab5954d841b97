"""The benchmark harness (benchmarks/): one process per case, JSON shape, ratios and goals,
tables, the run and case flags, and the GPU plan.

The end-to-end cases are tiny (MLP 784-32-10 on 256 examples, LeNet-5 at batch 8 for 4 timed
steps) so the file stays fast; what is checked is the bookkeeping, and that every framework
really trained (its loss fell). That the frameworks compute the same thing is in
test_benchmarks_cnn.py.
"""

import dataclasses
import json
import types

import jax
import numpy as np
import pytest
from benchmark_counts import (
    LENET5_STEP_MULTIPLY_ADDS,
)

import jaxnets
import jaxnets.models  # noqa: F401  (registers the models)
from benchmarks import cnn, common, mlp, steps
from benchmarks import readme_table as bench_table
from benchmarks import run as bench_run
from benchmarks.readme_table import render_markdown
from jaxnets import cli_config

_TINY = mlp.Plan(batches=(8,), examples=256, epochs=1, hidden=(32,))


@pytest.fixture(scope="module")
def jax_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = ["--out", str(out), "--cases", "mlp", "--frameworks", "jaxnets", "flax"]
    argv += ["--mlp.batches", "8", "--mlp.examples", "256", "--mlp.epochs", "1", "--repeats", "1"]
    returned = bench_run.main([*argv, "--mlp.hidden", "32"])
    assert sorted(returned) == ["mlp"]
    return returned["mlp"], json.loads((out / "mlp.json").read_text()), out


@pytest.fixture(scope="module")
def cnn_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_cnn")
    # One framework keeps it fast; the ratio and goal arithmetic is checked on its own below.
    argv = ["--quick", "--out", str(out), "--cases", "lenet5", "--frameworks", "jaxnets"]
    returned = bench_run.main([*argv, "--cnn.batches", "8", "--cnn.peak-size", "128"])
    assert sorted(returned) == ["cnn"]
    return returned["cnn"], json.loads((out / "cnn.json").read_text()), out


def _check_case(case, framework):
    assert case["framework"] == framework and case["batch"] == 8
    assert case["steps"] == 256 // 8
    assert len(case["repeats"]) == 1
    speed = case["steps_per_s"]
    assert 0 < speed["min"] <= speed["median"] <= speed["max"]
    assert speed["median"] * case["ms_per_step"]["median"] == pytest.approx(1000.0, rel=1e-9)
    assert case["cpu_ms_per_step"]["median"] > 0
    rep = case["repeats"][0]
    # One epoch more of SGD on the same 256 examples must lower the mean training loss,
    # which starts near log(10) = 2.30 for 10 balanced classes.
    assert 1.5 < rep["first_loss"] < 3.5
    assert rep["final_loss"] < rep["first_loss"]


def test_jax_cases_write_json_with_medians_ratios_and_goals(jax_results):
    returned, on_disk, _ = jax_results
    assert on_disk == returned
    cases = {c["framework"]: c for c in on_disk["cases"]}
    assert sorted(cases) == ["flax", "jaxnets"]
    for name, case in cases.items():
        _check_case(case, name)
        assert case["compile_s"]["median"] > 0
    (ratio,) = on_disk["ratios"]
    expected = cases["jaxnets"]["ms_per_step"]["median"] / cases["flax"]["ms_per_step"]["median"]
    assert ratio == {
        "batch": 8,
        "jaxnets_over_flax_step_time": pytest.approx(expected),
        "jaxnets_over_torch_steps_per_s": None,
    }
    (goal,) = on_disk["goals"]
    assert goal["value"] == pytest.approx(expected) and goal["threshold"] == 1.05
    assert goal["holds"] == (expected <= 1.05)
    machine = on_disk["machine"]
    assert machine["cores"] >= 1 and len(machine["load_average_before"]) == 3
    assert machine["versions"]["jax"] == jax.__version__
    assert machine["jax_devices"] == ["cpu"]
    assert on_disk["config"]["hidden"] == [32] and on_disk["config"]["examples"] == 256


def test_markdown_table_has_one_row_per_batch_with_the_ratios(jax_results):
    _, results, _ = jax_results
    text = render_markdown(results)
    (row,) = [line for line in text.splitlines() if line.startswith("| 8 |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    ratio = results["ratios"][0]["jaxnets_over_flax_step_time"]
    # batch, jaxnets, flax, the two ratios (no torch column in a run without torch)
    assert len(cells) == 5
    assert cells[3] == f"{ratio:.2f}x" and cells[4] == "n/a"
    assert cells[1].startswith(f"{results['cases'][0]['steps_per_s']['median']:.0f} (")


def test_unknown_framework_bad_repeats_and_bad_cases_are_rejected():
    with pytest.raises(ValueError, match="unknown frameworks \\['tf'\\]"):
        common.Settings(frameworks=("tf",))
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        common.Settings(frameworks=("flax",), repeats=0)
    with pytest.raises(ValueError, match="dtype bfloat16 needs a model with a dtype field"):
        cnn.CaseConfig("flax", "lenet5", 8, dtype="bfloat16")
    with pytest.raises(ValueError, match="unknown model 'vgg'; choose one of lenet5, resnet18"):
        cnn.CaseConfig("flax", "vgg", 8)
    with pytest.raises(ValueError, match="need 1 <= data_batches <= steps"):
        cnn.CaseConfig("flax", "lenet5", 8, steps=2)
    message = "the mlp benchmark runs on the cpu only; leave mlp out of --cases with --device gpu"
    with pytest.raises(ValueError, match=message):
        bench_run.RunConfig(cases=("mlp", "lenet5"), device="gpu")
    with pytest.raises(ValueError, match="unknown case 'vgg'; choose one of mlp, lenet5"):
        bench_run.RunConfig(cases=("vgg",))
    # On the command line both are usage errors (exit 2), before anything runs.
    for argv in (["--cases", "mlp", "--device", "gpu"], ["--mlp.hidden", "wide"]):
        with pytest.raises(SystemExit) as exit_info:
            bench_run.main(argv)
        assert exit_info.value.code == 2


def test_run_flags_build_each_benchmarks_plan():
    argv = ["--cases", "lstm", "partition", "--quick", "--no-quick", "--repeats", "2"]
    argv += ["--lstm.unrolls", "1", "full", "--partition.models", "mlp", "--cnn.batches", "8"]
    expected = bench_run.RunConfig(
        cases=("lstm", "partition"),
        repeats=2,
        lstm=bench_run.rnn.Plan(unrolls=("1", "full")),
        partition=bench_run.partition.Plan(models=("mlp",)),
        cnn=cnn.Plan(batches=(8,)),
    )
    assert cli_config.config_from_args(bench_run.RunConfig, argv) == expected
    assert cli_config.argparse_config(bench_run.RunConfig, argv) == expected
    assert expected.selected == ("lstm", "partition")
    assert bench_run.RunConfig(device="gpu").selected == ("lenet5", "resnet18", "lstm")


def test_case_flags_round_trip_through_the_generated_cli():
    config = cnn.CaseConfig("flax", "resnet18", 4, steps=6, dtype="bfloat16", learning_rate=0.1)
    argv = cli_config.config_to_args(config)
    # Defaults are left out; what differs is spelled as the CLI flags (the shared step fields
    # of benchmarks.steps.StepCase first).
    assert argv == ["--steps", "6", "--dtype", "bfloat16", "--framework", "flax"] + [
        "--model",
        "resnet18",
        "--batch",
        "4",
        "--learning-rate",
        "0.1",
    ]
    assert cli_config.config_from_args(cnn.CaseConfig, argv) == config
    assert cli_config.argparse_config(cnn.CaseConfig, argv) == config


def test_cnn_quick_run_writes_json_with_flops_and_peak(cnn_results):
    returned, on_disk, _ = cnn_results
    assert on_disk == returned
    (case,) = on_disk["cases"]
    assert (case["framework"], case["model"], case["batch"], case["steps"], case["dtype"]) == (
        "jaxnets",
        "lenet5",
        8,
        4,
        "float32",
    )
    ips, ms = case["images_per_s"]["median"], case["ms_per_step"]["median"]
    assert ips * ms == pytest.approx(8 * 1000.0, rel=1e-9)
    assert case["compile_s"]["median"] > 0 and case["peak_flops_per_s"]["median"] > 1e8
    rep = case["repeats"][0]
    # Synthetic 10-class labels: the loss starts near log(10) and a few steps on the same
    # 4 batches must lower it.
    assert 1.8 < rep["first_loss"] < 2.8 and rep["final_loss"] < rep["first_loss"]
    # XLA's count at batch 8: 8 images of Table 1's connections, three passes (see below).
    assert (
        8 * 2 * LENET5_STEP_MULTIPLY_ADDS < rep["step_flops"] < 8 * 2.2 * LENET5_STEP_MULTIPLY_ADDS
    )
    (ratio,) = on_disk["ratios"]
    assert ratio["jaxnets_over_flax_step_time"] is None and on_disk["goals"] == []
    assert ratio["peak_fraction"]["jaxnets"] == pytest.approx(
        rep["step_flops"] * ips / 8 / rep["peak_flops_per_s"]
    )
    assert on_disk["config"]["peak_size"] == 128 and on_disk["config"]["device"] == "cpu"
    assert on_disk["machine"]["jax_devices"] == ["cpu"]


def test_readme_block_renders_mlp_and_cnn_tables(jax_results, cnn_results, tmp_path):
    *_, mlp_dir = jax_results
    cnn_result, _, cnn_dir = cnn_results
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:start -->\nSTALE\n<!-- bench:end -->\nafter\n")
    bench_table.main(
        [str(mlp_dir / "mlp.json"), str(cnn_dir / "cnn.json"), "--readme", str(readme)]
    )
    text = readme.read_text()
    block = text.split("<!-- bench:start -->")[1].split("<!-- bench:end -->")[0]
    assert "STALE" not in block and text.endswith("after\n")
    assert block.index("**MLP 784-32-10 on the CPU**") < block.index("**Conv nets on the CPU")
    (row,) = [line for line in block.splitlines() if line.startswith("| LeNet-5 | 8 |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    # model, batch, jaxnets images/s, two ratios, compile time, peak fraction
    assert len(cells) == 7
    case, ratio = cnn_result["cases"][0], cnn_result["ratios"][0]
    assert cells[2].startswith(f"{case['images_per_s']['median']:.0f} (")
    assert cells[3] == cells[4] == "n/a"
    assert cells[5] == f"{case['compile_s']['median']:.1f}"
    assert cells[6] == f"{100 * ratio['peak_fraction']['jaxnets']:.0f}%"


def _summary(framework, model, batch, images_per_s, step_flops=None, peak=None):
    def spread(v):
        return None if v is None else {"median": v, "min": v, "max": v}

    return {
        "framework": framework,
        "model": model,
        "batch": batch,
        "images_per_s": spread(images_per_s),
        "ms_per_step": spread(1e3 * batch / images_per_s),
        "step_flops": spread(step_flops),
        "repeats": [{"peak_flops_per_s": peak}] if peak else [],
    }


def test_peak_fraction_and_gpu_goal_arithmetic():
    cases = [
        # batch 512 at 1024 images/s is 2 steps/s; 1e12 FLOPs a step over a 1e14 peak: 2%.
        _summary("jaxnets", "resnet18", 512, 1024.0, step_flops=1.01e12, peak=1e14),
        _summary("flax", "resnet18", 512, 1000.0, step_flops=1e12, peak=3e14),
        _summary("torch", "resnet18", 512, 512.0),
    ]
    (ratio,), goals = cnn.ratios_and_goals(cases, "gpu")
    assert ratio["step_flops"] == 1e12  # the Flax step's count
    assert ratio["peak_flops_per_s"] == 2e14  # median of the JAX processes' peaks
    assert ratio["peak_fraction"] == {
        "jaxnets": pytest.approx(1e12 * 2 / 2e14),
        "flax": pytest.approx(1e12 * 1000 / 512 / 2e14),
        "torch": pytest.approx(1e12 * 1 / 2e14),
    }
    assert ratio["jaxnets_over_flax_step_time"] == pytest.approx(1000 / 1024)
    by_metric = {g["metric"]: g for g in goals}
    assert by_metric["jaxnets_over_flax_step_time"]["holds"]
    speedup = by_metric["jaxnets_over_torch_images_per_s"]
    assert speedup["value"] == 2.0 and speedup["threshold"] == 1.8 and speedup["holds"]
    # A 1.5x speedup misses the GPU goal, and holds the CPU's (1.0, test_benchmarks_goals.py).
    cases[2] = _summary("torch", "resnet18", 512, 1024.0 / 1.5)
    goals = cnn.ratios_and_goals(cases, "gpu")[1]
    assert [g["holds"] for g in goals] == [True, False]
    cpu_goals = cnn.ratios_and_goals(cases, "cpu")[1]
    assert [(g["threshold"], g["holds"]) for g in cpu_goals] == [(1.05, True), (1.0, True)]


def test_matmul_peak_is_flops_over_seconds(monkeypatch):
    clock = iter(np.arange(0.0, 100.0, 0.5))  # every timing reads 0.5 s
    monkeypatch.setattr(steps, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    assert steps.matmul_peak(64, "float32", trials=2, chain=3) == 2 * 64**3 * 3 / 0.5


def test_torch_case_trains_and_is_timed_without_compile():
    pytest.importorskip("torch", reason="torch is not installed: pip install torch==2.13.0")
    # One thread: the tiny case is all per-op overhead, and the test should not depend on
    # how busy the other core is.
    settings = common.Settings(frameworks=("torch",), repeats=1, torch_threads=1)
    results = mlp.run_benchmark(settings, _TINY, log=lambda _: None)
    (case,) = results["cases"]
    _check_case(case, "torch")
    assert case["compile_s"] is None
    assert results["config"]["torch_threads"] == 1
    assert results["ratios"][0]["jaxnets_over_torch_steps_per_s"] is None
    cnn_results = cnn.run_benchmark(
        settings, cnn.Plan(batches=(8,), steps=4), ("lenet5",), log=lambda _: None
    )
    (case,) = cnn_results["cases"]
    assert case["compile_s"] is None and case["step_flops"] is None
    assert cnn_results["ratios"][0]["peak_fraction"] == {"torch": None}
    rep = case["repeats"][0]
    assert rep["final_loss"] < rep["first_loss"]
    assert cnn_results["machine"]["torch_devices"] == ["cpu"]


def test_gpu_defaults_train_resnet18_in_bfloat16_at_batch_512(monkeypatch):
    launched = []

    def fake_round_robin(module, configs, repeats, device, describe, log):
        launched.extend(configs)
        measured = ("images_per_s", "ms_per_step", "cpu_ms_per_step", "compile_s", "seconds")
        measured += ("first_loss", "final_loss", "step_flops", "peak_flops_per_s")
        record = dict.fromkeys(measured, 1.0)
        return [[{**dataclasses.asdict(c), **record, "device": "gpu"}] for c in configs]

    monkeypatch.setattr(common, "run_round_robin", fake_round_robin)
    # the runner is faked, so the plan needs no torch install (make test has none)
    monkeypatch.setattr(common, "check_frameworks", lambda frameworks: None)
    settings = common.Settings(device="gpu", frameworks=("jaxnets", "torch"))
    results = cnn.run_benchmark(settings, cnn.Plan())
    plan = {(c.framework, c.model): (c.batch, c.steps, c.dtype, c.device) for c in launched}
    assert plan == {
        ("jaxnets", "lenet5"): (256, 4000, "float32", "gpu"),
        ("torch", "lenet5"): (256, 4000, "float32", "gpu"),
        ("jaxnets", "resnet18"): (512, 1000, "bfloat16", "gpu"),
        ("torch", "resnet18"): (512, 1000, "bfloat16", "gpu"),
    }
    assert {c.peak_size for c in launched} == {8192}
    assert results["config"]["dtypes"] == {"lenet5": "float32", "resnet18": "bfloat16"}
    # On a GPU the ResNet also has the goal against PyTorch.
    assert [g["metric"] for g in results["goals"] if g["model"] == "resnet18"] == [
        "jaxnets_over_torch_images_per_s"
    ]

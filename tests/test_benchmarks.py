"""The benchmark harness (benchmarks/): one process per case, JSON shape, ratios, table.

The cases run a tiny MLP (784-32-10, 256 examples, 1 timed epoch) so the file stays fast;
what is checked is the bookkeeping, and that every framework really trained (its loss fell).
"""

import json
import os

import jax
import pytest

from benchmarks import run as bench_run
from benchmarks.readme_table import render_markdown

_TINY = dict(batches=(8,), repeats=1, examples=256, epochs=1, hidden=(32,))


@pytest.fixture(scope="module")
def jax_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = [
        "--out",
        str(out),
        "--frameworks",
        "jaxnets",
        "flax",
        "--batches",
        "8",
        "--examples",
        "256",
        "--epochs",
        "1",
        "--repeats",
        "1",
        "--hidden",
        "32",
    ]
    returned = bench_run.main(argv)
    return returned, json.loads((out / "mlp.json").read_text())


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
    returned, on_disk = jax_results
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
    assert machine["cores"] == os.cpu_count()
    assert machine["versions"]["jax"] == jax.__version__
    assert machine["jax_devices"] == ["cpu"]
    assert on_disk["config"]["hidden"] == [32] and on_disk["config"]["examples"] == 256


def test_markdown_table_has_one_row_per_batch_with_the_ratios(jax_results):
    _, results = jax_results
    text = render_markdown(results)
    (row,) = [line for line in text.splitlines() if line.startswith("| 8 |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    ratio = results["ratios"][0]["jaxnets_over_flax_step_time"]
    # batch, jaxnets, flax, the two ratios (no torch column in a run without torch)
    assert len(cells) == 5
    assert cells[3] == f"{ratio:.2f}x" and cells[4] == "n/a"
    assert cells[1].startswith(f"{results['cases'][0]['steps_per_s']['median']:.0f} (")


def test_unknown_framework_and_bad_repeats_are_rejected():
    with pytest.raises(ValueError, match="unknown frameworks \\['tf'\\]"):
        bench_run.run_benchmark(("tf",), **_TINY)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        bench_run.run_benchmark(("flax",), **{**_TINY, "repeats": 0})


def test_torch_case_trains_and_is_timed_without_compile():
    pytest.importorskip("torch", reason="torch is not installed: pip install torch==2.13.0")
    # One thread: the tiny case is all per-op overhead, and the test should not depend on
    # how busy the other core is.
    results = bench_run.run_benchmark(("torch",), **_TINY, torch_threads=1, log=lambda _: None)
    (case,) = results["cases"]
    _check_case(case, "torch")
    assert case["compile_s"] is None
    assert results["config"]["torch_threads"] == 1
    assert results["ratios"][0]["jaxnets_over_torch_steps_per_s"] is None

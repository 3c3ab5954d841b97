"""experiments/failure_modes.py: the smoke run writes its run directory, and the numbers that
do not depend on training length already show each failure."""

import json
from pathlib import Path

import pytest
from test_experiments import load_experiment

from jaxnets.experiment import parse_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    failure_modes = load_experiment("failure_modes")
    out = tmp_path_factory.mktemp("runs")
    config = failure_modes.Config(smoke=True, out=str(out))
    return config, failure_modes.main(config), out


@pytest.mark.slow  # runs the smoke experiment; its parts are tested in test_diagnostics.py
def test_smoke_run_writes_its_run_directory(smoke):
    config, summary, out = smoke
    (run,) = (out / "failure_modes").iterdir()
    files = {p.name for p in run.iterdir()}
    assert {"config.json", "metrics.jsonl", "summary.json", "failure_modes.png"} <= files
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk["experiment"] == "failure_modes" and on_disk["results"] == summary["results"]
    for claim in on_disk["claims"]:
        above = claim["value"] >= claim["threshold"]
        below = claim["value"] <= claim["threshold"]
        assert claim["holds"] == (above if claim["direction"] == "above" else below)
    variants = list(summary["results"])
    assert len(variants) == 9
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["variant"], r["epoch"]) for r in rows] == [(v, e) for v in variants for e in (1, 2)]


@pytest.mark.slow  # runs the smoke experiment; its parts are tested in test_diagnostics.py
def test_init_diagnostics_show_each_failure(smoke):
    config, summary, _ = smoke
    results = summary["results"]
    # same init and batch, plain SGD: the first update scales with the learning rate
    ratio = config.unstable_learning_rate / config.learning_rate
    assert results["tanh_high_lr"]["update_ratio"] == pytest.approx(
        ratio * results["tanh"]["update_ratio"], rel=1e-4
    )
    assert results["tanh_high_lr"]["grad_hidden_0"] == results["tanh"]["grad_hidden_0"]
    assert (
        results["tanh"]["saturated_at_init"]
        < 0.1
        < 0.5
        < results["tanh_large_init"]["saturated_at_init"]
    )
    assert results["relu_negative_bias"]["dead_at_init"] == 1.0
    assert results["relu_negative_bias"]["grad_hidden_0"] == 0.0  # dead units pass no gradient
    assert results["leaky_negative_bias"]["grad_hidden_0"] > 0.0  # leaky ones do
    assert results["zero_init"]["unit_difference"] == 0.0
    assert results["constant_init"]["unit_difference"] <= 1e-6 < results["relu"]["unit_difference"]
    assert "update_ratio" not in results["zero_init"]  # all-zero layers: no relative update
    assert "saturated_after" not in results["relu"]  # saturation is defined for bounded units


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hidden", "64"], "hidden must be at least 2 layers"),
        (["--epochs", "0"], "epochs must be >= 1"),
        (["--unstable-learning-rate", "0"], "unstable_learning_rate must be > 0"),
        (["--leaky-slope", "1"], "leaky_slope must be in (0, 1)"),
    ],
)
def test_invalid_config_is_a_usage_error(args, message, capsys):
    failure_modes = load_experiment("failure_modes")
    with pytest.raises(SystemExit) as exit_info:
        parse_config(failure_modes.Config, args)
    assert exit_info.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())

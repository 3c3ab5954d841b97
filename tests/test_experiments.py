"""Experiment scripts: `--smoke` runs write the run directory; bad configs are refused."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from jaxnets.experiment import Claim

ROOT = Path(__file__).resolve().parent.parent


def load_experiment(name):
    spec = importlib.util.spec_from_file_location(
        f"experiments_{name}", ROOT / "experiments" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _check_run_dir(summary, out, experiment):
    runs = list((out / experiment).iterdir())
    assert len(runs) == 1
    files = {p.name for p in runs[0].iterdir()}
    assert {"config.json", "summary.json"} <= files and any(f.endswith(".png") for f in files)
    on_disk = json.loads((runs[0] / "summary.json").read_text())
    assert on_disk["experiment"] == experiment and on_disk["results"] == summary["results"]
    for claim in on_disk["claims"]:
        expected = (
            claim["value"] >= claim["threshold"]
            if claim["direction"] == "above"
            else claim["value"] <= claim["threshold"]
        )
        assert claim["holds"] == expected
    return runs[0]


def test_claim_holds_is_computed():
    assert Claim("x", "test_accuracy", 0.96, 0.95, "above").holds
    assert not Claim("x", "test_mse", 0.02, 0.01, "below").holds
    with pytest.raises(ValueError, match="direction"):
        Claim("x", "m", 1.0, 1.0, "sideways")


def test_digits_smoke(tmp_path):
    digits = load_experiment("digits")
    summary = digits.main(digits.Config(smoke=True, out=str(tmp_path)))
    run = _check_run_dir(summary, tmp_path, "digits")
    assert set(summary["results"]) == {"softmax_regression", "mlp"}
    # two epochs of softmax regression already beat chance (10%) by far
    assert summary["results"]["softmax_regression"]["test_accuracy"] > 0.8
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 4  # 2 variants x 1 seed x 2 epochs


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "epochs must be >= 1"),
        (["--learning-rate", "-1"], "learning_rate must be > 0"),
        (["--activation", "relux"], "relux"),
    ],
)
def test_invalid_config_is_a_usage_error(args, message):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "digits.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_help_lists_every_config_field():
    digits = load_experiment("digits")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "digits.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    import dataclasses

    for field in dataclasses.fields(digits.Config):
        assert "--" + field.name.replace("_", "-") in proc.stdout


def test_linear_regression_smoke(tmp_path):
    experiment = load_experiment("linear_regression")
    summary = experiment.main(experiment.Config(smoke=True, out=str(tmp_path)))
    _check_run_dir(summary, tmp_path, "linear_regression")
    assert summary["results"]["closed_form_vs_gd"]["max_param_difference"] < 1e-5
    rows = [summary["results"][f"degree {d}"] for d in range(5)]
    # training error never increases with the degree (nested least-squares problems)
    train = [r["train_mse"] for r in rows]
    assert all(b <= a + 1e-12 for a, b in zip(train, train[1:]))

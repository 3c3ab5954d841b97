"""experiments/optimizers.py: the --smoke run writes its run directory, its numbers follow the
learning-rate rules and closed forms, and bad configurations are refused."""

import json
from pathlib import Path

import numpy as np
import pytest
from test_experiments import load_experiment

from jaxnets.experiment import parse_config

ROOT = Path(__file__).resolve().parent.parent
FIGURES = {"trajectories.png", "learning_rates.png", "digits_training.png"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    module = load_experiment("optimizers")
    out = tmp_path_factory.mktemp("runs")
    summary = module.main(module.Config(smoke=True, out=str(out)))
    (run_dir,) = (out / "optimizers").iterdir()
    return module, summary, run_dir


@pytest.mark.slow  # runs the smoke experiment; its parts are tested in test_landscapes.py
def test_smoke_run_writes_summary_figures_and_consistent_claims(smoke):
    _, summary, run_dir = smoke
    files = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "metrics.jsonl", "summary.json"} | FIGURES <= files
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["experiment"] == "optimizers" and on_disk["results"] == summary["results"]
    assert len(on_disk["claims"]) == 11
    for claim in on_disk["claims"]:
        below = claim["value"] <= claim["threshold"]
        above = claim["value"] >= claim["threshold"]
        assert claim["holds"] == (above if claim["direction"] == "above" else below)


@pytest.mark.slow  # runs the smoke experiment; its parts are tested in test_landscapes.py
def test_learning_rates_follow_curvature_and_distance(smoke):
    results = smoke[1]["results"]
    # GD family: 1/λ_max of the Hessian at the minimum; quadratic: λ_max = κ = 50
    assert results["quadratic/sgd"]["learning_rate"] == pytest.approx(1 / 50)
    # Rosenbrock's Hessian at (1, 1) by hand: [[802, -400], [-400, 200]]
    top = np.linalg.eigvalsh(np.array([[802.0, -400.0], [-400.0, 200.0]]))[-1]
    assert results["rosenbrock/momentum"]["learning_rate"] == pytest.approx(1 / top)
    # adaptive rules: 0.02 × the start's distance to the minimum, (-8, 1) -> (0, 0)
    assert results["quadratic/adam"]["learning_rate"] == pytest.approx(0.02 * np.hypot(8, 1))


@pytest.mark.slow  # runs the smoke experiment; its parts are tested in test_landscapes.py
@pytest.mark.parametrize("multiple", [0.5, 1.9, 2.1])
def test_gd_regimes_on_the_quadratic_match_the_closed_form(smoke, multiple):
    """30 GD steps multiply θ₁ by (1 − αλ_max)^30 and θ₀ by (1 − α)^30, α = multiple/50."""
    row = smoke[1]["results"][f"quadratic/gd lr {multiple}/λ_max"]
    assert row["steep_growth"] == pytest.approx(abs(1 - multiple) ** 30, rel=1e-4)
    assert row["shallow_growth"] == pytest.approx((1 - multiple / 50) ** 30, rel=1e-4)
    assert row["steep_sign_flips"] == (1.0 if multiple > 1 else 0.0)


@pytest.mark.slow  # runs the smoke experiment; its parts are tested in test_landscapes.py
def test_digits_rows_and_steps_to_target_follow_the_logged_curves(smoke):
    _, summary, run_dir = smoke
    results, cfg = summary["results"], summary["config"]
    digits = {k.removeprefix("digits/"): v for k, v in results.items() if k.startswith("digits/")}
    assert set(digits) == {
        "sgd",
        "momentum",
        "adam",
        "momentum step decay",
        "momentum cosine decay",
        "momentum full batch",
    }
    assert digits["momentum full batch"]["batch_size"] == 1078  # 60% of the 1797 digits
    curves = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        curves.setdefault(row["variant"], []).append(row)
    target, budget, every = cfg["target_loss"], cfg["digits_steps"], cfg["eval_every"]
    for label, row in digits.items():
        curve = curves[label]
        assert [r["step"] for r in curve] == list(range(0, budget + 1, every))
        assert curve[-1]["train_loss"] == pytest.approx(row["final_train_loss"])
        assert curve[-1]["train_loss"] < curve[0]["train_loss"]  # every row learned something
        hits = [r for r in curve if r["train_loss"] <= target]
        expected = hits[0]["step"] if hits else budget
        assert row["steps_to_target"] == expected and row["reached_target"] == float(bool(hits))
        assert 0.1 < row["test_accuracy"] <= 1.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--digits-steps", "30", "--eval-every", "20"], "must be a multiple of eval_every"),
        (["--batch-sizes", "8", "64"], "include 0"),
        (["--optimizers", "adam", "rmsprop"], "include sgd and momentum"),
        (["--optimizers", "sgd", "momentum", "lion"], "must come from"),
        (["--condition", "0.5"], "condition must be >= 1"),
    ],
)
def test_invalid_config_is_a_usage_error(args, message, capsys):
    module = load_experiment("optimizers")
    with pytest.raises(SystemExit) as exit_info:
        parse_config(module.Config, args)
    assert exit_info.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())

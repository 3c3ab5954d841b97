"""Fast smoke runs of the basic experiments (issue 15): digits, xor, linear_regression,
failure_modes and optimizers.

Each test runs the script's ``main`` on its tiny ``--smoke`` config, checks the run directory
(``check_run_dir``: files, the summary on disk, every claim's ``holds`` recomputed from its
per-seed values and margin), and checks that the tiny run already points the way the lecture
says, or, where a number has a closed form or a NumPy equivalent, that it equals it. The full
claims, with their margins over 3 seeds, are checked by the default runs whose summaries are
committed in experiments/results/.
"""

import json
import math

import numpy as np
import pytest
from test_experiments import check_run_dir, load_experiment

from jaxnets.data import make_polynomial_regression


def _smoke(name, out, **overrides):
    """Run ``name``'s smoke config; returns (summary, run directory, config as run)."""
    experiment = load_experiment(name)
    summary = experiment.main(experiment.Config(smoke=True, out=str(out), **overrides))
    run = check_run_dir(summary, out, name)
    return summary, run, summary["config"]


def _metric_rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_digits_smoke(tmp_path):
    summary, run, cfg = _smoke("digits", tmp_path)
    results = summary["results"]
    assert set(results) == {"softmax_regression", "mlp"}
    # two epochs already lift both models far above chance (10%)
    assert results["softmax_regression"]["test_accuracy"] > 0.8
    assert results["mlp"]["test_accuracy"] > 0.5
    assert [len(c["values"]) for c in summary["claims"]] == [cfg["seeds"]] * 2
    epochs = [r for r in _metric_rows(run) if "epoch" in r]
    assert len(epochs) == 2 * cfg["seeds"] * cfg["epochs"]  # 2 variants


def test_xor_smoke(tmp_path):
    summary, _, cfg = _smoke("xor", tmp_path)
    results = summary["results"]
    assert results["handset_relu"]["max_abs_error"] == 0.0
    assert results["handset_hard_threshold"]["max_abs_error"] == 0.0
    # the lecture's direction: wider nets escape the local minima that trap 2 hidden units
    assert results["learned_8_hidden"]["nets_at_100pct"] == cfg["nets"]
    assert 0 < results["learned_2_hidden"]["nets_at_100pct"] < cfg["nets"]
    assert results["learned_8_hidden"]["max_final_loss"] < math.log(2) / 4
    assert all(c["holds"] for c in summary["claims"])


def _numpy_degree_sweep(cfg, data_seed):
    """train/test MSE per degree by numpy.polyfit on the same points: the experiment's
    standardised features span the same functions, so least squares gives the same fit."""
    k = 3 * data_seed
    train = make_polynomial_regression(cfg["n_train"], noise=cfg["noise"], seed=k)
    test = make_polynomial_regression(cfg["n_test"], noise=cfg["noise"], seed=k + 1)
    x, t = np.float64(train.x[:, 0]), np.float64(train.y[:, 0])
    x_new, t_new = np.float64(test.x[:, 0]), np.float64(test.y[:, 0])
    rows = []
    for degree in range(6):  # higher degrees are too ill-conditioned to compare closely
        coefficients = np.polyfit(x, t, degree)
        rows.append(
            (
                np.mean((np.polyval(coefficients, x) - t) ** 2),
                np.mean((np.polyval(coefficients, x_new) - t_new) ** 2),
            )
        )
    return np.array(rows)


# 9 s of CPU: out of `make test` by its 10-minute budget (`make test-all` runs it); the closed
# form, gradient descent and polynomial features are tested fast in test_linear.py
@pytest.mark.slow
def test_linear_regression_smoke_matches_numpy_polyfit(tmp_path):
    summary, _, cfg = _smoke("linear_regression", tmp_path)
    results = summary["results"]
    expected = np.mean(
        [_numpy_degree_sweep(cfg, cfg["seed"] + i) for i in range(cfg["seeds"])], axis=0
    )
    got = np.array(
        [[results[f"degree {d}"][m] for m in ("train_mse", "test_mse")] for d in range(6)]
    )
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    train = [results[f"degree {d}"]["train_mse"] for d in range(cfg["max_degree"] + 1)]
    # nested least-squares problems: training error never rises with the degree
    assert all(b <= a + 1e-12 for a, b in zip(train, train[1:], strict=False))
    assert results["closed_form_vs_gd"]["max_param_difference"] < 1e-5
    assert all(c["holds"] for c in summary["claims"])  # degree 9 on 10 points overfits


# 10 s of CPU: out of `make test` by its 10-minute budget (`make test-all` runs it); the
# curvature estimate is tested fast in test_failure_modes.py
@pytest.mark.slow
def test_failure_modes_smoke(tmp_path):
    summary, run, cfg = _smoke("failure_modes", tmp_path)
    results = summary["results"]
    tanh, high = results["tanh"], results["tanh_high_lr"]
    # the too-high rate is the configured multiple of the stability limit 2/λ_max
    assert high["learning_rate"] * high["lambda_max_at_init"] == pytest.approx(
        2 * cfg["too_high_lr_factor"], rel=1e-5
    )
    # same init and batch, plain SGD: the first update scales with the learning rate
    ratio = high["learning_rate"] / cfg["learning_rate"]
    assert high["update_ratio"] == pytest.approx(ratio * tanh["update_ratio"], rel=1e-4)
    assert high["grad_hidden_0"] == tanh["grad_hidden_0"]
    # two epochs already show the lecture's directions
    assert high["train_loss"] > math.log(10) > tanh["train_loss"]
    assert results["relu_high_lr"]["killed"] > 0.5 > 0.1 > results["relu"]["killed"]
    assert tanh["saturated_at_init"] < 0.1 < 0.5 < results["tanh_large_init"]["saturated_at_init"]
    assert results["relu_negative_bias"]["dead_at_init"] == 1.0
    assert results["relu_negative_bias"]["grad_hidden_0"] == 0.0  # dead units pass no gradient
    assert results["leaky_negative_bias"]["grad_hidden_0"] > 0.0  # leaky ones do
    assert results["zero_init"]["unit_difference"] == 0.0
    assert results["constant_init"]["unit_difference"] <= 1e-6 < results["relu"]["unit_difference"]
    assert "update_ratio" not in results["zero_init"]  # all-zero layers: no relative update
    assert "saturated_after" not in results["relu"]  # saturation is defined for bounded units
    rows = [(r["variant"], r["seed"], r["epoch"]) for r in _metric_rows(run)]
    seeds = range(cfg["seed"], cfg["seed"] + cfg["seeds"])
    assert rows == [(v, s, e) for v in results for s in seeds for e in (1, 2)]


# 16 s of CPU: out of `make test` by its 10-minute budget (`make test-all` runs it); the
# 2-D trajectories are tested fast in test_landscapes.py
@pytest.mark.slow
def test_optimizers_smoke(tmp_path):
    # a target the short smoke run crosses, so steps to target are measured, not the budget
    summary, run, cfg = _smoke("optimizers", tmp_path, target_loss=2.2)
    results = summary["results"]
    kappa = cfg["condition"]
    # GD on the quadratic: θ₁ is multiplied by 1 − m every step and θ₀ by 1 − m/κ (α = m/κ)
    for m in (0.5, 1.9, 2.1):
        row = results[f"quadratic/gd lr {m}/λ_max"]
        assert row["steep_growth"] == pytest.approx(abs(1 - m) ** 30, rel=1e-4)
        assert row["shallow_growth"] == pytest.approx((1 - m / kappa) ** 30, rel=1e-4)
        assert row["steep_sign_flips"] == (1.0 if m > 1 else 0.0)
    assert results["quadratic/sgd"]["learning_rate"] == pytest.approx(1 / kappa)
    # Rosenbrock's Hessian at (1, 1) by hand: [[802, -400], [-400, 200]]
    top = np.linalg.eigvalsh(np.array([[802.0, -400.0], [-400.0, 200.0]]))[-1]
    assert results["rosenbrock/momentum"]["learning_rate"] == pytest.approx(1 / top)
    conditioning = results["logistic/conditioning"]
    assert conditioning["condition_offset"] > 5 * conditioning["condition_centred"]
    digits = {k.removeprefix("digits/"): v for k, v in results.items() if k.startswith("digits/")}
    assert digits["momentum full batch"]["batch_size"] == 1078  # 60% of the 1797 digits
    # each row's steps to target is the first logged crossing of its member's curve
    curves = {}
    for row in _metric_rows(run):
        if "member_train_loss" in row:
            curves.setdefault(row["variant"], []).append(row)
    budget = cfg["digits_steps"]
    for label, row in digits.items():
        curve = curves[label]
        assert [r["step"] for r in curve] == list(range(0, budget + 1, cfg["eval_every"]))
        assert curve[-1]["train_loss"] < curve[0]["train_loss"]  # every row learned something
        hits = [r["step"] for r in curve if r["member_train_loss"][0] <= cfg["target_loss"]]
        assert row["steps_to_target"] == (hits[0] if hits else budget)
        assert row["examples_to_target"] == row["steps_to_target"] * row["batch_size"]
    # momentum gets further than SGD in the same steps; minibatch steps cost fewer examples
    assert digits["momentum"]["final_train_loss"] < digits["sgd"]["final_train_loss"]
    assert (
        digits["momentum"]["examples_to_target"]
        < digits["momentum full batch"]["examples_to_target"]
    )

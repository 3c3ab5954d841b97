"""Smoke runs of the Lecture 5 and Lecture 15 experiments (language_model, wavenet, pixelcnn,
nice, revnet): each runs ``main`` on its smoke config and checks the run directory, that every
claim points the way the lecture says on every seed (the margins are the full-size run's
business), and the baselines against a NumPy computation of their own from the same data."""

import numpy as np
import pytest
from test_experiments import check_run_dir, load_experiment

from jaxnets.data import standardize
from jaxnets.data.audio import synthetic_audio
from jaxnets.data.binarized import load_binarized_digits
from jaxnets.data.toy2d import toy2d_dataset


def _run(name, tmp_path):
    """(module, smoke config as run, summary, run directory) of one experiment's smoke run."""
    module = load_experiment(name)
    summary = module.main(module.Config(smoke=True, out=str(tmp_path)))
    run = check_run_dir(summary, tmp_path, name)
    return module, summary["config"], summary, run


def _assert_directions(summary, seeds):
    """Every claim has one value per seed, each on the lecture's side of its threshold."""
    for claim in summary["claims"]:
        values = np.array(claim["values"])
        assert len(values) == seeds, claim["claim"]
        sign = 1.0 if claim["direction"] == "above" else -1.0
        assert np.all(sign * (values - claim["threshold"]) > 0), claim
        assert claim["value"] == pytest.approx(values.mean())


def _seeds(config):
    return range(config["seed"], config["seed"] + config["seeds"])


def _add_one_marginal_nll(train_codes, test_targets, channels):
    """Mean -log p(code) of the test targets under the add-one training code frequencies."""
    counts = np.bincount(train_codes.ravel(), minlength=channels) + 1.0
    return -np.mean(np.log(counts / counts.sum())[test_targets.ravel()])


def test_wavenet_smoke(tmp_path):
    _, config, summary, run = _run("wavenet", tmp_path)
    assert config["seeds"] >= 2 and config["channels"] == 16
    assert (run / "generated_waveform.png").stat().st_size > 0
    _assert_directions(summary, config["seeds"])
    wavenet, baseline = summary["results"]["wavenet"], summary["results"]["iid_marginal (add-one)"]
    # 1 + (kernel_size - 1) * sum(dilations), and what the gradient's support measures
    assert (
        wavenet["receptive_field"]
        == wavenet["measured_receptive_field"]
        == 1 + sum(config["dilations"])
    )
    # the baseline, recomputed from each seed's clips (train 3s, test 3s + 1)
    audio = dict(channels=config["channels"], noise=config["noise"])
    expected = [
        _add_one_marginal_nll(
            synthetic_audio(config["train_clips"], config["clip_length"], 3 * s, **audio).codes,
            synthetic_audio(config["test_clips"], config["clip_length"], 3 * s + 1, **audio).codes[
                :, 1:
            ],
            config["channels"],
        )
        for s in _seeds(config)
    ]
    np.testing.assert_allclose(baseline["test_nll_nats"], np.mean(expected), rtol=1e-6)
    # the claim's per-seed gaps average to the gap of the averages
    assert wavenet["nll_gap_nats"] == pytest.approx(
        baseline["test_nll_nats"] - wavenet["test_nll_nats"]
    )
    for row in (wavenet, baseline):
        assert row["test_bits_per_sample"] == pytest.approx(row["test_nll_nats"] / np.log(2))


# 8 s of CPU: out of `make test` by its 10-minute budget (`make test-all` runs it); the masked
# convolutions and the model are tested fast in test_pixelcnn.py and test_references_generative.py
@pytest.mark.slow
def test_pixelcnn_smoke(tmp_path):
    _, config, summary, run = _run("pixelcnn", tmp_path)
    assert config["seeds"] >= 2
    assert (run / "pixelcnn_samples.png").stat().st_size > 0
    _assert_directions(summary, config["seeds"])
    # the baseline's test bits/dim, recomputed from each seed's split: Laplace's rule per pixel
    expected = []
    for s in _seeds(config):
        data = load_binarized_digits(config["threshold"]).split(config["splits"], seed=s)
        p = (data.train.x.sum(0) + 1.0) / (len(data.train) + 2.0)
        x = data.test.x
        expected.append(np.mean(-(x * np.log2(p) + (1 - x) * np.log2(1 - p))))
    results = summary["results"]
    baseline = results["independent_bernoulli"]["test_bits_per_dim"]
    np.testing.assert_allclose(baseline, np.mean(expected), rtol=1e-5)
    assert results["pixelcnn"]["bits_per_dim_gain"] == pytest.approx(
        baseline - results["pixelcnn"]["test_bits_per_dim"]
    )


# 11 s of CPU: out of `make test` by its 10-minute budget (`make test-all` runs it); NICE's
# layers and likelihood are tested fast in test_nice.py and test_references_generative.py
@pytest.mark.slow
def test_nice_smoke(tmp_path):
    _, config, summary, run = _run("nice", tmp_path)
    assert config["seeds"] >= 2
    assert (run / "nice_densities.png").stat().st_size > 0
    _assert_directions(summary, config["seeds"])
    results = summary["results"]
    for name, noise in zip(config["datasets"], config["noises"], strict=True):
        nice, gaussian = results[f"NICE {name}"], results[f"Gaussian {name}"]
        assert nice["round_trip_error_float64"] < 1e-12
        # the ML Gaussian of standardised 2-D points with correlation r has average training
        # log-likelihood -(1 + log 2 pi) - log(1 - r^2) / 2 (closed form), per seed
        expected = []
        for s in _seeds(config):
            sizes = (config["train_size"], config["val_size"], config["test_size"])
            data = toy2d_dataset(name, sum(sizes), noise=noise, seed=s)
            splits, _ = standardize(data.split(sizes, seed=s))
            r = np.corrcoef(np.asarray(splits.train.x, np.float64).T)[0, 1]
            expected.append(-(1 + np.log(2 * np.pi)) - 0.5 * np.log(1 - r**2))
        np.testing.assert_allclose(gaussian["train_log_likelihood"], np.mean(expected), rtol=1e-4)
        assert nice["test_gain_over_gaussian"] == pytest.approx(
            nice["test_log_likelihood"] - gaussian["test_log_likelihood"]
        )

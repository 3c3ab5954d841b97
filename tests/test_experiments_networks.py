"""Fast end-to-end runs of the network experiments (cnn, generalization, long_term, char_rnn,
seq2seq_execute) on their ``smoke`` configs: each writes its run directory, records its claims
per seed, and its claims point the way the lecture says wherever a tiny run can show it.

The full-size runs, whose claims hold on every seed with a margin, are recorded in
experiments/results/ (see tests/test_experiments.py for the record itself).
"""

import math

import numpy as np
import pytest
from test_experiments import check_run_dir, load_experiment

from jaxnets.data import load_char_corpus, make_execution_task, most_common_answer_accuracy


def _smoke(name, tmp_path, **overrides):
    """Run ``experiments/<name>.py`` on its smoke config; returns (summary, run directory,
    claims by metric)."""
    experiment = load_experiment(name)
    summary = experiment.main(experiment.Config(smoke=True, out=str(tmp_path), **overrides))
    run = check_run_dir(summary, tmp_path, name)
    return summary, run, {c["metric"]: c for c in summary["claims"]}


# 11 s of CPU: out of `make test` by its 10-minute budget (`make test-all` runs it); LeNet-5's
# layer table and the CNN blocks are tested fast in test_cnn.py and test_references_cnn.py
@pytest.mark.slow
def test_cnn_smoke(tmp_path, capsys):
    summary, run, claims = _smoke("cnn", tmp_path)
    assert {"c1_filters.png", "feature_maps.png", "lecture_filters.png"} <= {
        p.name for p in run.iterdir()
    }
    # the layer table is computed from the model, not the lecture: it matches Table 1
    assert claims["table1_mismatches"]["values"] == [0] and claims["table1_mismatches"]["holds"]
    assert summary["results"]["lenet5"]["parameters"] == 61_706  # Table 1 weights + biases
    # one epoch on 256 digits already puts LeNet-5 far above chance (10%)
    accuracy = claims["test_accuracy"]
    assert len(accuracy["values"]) == 1 and accuracy["values"][0] > 0.3
    assert accuracy["margin"] == pytest.approx(2 / 359)  # two test digits
    out = capsys.readouterr().out
    assert "117,600" in out and "240,000" in out  # the printed layer table


# 18 s of CPU: out of `make test` by its 10-minute budget (`make test-all` runs it); the
# vmapped ensemble and per-example gradient norms are tested fast in test_ensemble.py
@pytest.mark.slow
def test_generalization_smoke(tmp_path):
    summary, run, claims = _smoke("generalization", tmp_path)
    results = summary["results"]
    assert {"curves.png", "hardest_digits.png"} <= {p.name for p in run.iterdir()}
    seeds = summary["config"]["seeds"]
    for claim in summary["claims"]:
        assert len(claim["values"]) == seeds
    # Lecture 12 §4.4: cross-entropy is convex in the prediction, so each group's averaged
    # prediction has a lower test loss than its members' mean, on every seed, at any size
    ensemble = [c for c in summary["claims"] if "ensemble" in c["claim"]][0]
    assert min(ensemble["values"]) > 0
    # early stopping restores, per net, the epoch of lowest validation loss of the same
    # trajectory as the baseline's (same initialisation and shuffles), so it can only be lower
    assert results["early stopping"]["val_loss"] <= results["baseline"]["val_loss"] + 1e-6
    search = results["flipped-label search"]
    assert search["flipped"] == 15 and 0 <= search["flipped_in_top"] <= 15


def test_long_term_smoke(tmp_path, capsys):
    summary, run, _ = _smoke("long_term", tmp_path)
    assert {"adding_problem_curves.png", "gradient_flow.png"} <= {p.name for p in run.iterdir()}
    assert set(summary["results"]) == {"lstm_T6_clip1"}
    for row in summary["results"].values():
        # Lecture 14 §4: after 20 steps the LSTM already predicts the sum better than the
        # constant 1 does (MSE 1/6), on average over its seeds
        assert 0 < row["best_test_mse"] <= row["final_test_mse"] + 1e-12
        assert row["best_test_mse"] < 1 / 6
    assert "‖∂h_T/∂h_1‖ / ‖∂h_T/∂h_T‖ at T=6" in capsys.readouterr().out


def test_char_rnn_smoke(tmp_path):
    summary, run, claims = _smoke("char_rnn", tmp_path)
    bits = {name: row["test_bits_per_char"] for name, row in summary["results"].items()}
    # more context never hurts the n-grams on code
    assert bits["trigram (interpolated)"] < bits["bigram (add-1)"] < bits["unigram"]
    # one epoch on 20,000 characters: every LSTM already beats a uniform guess
    vocab = load_char_corpus(max_chars=20_000, seed=0).vocab.size
    values = claims["test_bits_per_char"]["values"]
    assert len(values) == 3 and max(values) < math.log2(vocab)
    assert np.mean(values) == pytest.approx(bits["lstm"])
    assert claims["test_bits_per_char"]["threshold"] == bits["trigram (interpolated)"]
    assert (run / "samples.txt").read_text().count("--- temperature") == 2


def test_seq2seq_execute_smoke(tmp_path):
    summary, _, claims = _smoke("seq2seq_execute", tmp_path)
    task = make_execution_task(300, seed=0)
    # each seed trains and tests on its own split of the programs
    baselines = []
    for seed in range(3):
        train, _, test = task.split((0.8, 0.1, 0.1), seed=seed)
        baselines.append(most_common_answer_accuracy(train.answers, test.answers))
    results = summary["results"]
    assert results["most common answer"]["test_exact_match"] == pytest.approx(np.mean(baselines))
    exact = results["lstm seq2seq, reversed source"]["test_exact_match"]
    assert 0 <= exact <= 1
    over = claims["exact_match_over_baseline"]
    assert np.mean(over["values"]) == pytest.approx(exact - np.mean(baselines))

"""Tests of jaxnets.models.language: n-gram models against hand counts, normalisation,
interpolation weights fitted by EM, the entropy rate of a known Markov chain, sampling, errors."""

from __future__ import annotations

import bisect
import itertools
import math
from fractions import Fraction as F

import numpy as np
import pytest

from jaxnets.models.language import InterpolatedNGram, fit_add_k, fit_interpolated, fit_ngram

# The hand corpus "a b a c a b" over the vocabulary {a, b, c, d}; d never occurs. Its counts:
#   unigrams  a:3  b:2  c:1                      (6 tokens)
#   bigrams   ab:2 ba:1 ac:1 ca:1                (context totals a:3 b:1 c:1)
#   trigrams  aba:1 bac:1 aca:1 cab:1            (context totals ab:1 ba:1 ac:1 ca:1)
A, B, C, D = range(4)
CORPUS = [A, B, A, C, A, B]
V = 4
HALF = F(1, 2)

HAND_CASES = {
    # name: (order, add_k, scored stream, p of each of its tokens from the counts above)
    "bigram_mle": (2, 0, [A, B, A, C], [F(3, 6), F(2, 3), F(1, 1), F(1, 3)]),
    "bigram_add_1": (
        2,
        1,
        [A, B, A, C, D],
        [F(3 + 1, 6 + 4), F(2 + 1, 3 + 4), F(1 + 1, 1 + 4), F(1 + 1, 3 + 4), F(0 + 1, 1 + 4)],
    ),
    "trigram_mle": (3, 0, [C, A, B, A, C], [F(1, 6), F(1, 1), F(1, 1), F(1, 1), F(1, 1)]),
    "trigram_add_half": (
        3,
        HALF,
        [B, B, A, B, D],
        [
            (2 + HALF) / (6 + 4 * HALF),  # start of the stream: unigram p(b)
            (0 + HALF) / (1 + 4 * HALF),  # one token of context: bigram p(b | b)
            (1 + HALF) / (1 + 4 * HALF),  # "b b" never seen: backs off to bigram p(a | b)
            (0 + HALF) / (1 + 4 * HALF),  # trigram p(b | b a)
            (0 + HALF) / (1 + 4 * HALF),  # trigram p(d | a b)
        ],
    ),
}


def _all_contexts(order: int):
    """Every context a model of this order can be asked about: lengths 0..order-1."""
    for length in range(order):
        yield from itertools.product(range(V), repeat=length)


def _markov_chain(transitions: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A stream of a chain whose next-token distribution is ``transitions[previous k tokens]``;
    transitions: (V,)*k + (V,) rows summing to 1. Returns (length,) ids."""
    k = transitions.ndim - 1
    cdfs = np.cumsum(transitions, axis=-1).tolist()
    stream = rng.integers(transitions.shape[-1], size=k).tolist()
    for u in rng.random(length - k).tolist():  # plain Python: ~10x faster than numpy per step
        row = cdfs
        for token in stream[len(stream) - k :]:
            row = row[token]
        stream.append(min(bisect.bisect_right(row, u), len(row) - 1))
    return np.array(stream)


@pytest.mark.parametrize("case", HAND_CASES)
def test_log_prob_and_perplexity_equal_hand_counts(case):
    order, add_k, stream, expected = HAND_CASES[case]
    model = fit_ngram(np.array(CORPUS), V, order, add_k=float(add_k))
    np.testing.assert_allclose(model.log_prob(stream), np.log([float(p) for p in expected]))
    perplexity = math.prod(float(p) for p in expected) ** (-1 / len(expected))
    assert model.perplexity(stream) == pytest.approx(perplexity)
    assert model.bits_per_token(stream) == pytest.approx(math.log2(perplexity))


def test_a_prompt_is_context_but_is_not_scored():
    # "c" then [a, b]: with the prompt, a is scored by the bigram p(a | c) = 1/1 and b by the
    # trigram p(b | c a) = 1/1; without it, a is the unigram's 3/6.
    model = fit_ngram(np.array(CORPUS), V, 3, add_k=0.0)
    np.testing.assert_allclose(model.log_prob([A, B], prompt=[C]), [0.0, 0.0])
    np.testing.assert_allclose(model.log_prob([A, B]), np.log([3 / 6, 2 / 3]))
    assert model.perplexity([A, B], prompt=[C]) == pytest.approx(1.0)
    assert model.perplexity([A, B]) == pytest.approx((3 / 6 * 2 / 3) ** -0.5)


def test_fit_add_k_picks_the_k_with_the_lowest_validation_perplexity(second_order_chain):
    train, val = second_order_chain[0][:100], second_order_chain[1]  # sparse trigram counts
    ks = (2.0, 0.5, 0.05, 0.005)
    chosen = fit_add_k(train, val, V, order=3, ks=ks)
    by_hand = {k: fit_ngram(train, V, 3, add_k=k).perplexity(val) for k in ks}
    assert chosen.add_k == min(by_hand, key=by_hand.get)
    assert chosen.perplexity(val) == pytest.approx(min(by_hand.values()))
    # the candidates differ, so picking the wrong one would fail
    assert max(by_hand.values()) > min(by_hand.values()) * 1.01


def test_unseen_continuation_has_probability_zero_without_smoothing():
    model = fit_ngram(CORPUS, V, 3, add_k=0.0)
    # "a b" is only ever followed by "a" in training.
    log_prob = model.log_prob([A, B, B])
    np.testing.assert_allclose(log_prob[:2], np.log([3 / 6, 2 / 3]))
    assert log_prob[2] == -np.inf
    assert model.perplexity([A, B, B]) == np.inf


def test_interpolated_log_prob_equals_the_weighted_hand_counts():
    weights = (F(1, 2), F(1, 3), F(1, 6))
    components = (
        fit_ngram(CORPUS, V, 1, add_k=1.0),
        fit_ngram(CORPUS, V, 2, add_k=0.0),
        fit_ngram(CORPUS, V, 3, add_k=0.0),
    )
    model = InterpolatedNGram(components, tuple(float(w) for w in weights))
    unigram, bigram, trigram = (
        [F(3 + 1, 6 + 4), F(2 + 1, 6 + 4), F(2 + 1, 6 + 4), F(3 + 1, 6 + 4)],
        [F(3, 6), F(2, 3), F(0, 1), F(1, 1)],  # p(a), p(b|a), p(b|b), p(a|b)
        # p(a), p(b|a) at the start; p(b|ab) = 0; "b b" unseen backs off to p(a|b)
        [F(3, 6), F(2, 3), F(0, 1), F(1, 1)],
    )
    expected = [
        sum(w * p for w, p in zip(weights, ps, strict=True))
        for ps in zip(unigram, bigram, trigram, strict=True)
    ]
    np.testing.assert_allclose(model.log_prob([A, B, B, A]), np.log([float(p) for p in expected]))


def _models_of_every_kind():
    # d never occurs in training, so every context that holds d must back off.
    train = np.random.default_rng(0).integers(V - 1, size=40)
    models = {
        f"order{order}_k{add_k}": fit_ngram(train, V, order, add_k=add_k)
        for order in (1, 2, 3)
        for add_k in (0.0, 0.3)
    }
    models["interpolated"] = fit_interpolated(train, train[::-1], V)
    return models


@pytest.mark.parametrize("name", list(_models_of_every_kind()))
def test_every_context_distribution_sums_to_one_and_matches_log_prob(name):
    model = _models_of_every_kind()[name]
    for context in _all_contexts(model.order):
        probs = model.next_token_probs(context)
        assert probs.shape == (V,)
        assert np.all(probs >= 0)
        assert probs.sum() == pytest.approx(1.0, abs=1e-12), context
    # Two paths: the vectorised scorer and the per-context distribution agree token by token.
    stream = np.random.default_rng(1).integers(V, size=30)
    expected = [model.next_token_probs(stream[:t])[stream[t]] for t in range(len(stream))]
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(model.log_prob(stream), np.log(expected), rtol=1e-12)


def test_word_sized_vocabulary_is_stored_sparsely():
    vocab = 2000  # a dense trigram table would hold 8e9 entries
    rng = np.random.default_rng(0)
    train = rng.integers(vocab, size=5000)
    model = fit_ngram(train, vocab, 3, add_k=0.1)
    assert sum(table.ngram_keys.size for table in model.tables) <= 3 * len(train)
    stream = np.concatenate([train[100:120], rng.integers(vocab, size=5)])
    expected = [model.next_token_probs(stream[:t])[stream[t]] for t in range(len(stream))]
    np.testing.assert_allclose(model.log_prob(stream), np.log(expected), rtol=1e-12)
    assert model.next_token_probs(train[10:12]).sum() == pytest.approx(1.0)


@pytest.fixture(scope="module")
def second_order_chain():
    rng = np.random.default_rng(5)
    transitions = rng.dirichlet(np.ones(V), size=(V, V))
    return _markov_chain(transitions, 3000, rng), _markov_chain(transitions, 2000, rng)


def test_interpolation_weights_are_fitted_on_validation(second_order_chain):
    train, val = second_order_chain
    model = fit_interpolated(train, val, V, add_k=1.0)
    weights = np.array(model.weights)
    assert weights.shape == (3,) and np.all(weights > 0)
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    components = [model.components[0]] + [fit_ngram(train, V, n, add_k=0.0) for n in (2, 3)]
    component_perplexities = [component.perplexity(val) for component in components]
    assert np.all(np.isfinite(component_perplexities)), "every validation trigram occurs in train"
    assert model.perplexity(val) <= min(component_perplexities)
    # EM reaches the best weights: no point of a grid over the simplex does better.
    probs_TxM = np.stack([np.exp(component.log_prob(val)) for component in components], axis=1)
    steps = np.linspace(0, 1, 51)
    grid_Gx3 = np.array([(a, b, 1 - a - b) for a in steps for b in steps if a + b <= 1 + 1e-12])
    best_grid_nll = np.min(-np.mean(np.log(probs_TxM @ grid_Gx3.clip(0).T), axis=0))
    assert -np.mean(model.log_prob(val)) <= best_grid_nll + 1e-9


def test_bigram_reaches_the_entropy_rate_of_a_first_order_chain():
    rng = np.random.default_rng(0)
    transitions = rng.dirichlet(np.ones(5), size=5)
    eigenvalues, eigenvectors = np.linalg.eig(transitions.T)
    stationary = np.real(eigenvectors[:, np.argmin(np.abs(eigenvalues - 1))])
    stationary /= stationary.sum()
    entropy_rate = -np.sum(stationary[:, None] * transitions * np.log2(transitions))
    train, test = _markov_chain(transitions, 100_000, rng), _markov_chain(transitions, 50_000, rng)
    bits = {n: fit_ngram(train, 5, n, add_k=0.5).bits_per_token(test) for n in (1, 2, 3)}
    true_bits = -np.mean(np.log2(transitions[test[:-1], test[1:]]))
    # Estimation error of the 20 free transition probabilities costs about
    # V(V-1) / (2 N ln 2) = 1.4e-4 bits over the true chain on the same text (measured
    # 1.7e-4 on average, 4.6e-4 at most, over 20 seeds): 2e-3 is a wide margin.
    assert abs(bits[2] - true_bits) < 2e-3
    # The test text's own mean -log2 p differs from the entropy rate by sampling noise: its
    # std over 20 seeds was 0.0032 bits at 50k tokens, so 0.02 is ~6 standard deviations.
    assert abs(bits[2] - entropy_rate) < 0.02
    # The chain ignores x_{t-2}: the trigram only adds parameters to estimate (about 6e-4 bits).
    assert bits[3] > bits[2] - 2e-3
    # The unigram cannot see the dependence at all (its limit is the stationary entropy).
    assert bits[1] > bits[2] + 0.1


def test_sampling_is_deterministic_valid_and_follows_the_model():
    model = fit_ngram(CORPUS, V, 3, add_k=0.5)
    first = model.sample(7, 200)
    assert first.shape == (200,) and first.dtype == np.int64
    np.testing.assert_array_equal(first, model.sample(np.random.default_rng(7), 200))
    assert not np.array_equal(first, model.sample(8, 200))
    assert first.min() >= 0 and first.max() < V
    assert model.sample(0, 0).shape == (0,)
    # Without smoothing the hand corpus's trigrams are a deterministic cycle c a -> b -> a -> c.
    mle = fit_ngram(CORPUS, V, 3, add_k=0.0)
    np.testing.assert_array_equal(mle.sample(0, 7, prompt=[D, C, A]), [B, A, C, A, B, A, C])
    # A unigram's samples have its probabilities as frequencies (each std < 0.005: 4 std).
    unigram = fit_ngram(CORPUS, V, 1, add_k=1.0)
    frequencies = np.bincount(unigram.sample(1, 10_000), minlength=V) / 10_000
    np.testing.assert_allclose(frequencies, [0.4, 0.3, 0.2, 0.1], atol=0.02)


def test_interpolated_sampling_is_deterministic_and_valid(second_order_chain):
    train, val = second_order_chain
    model = fit_interpolated(train, val, V)
    tokens = model.sample(3, 300, prompt=train[:5])
    np.testing.assert_array_equal(tokens, model.sample(3, 300, prompt=train[:5]))
    assert tokens.min() >= 0 and tokens.max() < V


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: fit_ngram([0, 5, 1], V, 2),
            ValueError,
            r"train_ids\[1\] = 5 is outside \[0, vocab_size=4\)",
        ),
        (lambda: fit_ngram([0, 1, -2], V, 2), ValueError, r"train_ids\[2\] = -2 is outside"),
        (lambda: fit_ngram([], V, 2), ValueError, "train_ids is empty"),
        (lambda: fit_ngram([0.0, 1.0], V, 2), TypeError, "integer token ids, got dtype float64"),
        (lambda: fit_ngram([[0, 1]], V, 2), ValueError, r"1-D stream .* shape \(1, 2\)"),
        (lambda: fit_ngram(CORPUS, V, 4), ValueError, r"order must be 1 \(unigram\), 2"),
        (
            lambda: fit_ngram(CORPUS, V, 2, add_k=-1.0),
            ValueError,
            "add_k must be a finite number >= 0",
        ),
        (lambda: fit_ngram(CORPUS, V, 2, add_k=float("nan")), ValueError, "add_k"),
        (
            lambda: fit_ngram([0, 1], V, 3),
            ValueError,
            "has 2 tokens, but an order-3 model needs at least 3",
        ),
        (lambda: fit_ngram(CORPUS, 3_000_000, 3), ValueError, "too large for order 3"),
        (lambda: fit_ngram(CORPUS, 0, 2), ValueError, "vocab_size must be >= 1"),
        (lambda: fit_ngram(CORPUS, V, 2).log_prob([]), ValueError, "ids is empty"),
        (
            lambda: fit_ngram(CORPUS, V, 2).log_prob([0, 1, 9]),
            ValueError,
            r"ids\[2\] = 9 is outside",
        ),
        (lambda: fit_ngram(CORPUS, V, 2).next_token_probs([4]), ValueError, r"context\[0\] = 4"),
        (lambda: fit_ngram(CORPUS, V, 2).sample(0, 3, prompt=[7]), ValueError, r"prompt\[0\] = 7"),
        (lambda: fit_ngram(CORPUS, V, 2).sample(0, -1), ValueError, "length must be an int >= 0"),
        (
            lambda: fit_interpolated(CORPUS, CORPUS, V, add_k=0.0),
            ValueError,
            "add_k must be a finite number > 0",
        ),
        (lambda: fit_interpolated(CORPUS, [], V), ValueError, "val_ids is empty"),
        (lambda: fit_add_k(CORPUS, CORPUS, V, 2, ks=()), ValueError, "ks is empty"),
        (lambda: fit_add_k(CORPUS, CORPUS, V, 2, ks=(0.0,)), ValueError, "add_k must be"),
        (lambda: fit_ngram(CORPUS, V, 2).log_prob([0], prompt=[5]), ValueError, r"prompt\[0\]"),
        (lambda: InterpolatedNGram((fit_ngram(CORPUS, V, 1),), (0.5,)), ValueError, "sum to 1"),
        (
            lambda: InterpolatedNGram(
                (fit_ngram(CORPUS, V, 1), fit_ngram(CORPUS, V, 2)), (1.0, 0.0)
            ),
            ValueError,
            "2 numbers > 0",
        ),
        (lambda: InterpolatedNGram((fit_ngram(CORPUS, V, 2),), (1.0,)), ValueError, r"orders 1..n"),
        (
            lambda: InterpolatedNGram((fit_ngram(CORPUS, V, 1, add_k=0.0),), (1.0,)),
            ValueError,
            "add_k > 0",
        ),
    ],
)
def test_errors_say_what_was_wrong(call, error, message):
    with pytest.raises(error, match=message):
        call()

"""Tests of jaxnets.models.nplm: the network against its formula (Bengio et al. 2003 Eq. 1),
the training loss against the reported log-likelihood, sampling, nearest neighbours by cosine
and Euclidean distance, the t-SNE map, and errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import create_model, model_card
from jaxnets.data import context_windows
from jaxnets.models.nplm import NPLM, nearest_neighbours, token_log_probs
from jaxnets.optim import make_optimizer
from jaxnets.train import Trainer
from jaxnets.viz import tsne_map

V, K, D, H = 7, 2, 3, 5


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _by_formula(params, x_NxK, direct: bool):
    """y = b + W x + U tanh(d + H x), x the concatenated rows of R (numpy, float64)."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    x = p["embedding"]["embedding"][x_NxK].reshape(len(x_NxK), K * D)
    hidden = np.tanh(x @ p["hidden"]["kernel"] + p["hidden"]["bias"])
    logits = hidden @ p["output"]["kernel"] + p["output"]["bias"]
    if direct:
        logits = logits + x @ p["direct"]["kernel"]
    return _log_softmax(logits)


@pytest.fixture(scope="module")
def stream():
    return np.random.default_rng(0).integers(0, V, size=40).astype(np.int32)


@pytest.mark.parametrize("direct", [True, False])
def test_log_probs_follow_the_formula(stream, direct):
    model = create_model("nplm", vocab_size=V, context=K, embed=D, hidden=H, direct=direct)
    variables = jax.jit(model.init)(jax.random.key(1), jnp.zeros((1, K), jnp.int32))
    assert ("direct" in variables["params"]) == direct
    expected_NxV = _by_formula(
        variables["params"], *context_windows(stream, K, start_id=0)[:1], direct
    )
    expected = expected_NxV[np.arange(len(stream)), stream]
    np.testing.assert_allclose(token_log_probs(model, variables, stream, 0), expected, atol=1e-5)
    # batching does not change the numbers (the last batch is padded)
    np.testing.assert_allclose(
        token_log_probs(model, variables, stream, 0, batch_size=7), expected, atol=1e-5
    )


def test_training_loss_equals_the_reported_mean_negative_log_likelihood(stream):
    model = create_model("nplm", vocab_size=V, context=K, embed=D, hidden=H, dropout=0.5)
    trainer = Trainer(model, "softmax_cross_entropy", make_optimizer("adam", 0.05))
    x, y = context_windows(stream, K, start_id=0)
    state = trainer.init(jax.random.key(2), jnp.asarray(x[:4]))
    for _ in range(5):  # trained a little, so the weights are not the initial ones
        state, _ = trainer.train_step(state, (jnp.asarray(x), jnp.asarray(y)))
    loss = trainer.evaluate(state, jnp.asarray(x), jnp.asarray(y), batch_size=len(x))["loss"]
    log_probs = token_log_probs(model, {"params": state.params}, stream, 0)
    assert float(loss) == pytest.approx(-log_probs.mean(), rel=1e-6)
    assert np.exp(-log_probs.mean()) < V  # better than uniform after training on this stream


def test_dropout_acts_only_in_training(stream):
    model = create_model("nplm", vocab_size=V, context=K, embed=D, hidden=H, dropout=0.5)
    x = jnp.asarray(context_windows(stream, K)[0])
    variables = jax.jit(model.init)(jax.random.key(0), x)
    apply = jax.jit(model.apply, static_argnames="train")
    rngs = {"dropout": jax.random.key(3)}
    evaluated = apply(variables, x)
    np.testing.assert_array_equal(evaluated, apply(variables, x, rngs=rngs))
    assert not np.allclose(apply(variables, x, train=True, rngs=rngs), evaluated)


def test_sampling_at_temperature_zero_follows_the_argmax():
    model = NPLM(vocab_size=V, context=K, embed=D, hidden=H)
    variables = jax.jit(model.init)(jax.random.key(4), jnp.zeros((1, K), jnp.int32))
    prompt = jnp.array([[0, 3], [5, 1]], jnp.int32)
    sample = jax.jit(
        lambda rng, length, temperature: model.apply(
            variables, rng, prompt, length, temperature, method=NPLM.sample
        ),
        static_argnums=(1, 2),
    )
    tokens = sample(jax.random.key(0), 6, 0.0)
    assert tokens.shape == (2, 6) and tokens.dtype == jnp.int32
    apply = jax.jit(model.apply)
    context = np.asarray(prompt)
    for t in range(6):
        expected = np.argmax(apply(variables, jnp.asarray(context)), axis=-1)
        np.testing.assert_array_equal(tokens[:, t], expected)
        context = np.concatenate([context[:, 1:], expected[:, None]], axis=1)
    drawn = sample(jax.random.key(0), 50, 1.0)
    assert drawn.min() >= 0 and drawn.max() < V
    assert len(np.unique(np.asarray(drawn))) > 1


def test_nearest_neighbours_by_cosine_and_by_euclidean_distance_differ():
    # Word 2 points the same way as word 0 but is ten times longer; word 1 is close by.
    table = np.array([[1.0, 0.0], [0.8, 0.6], [10.0, 0.0], [0.0, 1.0]])
    ids, scores = nearest_neighbours(table, 0, k=3, metric="cosine")
    np.testing.assert_array_equal(ids, [2, 1, 3])
    np.testing.assert_allclose(scores, [1.0, 0.8, 0.0], atol=1e-12)
    ids, scores = nearest_neighbours(table, 0, k=3, metric="euclidean")
    np.testing.assert_array_equal(ids, [1, 3, 2])
    np.testing.assert_allclose(scores, [np.sqrt(0.04 + 0.36), np.sqrt(2), 9.0])
    # for unit vectors the two orders agree (Lecture 5 Eq. 13-15)
    unit = table / np.linalg.norm(table, axis=1, keepdims=True)
    cosine_ids, cosine = nearest_neighbours(unit, 1, k=3, metric="cosine")
    euclid_ids, distance = nearest_neighbours(unit, 1, k=3, metric="euclidean")
    np.testing.assert_array_equal(cosine_ids[[1, 2]], euclid_ids[[1, 2]])
    np.testing.assert_allclose(distance**2, 2 - 2 * cosine, atol=1e-12)


def test_tsne_map_places_one_labelled_point_per_vector():
    vectors = np.random.default_rng(0).normal(size=(12, 4))
    vectors[6:] += 20.0  # two far-apart clusters stay apart on the map
    fig, points = tsne_map(vectors, [f"w{i}" for i in range(12)], perplexity=3.0)
    assert points.shape == (12, 2)
    labels = [text.get_text() for text in fig.axes[0].texts]
    assert labels == [f"w{i}" for i in range(12)]
    centre_a, centre_b = points[:6].mean(0), points[6:].mean(0)
    spread = max(np.linalg.norm(points[:6] - centre_a, axis=1).max(), 1e-9)
    assert np.linalg.norm(centre_a - centre_b) > spread
    with pytest.raises(ValueError, match="vectors \\(n, d\\) and n labels"):
        tsne_map(vectors, ["a"])


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda m, v: m.apply(v, jnp.zeros((2, K + 1), jnp.int32)),
            r"context=2 takes \(batch, 2\) token ids; got shape \(2, 3\)",
        ),
        (lambda m, v: token_log_probs(m, v, np.array([0, V]), 0), r"ids must be in \[0, 7\)"),
        (lambda m, v: token_log_probs(m, v, np.array([], np.int32), 0), "empty text"),
        (
            lambda m, v: m.apply(
                v, jax.random.key(0), jnp.zeros((1, 1), jnp.int32), 3, method=NPLM.sample
            ),
            r"prompt must be \(batch, 2\)",
        ),
        (lambda m, v: nearest_neighbours(np.eye(3), 0, metric="dot"), "unknown metric 'dot'"),
        (lambda m, v: nearest_neighbours(np.eye(3), 0, k=3), r"k must be in \[1, 2\]"),
        (lambda m, v: nearest_neighbours(np.eye(3), 3), r"query id 3 is outside \[0, 3\)"),
    ],
)
def test_errors_say_what_was_wrong(call, message):
    model = NPLM(vocab_size=V, context=K, embed=D, hidden=H)
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, K), jnp.int32))
    with pytest.raises(ValueError, match=message):
        call(model, variables)


@pytest.mark.parametrize(
    "name, length, vocab",
    [("nplm", 3, 5), ("wavenet", 1024, 8), ("char_lm", 128, 5), ("seq2seq", 64 + 8, 3)],
)
def test_token_model_cards_take_int32_ids(name, length, vocab):
    card = model_card(name)  # the fields come from jaxnets.models.cards.token_inputs
    assert card.input_shape == (length,)
    assert card.input_dtype == "int32"
    assert card.input_range == vocab

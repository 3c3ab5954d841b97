"""Dense and language model outputs pinned to independent references (issue 15, Build item 1).

Each reference is written here from the lectures' equations in NumPy (float64) or plain Python,
and reads the module's own parameters; nothing is compared with another jaxnets code path.

* linear models (seed 004 §2.1-2.3): the closed form against ``numpy.linalg.lstsq`` (the ridge
  case is pinned to scikit-learn in test_linear.py), the presets' outputs ``x W + b`` and their
  read-out heads (sigmoid, softmax);
* MLPs (seed 004 §3, seed 002 "Hidden Units"): ``h = g(h W + b)`` layer by layer with each
  hidden unit of the zoo written out, maxout and RBF layers; residual, highway and dense
  connectivity and the NeRF positional-encoding MLP (seed 001 line 557, 612);
* the neural probabilistic language model (seed 004 Lecture 5 §3; Bengio et al. 2003:
  ``y = b + W x + U tanh(d + H x)``, with and without the direct connection ``W x``);
* n-gram models (seed 004 Lecture 5 §2.2, Eq. 8): probabilities from counts done with
  ``collections.Counter`` on a tiny corpus, add-k and interpolated.
"""

from __future__ import annotations

import collections
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import create_model, model_card
from jaxnets.models import mlp
from jaxnets.models.language import fit_interpolated, fit_ngram
from jaxnets.models.linear import LinearModel, fit_least_squares

TIGHT = dict(rtol=1e-10, atol=1e-12)


def _init64(model, x, seed: int = 0, scale: float = 0.7):
    """Float64 NumPy parameters in the layout of ``model``'s own init (its shapes, read with
    ``jax.eval_shape``, so nothing is compiled), drawn at random: biases and slopes are nonzero,
    so a bias or a gate in the wrong place changes the outputs. x fixes the shapes."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(seed), x)
    return jax.tree.map(lambda s: scale * rng.normal(size=s.shape), shapes)


def _apply64(model, variables, x, **kwargs):
    """The module's output on float64 variables (inside enable_x64), one compile, as NumPy."""
    apply = jax.jit(functools.partial(model.apply, **kwargs))
    return np.asarray(apply(jax.tree.map(jnp.asarray, variables), jnp.asarray(x)))


def _affine(dense, h):
    """A Flax Dense layer written out: ``h W + b`` (kernels are (in, out))."""
    return h @ dense["kernel"] + dense.get("bias", 0.0)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# --- linear models (seed 004 §2.1-2.3) ------------------------------------------------------


def test_closed_form_equals_numpy_lstsq_including_the_minimum_norm_solution():
    """Without a penalty the normal equations' solution is numpy's least squares; a design with a
    repeated column has many minimisers, and the docstring promises numpy's minimum-norm one."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(9, 3))
    t = rng.normal(size=(9, 2))
    with jax.enable_x64(True):
        with_bias = fit_least_squares(X, t)["params"]["dense"]
        singular = np.concatenate([X, X[:, :1]], axis=1)  # rank 3 of 4
        no_bias = fit_least_squares(singular, t, fit_bias=False)["params"]["dense"]
    augmented = np.concatenate([X, np.ones((9, 1))], axis=1)  # the lecture's dummy feature
    solution = np.linalg.lstsq(augmented, t, rcond=None)[0]
    np.testing.assert_allclose(with_bias["kernel"], solution[:3], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(with_bias["bias"], solution[3], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        no_bias["kernel"], np.linalg.lstsq(singular, t, rcond=None)[0], rtol=1e-9, atol=1e-12
    )
    np.testing.assert_array_equal(no_bias["bias"], 0.0)


@pytest.mark.parametrize(
    "name", ["linear_regression", "logistic_regression", "softmax_regression", "linear_svm"]
)
def test_linear_presets_compute_xw_plus_b_and_their_heads(name):
    """Every linear preset is z = x W + b on the flattened input (seed 004 §2.3); logistic
    regression reads sigma(z) and softmax regression softmax(z) (seed 003)."""
    card = model_card(name)
    model = create_model(name, **card.test_config)
    assert isinstance(model, LinearModel)
    x = np.random.default_rng(1).normal(size=(5, 2, 2))  # a 2x2 "image" of 4 inputs
    with jax.enable_x64(True):
        variables = _init64(model, jnp.zeros((1, 4)))
        z = _apply64(model, variables, x)
        dense = variables["params"]["dense"]
        expected = _affine(dense, x.reshape(5, 4))
        np.testing.assert_allclose(z, expected, **TIGHT)
        head = {"logistic_regression": "sigmoid", "softmax_regression": "softmax"}.get(name)
        if head:
            reference = _sigmoid(expected) if head == "sigmoid" else _softmax(expected)
            np.testing.assert_allclose(np.asarray(mlp.predict(z, head)), reference, **TIGHT)


# --- MLPs (seed 004 §3, seed 002 hidden units) ----------------------------------------------

# Each hidden unit as seed 002 writes it (line 848-1160); options chosen away from the defaults
# so that an option that does not reach the unit changes the numbers.
_UNITS = {
    "relu": ((), lambda z, p: np.maximum(z, 0.0)),
    "leaky_relu": ((("negative_slope", 0.2),), lambda z, p: np.where(z > 0, z, 0.2 * z)),
    "abs": ((), lambda z, p: np.abs(z)),
    "elu": ((("alpha", 0.7),), lambda z, p: np.where(z > 0, z, 0.7 * (np.exp(z) - 1.0))),
    "softplus": ((), lambda z, p: np.log1p(np.exp(z))),
    "sigmoid": ((), lambda z, p: _sigmoid(z)),
    "tanh": ((), lambda z, p: np.tanh(z)),
    "hard_tanh": ((), lambda z, p: np.minimum(1.0, np.maximum(-1.0, z))),
    # parametric ReLU: max(0, z) + a min(0, z) with the layer's learned slopes a
    "prelu": ((), lambda z, p: np.maximum(z, 0.0) + p["slope"] * np.minimum(z, 0.0)),
    # randomized ReLU at evaluation: the mean slope (lower + upper) / 2
    "rrelu": (
        (("lower", 0.1), ("upper", 0.5)),
        lambda z, p: np.where(z > 0, z, 0.3 * z),
    ),
}


def _maxout(layer, h):
    """g(x)_i = max_j (x w_ij + b_ij) over the pieces j (Goodfellow et al., 2013)."""
    pieces = layer["pieces"]
    z = np.einsum("bi,ifp->bfp", h, pieces["kernel"]) + pieces["bias"]
    return z.max(axis=-1)


def _rbf(layer, h):
    """g(x)_j = exp(-||x - c_j||^2 / (2 sigma_j^2))."""
    sq_dist = ((h[:, None, :] - layer["centers"][None]) ** 2).sum(-1)
    return np.exp(-sq_dist / (2.0 * np.exp(layer["log_sigma"]) ** 2))


def _mlp_reference(params, x, activation, hidden):
    h = x
    for i in range(len(hidden)):
        if activation == "maxout":
            h = _maxout(params[f"hidden_{i}"], h)
        elif activation == "rbf":
            h = _rbf(params[f"hidden_{i}"], h)
        else:
            h = _UNITS[activation][1](_affine(params[f"hidden_{i}"], h), params.get(f"act_{i}"))
    return _affine(params["out"], h)


@pytest.mark.parametrize("activation", [*_UNITS, "maxout", "rbf"])
def test_mlp_forward_equals_the_layer_equations(activation):
    hidden = (4, 3)
    options = _UNITS[activation][0] if activation in _UNITS else ()
    model = mlp.MLP(
        hidden=hidden,
        num_outputs=2,
        activation=activation,
        activation_options=options,
        maxout_pieces=3,
    )
    x = 1.5 * np.random.default_rng(2).normal(size=(6, 5))
    with jax.enable_x64(True):
        variables = _init64(model, jnp.zeros((1, 5)))
        out = _apply64(model, variables, x)
    params = variables["params"]
    expected = _mlp_reference(params, x, activation, hidden)
    np.testing.assert_allclose(out, expected, **TIGHT)
    if activation in _UNITS:  # pre-activations on both sides of every kink, beyond +-1
        z = _affine(params["hidden_0"], x)
        assert z.min() < -1.0 and z.max() > 1.0


def _deep_reference(params, x, connectivity, depth):
    """Seed 001 line 557: plain h_l = f(h), residual h + f(h), highway f(h) T + h (1 - T) with
    T = sigma(h W_T + b_T), dense: layer l reads [h_0, ..., h_{l-1}]; f(h) = relu(h W + b)."""

    def f(name, h):
        return np.maximum(_affine(params[name], h), 0.0)

    h = f("in_proj", x)
    features = [h]
    for i in range(depth):
        if connectivity == "dense":
            features.append(f(f"layer_{i}", np.concatenate(features, axis=-1)))
        elif connectivity == "plain":
            h = f(f"layer_{i}", h)
        elif connectivity == "residual":
            h = h + f(f"layer_{i}", h)
        else:
            gate = _sigmoid(_affine(params[f"gate_{i}"], h))
            h = f(f"layer_{i}", h) * gate + h * (1.0 - gate)
    if connectivity == "dense":
        h = np.concatenate(features, axis=-1)
    return _affine(params["out"], h)


@pytest.mark.parametrize("connectivity", mlp.CONNECTIVITIES)
def test_deep_mlp_forward_equals_the_connectivity_equations(connectivity):
    model = mlp.DeepMLP(width=4, depth=3, num_outputs=2, connectivity=connectivity)
    x = np.random.default_rng(3).normal(size=(5, 6))
    with jax.enable_x64(True):
        variables = _init64(model, jnp.zeros((1, 6)))
        out = _apply64(model, variables, x)
    expected = _deep_reference(variables["params"], x, connectivity, depth=3)
    np.testing.assert_allclose(out, expected, **TIGHT)


def _positional_encoding(p, num_freqs):
    """NeRF's gamma(p) = (sin(2^0 pi p), cos(2^0 pi p), ..., sin(2^(L-1) pi p), cos(...)), each
    term applied to every coordinate (Mildenhall et al. 2020, Eq. 4)."""
    blocks = []
    for k in range(num_freqs):
        blocks += [np.sin(2.0**k * math.pi * p), np.cos(2.0**k * math.pi * p)]
    return np.concatenate(blocks, axis=-1)


def test_nerf_mlp_forward_equals_encoding_layers_and_skip():
    num_freqs, depth, skip_at = 3, 4, 2
    model = create_model(
        "nerf_mlp", num_freqs=num_freqs, width=5, depth=depth, skip_at=skip_at, num_outputs=3
    )
    x = np.random.default_rng(4).uniform(-1, 1, size=(6, 2))
    with jax.enable_x64(True):
        variables = _init64(model, jnp.zeros((1, 2)))
        out = _apply64(model, variables, x)
        np.testing.assert_allclose(
            np.asarray(mlp.positional_encoding(jnp.asarray(x), num_freqs)),
            _positional_encoding(x, num_freqs),
            **TIGHT,
        )
    params = variables["params"]
    encoded = _positional_encoding(x, num_freqs)
    h = encoded
    for i in range(depth):
        if i == skip_at:  # the encoded input joins the layer's input again
            h = np.concatenate([h, encoded], axis=-1)
        h = np.maximum(_affine(params[f"layer_{i}"], h), 0.0)
    np.testing.assert_allclose(out, _affine(params["out"], h), **TIGHT)


# --- neural probabilistic language model (seed 004 Lecture 5 §3) ----------------------------


@pytest.mark.parametrize("direct", [True, False])
def test_nplm_logits_equal_bengio_et_al(direct):
    """y = b + W x + U tanh(d + H x) with x the context words' rows of R, concatenated in
    order; the direct term W x is there exactly when ``direct``."""
    vocab, context, embed = 6, 3, 2
    model = create_model(
        "nplm", vocab_size=vocab, context=context, embed=embed, hidden=4, direct=direct
    )
    tokens = np.array([[0, 1, 2], [5, 5, 0], [2, 1, 0], [3, 4, 3]], np.int32)
    with jax.enable_x64(True):
        variables = _init64(model, jnp.zeros((1, context), jnp.int32))
        logits = _apply64(model, variables, tokens)
    p = variables["params"]
    x = p["embedding"]["embedding"][tokens].reshape(len(tokens), context * embed)
    expected = _affine(p["output"], np.tanh(_affine(p["hidden"], x)))
    assert ("direct" in p) == direct
    if direct:
        skip = x @ p["direct"]["kernel"]
        assert np.abs(skip).max() > 0.1  # the direct term is far above the tolerance
        expected = expected + skip
    np.testing.assert_allclose(logits, expected, **TIGHT)


# --- n-gram models (seed 004 Lecture 5 §2.2) ------------------------------------------------

VOCAB = 4
TRAIN = [0, 1, 0, 2, 0, 1, 1, 0, 2, 2, 0, 1]  # token 3 never occurs
SCORED = [1, 0, 1, 1, 3, 0, 2, 0, 0]


def _counts(stream, n):
    return collections.Counter(tuple(stream[i : i + n]) for i in range(len(stream) - n + 1))


def _ngram_probability(order, add_k, history, word):
    """p(word | history) from Counter counts: the longest context of at most order - 1 words
    seen in training (as the start of an n-gram), then Eq. 8 with k imaginary counts,
    (count(c w) + k) / (count(c) + k V)."""
    for n in range(min(order, len(history) + 1), 0, -1):
        context = tuple(history[len(history) - n + 1 :]) if n > 1 else ()
        counts = _counts(TRAIN, n)
        total = sum(c for gram, c in counts.items() if gram[:-1] == context)
        if total:
            return (counts[(*context, word)] + add_k) / (total + add_k * VOCAB)
    raise AssertionError("the empty context is always seen")


def _stream_probabilities(order, add_k, stream, prompt=()):
    full = [*prompt, *stream]
    return [
        _ngram_probability(order, add_k, full[: len(prompt) + t], w) for t, w in enumerate(stream)
    ]


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("add_k", [0.0, 0.5])
def test_ngram_probabilities_equal_python_counts(order, add_k):
    model = fit_ngram(np.array(TRAIN), VOCAB, order, add_k=add_k)
    with np.errstate(divide="ignore"):
        probs = np.exp(model.log_prob(SCORED))
        prompted = np.exp(model.log_prob(SCORED, prompt=[2, 2]))
    np.testing.assert_allclose(probs, _stream_probabilities(order, add_k, SCORED), **TIGHT)
    np.testing.assert_allclose(
        prompted, _stream_probabilities(order, add_k, SCORED, prompt=[2, 2]), **TIGHT
    )
    for context in ([], [0], [3], [1, 0], [3, 1]):  # seen and unseen contexts
        expected = [_ngram_probability(order, add_k, context, w) for w in range(VOCAB)]
        np.testing.assert_allclose(model.next_token_probs(context), expected, **TIGHT)


def test_interpolated_probabilities_mix_python_counts_with_likelihood_maximising_weights():
    """Jelinek-Mercer: p = sum_m lambda_m p_m over the add-k unigram and the maximum-likelihood
    bigram and trigram; the weights maximise the validation log likelihood on the simplex, so
    (KKT for a concave objective) every weight > 0 has mean(p_m / p) = 1 on validation."""
    validation = [0, 1, 2, 0, 1, 0, 0, 2, 1, 1, 3, 0]
    model = fit_interpolated(np.array(TRAIN), np.array(validation), VOCAB, order=3, add_k=0.5)
    weights = np.asarray(model.weights)

    def components(stream):
        return np.array(
            [_stream_probabilities(m, 0.5 if m == 1 else 0.0, stream) for m in (1, 2, 3)]
        )

    np.testing.assert_allclose(
        np.exp(model.log_prob(SCORED)), weights @ components(SCORED), **TIGHT
    )
    per_component = components(validation)
    ratio = (per_component / (weights @ per_component)).mean(axis=1)
    np.testing.assert_allclose(ratio[weights > 1e-6], 1.0, atol=1e-4)
    assert np.all(ratio[weights <= 1e-6] <= 1.0 + 1e-4)
    assert not np.allclose(weights, 1 / 3, atol=0.05)  # the fit moved them off the start

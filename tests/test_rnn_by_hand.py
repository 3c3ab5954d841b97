"""Hand-designed RNNs of Lecture 13 §2 on every binary sequence of length 1..10."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.models import rnn_by_hand

LENGTHS = range(1, 11)


def _all_binary(length: int, features: int = 1) -> np.ndarray:
    """Every binary sequence: (2^(length·features), length, features) float32 in {0, 1}."""
    rows = itertools.product((0.0, 1.0), repeat=length * features)
    return np.array(list(rows), np.float32).reshape(-1, length, features)


def _apply(builder):
    model, variables = builder()
    return jax.jit(lambda x: model.apply(variables, x))


def test_running_sum_is_exact_on_all_binary_sequences():
    apply = _apply(rnn_by_hand.running_sum_rnn)
    for length in LENGTHS:
        x = _all_binary(length)
        y = np.asarray(apply(jnp.asarray(x)))
        assert y.shape == (2**length, length, 1)
        np.testing.assert_array_equal(y, np.cumsum(x, axis=1))


def test_running_sum_on_real_valued_inputs():
    # float64: the hand-set weights follow the default float, and no matmul rounding (TF32 on
    # a GPU) blurs the comparison
    with jax.enable_x64(True):
        apply = _apply(rnn_by_hand.running_sum_rnn)
        x = 3 * np.random.default_rng(0).normal(size=(5, 12, 1))
        y = np.asarray(apply(jnp.asarray(x)))
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, np.cumsum(x, axis=1), rtol=1e-12, atol=1e-12)
    assert not np.allclose(y, np.round(y))  # really real-valued, not a binary special case


def test_running_sum_uses_the_library_elman_cell():
    model, variables = rnn_by_hand.running_sum_rnn()
    cell = variables["params"]["rnn"]["cell"]
    assert model.activation == "linear"
    assert cell["input_to_hidden"]["kernel"].shape == (1, 1)
    assert cell["hidden_to_hidden"].shape == (1, 1)
    # the hand-set variables are exactly the ones the module itself would create
    init_shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.ones((1, 3, 1)))
    assert jax.tree.structure(init_shapes) == jax.tree.structure(variables)
    assert jax.tree.map(jnp.shape, init_shapes) == jax.tree.map(jnp.shape, variables)


def test_larger_sum_decides_every_prefix():
    """All 4^L pairs of binary sequences for L <= 6; for L = 7..10 the prefixes of 3000
    random pairs of length 10 (a scan is causal: step t sees only steps <= t)."""
    apply = _apply(rnn_by_hand.larger_sum_rnn)
    random_pairs = np.random.default_rng(1).integers(0, 2, size=(3000, 10, 2))
    batches = [_all_binary(length, features=2) for length in range(1, 7)]
    seen = {"first": 0, "second": 0, "tie": 0}
    for x in [*batches, random_pairs.astype(np.float32)]:
        y = np.asarray(apply(jnp.asarray(x)))[..., 0]
        lead = np.cumsum(x[..., 0] - x[..., 1], axis=1)  # (batch, length) integers
        assert y.shape == lead.shape
        # sigmoid(5 d) exactly as the lecture describes it
        np.testing.assert_allclose(y, 1 / (1 + np.exp(-5.0 * lead)), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(y > 0.5, lead > 0)
        np.testing.assert_array_equal(y < 0.5, lead < 0)
        np.testing.assert_array_equal(y[lead == 0], 0.5)  # ties sit exactly on the boundary
        # a lead of one already reads as a near-certain decision (output weight 5)
        assert np.all(y[lead >= 1] > 0.99) and np.all(y[lead <= -1] < 0.01)
        seen["first"] += int(np.sum(lead > 0))
        seen["second"] += int(np.sum(lead < 0))
        seen["tie"] += int(np.sum(lead == 0))
    assert min(seen.values()) > 1000  # every case was exercised many times


def test_parity_is_exact_on_all_binary_sequences():
    apply = _apply(rnn_by_hand.parity_rnn)
    for length in LENGTHS:
        x = _all_binary(length)[..., 0]
        y = np.asarray(apply(jnp.asarray(x)))
        assert y.shape == (2**length, length)
        np.testing.assert_array_equal(y, np.cumsum(x, axis=1) % 2)
    # seed 004 line 2804: input 0 1 0 1 1 0 1 0 1 1 starts with parity bits 0 1 1 0 1 1
    example = np.array([0, 1, 0, 1, 1, 0, 1, 0, 1, 1], np.float32)
    row = np.flatnonzero(np.all(x == example, axis=1))
    np.testing.assert_array_equal(y[row[0], :6], [0, 1, 1, 0, 1, 1])


def test_parity_weights_realise_the_lectures_table():
    # line 2821: (y_prev, x) -> (h1, h2, y) with h1 = AND, h2 = OR, y = XOR
    table = {(0, 0): (0, 0, 0), (0, 1): (0, 1, 1), (1, 0): (0, 1, 1), (1, 1): (1, 1, 0)}
    p = jax.tree.map(np.asarray, rnn_by_hand.parity_rnn()[1]["params"])
    for (y_prev, x_t), (h1, h2, y_t) in table.items():
        z = x_t * p["input_to_hidden"]["kernel"][0] + p["input_to_hidden"]["bias"]
        z = z + y_prev * p["output_to_hidden"]
        h = (z > 0).astype(np.float32)
        np.testing.assert_array_equal(h, [h1, h2])
        assert float(h @ p["hidden_to_output"] + p["output_bias"] > 0) == y_t
        # half-integer pre-activations: no unit sits on its threshold
        assert np.min(np.abs(z)) >= 0.5


def test_parity_dummy_output_and_unroll():
    # with the dummy y^(0) = 1 the net reports the parity of (1, x_1, ..., x_t)
    _, variables = rnn_by_hand.parity_rnn()
    model = rnn_by_hand.OutputFeedbackRNN(initial_output=1.0, unroll=3)
    x = _all_binary(5)[..., 0]
    y = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(x)))
    np.testing.assert_array_equal(y, (1 + np.cumsum(x, axis=1)) % 2)


def test_parity_rnn_shapes_and_errors():
    model, variables = rnn_by_hand.parity_rnn()
    init_shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.ones((2, 4)))
    assert jax.tree.map(jnp.shape, init_shapes) == jax.tree.map(jnp.shape, variables)
    with pytest.raises(ValueError, match=r"\(batch, time\).*got \(2, 4, 1\)"):
        model.apply(variables, jnp.ones((2, 4, 1)))
    elman, elman_variables = rnn_by_hand.running_sum_rnn()
    with pytest.raises(ValueError, match="elementwise activation"):
        rnn_by_hand.ElmanReadoutRNN(output_activation="prelu").init(
            jax.random.PRNGKey(0), jnp.ones((1, 2, 1))
        )
    with pytest.raises(ValueError, match=r"\(batch, time, features\)"):
        elman.apply(elman_variables, jnp.ones((2, 4)))

"""Recurrent models: the scan samplers equal step-by-step full forward passes, padding and
lengths are ignored, the sequence loss leaves padding out."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnets
from jaxnets import losses
from jaxnets.models.rnn import PAD_ID, CharLM, Seq2Seq, seq2seq_inputs


@functools.cache
def _jitted(model):
    return jax.jit(model.apply)


@functools.cache
def _char_lm():
    model = jaxnets.create_model("char_lm", vocab_size=7, embed=4, hidden=6, layers=2)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 3), jnp.int32))
    return model, variables


@functools.cache
def _seq2seq(reverse_source=False):
    model = jaxnets.create_model(
        "seq2seq",
        source_vocab=6,
        target_vocab=5,
        source_length=4,
        embed=3,
        hidden=5,
        reverse_source=reverse_source,
    )
    variables = jax.jit(model.init)(jax.random.PRNGKey(1), jnp.ones((2, 4 + 3), jnp.int32))
    return model, variables


def test_greedy_char_sampling_equals_argmax_of_full_forward_passes():
    model, variables = _char_lm()
    prompt = jnp.array([[1, 2, 3], [4, 4, 0]], jnp.int32)
    sampled = model.apply(variables, jax.random.PRNGKey(0), prompt, 5, 0.0, method=CharLM.sample)
    text = prompt
    for _ in range(5):  # re-run the whole sequence each step: no state carried by hand
        logits = _jitted(model)(variables, text)
        text = jnp.concatenate([text, jnp.argmax(logits[:, -1], -1)[:, None]], axis=1)
    np.testing.assert_array_equal(sampled, text[:, 3:])


def test_temperature_sampling_is_seeded_and_follows_the_softmax():
    model, variables = _char_lm()
    prompt = jnp.array([[1, 2]], jnp.int32)
    sample = jax.jit(
        lambda key, prompt: model.apply(variables, key, prompt, 1, 1.0, method=CharLM.sample)
    )
    many = jnp.repeat(prompt, 4000, axis=0)  # every row draws its own first character
    first = np.asarray(sample(jax.random.PRNGKey(2), many))[:, 0]
    probs = jax.nn.softmax(_jitted(model)(variables, prompt)[0, -1])
    frequencies = np.bincount(first, minlength=7) / len(first)
    np.testing.assert_allclose(frequencies, probs, atol=0.03)  # ~4 standard errors
    again = np.asarray(sample(jax.random.PRNGKey(2), many))[:, 0]
    np.testing.assert_array_equal(again, first)  # seeded
    assert (np.asarray(sample(jax.random.PRNGKey(3), many))[:, 0] != first).any()
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        model.apply(variables, jax.random.PRNGKey(0), prompt, 3, -1.0, method=CharLM.sample)
    with pytest.raises(ValueError, match=r"prompt must be \(batch, P\) with P >= 1"):
        model.apply(variables, jax.random.PRNGKey(0), prompt[0], 3, method=CharLM.sample)


@pytest.mark.parametrize("reverse_source", [False, True])
def test_greedy_decoding_equals_teacher_forcing_on_its_own_outputs(reverse_source):
    model, variables = _seq2seq(reverse_source)
    source = jnp.array([[1, 2, 3, PAD_ID], [5, 4, 3, 2]], jnp.int32)
    go = 4
    decoded = jax.jit(lambda v, s: model.apply(v, s, 3, go, method=Seq2Seq.greedy_decode))(
        variables, source
    )
    decoder_inputs = jnp.full((2, 1), go, jnp.int32)
    for _ in range(3):
        logits = _jitted(model)(variables, seq2seq_inputs(source, decoder_inputs))
        next_token = jnp.argmax(logits[:, -1], -1)[:, None]
        decoder_inputs = jnp.concatenate([decoder_inputs, next_token], axis=1)
    np.testing.assert_array_equal(decoded, decoder_inputs[:, 1:])


def test_source_padding_is_ignored_and_reversal_reads_the_program_backwards():
    model, variables = _seq2seq()
    decoder_inputs = jnp.array([[4, 1, 2]], jnp.int32)
    padded = _jitted(model)(
        variables, seq2seq_inputs(jnp.array([[1, 2, PAD_ID, PAD_ID]]), decoder_inputs)
    )
    unpadded_model = model.clone(source_length=2)  # same parameters, a 2-token source
    unpadded = _jitted(unpadded_model)(
        variables, seq2seq_inputs(jnp.array([[1, 2]]), decoder_inputs)
    )
    np.testing.assert_allclose(padded, unpadded, rtol=1e-6)
    other = _jitted(model)(
        variables, seq2seq_inputs(jnp.array([[1, 3, PAD_ID, PAD_ID]]), decoder_inputs)
    )
    assert not np.allclose(padded, other)  # while the source tokens do count

    reversed_model, _ = _seq2seq(reverse_source=True)
    np.testing.assert_allclose(
        _jitted(reversed_model)(
            variables, seq2seq_inputs(jnp.array([[3, 2, 1, PAD_ID]]), decoder_inputs)
        ),
        _jitted(model)(variables, seq2seq_inputs(jnp.array([[1, 2, 3, PAD_ID]]), decoder_inputs)),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match=r"\(batch, 4 \+ U\) token ids, U >= 1"):
        model.apply(variables, jnp.ones((1, 4), jnp.int32))


def test_sequence_classifier_reads_up_to_each_length():
    model = jaxnets.create_model("gru_classifier", hidden=4, bidirectional=True)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 1))
    variables = jax.jit(model.init)(jax.random.PRNGKey(1), x)
    apply = _jitted(model)
    padded = apply(variables, x, jnp.array([6, 3]))
    np.testing.assert_allclose(padded[1], apply(variables, x[1:, :3])[0], rtol=1e-5)
    np.testing.assert_allclose(padded[0], apply(variables, x[:1])[0], rtol=1e-5)


def test_sequence_cross_entropy_leaves_padding_out():
    logits = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
    targets = jnp.array([2, 0, -1, -1])
    per_step = [float(losses.softmax_cross_entropy(logits[t], targets[t])) for t in range(2)]
    assert float(losses.sequence_cross_entropy(logits, targets)) == pytest.approx(np.mean(per_step))
    right = (np.argmax(logits[:2], -1) == np.array([2, 0])).mean()
    assert float(losses.sequence_accuracy(logits, targets)) == pytest.approx(right)
    assert float(losses.sequence_cross_entropy(logits, jnp.full(4, -1))) == 0.0


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bfloat16_sequence_model_has_float32_outputs_close_to_float32(cell):
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 7, 2))
    lengths = jnp.array([7, 4, 1])
    full = jaxnets.create_model(f"{cell}_regressor", hidden=8, outputs=2)
    half = jaxnets.create_model(f"{cell}_regressor", hidden=8, outputs=2, dtype=jnp.bfloat16)
    variables = jax.jit(full.init)(jax.random.PRNGKey(1), x)
    expected = _jitted(full)(variables, x, lengths)
    got = _jitted(half)(variables, x, lengths)
    assert got.dtype == jnp.float32 and got.shape == (3, 2)
    assert jax.tree.all(jax.tree.map(lambda p: p.dtype == jnp.float32, variables))
    # bfloat16 keeps 8 significant bits: about 2-3 significant digits, not float32's 7
    np.testing.assert_allclose(got, expected, rtol=0.05, atol=0.02)
    assert float(jnp.max(jnp.abs(got - expected))) > 0  # it did compute in bfloat16
    grads = jax.jit(jax.grad(lambda v: jnp.sum(half.apply(v, x, lengths) ** 2)))(variables)
    assert jax.tree.all(jax.tree.map(lambda g: g.dtype == jnp.float32, grads))

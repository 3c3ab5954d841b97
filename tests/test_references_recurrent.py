"""Recurrent model outputs pinned to a NumPy loop over time (issue 15, Build item 1).

The reference runs each sequence on its own with a Python loop over its valid steps, the cell
equations written out from the lectures (seed 004 Lecture 13 eqs. 3-4 for the Elman RNN,
Lecture 14 §4 for the LSTM and GRU) with the module's documented gate order: (i, f, g, o) for
the LSTM and (r, z, n) for the GRU, as in PyTorch. Nothing here reuses jaxnets' masking,
reversal or stacking, so the layers' composition, ``lengths``, the sequence classifiers' and
regressors' read-out, the char LM and the seq2seq encoder-decoder under teacher forcing
(Lecture 13 §4.1-4.2) are each checked against an independent computation, in float64.

The hand-designed RNNs of Lecture 13 §2 are pinned on every short binary sequence in
test_rnn_by_hand.py.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import create_model
from jaxnets.data import make_execution_task
from jaxnets.models.rnn import PAD_ID
from jaxnets.nn.recurrent import make_recurrent

TIGHT = dict(rtol=1e-10, atol=1e-12)
B, T, F, H = 3, 6, 2, 3
LENGTHS = np.array([T, 3, 1])
X = np.random.default_rng(0).normal(size=(B, T, F))


def _init64(model, *example, seed: int = 0, scale: float = 0.7):
    """Random float64 NumPy parameters in the layout of ``model``'s own init (shapes from
    ``jax.eval_shape``, so nothing is compiled): every bias, including the LSTM's forget bias
    and the GRU's recurrent bias, is nonzero, so a gate or a bias in the wrong block shows."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(seed), *example)
    return jax.tree.map(lambda s: scale * rng.normal(size=s.shape), shapes)


def _apply64(model, variables, *args):
    """The module on float64 variables (call inside enable_x64), compiled once, as NumPy."""
    out = jax.jit(model.apply)(jax.tree.map(jnp.asarray, variables), *args)
    return jax.tree.map(np.asarray, out)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _cell_step(kind, cell, x_t, carry):
    """One step of a cell for one example: x_t (F,), carry h (H,) or (c, h) -> (carry, h)."""
    u, b = cell["input_to_hidden"]["kernel"], cell["input_to_hidden"]["bias"]
    w = cell["hidden_to_hidden"]
    if kind == "lstm":
        c, h = carry
        a = x_t @ u + b + h @ w
        n = len(h)
        i, f, g, o = a[:n], a[n : 2 * n], a[2 * n : 3 * n], a[3 * n :]
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        return (c, h), h
    if kind == "gru":
        h = carry
        n = len(h)
        xs = x_t @ u + b
        hs = h @ w + cell["hidden_to_hidden_bias"]
        r = _sigmoid(xs[:n] + hs[:n])
        z = _sigmoid(xs[n : 2 * n] + hs[n : 2 * n])
        candidate = np.tanh(xs[2 * n :] + r * hs[2 * n :])
        h = (1.0 - z) * candidate + z * h
        return h, h
    a = x_t @ u + b + carry @ w
    h = np.tanh(a) if kind == "rnn" else np.maximum(a, 0.0)
    return h, h


def _zero_carry(kind, hidden):
    h = np.zeros(hidden)
    return (h, h) if kind == "lstm" else h


def _hidden_of(kind, carry):
    return carry[1] if kind == "lstm" else carry


def _run(kind, cell, x, lengths=None, reverse=False, initial=None):
    """One direction over a batch, example by example: x (B, T, F) -> (outputs (B, T, H), zero
    past each length, in input order; final carries, one per example). ``reverse`` reads
    steps length-1 .. 0; ``initial`` is a list of per-example carries (default zero)."""
    hidden = cell["hidden_to_hidden"].shape[0]
    outputs = np.zeros((*x.shape[:2], hidden))
    finals = []
    for n in range(len(x)):
        valid = x.shape[1] if lengths is None else int(lengths[n])
        carry = _zero_carry(kind, hidden) if initial is None else initial[n]
        for t in reversed(range(valid)) if reverse else range(valid):
            carry, outputs[n, t] = _cell_step(kind, cell, x[n, t], carry)
        finals.append(carry)
    return outputs, finals


def _run_layers(kind, layer_params, x, lengths=None, bidirectional=False):
    """Stacked layers, each reading the (concatenated) outputs of the one below -> (top outputs,
    per layer the final carries: a list over examples, or a (forward, backward) pair)."""
    carries = []
    for params in layer_params:
        if bidirectional:
            out_f, fin_f = _run(kind, params["forward"]["cell"], x, lengths)
            out_b, fin_b = _run(kind, params["backward"]["cell"], x, lengths, reverse=True)
            x, finals = np.concatenate([out_f, out_b], axis=-1), (fin_f, fin_b)
        else:
            x, finals = _run(kind, params["cell"], x, lengths)
        carries.append(finals)
    return x, carries


def _top_hidden(kind, carries, bidirectional):
    """(B, H) or (B, 2H): the top layer's final h (both directions' when bidirectional)."""
    top = carries[-1]
    directions = top if bidirectional else (top,)
    return np.concatenate(
        [np.stack([_hidden_of(kind, c) for c in finals]) for finals in directions], axis=-1
    )


def _assert_carries_equal(kind, module_carry, reference_finals):
    """A module carry ((B, H) arrays) against the reference's per-example carries."""
    if kind == "lstm":
        for part in (0, 1):
            expected = np.stack([carry[part] for carry in reference_finals])
            np.testing.assert_allclose(module_carry[part], expected, **TIGHT)
    else:
        np.testing.assert_allclose(module_carry, np.stack(reference_finals), **TIGHT)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_stacked_bidirectional_layers_with_lengths_equal_the_numpy_loop(kind):
    """Two bidirectional layers over sequences of lengths T, 3 and 1: each direction reads only
    the valid steps (the backward one from the last valid step), outputs are zero past the
    length, the top layer reads [forward, backward] of the one below, and each carry is the
    state after the sequence's last valid step."""
    model = make_recurrent(kind, H, layers=2, bidirectional=True)
    with jax.enable_x64(True):
        variables = _init64(model, jnp.zeros((B, T, F)))
        outputs, carries = _apply64(model, variables, X, LENGTHS)
    layers = [variables["params"][f"layers_{i}"] for i in range(2)]
    expected, expected_carries = _run_layers(kind, layers, X, LENGTHS, bidirectional=True)
    np.testing.assert_allclose(outputs, expected, **TIGHT)
    for module_layer, reference_layer in zip(carries, expected_carries, strict=True):
        for module_carry, finals in zip(module_layer, reference_layer, strict=True):
            _assert_carries_equal(kind, module_carry, finals)
    assert np.abs(expected[1, 3:]).max() == 0 and np.abs(expected[1, :3]).min() > 0


@pytest.mark.parametrize(
    ("name", "fields", "lengths"),
    [
        ("rnn_classifier", {"cell": "relu_rnn", "layers": 2, "outputs": 3}, LENGTHS),
        ("lstm_regressor", {"bidirectional": True}, None),
        ("gru_classifier", {"bidirectional": True, "outputs": 2}, LENGTHS),
    ],
)
def test_sequence_models_read_out_the_final_state(name, fields, lengths):
    """Classifiers and regressors: y = h_final V + c from the top layer's state after each
    sequence's last valid step (both directions' when bidirectional)."""
    model = create_model(name, hidden=H, **fields)
    kind = model.cell
    with jax.enable_x64(True):
        variables = _init64(model, jnp.zeros((B, T, F)))
        y = _apply64(model, variables, X, lengths)
    params = variables["params"]
    recurrent = params["recurrent"]
    # make_recurrent nests layers_i under a Stacked only when there are several
    layers = [recurrent]
    if model.layers > 1:
        layers = [recurrent[f"layers_{i}"] for i in range(model.layers)]
    _, carries = _run_layers(kind, layers, X, lengths, model.bidirectional)
    h = _top_hidden(kind, carries, model.bidirectional)
    readout = params["readout"]
    np.testing.assert_allclose(y, h @ readout["kernel"] + readout["bias"], **TIGHT)


def test_char_lm_logits_equal_embedding_two_lstm_layers_and_readout():
    """Lecture 13 §4.1: logits_t = V h2_t + c with h1 = LSTM(R[tokens]), h2 = LSTM(h1)."""
    model = create_model("char_lm", vocab_size=5, embed=2, hidden=H, layers=2)
    tokens = np.array([[0, 1, 2, 3, 4], [4, 4, 1, 0, 2]], np.int32)
    with jax.enable_x64(True):
        variables = _init64(model, jnp.zeros((1, 5), jnp.int32))
        logits = _apply64(model, variables, tokens)
    params = variables["params"]
    embedded = params["embedding"]["embedding"][tokens]
    layers = [params[f"recurrent_{i}"] for i in range(2)]
    h, _ = _run_layers("lstm", layers, embedded)
    readout = params["readout"]
    np.testing.assert_allclose(logits, h @ readout["kernel"] + readout["bias"], **TIGHT)


def _load_experiment(name):
    path = Path(__file__).resolve().parent.parent / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"experiments_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _seq2seq_reference(params, source, targets, go_id, reverse_source):
    """Lecture 13 §4.2 encoder-decoder: the encoder LSTM reads each program's tokens before the
    padding (reversed when ``reverse_source``; source id s has embedding row s - 1, PAD has
    none); its final (c, h) starts the decoder, which at step u reads <go> (u = 0) or the true
    target token u - 1 (teacher forcing) -> logits (B, U, V) of target token u."""
    table = params["source_embedding"]["embedding"]
    encoder_inputs, lengths = np.zeros((*source.shape, table.shape[1])), []
    for n, row in enumerate(source):
        tokens = row[row != PAD_ID]
        tokens = tokens[::-1] if reverse_source else tokens
        encoder_inputs[n, : len(tokens)] = table[tokens - 1]
        lengths.append(len(tokens))
    _, encoded = _run("lstm", params["encoder"]["cell"], encoder_inputs, lengths)
    previous = np.concatenate([np.full((len(targets), 1), go_id), targets[:, :-1]], axis=1)
    decoder_inputs = params["target_embedding"]["embedding"][previous]
    h, _ = _run("lstm", params["decoder"]["cell"], decoder_inputs, initial=encoded)
    return h @ params["readout"]["kernel"] + params["readout"]["bias"]


@functools.cache
def _execution_task():
    return make_execution_task(3, seed=0)


@pytest.mark.parametrize("reverse_source", [False, True])
def test_seq2seq_teacher_forcing_equals_the_numpy_encoder_decoder(reverse_source):
    """The experiment's teacher-forcing arrays through the model equal the reference, whose
    decoder reads the previous target token: feeding the current one, dropping the encoder's
    state, or reading the padding would each change the logits."""
    task = _execution_task()
    x, _ = _load_experiment("seq2seq_execute").teacher_forcing_arrays(task)
    source_length = task.source_ids.shape[1]
    model = create_model(
        "seq2seq",
        source_vocab=task.vocab.size,
        target_vocab=task.vocab.size,
        source_length=source_length,
        embed=2,
        hidden=H,
        reverse_source=reverse_source,
    )
    with jax.enable_x64(True):
        variables = _init64(model, jnp.zeros((1, x.shape[1]), jnp.int32))
        logits = _apply64(model, variables, x)
    expected = _seq2seq_reference(
        variables["params"], task.source_ids, task.target_ids, task.vocab.go_id, reverse_source
    )
    np.testing.assert_allclose(logits, expected, **TIGHT)

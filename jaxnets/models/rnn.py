"""Recurrent models: sequence classifiers and regressors, a character language model, seq2seq.

Lectures: seed 004, Lecture 13 "Recurrent Neural Nets" (line 2721): §2 RNNs as sequence
models, §4.1 language modeling (a character-level model: each character is a target before
it is an input, and sampling feeds each sampled character back in), §4.2 neural machine
translation (an encoder reads the source, ``<EOS>`` ends it, a separate decoder generates the
target; Sutskever et al. 2014 reversed the source), §4.3 learning to execute (Zaremba and
Sutskever 2015). Lecture 14 "Learning Long-Term Dependencies" (line 3022): the vanilla RNN,
IRNN, LSTM and GRU compared on the adding problem.

All time loops are the ``lax.scan`` of :mod:`jaxnets.nn.recurrent`; sampling and greedy
decoding are scans too, over arrays fetched once from the bound modules (a scan body must not
call modules that read parameters).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnets.models.cards import token_inputs
from jaxnets.nn.recurrent import (
    Bidirectional,
    Recurrent,
    Stacked,
    make_cell,
    make_recurrent,
    reverse_valid,
)
from jaxnets.registry import register_model
from jaxnets.validation import check_sampling

__all__ = ["PAD_ID", "CharLM", "Seq2Seq", "SequenceModel", "seq2seq_inputs"]

PAD_ID = 0  # padding token of the token-input models (CharLM, Seq2Seq); ids are >= 1 otherwise


def _dense_arrays(dense: nn.Dense) -> tuple[jax.Array, jax.Array]:
    """(kernel, bias) of a bound Dense, for use inside a scan body."""
    params = dense.variables["params"]
    return params["kernel"], params["bias"]


def _last_hidden(module: nn.Module, carry: Any) -> jax.Array:
    """The top layer's final h from the carry of :func:`make_recurrent`'s module."""
    if isinstance(module, Stacked):
        return _last_hidden(module.layers[-1], carry[-1])
    if isinstance(module, Bidirectional):
        return jnp.concatenate(
            [_last_hidden(module.forward, carry[0]), _last_hidden(module.backward, carry[1])], -1
        )
    return module.cell.hidden_state(carry)


class SequenceModel(nn.Module):
    """A recurrent net reading a whole sequence, then a linear readout of its final state.

    Fields: ``cell`` (``rnn``, ``relu_rnn``, ``irnn``, ``lstm``, ``gru``), ``hidden``,
    ``outputs`` (classes, or 1 for a regressor), ``layers``, ``bidirectional``, ``unroll``,
    ``dtype``: the recurrent cells' computation dtype (None: float32; e.g. ``jnp.bfloat16``
    on a GPU); parameters, the readout and its outputs stay float32.

    Call: x (batch, time, features), optional lengths (batch,) -> (batch, outputs) float32:
    logits of a classifier or the prediction of a regressor, from the top layer's h after each
    sequence's last valid step (both directions' final states when bidirectional).
    """

    cell: str = "lstm"
    hidden: int = 64
    outputs: int = 2
    layers: int = 1
    bidirectional: bool = False
    unroll: int | bool = 1
    dtype: Any = None

    def setup(self):
        self.recurrent = make_recurrent(
            self.cell,
            self.hidden,
            layers=self.layers,
            bidirectional=self.bidirectional,
            unroll=self.unroll,
            dtype=self.dtype,
        )
        self.readout = nn.Dense(self.outputs)

    def __call__(self, x: jax.Array, lengths: jax.Array | None = None, *, train: bool = False):
        del train  # no dropout or batch norm
        _, carry = self.recurrent(x, lengths)
        h = _last_hidden(self.recurrent, carry)
        # a bfloat16 (or float16) h goes to the readout as float32; float64 stays float64
        return self.readout(h.astype(jnp.promote_types(h.dtype, jnp.float32)))


class CharLM(nn.Module):
    """Character-level RNN language model (Lecture 13 §4.1).

    Fields: ``vocab_size`` V, ``embed`` (embedding width), ``cell``, ``hidden`` H, ``layers``,
    ``unroll``.

    Call: tokens (batch, time) int32 in [0, V) -> logits (batch, time, V), where step t
    predicts token t + 1 (train on ``x = ids[:-1]``, ``y = ids[1:]``).
    """

    vocab_size: int = 100
    embed: int = 32
    cell: str = "lstm"
    hidden: int = 256
    layers: int = 1
    unroll: int | bool = 1

    def setup(self):
        self.embedding = nn.Embed(self.vocab_size, self.embed)
        self.recurrent = [
            Recurrent(make_cell(self.cell, self.hidden), unroll=self.unroll)
            for _ in range(self.layers)
        ]
        self.readout = nn.Dense(self.vocab_size)

    def _run(self, tokens: jax.Array):
        h = self.embedding(tokens)
        carries = []
        for layer in self.recurrent:
            h, carry = layer(h)
            carries.append(carry)
        return h, carries

    def __call__(self, tokens: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        return self.readout(self._run(tokens)[0])

    def sample(
        self, rng: jax.Array, prompt: jax.Array, length: int, temperature: float = 1.0
    ) -> jax.Array:
        """Continue ``prompt`` (batch, P) int32, P >= 1, by ``length`` sampled tokens.

        Each token is drawn from softmax(logits / temperature) and fed back in as the next
        input; ``temperature == 0`` takes the argmax. Returns (batch, length) int32.
        Call as ``model.apply(variables, rng, prompt, length, method=CharLM.sample)``.
        """
        if prompt.ndim != 2 or prompt.shape[1] < 1:
            raise ValueError(f"prompt must be (batch, P) with P >= 1; got shape {prompt.shape}")
        check_sampling(prompt, self.vocab_size, length, temperature)
        outputs, carries = self._run(prompt)
        table = self.embedding.embedding
        projections = [_dense_arrays(layer.cell.input_to_hidden) for layer in self.recurrent]
        weights = [layer.cell.recurrent_weights() for layer in self.recurrent]
        kernel, bias = _dense_arrays(self.readout)
        steps = [layer.cell.step for layer in self.recurrent]

        def body(state, key):
            carries, h_top = state
            logits = h_top @ kernel + bias
            if temperature == 0:
                token = jnp.argmax(logits, axis=-1)
            else:
                token = jax.random.categorical(key, logits / temperature, axis=-1)
            h = table[token]
            new_carries = []
            for step, (k, b), w, carry in zip(steps, projections, weights, carries, strict=True):
                carry, h = step(w, carry, h @ k + b)
                new_carries.append(carry)
            return (new_carries, h), token.astype(jnp.int32)

        _, tokens = jax.lax.scan(body, (carries, outputs[:, -1]), jax.random.split(rng, length))
        return tokens.T


def seq2seq_inputs(source: jax.Array, decoder_inputs: jax.Array) -> jax.Array:
    """One input array for :class:`Seq2Seq`: source (batch, S) and decoder inputs (batch, U)
    (``<GO>`` then the target shifted right: teacher forcing) -> (batch, S + U) int32."""
    return jnp.concatenate([source, decoder_inputs], axis=1).astype(jnp.int32)


class Seq2Seq(nn.Module):
    """Encoder-decoder (Lecture 13 §4.2): separate encoder and decoder recurrent nets.

    The encoder reads the source (its valid tokens: ids != ``PAD_ID``, padding at the end;
    the padding has no embedding, so ``source_vocab`` counts it but no vector is learned for it),
    optionally reversed (``reverse_source``, Sutskever et al. 2014); its final state starts the
    decoder, which is trained with teacher forcing.

    Fields: ``source_vocab``, ``target_vocab``, ``source_length`` S (the split point of the
    input), ``embed``, ``cell``, ``hidden``, ``reverse_source``, ``unroll``.

    Call: x (batch, S + U) int32 from :func:`seq2seq_inputs` -> logits (batch, U, target_vocab),
    step u predicting target token u.
    """

    source_vocab: int = 32
    target_vocab: int = 32
    source_length: int = 64
    embed: int = 32
    cell: str = "lstm"
    hidden: int = 128
    reverse_source: bool = False
    unroll: int | bool = 1

    def setup(self):
        self.source_embedding = nn.Embed(self.source_vocab - 1, self.embed)  # ids 1.. (no PAD)
        self.target_embedding = nn.Embed(self.target_vocab, self.embed)
        self.encoder = Recurrent(make_cell(self.cell, self.hidden), unroll=self.unroll)
        self.decoder = Recurrent(make_cell(self.cell, self.hidden), unroll=self.unroll)
        self.readout = nn.Dense(self.target_vocab)

    def encode(self, source: jax.Array) -> Any:
        """Encoder's final carry for source (batch, S) int32."""
        lengths = jnp.sum(source != PAD_ID, axis=1)
        if self.reverse_source:
            source = reverse_valid(source, lengths)
        embedded = self.source_embedding(jnp.maximum(source - 1, 0))  # padding is masked out
        _, carry = self.encoder(embedded, lengths)
        return carry

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        if x.ndim != 2 or x.shape[1] <= self.source_length:
            raise ValueError(
                f"Seq2Seq expects (batch, source_length + target steps) = (batch, "
                f"{self.source_length} + U) token ids, U >= 1 (see seq2seq_inputs); got {x.shape}"
            )
        source, decoder_inputs = x[:, : self.source_length], x[:, self.source_length :]
        carry = self.encode(source)
        outputs, _ = self.decoder(self.target_embedding(decoder_inputs), initial_carry=carry)
        return self.readout(outputs)

    def greedy_decode(self, source: jax.Array, length: int, go_id: int) -> jax.Array:
        """Greedy decoding: feed back the argmax token, ``length`` steps from ``go_id``.

        source: (batch, S) int32 -> (batch, length) int32. Call as ``model.apply(variables,
        source, length, go_id, method=Seq2Seq.greedy_decode)``.
        """
        carry = self.encode(source)
        # the decoder's input projection of every target token, computed once
        projected_table = self.decoder.cell.project(self.target_embedding.embedding)
        weights = self.decoder.cell.recurrent_weights()
        kernel, bias = _dense_arrays(self.readout)
        step = self.decoder.cell.step

        def body(state, _):
            carry, token = state
            carry, h = step(weights, carry, projected_table[token])
            token = jnp.argmax(h @ kernel + bias, axis=-1)
            return (carry, token), token.astype(jnp.int32)

        go = jnp.full((source.shape[0],), go_id, jnp.int32)
        _, tokens = jax.lax.scan(body, (carry, go), None, length=length)
        return tokens.T


_LECTURE_13 = "004 Lecture 13 Recurrent Neural Nets (line 2721)"
_LECTURE_14 = "004 Lecture 14 Learning Long-Term Dependencies (line 3022)"
# IRNN (Le, Jaitly and Hinton 2015) is the rnn family with cell="irnn"; registering it
# separately would repeat the same architecture in every registry-wide test.
_CELL_REFERENCES = {
    "rnn": "Elman 1990, Finding structure in time",
    "lstm": "Hochreiter and Schmidhuber 1997, Long short-term memory",
    "gru": "Cho et al. 2014, Learning phrase representations using RNN encoder-decoder",
}
_TINY = {"hidden": 3}
# head: (lecture, task, input shape, loss, outputs): Lecture 13's sequence
# classifier, and the regressor of Lecture 14's adding problem (100 steps of 2 inputs).
_HEADS = {
    "classifier": (f"{_LECTURE_13} §2", "classification", (20, 1), "softmax_cross_entropy", 2),
    "regressor": (f"{_LECTURE_14} §1 adding problem", "regression", (100, 2), "squared_error", 1),
}
_READOUTS = {"classifier": "softmax", "regressor": "linear output"}

for _cell, _reference in _CELL_REFERENCES.items():
    _relu_note = " (cell='irnn' or 'relu_rnn' for ReLU units)" if _cell == "rnn" else ""
    for _head, (_lecture, _task, _input_shape, _loss, _outputs) in _HEADS.items():
        register_model(
            f"{_cell}_{_head}",
            functools.partial(SequenceModel, cell=_cell),
            family="rnn",
            lecture=_lecture,
            reference=_reference,
            task=_task,
            input_shape=_input_shape,
            loss=_loss,
            defaults={"hidden": 64, "outputs": _outputs},
            test_config=_TINY,
            test_input_shape=(4, 2),
            description=f"{_cell.upper()} sequence {_head}: final hidden state -> "
            f"{_READOUTS[_head]}{_relu_note}",
        )

register_model(
    "char_lm",
    CharLM,
    family="rnn",
    lecture=f"{_LECTURE_13} §4.1 language modeling",
    reference="Sutskever, Martens and Hinton 2011, Generating text with recurrent neural networks",
    task="classification",
    **token_inputs(128, vocab=5),
    loss="sequence_cross_entropy",
    defaults={"vocab_size": 100, "hidden": 256},
    test_config={"vocab_size": 5, "embed": 3, "hidden": 3},
    test_input_shape=(4,),
    description="character-level LSTM language model with temperature sampling",
)

register_model(
    "seq2seq",
    Seq2Seq,
    family="rnn",
    lecture=f"{_LECTURE_13} §4.2-4.3 machine translation, learning to execute",
    reference="Sutskever, Vinyals and Le 2014, Sequence to sequence learning with neural networks",
    task="classification",
    **token_inputs(64 + 8, vocab=3),
    loss="sequence_cross_entropy",
    defaults={"source_vocab": 32, "target_vocab": 32, "source_length": 64},
    test_config={
        "source_vocab": 3,
        "target_vocab": 3,
        "source_length": 3,
        "embed": 3,
        "hidden": 3,
    },
    test_input_shape=(3 + 2,),
    description="LSTM encoder-decoder, teacher forcing, greedy decoding, optional reversed source",
)

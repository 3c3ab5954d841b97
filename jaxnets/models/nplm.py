"""The neural probabilistic language model and what its word representations learn.

Lecture: seed 004, Lecture 5 "Distributed Representations" (line 1352), §3 "Neural
Probabilistic Language Model": the network looks up a learned vector (a column of the
representation matrix R) for each of the K context words, concatenates them into the
embedding layer, applies a hidden layer and a softmax over the vocabulary, trained with the
cross-entropy of the next word (Eq. 9-12), with a skip connection from the embedding layer to
the output. §3 then measures what the representations learned: similar words have a large
dot product (cosine) and dissimilar ones a large Euclidean distance (Eq. 13-15; the two agree
for unit vectors), and t-SNE maps them to 2-D.

Reference: Bengio, Ducharme, Vincent and Jauvin 2003, "A neural probabilistic language model",
JMLR 3: y = b + W x + U tanh(d + H x), x the concatenated embeddings; ``direct`` switches the
W x term (the lecture's skip connection).

The n-gram baselines it is compared with live in :mod:`jaxnets.models.language`; the corpus in
:mod:`jaxnets.data.words`.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.data.words import context_windows
from jaxnets.models.cards import token_inputs
from jaxnets.registry import register_model
from jaxnets.validation import check_sampling

__all__ = ["METRICS", "NPLM", "nearest_neighbours", "token_log_probs"]

METRICS = ("cosine", "euclidean")


class NPLM(nn.Module):
    """Neural probabilistic language model (Lecture 5 §3; Bengio et al. 2003).

    Fields: ``vocab_size`` V, ``context`` K (words of context), ``embed`` D (width of a word's
    representation), ``hidden`` H, ``direct`` (the skip connection from the embedding layer to
    the output).

    Call: tokens (batch, K) int32 in [0, V) -> logits (batch, V) of the next word. Parameters:
    ``embedding/embedding`` R (V, D), ``hidden`` (K·D -> H), ``output`` (H -> V) and, when
    ``direct``, ``direct`` (K·D -> V, no bias: ``output`` has it).

    ``dropout`` (a rate, 0 = none) drops units of the embedding and hidden layers while
    training (``train=True``, ``dropout`` rng stream): a corpus of half a million words
    over-fits a model with a million weights within a few epochs otherwise.
    """

    vocab_size: int = 2000
    context: int = 3
    embed: int = 64
    hidden: int = 256
    direct: bool = True
    dropout: float = 0.0

    def setup(self):
        self.embedding = nn.Embed(self.vocab_size, self.embed)
        self.hidden_layer = nn.Dense(self.hidden, name="hidden")
        self.output = nn.Dense(self.vocab_size)
        if self.direct:
            self.direct_layer = nn.Dense(self.vocab_size, use_bias=False, name="direct")
        self.drop = nn.Dropout(self.dropout)

    def __call__(self, tokens: jax.Array, *, train: bool = False) -> jax.Array:
        if tokens.shape[-1] != self.context:
            raise ValueError(
                f"NPLM with context={self.context} takes (batch, {self.context}) token ids; got "
                f"shape {tokens.shape} (build it with context={tokens.shape[-1]}, or cut the "
                "windows with jaxnets.data.context_windows)"
            )
        x = self.embedding(tokens).reshape(*tokens.shape[:-1], self.context * self.embed)
        x = self.drop(x, deterministic=not train)
        h = self.drop(jnp.tanh(self.hidden_layer(x)), deterministic=not train)
        logits = self.output(h)
        if self.direct:
            logits = logits + self.direct_layer(x)
        return logits

    def sample(
        self, rng: jax.Array, prompt: jax.Array, length: int, temperature: float = 1.0
    ) -> jax.Array:
        """Continue each prompt of K words, prompt (batch, K) int32, by ``length`` tokens.

        Each word is drawn from softmax(logits / temperature) given the last K words and slid
        into the context (``temperature == 0`` takes the argmax). Returns (batch, length) int32.
        Call as ``model.apply(variables, rng, prompt, length, method=NPLM.sample)``.
        """
        if prompt.ndim != 2 or prompt.shape[1] != self.context:
            raise ValueError(
                f"prompt must be (batch, {self.context}) token ids (the model's context); got "
                f"shape {prompt.shape}"
            )
        check_sampling(prompt, self.vocab_size, length, temperature)

        def body(context_BxK, key):
            logits = self(context_BxK)
            if temperature == 0:
                token = jnp.argmax(logits, axis=-1)
            else:
                token = jax.random.categorical(key, logits / temperature, axis=-1)
            token = token.astype(jnp.int32)
            return jnp.concatenate([context_BxK[:, 1:], token[:, None]], axis=1), token

        _, tokens = jax.lax.scan(body, prompt.astype(jnp.int32), jax.random.split(rng, length))
        return tokens.T


@functools.partial(jax.jit, static_argnums=0)
def _window_log_probs(model: NPLM, variables, x_NxK: jax.Array, y_N: jax.Array) -> jax.Array:
    logits = model.apply(variables, x_NxK)
    return jnp.take_along_axis(jax.nn.log_softmax(logits), y_N[:, None], axis=-1)[:, 0]


def token_log_probs(
    model: NPLM, variables, ids: np.ndarray, start_id: int, batch_size: int = 8192
) -> np.ndarray:
    """Natural-log probability of every token of a stream under the model.

    Token t is predicted from the K tokens before it, the stream being preceded by K copies of
    ``start_id`` (as :func:`jaxnets.data.context_windows` pads it). ``-mean`` of the result is
    the mean cross-entropy, and ``exp(-mean)`` the perplexity.

    Args:
      model, variables: a trained :class:`NPLM` and its variables.
      ids: (T,) int token ids in [0, V), T >= 1.
      start_id: the id that stands for "before the text" (``<eos>``).
      batch_size: windows per compiled call (the last batch is padded to this size, so every
        call reuses one compilation).

    Returns:
      float64 (T,) log p(w_t | w_{t-K} .. w_{t-1}).
    """
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= model.vocab_size):
        raise ValueError(
            f"token_log_probs: ids must be in [0, {model.vocab_size}) (the model's vocab_size); "
            f"got range [{ids.min()}, {ids.max()}]"
        )
    x, y = context_windows(ids, model.context, start_id=start_id)
    n = len(y)
    batch_size = min(batch_size, n)
    padded = -(-n // batch_size) * batch_size
    x = np.pad(x, ((0, padded - n), (0, 0)))
    y = np.pad(y, (0, padded - n))
    chunks = [
        _window_log_probs(model, variables, x[i : i + batch_size], y[i : i + batch_size])
        for i in range(0, padded, batch_size)
    ]
    return np.concatenate([np.asarray(chunk, np.float64) for chunk in chunks])[:n]


def nearest_neighbours(
    embeddings: np.ndarray, query: int, k: int = 5, metric: str = "cosine"
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``embeddings`` closest to row ``query`` (itself excluded).

    Args:
      embeddings: (V, D) word representations (an NPLM's ``embedding/embedding``).
      query: the row (word id) to start from.
      k: how many neighbours, 1 <= k < V.
      metric: ``"cosine"`` (largest cosine similarity first) or ``"euclidean"`` (smallest
        distance first).

    Returns:
      ``(ids, scores)``, both (k,): neighbour ids, nearest first, and their cosine similarities
      or Euclidean distances.
    """
    table = np.asarray(embeddings, np.float64)
    vocab = len(table)
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
    if not 0 <= query < vocab:
        raise ValueError(f"query id {query} is outside [0, {vocab}) (the embedding's rows)")
    if not 1 <= k < vocab:
        raise ValueError(f"k must be in [1, {vocab - 1}] (the other words); got {k}")
    if metric == "cosine":
        unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
        scores = unit @ unit[query]
        order = np.argsort(-scores, kind="stable")
    else:
        scores = np.linalg.norm(table - table[query], axis=1)
        order = np.argsort(scores, kind="stable")
    order = order[order != query][:k]
    return order, scores[order]


register_model(
    "nplm",
    NPLM,
    family="language",
    lecture="004 Lecture 5 §3 neural probabilistic language model (line 1352)",
    reference="Bengio, Ducharme, Vincent and Jauvin 2003, A neural probabilistic language model",
    task="classification",
    **token_inputs(3, vocab=5),
    loss="softmax_cross_entropy",
    defaults={"vocab_size": 2000, "context": 3},
    test_config={"vocab_size": 5, "context": 2, "embed": 3, "hidden": 4},
    test_input_shape=(2,),
    description="K context words -> shared embeddings, tanh hidden layer, softmax over the "
    "vocabulary, with the direct embedding-to-output connection (direct=False removes it)",
)

"""n-gram language models over integer token ids: the count-based baselines of the neural
language models (character level for the LSTM char LM, word level for the neural
probabilistic language model).

Lectures:
  * seed 004, Lecture 5 "Distributed Representations" (line 1352), §2.1 autoregressive models:
    the chain rule ``p(w_1..w_T) = prod_t p(w_t | w_1..w_{t-1})`` (Eq. 6) with a Markov
    assumption (Eq. 7); §2.2 n-gram models: a conditional probability table estimated from
    empirical counts, ``p(cat | the, fat) = count(the fat cat) / count(the fat)`` (Eq. 8), the
    data sparsity problem, and its two remedies the lecture names, "adding imaginary counts of
    all the words" (add-k smoothing, :func:`fit_ngram`) and "combining the predictions of
    different context lengths" (interpolation, :func:`fit_interpolated`).
  * seed 004, Lecture 13 "Recurrent Neural Nets" (line 2721), §4.1 language modeling: the
    memoryless models an RNN is compared against.

Conventions shared by every model here:
  * Counts live on the host in numpy. The n-gram ``(x_1, ..., x_n)`` is stored as the integer
    key ``(..((x_1 V + x_2) V + ..) V + x_n`` in a sorted array (``np.unique``), so memory grows
    with the number of *distinct* n-grams seen, not with ``V**n``: a 2000-word trigram model is
    as cheap as a 100-character one. Scoring is a few ``np.searchsorted`` calls per order over
    the whole text: a million tokens of a 2000-word trigram model score in about a second.
  * Context, start of the stream and unseen contexts are one rule: token ``t`` is predicted
    from the longest suffix of its preceding context, of at most ``order - 1`` tokens, that
    occurs as a context in the training text. So the first token of a stream is scored by the
    unigram estimate and the second by the bigram estimate (there is no padding symbol), and a
    context never seen in training backs off to a shorter one instead of falling back to
    add-k's uniform ``1/V``. Every conditional distribution still sums to 1 over the vocabulary.
  * An order-``m`` estimate for a seen context is add-k smoothed,
    ``p(w | c) = (count(c w) + k) / (count(c) + k V)`` with ``count(c) = sum_w count(c w)``.
    With ``k = 0`` (maximum likelihood) an unseen continuation has probability 0: its
    ``log_prob`` is ``-inf`` and the perplexity is ``inf``, the sparsity problem of §2.2.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import NamedTuple

import numpy as np

__all__ = ["InterpolatedNGram", "NGramModel", "fit_add_k", "fit_interpolated", "fit_ngram"]

_ORDERS = (1, 2, 3)
_MAX_KEY = np.iinfo(np.int64).max
# EM leaves a weight > 0 whenever its component gives any validation token p > 0; the floor
# only keeps a component that never helps (probability 0 on all of them) from reaching 0.
_MIN_WEIGHT = 1e-9


class _CountTable(NamedTuple):
    """Counts of the n-grams of one order, sorted by key so that lookups are binary searches.

    ngram_keys: (num_ngrams,) int64 sorted distinct n-gram keys; ngram_counts: (num_ngrams,).
    context_keys: (num_contexts,) int64 sorted distinct context keys (``ngram_key // V``);
    context_totals: (num_contexts,) ``count(c) = sum_w count(c w)``.
    """

    ngram_keys: np.ndarray
    ngram_counts: np.ndarray
    context_keys: np.ndarray
    context_totals: np.ndarray


def _check_order(order: int) -> None:
    if order not in _ORDERS:
        raise ValueError(f"order must be 1 (unigram), 2 (bigram) or 3 (trigram), got {order!r}")


def _check_add_k(add_k: float, positive: bool = False) -> None:
    bad = not math.isfinite(add_k) or add_k < 0 or (positive and add_k == 0)
    if bad:
        need = "> 0" if positive else ">= 0 (0 is maximum likelihood)"
        raise ValueError(f"add_k must be a finite number {need}, got {add_k!r}")


def _check_vocab_size(vocab_size: int, order: int) -> None:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)):
        raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    if vocab_size**order > _MAX_KEY:
        raise ValueError(
            f"vocab_size={vocab_size} is too large for order {order}: n-gram keys need "
            f"vocab_size**{order} = {vocab_size**order} <= 2**63 - 1 to fit in int64"
        )


def _as_ids(ids, vocab_size: int, name: str, allow_empty: bool = False) -> np.ndarray:
    """Validate a token stream: returns ``ids`` as (T,) int64, every id in [0, vocab_size)."""
    array = np.asarray(ids)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D stream of token ids, got shape {array.shape}")
    if array.size == 0:
        if allow_empty:
            return array.astype(np.int64)
        raise ValueError(f"{name} is empty: expected at least one token id")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer token ids, got dtype {array.dtype}")
    outside = np.flatnonzero((array < 0) | (array >= vocab_size))
    if outside.size:
        position = int(outside[0])
        raise ValueError(
            f"{name}[{position}] = {int(array[position])} is outside [0, vocab_size="
            f"{vocab_size}) ({outside.size} ids outside in all); ids must be < vocab_size"
        )
    return array.astype(np.int64)


def _ngram_keys(ids_T: np.ndarray, n: int, vocab_size: int) -> np.ndarray:
    """Keys of the T - n + 1 n-grams of ``ids_T`` (T,): (T - n + 1,) int64, ending at t = n-1.."""
    length = len(ids_T) - n + 1
    keys = ids_T[:length].copy()
    for offset in range(1, n):
        keys = keys * vocab_size + ids_T[offset : offset + length]
    return keys


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``values`` at the positions of ``queries`` in ``sorted_keys``, 0 where absent."""
    index = np.minimum(np.searchsorted(sorted_keys, queries), len(sorted_keys) - 1)
    return np.where(sorted_keys[index] == queries, values[index], 0)


def _count(train_T: np.ndarray, n: int, vocab_size: int) -> _CountTable:
    keys, counts = np.unique(_ngram_keys(train_T, n, vocab_size), return_counts=True)
    # keys are sorted, so each context's n-grams form one run; reduceat sums the runs.
    context_keys, run_starts = np.unique(keys // vocab_size, return_index=True)
    return _CountTable(keys, counts, context_keys, np.add.reduceat(counts, run_starts))


def _draw(rng: np.random.Generator, probs_V: np.ndarray) -> int:
    cdf = np.cumsum(probs_V)
    # u < cdf[-1] and side="right" never pick a token of probability 0, even after rounding.
    return int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))


class _TokenModel(abc.ABC):
    """What every model here derives from ``_probs`` (per-token probabilities of a stream),
    ``_next_probs`` (the distribution after a context), ``vocab_size`` and ``order``."""

    vocab_size: int
    order: int

    @abc.abstractmethod
    def _probs(self, ids_T: np.ndarray) -> np.ndarray:
        """ids_T: (T,) validated ids -> (T,) probability of each token given its context."""

    @abc.abstractmethod
    def _next_probs(self, context: np.ndarray) -> np.ndarray:
        """context: (C,) validated ids -> (vocab_size,) distribution of the next token."""

    def log_prob(self, ids, prompt=()) -> np.ndarray:
        """Natural-log probability of each token given the tokens before it in the same stream.

        Args:
          ids: (T,) integer token ids in [0, vocab_size), T >= 1.
          prompt: (P,) ids that precede the stream as context but are not scored (e.g. an
            ``<eos>`` so the first token is scored as the start of a passage).
        Returns:
          (T,) float64; entry t is ``log p(ids[t] | ids[max(0, t-order+1):t])`` under the
          longest-seen-suffix rule of the module docstring (so without a prompt entry 0 is the
          unigram estimate). ``-inf`` where a maximum-likelihood model gives probability 0.
        """
        ids_T = _as_ids(ids, self.vocab_size, "ids")
        prompt_P = _as_ids(prompt, self.vocab_size, "prompt", allow_empty=True)
        probs_T = self._probs(np.concatenate([prompt_P, ids_T]))[len(prompt_P) :]
        with np.errstate(divide="ignore"):
            return np.log(probs_T)

    def bits_per_token(self, ids, prompt=()) -> float:
        """Mean ``-log2 p`` over the T tokens of ``ids`` (T,) after ``prompt``: the
        cross-entropy in bits."""
        return float(-np.mean(self.log_prob(ids, prompt)) / math.log(2))

    def perplexity(self, ids, prompt=()) -> float:
        """``exp`` of the mean negative log probability of ``ids`` (T,) after ``prompt``,
        i.e. ``2**bits``."""
        return float(np.exp(-np.mean(self.log_prob(ids, prompt))))

    def next_token_probs(self, context=()) -> np.ndarray:
        """The distribution of the token that follows ``context``.

        Args:
          context: (C,) integer ids, C >= 0; only the last ``order - 1`` are used.
        Returns:
          (vocab_size,) float64 probabilities summing to 1.
        """
        return self._next_probs(_as_ids(context, self.vocab_size, "context", allow_empty=True))

    def sample(self, rng: np.random.Generator | int, length: int, prompt=None) -> np.ndarray:
        """Generate ``length`` tokens, each drawn from ``next_token_probs`` of what precedes it.

        Args:
          rng: a ``np.random.Generator``, or an int seed for one; the same seed gives the same
            tokens.
          length: number of tokens to generate, >= 0.
          prompt: optional (P,) ids the generated text continues; without one the first token
            comes from the unigram estimate, as at the start of a scored stream.
        Returns:
          (length,) int64 ids in [0, vocab_size), without the prompt.
        """
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
            raise ValueError(f"length must be an int >= 0, got {length!r}")
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        prompt_ids = () if prompt is None else prompt
        context = list(_as_ids(prompt_ids, self.vocab_size, "prompt", allow_empty=True))
        kept = self.order - 1
        del context[: max(0, len(context) - kept)]
        generated = np.empty(length, dtype=np.int64)
        for t in range(length):
            generated[t] = _draw(rng, self._next_probs(np.asarray(context, dtype=np.int64)))
            context.append(int(generated[t]))
            del context[: max(0, len(context) - kept)]
        return generated


@dataclasses.dataclass(frozen=True, eq=False)
class NGramModel(_TokenModel):
    """An add-k smoothed n-gram model (a conditional probability table, Lecture 5 §2.2).

    Build it with :func:`fit_ngram`. ``log_prob(ids)`` (T,) -> (T,), ``perplexity``,
    ``bits_per_token``, ``next_token_probs(context)`` -> (vocab_size,) and
    ``sample(rng, length, prompt)`` -> (length,) are defined on :class:`_TokenModel`.

    Attributes:
      vocab_size: V, ids are in [0, V).
      order: n in {1, 2, 3}; the context is the previous n - 1 tokens.
      add_k: k >= 0 imaginary counts added to every (context, token) pair of a seen context.
      tables: one count table per order 1..n (the lower orders score the first tokens of a
        stream and back off from contexts not seen in training).
    """

    vocab_size: int
    order: int
    add_k: float
    tables: tuple[_CountTable, ...]

    def _estimate(self, table: _CountTable, ngram_keys: np.ndarray) -> tuple:
        """(seen, p): whether each key's context was seen, and its add-k probability there."""
        totals = _lookup(table.context_keys, table.context_totals, ngram_keys // self.vocab_size)
        counts = _lookup(table.ngram_keys, table.ngram_counts, ngram_keys)
        seen = totals > 0
        denominator = np.where(seen, totals + self.add_k * self.vocab_size, 1.0)
        return seen, (counts + self.add_k) / denominator

    def _probs(self, ids_T: np.ndarray) -> np.ndarray:
        probs_T = np.empty(len(ids_T))
        # Lower orders first, so a higher order overwrites exactly where its context was seen;
        # the unigram's empty context is always seen, so every entry gets a value.
        for n, table in enumerate(self.tables[: len(ids_T)], start=1):
            seen, estimate = self._estimate(table, _ngram_keys(ids_T, n, self.vocab_size))
            probs_T[n - 1 :] = np.where(seen, estimate, probs_T[n - 1 :])
        return probs_T

    def _next_probs(self, context: np.ndarray) -> np.ndarray:
        vocab = self.vocab_size
        for n in range(min(self.order, len(context) + 1), 0, -1):
            table = self.tables[n - 1]
            context_key = 0
            for token in context[len(context) - n + 1 :] if n > 1 else ():
                context_key = context_key * vocab + int(token)
            total = _lookup(table.context_keys, table.context_totals, context_key)
            if total:
                bounds = np.array([context_key, context_key + 1]) * vocab
                run = slice(*np.searchsorted(table.ngram_keys, bounds))
                counts_V = np.zeros(vocab)
                counts_V[table.ngram_keys[run] - context_key * vocab] = table.ngram_counts[run]
                return (counts_V + self.add_k) / (total + self.add_k * vocab)
        raise AssertionError("the unigram's empty context is always seen")  # pragma: no cover


@dataclasses.dataclass(frozen=True, eq=False)
class InterpolatedNGram(_TokenModel):
    """Linear interpolation of n-gram models, ``p = sum_m weights[m-1] p_m`` (Jelinek–Mercer
    smoothing: "combining the predictions of different context lengths", Lecture 5 §2.2).

    Build it with :func:`fit_interpolated`. Same methods as :class:`NGramModel`.

    Attributes:
      components: the models of orders 1..n, ``components[m-1].order == m``, sharing a
        vocabulary; the unigram must give every token probability > 0 (add_k > 0).
      weights: n floats, each > 0, summing to 1; so every token has probability > 0.
    """

    components: tuple[NGramModel, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        orders = tuple(component.order for component in self.components)
        if not 1 <= len(orders) <= 3 or orders != tuple(range(1, len(orders) + 1)):
            raise ValueError(f"components must have orders 1..n (n <= 3), got orders {orders}")
        if len({component.vocab_size for component in self.components}) != 1:
            raise ValueError("components must share one vocab_size")
        if self.components[0].add_k <= 0:
            raise ValueError("the unigram component needs add_k > 0 so no token has p = 0")
        weights = np.asarray(self.weights, dtype=float)
        if weights.shape != (len(orders),) or np.any(weights <= 0):
            raise ValueError(f"weights must be {len(orders)} numbers > 0, got {self.weights}")
        if abs(weights.sum() - 1) > 1e-9:
            raise ValueError(f"weights must sum to 1, got sum {weights.sum()!r}")

    @property
    def vocab_size(self) -> int:
        return self.components[0].vocab_size

    @property
    def order(self) -> int:
        return len(self.components)

    def _probs(self, ids_T: np.ndarray) -> np.ndarray:
        return np.asarray(self.weights) @ np.stack(
            [model._probs(ids_T) for model in self.components]
        )

    def _next_probs(self, context: np.ndarray) -> np.ndarray:
        probs_MxV = np.stack([model._next_probs(context) for model in self.components])
        return np.asarray(self.weights) @ probs_MxV


def fit_ngram(train_ids, vocab_size: int, order: int, add_k: float = 1.0) -> NGramModel:
    """Count the n-grams of orders 1..``order`` in a training stream.

    Args:
      train_ids: (T,) integer token ids in [0, vocab_size), T >= order (at least one n-gram).
      vocab_size: V.
      order: 1 (unigram), 2 (bigram) or 3 (trigram).
      add_k: imaginary count k >= 0 added to every (seen context, token) pair; the default 1 is
        Laplace smoothing, 0 the maximum-likelihood estimate of Lecture 5 Eq. 8.
    Returns:
      The fitted :class:`NGramModel`.
    """
    _check_order(order)
    _check_add_k(add_k)
    _check_vocab_size(vocab_size, order)
    train_T = _as_ids(train_ids, vocab_size, "train_ids")
    if len(train_T) < order:
        raise ValueError(
            f"train_ids has {len(train_T)} tokens, but an order-{order} model needs at least "
            f"{order} to count one {order}-gram"
        )
    tables = tuple(_count(train_T, n, vocab_size) for n in range(1, order + 1))
    return NGramModel(int(vocab_size), order, float(add_k), tables)


def fit_add_k(
    train_ids, val_ids, vocab_size: int, order: int, ks=(1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
) -> NGramModel:
    """The add-k model of ``order`` whose imaginary count ``k`` (one of ``ks``, each > 0) gives
    the lowest validation perplexity.

    Args:
      train_ids: (T,) ids in [0, vocab_size), T >= order; the counts come from here.
      val_ids: (T_val,) ids in [0, vocab_size), T_val >= 1; only k is chosen here.
      vocab_size: V; order: 1, 2 or 3; ks: the candidate k values.
    Returns:
      The fitted :class:`NGramModel` (its ``add_k`` is the chosen k).
    """
    if not ks:
        raise ValueError("fit_add_k: ks is empty; give at least one candidate k > 0")
    for k in ks:
        _check_add_k(k, positive=True)
    full = fit_ngram(train_ids, vocab_size, order, add_k=ks[0])
    candidates = [dataclasses.replace(full, add_k=float(k)) for k in ks]
    return min(candidates, key=lambda model: model.perplexity(val_ids))


def fit_interpolated(
    train_ids,
    val_ids,
    vocab_size: int,
    order: int = 3,
    add_k: float = 1.0,
    max_iter: int = 500,
    tol: float = 1e-10,
) -> InterpolatedNGram:
    """Interpolate the orders 1..``order`` with weights that maximise validation likelihood.

    The components are the add-k unigram (so every token keeps probability > 0) and the
    maximum-likelihood (k = 0) higher orders: in Jelinek–Mercer smoothing the mixture with the
    lower orders is what smooths them. The weights are fitted by EM on ``val_ids`` (Jelinek &
    Mercer 1980, "Interpolated estimation of Markov source parameters from sparse data"; Chen &
    Goodman 1998, "An empirical study of smoothing techniques for language modeling"): the
    validation log likelihood is concave in the weights, and each EM step (weights <- mean
    posterior responsibility of each component) never decreases it, so EM from the uniform
    start converges to the best weights on the simplex. It stops when an iteration gains less
    than ``tol`` nats per token.

    Args:
      train_ids: (T,) ids in [0, vocab_size), T >= order; the counts come from here.
      val_ids: (T_val,) ids in [0, vocab_size), T_val >= 1; only the weights come from here.
      vocab_size: V.
      order: the highest order, 1, 2 or 3.
      add_k: the unigram's imaginary count, > 0.
      max_iter: at most this many EM iterations.
      tol: convergence threshold in nats per validation token.
    Returns:
      The fitted :class:`InterpolatedNGram`; ``weights`` are > 0 and sum to 1.
    """
    _check_add_k(add_k, positive=True)
    full = fit_ngram(train_ids, vocab_size, order, add_k=0.0)
    components = tuple(
        dataclasses.replace(
            full, order=n, add_k=float(add_k) if n == 1 else 0.0, tables=full.tables[:n]
        )
        for n in range(1, order + 1)
    )
    val_T = _as_ids(val_ids, vocab_size, "val_ids")
    probs_TxM = np.stack([model._probs(val_T) for model in components], axis=1)
    weights_M = np.full(order, 1.0 / order)
    log_likelihood = -np.inf
    for _ in range(max_iter):
        mixture_T = probs_TxM @ weights_M
        previous, log_likelihood = log_likelihood, float(np.mean(np.log(mixture_T)))
        if log_likelihood - previous < tol:
            break
        weights_M = np.mean(probs_TxM * weights_M / mixture_T[:, None], axis=0)
    weights_M = np.maximum(weights_M, _MIN_WEIGHT)
    return InterpolatedNGram(components, tuple(float(w) for w in weights_M / weights_M.sum()))

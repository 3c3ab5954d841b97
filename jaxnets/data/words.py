"""A word corpus from the docstrings and comments of the Python standard library.

Lecture: seed 004, Lecture 5 "Distributed Representations" (line 1352), §2 "Motivation:
Language Modeling": a corpus is a sequence of words ``w_1, w_2, ...``, each word an arbitrary
integer index into a dictionary, and a memoryless (Markov) model predicts the next word from
the previous few (Eq. 7). :func:`load_word_corpus` gives the n-gram models and the neural
probabilistic language model English text without a download: the prose the standard library
writes about itself. :func:`context_windows` cuts it into (K context words, next word) pairs.

How the text is read, so the corpus is reproducible:
  * Files are those of :func:`jaxnets.data.text.stdlib_source_files` (``encodings/``, whose
    code-page tables are near-identical comments, and test suites are left out), split
    train/val/test *by file* after a seeded shuffle.
  * A file's *passages* are its docstrings (module, class and function, via :mod:`ast`) and
    its comment blocks (runs of ``#`` comments on consecutive lines, via :mod:`tokenize`), in
    source order. A file Python cannot parse contributes nothing.
  * Each passage is lower-cased and split into tokens (:data:`TOKEN_PATTERN`): words made of
    letters (with one inner apostrophe: ``don't``), runs of digits, and the punctuation ``.``
    and ``,`` (sentence structure the models can use). Each passage ends with ``<eos>``.
  * The vocabulary is the most frequent training tokens (ties in alphabetical order) after
    the specials ``<eos>`` = 0 and ``<unk>`` = 1; every other token becomes ``<unk>``.

The text differs between Python versions (3.11 here, 3.12 on the GPU machine);
:class:`WordCorpus` records the version and the files of each split.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import io
import re
import tokenize
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from jaxnets.data.text import StdlibCorpus, read_split_files, stdlib_root, stdlib_source_files

__all__ = [
    "TOKEN_PATTERN",
    "WordCorpus",
    "WordVocab",
    "context_windows",
    "load_word_corpus",
    "source_passages",
    "tokenize_words",
]

TOKEN_PATTERN = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9]+|[.,]")
EOS, UNK = "<eos>", "<unk>"
_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def tokenize_words(text: str) -> list[str]:
    """Lower-case ``text`` and split it into :data:`TOKEN_PATTERN` tokens (words, digit runs,
    ``.`` and ``,``); everything else is a separator. ``"Don't panic, 42 times."`` gives
    ``["don't", "panic", ",", "42", "times", "."]``."""
    return TOKEN_PATTERN.findall(text.lower())


def source_passages(source: str) -> list[str]:
    """The docstrings and comment blocks of one Python source text, in source order.

    A comment block is a run of ``#`` comments on consecutive lines, joined with spaces and
    without the ``#``. Returns [] when ``source`` is not valid Python.
    """
    try:
        tree = ast.parse(source)
        comments = [
            token
            for token in tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type == tokenize.COMMENT
        ]
    except (SyntaxError, ValueError, tokenize.TokenError):
        return []
    passages = []  # (first line, text)
    for node in ast.walk(tree):
        if isinstance(node, _DOCUMENTED) and (docstring := ast.get_docstring(node)):
            passages.append((node.body[0].lineno, docstring))
    block, block_line, last_line = [], 0, -2
    for token in comments:
        line = token.start[0]
        if line != last_line + 1 and block:
            passages.append((block_line, " ".join(block)))
            block = []
        if not block:
            block_line = line
        block.append(token.string.lstrip("#").strip())
        last_line = line
    if block:
        passages.append((block_line, " ".join(block)))
    return [text for _, text in sorted(passages, key=lambda item: item[0])]


@dataclasses.dataclass(frozen=True)
class WordVocab:
    """A word vocabulary: ``<eos>`` = 0, ``<unk>`` = 1, then words from most to least frequent.

    Attributes:
      words: every token, index = id (the specials first).
      counts: training count of each token (``<unk>`` counts the tokens it replaced).
    """

    words: tuple[str, ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.words[:2] != (EOS, UNK):
            raise ValueError(
                f"WordVocab: the first tokens must be {(EOS, UNK)}; got {self.words[:2]}"
            )
        if len(set(self.words)) != len(self.words):
            raise ValueError("WordVocab: tokens must be distinct")
        if len(self.counts) != len(self.words):
            raise ValueError(f"WordVocab: {len(self.words)} tokens but {len(self.counts)} counts")
        object.__setattr__(self, "_index", {word: i for i, word in enumerate(self.words)})

    @classmethod
    def from_tokens(cls, tokens: Iterable[str], size: int) -> WordVocab:
        """The ``size - 2`` most frequent ``tokens`` (ties alphabetical) after the specials.

        Args:
          tokens: the training tokens (``<eos>`` entries are counted as ``<eos>``).
          size: total vocabulary size V including ``<eos>`` and ``<unk>``, >= 3.
        """
        if size < 3:
            raise ValueError(f"WordVocab: size must be >= 3 (<eos>, <unk> and a word); got {size}")
        counts = Counter(tokens)
        if not counts:
            raise ValueError(
                "WordVocab: empty text; there are no tokens to build a vocabulary from"
            )
        eos_count = counts.pop(EOS, 0)
        counts.pop(UNK, None)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        kept, dropped = ranked[: size - 2], ranked[size - 2 :]
        unk_count = sum(count for _, count in dropped)
        return cls(
            words=(EOS, UNK, *(word for word, _ in kept)),
            counts=(eos_count, unk_count, *(count for _, count in kept)),
        )

    @property
    def size(self) -> int:
        """V, the number of token ids."""
        return len(self.words)

    def __len__(self) -> int:
        return len(self.words)

    @property
    def eos_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    def token_id(self, word: str) -> int:
        """The id of ``word``; a ``KeyError`` naming close matches when it is not in the
        vocabulary (use :meth:`encode` to map unknown words to ``<unk>``)."""
        try:
            return self._index[word]
        except KeyError:
            close = difflib.get_close_matches(word, self.words, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise KeyError(
                f"{word!r} is not in the {self.size}-token vocabulary{hint} (lower-case words "
                f"from the training text; vocab.words lists them)"
            ) from None

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """tokens (n,) -> int32 ids (n,); a token outside the vocabulary becomes ``<unk>``."""
        index = self._index
        return np.fromiter((index.get(token, 1) for token in tokens), dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> list[str]:
        """ids (n,) -> tokens (n,); an id outside [0, V) raises a ``ValueError``."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        bad = [i for i in ids if not 0 <= i < self.size]
        if bad:
            raise ValueError(f"WordVocab.decode: ids must be in [0, {self.size}); got {bad[:5]}")
        return [self.words[i] for i in ids]


@dataclasses.dataclass(frozen=True, eq=False)
class WordCorpus(StdlibCorpus):
    """A word corpus split by file (the fields of :class:`jaxnets.data.text.StdlibCorpus`, in
    words: each split's passages, each passage followed by ``<eos>``).

    Attributes:
      vocab: built from the training tokens only.
    """

    vocab: WordVocab


def _split_tokens(files: list[tuple[str, str]]) -> list[str]:
    tokens = []
    for _, source in files:
        for passage in source_passages(source):
            words = tokenize_words(passage)
            if words:
                tokens.extend(words)
                tokens.append(EOS)
    return tokens


def load_word_corpus(
    vocab_size: int = 2000,
    seed: int = 0,
    split: Sequence[float] | Sequence[int] = (0.8, 0.1, 0.1),
    max_files: int | None = None,
) -> WordCorpus:
    """The standard library's docstrings and comments as a word-level corpus.

    About 530k tokens on Python 3.11 (reading takes about 15 s: :mod:`tokenize` is pure Python);
    the 2000 most frequent tokens cover about 90% of them.

    Args:
      vocab_size: V, including ``<eos>`` and ``<unk>``.
      seed: seeds the shuffle of the files before they are split.
      split: fractions of files (train, val, test) summing to 1, or three numbers of files.
      max_files: read only the first ``max_files`` files of the sorted list (fast tests).

    Returns:
      a :class:`WordCorpus` whose splits are int32 ``(n_tokens,)``.
    """
    root = stdlib_root()
    parts = read_split_files(stdlib_source_files(max_files), root, split, seed, None)
    tokens = [_split_tokens(part) for part in parts]
    for name, split_tokens, part in zip(("train", "val", "test"), tokens, parts, strict=True):
        if not split_tokens:
            raise ValueError(
                f"load_word_corpus: the {name} split ({len(part)} files) has no docstring or "
                "comment text; use more files (max_files) or a different split"
            )
    vocab = WordVocab.from_tokens(tokens[0], vocab_size)
    ids = [vocab.encode(split_tokens) for split_tokens in tokens]
    return WordCorpus.from_splits(parts, ids, root, vocab=vocab)


def context_windows(
    ids: np.ndarray, context: int, start_id: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(K context words, next word) pairs for a memoryless language model (Lecture 5 Eq. 7).

    With ``start_id`` (e.g. the ``<eos>`` id) the stream is preceded by ``K`` copies of it, so
    *every* token gets a pair and the first is predicted from "start of text", as the n-gram
    models score it; without, the first ``K`` tokens serve only as context.

    Args:
      ids: ``(T,)`` token ids.
      context: K >= 1 context words.
      start_id: the id that pads the start, or None.

    Returns:
      ``(x, y)``: int32 ``(n, K)`` contexts and ``(n,)`` next words, ``n = T`` with
      ``start_id`` and ``T - K`` without.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"context_windows: ids must be 1-D (T,); got shape {ids.shape}")
    if context < 1:
        raise ValueError(f"context_windows: context must be >= 1 word; got {context}")
    if len(ids) == 0:
        raise ValueError("context_windows: empty text; there is no word to predict")
    if start_id is not None:
        ids = np.concatenate([np.full(context, start_id, ids.dtype), ids])
    elif len(ids) <= context:
        raise ValueError(
            f"context_windows: a context of {context} words is longer than the text minus its "
            f"last word ({len(ids)} tokens; need at least {context + 1}); pass start_id to pad "
            "the start, or use a shorter context"
        )
    windows = np.lib.stride_tricks.sliding_window_view(ids, context + 1)
    return windows[:, :-1].astype(np.int32), windows[:, -1].astype(np.int32)

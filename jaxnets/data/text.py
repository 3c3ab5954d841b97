"""Character vocabularies and a text corpus built from the Python standard library's source.

Lecture: seed 004, Lecture 13 "Recurrent Neural Nets" (line 2721), §4.1 "Language Modeling"
(line 2914): an RNN can model text one *character* at a time, so the vocabulary is small and
no word is ever out of vocabulary; §4.2 (line 2957): the special ``<EOS>`` token marks the end
of a sequence. :class:`CharVocab` holds those tokens; :func:`load_char_corpus` gives a
character language model something to read without a download: the ``.py`` files of the
standard library of the running Python.

The corpus therefore depends on the Python version (3.11 here, 3.12 on the GPU machine give
different files and text); :class:`CharCorpus` records the version and the files of each
split. Splits are made by *file*, so no file contributes text to two splits.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sysconfig
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from jaxnets.data.dataset import split_sizes

__all__ = [
    "CharCorpus",
    "CharVocab",
    "StdlibCorpus",
    "load_char_corpus",
    "read_split_files",
    "sequence_windows",
    "stdlib_root",
    "stdlib_source_files",
]

DEFAULT_SPECIALS = ("<pad>", "<eos>", "<go>", "<unk>")
# What decode() writes for <unk>: the Unicode replacement character, one character wide.
_UNK_CHAR = "\N{REPLACEMENT CHARACTER}"
# Folders never read: installed packages, test suites and their deliberately broken data
# files (lib2to3/tests/data, idlelib/idle_test), and encodings/ (code-page tables: long runs
# of escaped byte maps that would dominate a character model's statistics).
_EXCLUDED_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idle_test", "encodings", "__pycache__"}
)


def _special_id(token: str, role: str) -> property:
    """A read-only ``CharVocab`` property: the id of the special ``token``, which ``role``."""
    return property(lambda vocab: vocab.token_id(token), doc=f"Id of ``{token}``, which {role}.")


@dataclasses.dataclass(frozen=True)
class CharVocab:
    """A character vocabulary with special tokens first.

    Ids ``0 .. len(specials) - 1`` are the special tokens (by default ``<pad>`` = 0,
    ``<eos>`` = 1, ``<go>`` = 2, ``<unk>`` = 3); the characters follow in code-point order.
    Characters not in the vocabulary encode to ``<unk>`` when the vocabulary has that token
    (a character model's val/test text may hold characters its training text never showed);
    a vocabulary without ``<unk>`` raises a ``ValueError`` naming the character instead.

    Attributes:
      specials: the special tokens, each a string of two or more characters (so it can never
        be confused with a text character).
      chars: the text characters, sorted by code point.
    """

    specials: tuple[str, ...]
    chars: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(set(self.specials)) != len(self.specials) or any(len(s) < 2 for s in self.specials):
            raise ValueError(
                "CharVocab: specials must be distinct tokens of two or more characters, such "
                f"as {DEFAULT_SPECIALS}; got {self.specials}"
            )
        if list(self.chars) != sorted(set(self.chars)) or any(len(c) != 1 for c in self.chars):
            raise ValueError(
                "CharVocab: chars must be distinct single characters sorted by code point; "
                f"got {self.chars[:20]}{'...' if len(self.chars) > 20 else ''}"
            )
        object.__setattr__(
            self, "_codepoints", np.array([ord(c) for c in self.chars], dtype=np.uint32)
        )

    @classmethod
    def from_text(
        cls, text: str, specials: Sequence[str] = DEFAULT_SPECIALS, min_count: int = 1
    ) -> CharVocab:
        """The characters of ``text`` seen at least ``min_count`` times, plus ``specials``.

        Rarer characters are left out, so they encode to ``<unk>``.
        """
        if min_count < 1:
            raise ValueError(f"CharVocab.from_text: min_count must be >= 1; got {min_count}")
        counts = Counter(text)
        chars = sorted(c for c, count in counts.items() if count >= min_count)
        return cls(specials=tuple(specials), chars=tuple(chars))

    @property
    def size(self) -> int:
        """Number of ids: specials plus characters."""
        return len(self.specials) + len(self.chars)

    def __len__(self) -> int:
        return self.size

    def token_id(self, token: str) -> int:
        """The id of a special token (``"<eos>"``) or of a single character."""
        if token in self.specials:
            return self.specials.index(token)
        if len(token) == 1:
            position = int(np.searchsorted(self._codepoints, ord(token)))
            if position < len(self.chars) and self.chars[position] == token:
                return len(self.specials) + position
        raise KeyError(
            f"CharVocab: {token!r} is neither a special token {self.specials} nor one of the "
            f"{len(self.chars)} characters of this vocabulary"
        )

    pad_id = _special_id("<pad>", "fills sequences up to a common length")
    eos_id = _special_id("<eos>", "ends a sequence")
    go_id = _special_id("<go>", "is the first decoder input of a sequence-to-sequence model")
    unk_id = _special_id("<unk>", "stands for every character outside the vocabulary")

    def encode(self, text: str) -> np.ndarray:
        """Character ids of ``text``: int32 ``(len(text),)``, no ``<eos>`` appended."""
        codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        positions = np.searchsorted(self._codepoints, codepoints)
        in_range = positions < len(self.chars)
        known = in_range.copy()
        known[in_range] = self._codepoints[positions[in_range]] == codepoints[in_range]
        ids = (positions + len(self.specials)).astype(np.int32)
        if not known.all():
            if "<unk>" not in self.specials:
                first = chr(int(codepoints[~known][0]))
                raise ValueError(
                    f"CharVocab.encode: character {first!r} is not in the vocabulary and there "
                    f"is no <unk> token among the specials {self.specials}; build the "
                    "vocabulary from text containing it, or include '<unk>' in specials"
                )
            ids[~known] = self.unk_id
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` (any 1-D sequence of ids), up to the first ``<eos>``.

        ``<pad>`` and ``<go>`` are dropped, ``<unk>`` becomes U+FFFD, other specials are
        written as their token.
        """
        silent = {self.specials.index(t) for t in ("<pad>", "<go>") if t in self.specials}
        eos = self.specials.index("<eos>") if "<eos>" in self.specials else None
        unk = self.specials.index("<unk>") if "<unk>" in self.specials else None
        n_specials = len(self.specials)
        pieces = []
        for raw in np.asarray(ids).reshape(-1).tolist():
            if not 0 <= raw < self.size:
                raise ValueError(
                    f"CharVocab.decode: id {raw} is outside the vocabulary [0, {self.size})"
                )
            if raw == eos:
                break
            if raw in silent:
                continue
            if raw == unk:
                pieces.append(_UNK_CHAR)
            elif raw < n_specials:
                pieces.append(self.specials[raw])
            else:
                pieces.append(self.chars[raw - n_specials])
        return "".join(pieces)


def stdlib_root() -> Path:
    """The standard library folder of the running Python (``sysconfig``'s ``stdlib`` path)."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_source_files(max_files: int | None = None) -> list[Path]:
    """The standard library's own ``.py`` files of the running Python, sorted by path.

    Folders named ``site-packages``, ``dist-packages``, ``test``, ``tests``, ``idle_test``
    (test suites and the deliberately malformed files of ``lib2to3/tests/data``) and
    ``encodings`` (code-page tables) are skipped; symlinked folders are not followed.
    The list depends on the Python version (about 600 files on 3.11).

    Args:
      max_files: keep only the first ``max_files`` paths of the sorted list (for fast tests).

    Returns:
      absolute paths, sorted by their path relative to the standard library folder.
    """
    if max_files is not None and max_files < 1:
        raise ValueError(f"stdlib_source_files: max_files must be >= 1 or None; got {max_files}")
    root = stdlib_root()
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if name not in _EXCLUDED_DIRS]
        found.extend(Path(folder) / name for name in names if name.endswith(".py"))
    if not found:
        raise FileNotFoundError(
            f"stdlib_source_files: no .py files under {root} (sysconfig's stdlib path); this "
            "Python installation ships without its library sources"
        )
    found.sort(key=lambda path: path.relative_to(root).as_posix())
    return found[:max_files]


def read_split_files(
    files: Sequence[Path],
    root: Path,
    fractions: Sequence[float] | Sequence[int],
    seed: int,
    max_chars: int | None,
) -> tuple[list[tuple[str, str]], ...]:
    """Shuffle ``files`` with ``seed``, split them by file, and read each split's text.

    ``fractions`` (three fractions summing to 1, or three numbers of files) divide the files;
    each split also gets the same share of the character budget ``max_chars`` (no limit when
    None). A split's files are read in shuffled order until its budget is spent, the last one
    cut at the budget. Files are decoded as UTF-8, undecodable bytes becoming U+FFFD.

    Returns:
      three lists (train, val, test) of ``(path relative to root, text)``.
    """
    sizes = split_sizes(fractions, len(files), f"{len(files)} files under {root}")
    shares = np.asarray(fractions, dtype=np.float64) / float(np.sum(fractions))
    order = np.random.default_rng(seed).permutation(len(files))
    bounds = np.cumsum((0, *sizes))
    splits = []
    for lo, hi, share in zip(bounds[:-1], bounds[1:], shares, strict=True):
        budget = None if max_chars is None else max(1, round(max_chars * share))
        texts, used = [], 0
        for index in order[lo:hi]:
            if budget is not None and used >= budget:
                break
            path = files[index]
            text = path.read_text(encoding="utf-8", errors="replace")
            if budget is not None:
                text = text[: budget - used]
            texts.append((path.relative_to(root).as_posix(), text))
            used += len(text)
        splits.append(texts)
    return tuple(splits)


CorpusT = TypeVar("CorpusT", bound="StdlibCorpus")


@dataclasses.dataclass(frozen=True, eq=False)
class StdlibCorpus:
    """Token ids of the standard library's files, split by file: what :class:`CharCorpus` and
    :class:`jaxnets.data.words.WordCorpus` share.

    Attributes:
      train, val, test: int32 ``(n_tokens,)`` ids of each split's concatenated text.
      train_files, val_files, test_files: the files read into each split, in reading order,
        as paths relative to ``root`` (disjoint: the split is by file).
      root: the standard library folder the files were read from.
      python_version: ``platform.python_version()`` of the Python whose library this is; the
        corpus differs between Python versions.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    train_files: tuple[str, ...]
    val_files: tuple[str, ...]
    test_files: tuple[str, ...]
    root: Path
    python_version: str

    @classmethod
    def from_splits(
        cls: type[CorpusT],
        parts: Sequence[Sequence[tuple[str, str]]],
        ids: Sequence[np.ndarray],
        root: Path,
        **fields: Any,
    ) -> CorpusT:
        """The corpus of the three ``(name, text)`` file lists of :func:`read_split_files`
        (read from ``root``) and their ids ``(train, val, test)``; ``fields`` are the
        subclass's own (its ``vocab``)."""
        train, val, test = ids
        train_files, val_files, test_files = (tuple(name for name, _ in part) for part in parts)
        return cls(
            train=train,
            val=val,
            test=test,
            train_files=train_files,
            val_files=val_files,
            test_files=test_files,
            root=root,
            python_version=platform.python_version(),
            **fields,
        )


@dataclasses.dataclass(frozen=True, eq=False)
class CharCorpus(StdlibCorpus):
    """A character corpus split by file (the fields of :class:`StdlibCorpus`, in characters).

    Attributes:
      vocab: built from the training text only; val/test characters outside it are ``<unk>``.
    """

    vocab: CharVocab


def load_char_corpus(
    max_chars: int | None = 1_250_000,
    seed: int = 0,
    split: Sequence[float] | Sequence[int] = (0.8, 0.1, 0.1),
    min_count: int = 5,
    max_files: int | None = None,
) -> CharCorpus:
    """The standard library's Python source as a character-level language-modelling corpus.

    The files of :func:`stdlib_source_files` are shuffled with ``seed`` and divided by file
    into train/val/test; each split's files are concatenated (UTF-8, bad bytes as U+FFFD).

    Args:
      max_chars: total characters over the three splits, shared out like ``split``; the
        default (1.25M, so 1M training characters) trains a small LSTM in about two minutes
        on two CPU cores. ``None`` reads every file (about 10.7M characters on Python 3.11).
      seed: seeds the file shuffle.
      split: fractions of files (train, val, test) summing to 1, or three numbers of files.
      min_count: characters seen fewer times in the training text map to ``<unk>``.
      max_files: use only the first ``max_files`` files of the sorted list (fast tests).

    Returns:
      a :class:`CharCorpus` whose ``train``/``val``/``test`` are int32 ``(n_chars,)``.
    """
    if max_chars is not None and max_chars < 3:
        raise ValueError(
            f"load_char_corpus: max_chars must be at least 3 (one per split) or None; "
            f"got {max_chars}"
        )
    root = stdlib_root()
    parts = read_split_files(stdlib_source_files(max_files), root, split, seed, max_chars)
    texts = ["".join(text for _, text in part) for part in parts]
    vocab = CharVocab.from_text(texts[0], min_count=min_count)
    return CharCorpus.from_splits(parts, [vocab.encode(text) for text in texts], root, vocab=vocab)


def sequence_windows(
    ids: np.ndarray, length: int, stride: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Input/target windows for next-character prediction.

    Window ``k`` starts at ``i = k * stride``: ``x[k] = ids[i : i + length]`` and
    ``y[k] = ids[i + 1 : i + length + 1]`` (the same characters shifted by one).

    Args:
      ids: ``(n_chars,)`` token ids.
      length: characters per window (the truncated back-propagation-through-time length).
      stride: step between window starts; ``None`` means ``length`` (non-overlapping inputs).

    Returns:
      ``(x, y)``, both int32 ``(n_windows, length)`` with
      ``n_windows = (n_chars - length - 1) // stride + 1``.
    """
    ids = np.asarray(ids)
    stride = length if stride is None else stride
    if ids.ndim != 1:
        raise ValueError(f"sequence_windows: ids must be 1-D (n_chars,); got shape {ids.shape}")
    if length < 1 or stride < 1:
        raise ValueError(
            f"sequence_windows: length and stride must be >= 1; got length={length}, "
            f"stride={stride}"
        )
    if len(ids) < length + 1:
        raise ValueError(
            f"sequence_windows: a window of length {length} needs at least {length + 1} ids "
            f"(inputs plus the next-character target); got {len(ids)}"
        )
    windows = np.lib.stride_tricks.sliding_window_view(ids, length + 1)[::stride]
    return windows[:, :-1].astype(np.int32), windows[:, 1:].astype(np.int32)

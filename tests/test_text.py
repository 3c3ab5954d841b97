"""Tests of jaxnets.data.text: character vocabulary, standard-library corpus, windows."""

from __future__ import annotations

import platform
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from jaxnets.data.text import CharVocab, load_char_corpus, sequence_windows, stdlib_source_files

# --- CharVocab -----------------------------------------------------------------------------


def test_vocab_puts_specials_first_and_characters_in_code_point_order():
    vocab = CharVocab.from_text("banana é")
    assert vocab.chars == (" ", "a", "b", "n", "é")
    assert (vocab.pad_id, vocab.eos_id, vocab.go_id, vocab.unk_id) == (0, 1, 2, 3)
    assert vocab.size == len(vocab) == 9
    np.testing.assert_array_equal(vocab.encode("nab é"), [7, 5, 6, 4, 8])
    assert vocab.encode("").shape == (0,) and vocab.encode("ab").dtype == np.int32
    assert vocab.token_id("b") == 6 and vocab.token_id("<go>") == 2


def test_encode_decode_round_trip():
    text = "def f(x):\n    return x ** 2  # π ≈ 3.14\t€"
    vocab = CharVocab.from_text(text)
    assert vocab.decode(vocab.encode(text)) == text


def test_unknown_and_rare_characters_become_unk():
    vocab = CharVocab.from_text("aaabbc", min_count=2)
    assert vocab.chars == ("a", "b")
    np.testing.assert_array_equal(vocab.encode("cab!"), [3, 4, 5, 3])
    assert vocab.decode(vocab.encode("cab!")) == "\ufffdab\ufffd"


def test_decode_stops_at_eos_and_drops_pad_and_go():
    vocab = CharVocab.from_text("ab")
    a, b = vocab.token_id("a"), vocab.token_id("b")
    assert vocab.decode([vocab.go_id, a, b, a, vocab.eos_id, b, vocab.pad_id]) == "aba"
    assert vocab.decode(np.array([[a, vocab.pad_id, b]])) == "ab"
    with pytest.raises(ValueError, match=r"id 6 is outside the vocabulary \[0, 6\)"):
        vocab.decode([a, 6])


def test_vocab_errors_say_what_is_expected():
    no_unk = CharVocab.from_text("ab", specials=("<pad>", "<eos>"))
    with pytest.raises(ValueError, match=r"character 'z' is not in the vocabulary .* '<unk>'"):
        no_unk.encode("abz")
    with pytest.raises(KeyError, match="neither a special token"):
        no_unk.token_id("<unk>")
    with pytest.raises(ValueError, match="distinct tokens of two or more characters"):
        CharVocab.from_text("ab", specials=("<pad>", "x"))
    with pytest.raises(ValueError, match="sorted by code point"):
        CharVocab(specials=("<pad>",), chars=("b", "a"))
    with pytest.raises(ValueError, match="min_count must be >= 1"):
        CharVocab.from_text("ab", min_count=0)


# --- standard-library corpus ---------------------------------------------------------------


def test_stdlib_source_files_are_sorted_library_code():
    root = Path(sysconfig.get_paths()["stdlib"])
    files = stdlib_source_files()
    names = [path.relative_to(root).as_posix() for path in files]
    assert names == sorted(names) and len(set(names)) == len(names)
    assert len(files) > 300 and all(name.endswith(".py") for name in names)
    assert {"os.py", "json/decoder.py", "collections/__init__.py"} <= set(names)
    excluded = {"site-packages", "test", "tests", "idle_test", "encodings"}
    assert not any(excluded & set(name.split("/")[:-1]) for name in names)
    assert stdlib_source_files(max_files=5) == files[:5]
    with pytest.raises(ValueError, match="max_files must be >= 1 or None; got 0"):
        stdlib_source_files(max_files=0)


@pytest.fixture(scope="module")
def corpus():
    return load_char_corpus(max_chars=60_000, seed=1, min_count=50)


def _read_split(corpus, files: tuple[str, ...], n_chars: int) -> str:
    text = "".join(
        (corpus.root / name).read_text(encoding="utf-8", errors="replace") for name in files
    )
    return text[:n_chars]


def test_corpus_is_split_by_file_with_the_asked_sizes(corpus):
    assert (len(corpus.train), len(corpus.val), len(corpus.test)) == (48_000, 6_000, 6_000)
    assert corpus.train.dtype == corpus.val.dtype == corpus.test.dtype == np.int32
    splits = [set(corpus.train_files), set(corpus.val_files), set(corpus.test_files)]
    assert all(splits)
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
    assert not any(name.startswith("encodings/") for name in set.union(*splits))
    assert corpus.python_version == platform.python_version()
    assert corpus.root == Path(sysconfig.get_paths()["stdlib"])


def test_corpus_ids_are_the_files_text_with_rare_characters_as_unk(corpus):
    vocab = corpus.vocab
    train_text = _read_split(corpus, corpus.train_files, len(corpus.train))
    assert vocab == CharVocab.from_text(train_text, min_count=50)
    for ids, files in ((corpus.val, corpus.val_files), (corpus.test, corpus.test_files)):
        text = _read_split(corpus, files, len(ids))
        unknown = np.array([c not in vocab.chars for c in text])
        assert unknown.any()  # min_count=50 leaves out letters such as 'z' or 'Q'
        np.testing.assert_array_equal(ids == vocab.unk_id, unknown)
        known_text = "".join(c for c, u in zip(text, unknown, strict=True) if not u)
        assert vocab.decode(ids[~unknown]) == known_text


def test_corpus_is_deterministic_under_a_seed(corpus):
    again = load_char_corpus(max_chars=60_000, seed=1, min_count=50)
    other = load_char_corpus(max_chars=60_000, seed=2, min_count=50)
    np.testing.assert_array_equal(again.train, corpus.train)
    assert again.val_files == corpus.val_files
    assert other.train_files != corpus.train_files


def test_corpus_argument_errors():
    with pytest.raises(ValueError, match=r"fractions \(0.5, 0.1, 0.1\) must sum to 1"):
        load_char_corpus(max_chars=1000, split=(0.5, 0.1, 0.1))
    with pytest.raises(ValueError, match="every part needs at least one"):
        load_char_corpus(max_chars=1000, split=(0.9, 0.1, 0.0))
    with pytest.raises(ValueError, match="max_chars must be at least 3"):
        load_char_corpus(max_chars=0)


# --- windows -------------------------------------------------------------------------------


def test_sequence_windows_shift_targets_by_one():
    ids = np.arange(20, dtype=np.int32) * 3
    x, y = sequence_windows(ids, length=5, stride=4)
    assert x.shape == y.shape == ((20 - 5 - 1) // 4 + 1, 5) == (4, 5)
    assert x.dtype == y.dtype == np.int32
    np.testing.assert_array_equal(x[2], ids[8:13])
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    np.testing.assert_array_equal(y[:, -1], ids[[5, 9, 13, 17]])
    x_default, _ = sequence_windows(ids, length=5)  # stride defaults to length
    np.testing.assert_array_equal(x_default[:, 0], [0, 15, 30])
    with pytest.raises(ValueError, match="needs at least 21 ids .* got 20"):
        sequence_windows(ids, length=20)
    with pytest.raises(ValueError, match="length and stride must be >= 1"):
        sequence_windows(ids, length=5, stride=0)

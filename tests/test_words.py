"""Tests of jaxnets.data.words: tokenisation, passages of a source file, the word vocabulary,
the standard-library word corpus, and (context, next word) windows."""

from __future__ import annotations

import numpy as np
import pytest

from jaxnets.data import (
    WordVocab,
    context_windows,
    load_word_corpus,
    source_passages,
    tokenize_words,
)

SOURCE = '''"""Module docstring."""
import os  # trailing comment

# a comment block
# on two lines
X = "# not a comment"


def f():
    """Function docstring, with a comma."""
    y = "not a docstring"  # lone comment
    return y


class C:
    """Class docstring."""
'''


def test_tokenize_words_keeps_words_numbers_and_two_punctuation_marks():
    assert tokenize_words("Don't panic, 42 times. (OK?) x_y") == [
        "don't",
        "panic",
        ",",
        "42",
        "times",
        ".",
        "ok",
        "x",
        "y",
    ]
    assert tokenize_words("") == []


def test_source_passages_are_docstrings_and_comment_blocks_in_source_order():
    assert source_passages(SOURCE) == [
        "Module docstring.",
        "trailing comment",
        "a comment block on two lines",
        "Function docstring, with a comma.",
        "lone comment",
        "Class docstring.",
    ]


def test_source_that_python_cannot_parse_has_no_passages():
    assert source_passages('def f(:\n    """doc"""\n') == []


def test_vocabulary_ranks_by_count_then_alphabet_and_counts_unknowns():
    tokens = "b a c b a b <eos> d e".split()
    vocab = WordVocab.from_tokens(tokens, size=4)
    # b:3, a:2, then c, d, e tie at 1: c wins alphabetically; d and e become <unk>
    assert vocab.words == ("<eos>", "<unk>", "b", "a")
    assert vocab.counts == (1, 3, 3, 2)
    np.testing.assert_array_equal(vocab.encode(["a", "zebra", "b", "<eos>"]), [3, 1, 2, 0])
    assert vocab.decode([2, 3, 0]) == ["b", "a", "<eos>"]
    assert vocab.token_id("a") == 3


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: WordVocab.from_tokens([], 10), ValueError, "empty text"),
        (lambda: WordVocab.from_tokens(["a"], 2), ValueError, "size must be >= 3"),
        (
            lambda: WordVocab.from_tokens(["file", "files"], 4).token_id("fille"),
            KeyError,
            "'fille' is not in the 4-token vocabulary; did you mean 'file'",
        ),
        (lambda: WordVocab.from_tokens(["a"], 3).decode([3]), ValueError, r"in \[0, 3\)"),
        (lambda: WordVocab(("a", "<unk>"), (1, 1)), ValueError, "first tokens must be"),
        (lambda: context_windows(np.array([], np.int32), 2), ValueError, "empty text"),
        (
            lambda: context_windows(np.arange(3), 3),
            ValueError,
            "context of 3 words is longer than the text minus its last word",
        ),
        (lambda: context_windows(np.arange(3), 0), ValueError, "context must be >= 1"),
        (lambda: context_windows(np.zeros((2, 3)), 1), ValueError, "must be 1-D"),
    ],
)
def test_errors_say_what_was_wrong(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_context_windows_with_and_without_start_padding():
    ids = np.array([5, 6, 7, 8])
    x, y = context_windows(ids, 2)
    np.testing.assert_array_equal(x, [[5, 6], [6, 7]])
    np.testing.assert_array_equal(y, [7, 8])
    x, y = context_windows(ids, 2, start_id=0)
    np.testing.assert_array_equal(x, [[0, 0], [0, 5], [5, 6], [6, 7]])
    np.testing.assert_array_equal(y, [5, 6, 7, 8])
    assert x.dtype == y.dtype == np.int32
    # a context longer than the text is fine once the start is padded
    x, y = context_windows(np.array([9]), 3, start_id=0)
    np.testing.assert_array_equal(x, [[0, 0, 0]])
    np.testing.assert_array_equal(y, [9])


@pytest.fixture(scope="module")
def small_corpus():
    return load_word_corpus(vocab_size=50, max_files=60)


def test_corpus_splits_by_file_and_builds_the_vocabulary_from_train(small_corpus):
    corpus = small_corpus
    files = [set(corpus.train_files), set(corpus.val_files), set(corpus.test_files)]
    assert sum(map(len, files)) == 60 and len(set.union(*files)) == 60
    assert not any(name.startswith("encodings/") for name in set.union(*files))
    assert corpus.vocab.size == 50
    for split in (corpus.train, corpus.val, corpus.test):
        assert split.dtype == np.int32 and len(split) > 0
        assert split[-1] == corpus.vocab.eos_id  # every passage ends with <eos>
        assert split.min() >= 0 and split.max() < 50
    # the counts are the training split's: every kept word and <unk> and <eos>
    counts = np.bincount(corpus.train, minlength=50)
    np.testing.assert_array_equal(counts, corpus.vocab.counts)
    assert list(counts[2:]) == sorted(counts[2:], reverse=True)


def test_corpus_text_is_the_files_docstrings_and_comments(small_corpus):
    corpus = small_corpus
    first = corpus.root / corpus.train_files[0]
    passages = source_passages(first.read_text(encoding="utf-8", errors="replace"))
    words = [w for p in passages if (tokens := tokenize_words(p)) for w in [*tokens, "<eos>"]]
    np.testing.assert_array_equal(corpus.train[: len(words)], corpus.vocab.encode(words))


def test_corpus_is_deterministic_for_a_seed(small_corpus):
    again = load_word_corpus(vocab_size=50, max_files=60)
    np.testing.assert_array_equal(again.train, small_corpus.train)
    assert again.test_files == small_corpus.test_files
    other = load_word_corpus(vocab_size=50, max_files=60, seed=1)
    assert other.test_files != small_corpus.test_files

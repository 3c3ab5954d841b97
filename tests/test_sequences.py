"""Tests of jaxnets.data.sequences: parity, adding problem, copy task, learning to execute."""

from __future__ import annotations

import contextlib
import io
import math
import re

import numpy as np
import pytest

from jaxnets.data.dataset import ArrayDataset
from jaxnets.data.sequences import (
    ADDING_BASELINE_MSE,
    all_binary_sequences,
    copy_task_baseline,
    execute_program,
    generate_program,
    make_adding_problem,
    make_copy_task,
    make_execution_task,
    make_parity,
    most_common_answer_accuracy,
)


@pytest.fixture(scope="module")
def task():
    return make_execution_task(n=400, seed=3)


# --- determinism and argument checks -------------------------------------------------------


@pytest.mark.parametrize(
    "make", [make_parity, make_adding_problem, make_copy_task], ids=lambda f: f.__name__
)
def test_generators_are_deterministic_under_a_seed(make):
    first, again, other = make(50, seed=7), make(50, seed=7), make(50, seed=8)
    np.testing.assert_array_equal(first.x, again.x)
    np.testing.assert_array_equal(first.y, again.y)
    assert not np.array_equal(first.x, other.x)


def test_execution_task_is_deterministic_under_a_seed(task):
    again, other = make_execution_task(n=400, seed=3), make_execution_task(n=400, seed=4)
    assert again.programs == task.programs
    np.testing.assert_array_equal(again.source_ids, task.source_ids)
    np.testing.assert_array_equal(again.target_ids, task.target_ids)
    assert other.programs != task.programs


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_parity(0), r"n must be a positive number of examples; got 0"),
        (lambda: make_parity(5, length=0), r"length must be >= 1 \(at least one bit\); got 0"),
        (lambda: make_adding_problem(5, length=1), r"length must be >= 2 \(one marker in each"),
        (lambda: make_copy_task(5, delay=0), r"delay \(T, .*must be >= 1; got delay=0"),
        (lambda: make_execution_task(0), r"n must be a positive number of examples"),
        (lambda: all_binary_sequences(0), r"length must be in \[1, 20\]"),
        (
            lambda: generate_program(np.random.default_rng(0), digits=2, nesting=0),
            r"nesting in \[1, 8\]; got digits=2, nesting=0",
        ),
        (lambda: most_common_answer_accuracy([], ["1"]), r"got 0 and 1"),
    ],
)
def test_bad_arguments_say_what_is_allowed(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- parity --------------------------------------------------------------------------------


def test_parity_labels_are_the_sum_of_the_bits_mod_2():
    data = make_parity(500, length=7, seed=0)
    assert data.x.shape == (500, 7, 1) and data.x.dtype == np.float32
    assert data.y.shape == (500,) and data.y.dtype == np.int32 and data.num_classes == 2
    bits = data.x[..., 0].astype(np.int64)
    assert set(np.unique(bits)) == {0, 1}
    np.testing.assert_array_equal(data.y, np.bitwise_xor.reduce(bits, axis=1))
    assert 200 < data.y.sum() < 300  # both classes, in about equal numbers


def test_all_binary_sequences_counts_in_binary():
    table = all_binary_sequences(3)
    assert table.dtype == np.int32
    expected = [[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1], [1, 0, 0], [1, 0, 1], [1, 1, 0]]
    np.testing.assert_array_equal(table, expected + [[1, 1, 1]])
    big = all_binary_sequences(10)
    assert big.shape == (1024, 10)
    np.testing.assert_array_equal(big @ (2 ** np.arange(9, -1, -1)), np.arange(1024))


# --- adding problem ------------------------------------------------------------------------


def test_adding_problem_has_one_marker_in_each_half_and_sums_them():
    length = 9  # odd: halves [0, 4) and [4, 9)
    data = make_adding_problem(2000, length=length, seed=1)
    assert data.x.shape == (2000, length, 2) and data.x.dtype == np.float32
    assert data.y.shape == (2000, 1) and data.y.dtype == np.float32
    values, markers = data.x[..., 0], data.x[..., 1]
    assert values.min() >= 0.0 and values.max() < 1.0
    assert set(np.unique(markers)) == {0.0, 1.0}
    np.testing.assert_array_equal(markers[:, :4].sum(axis=1), 1)
    np.testing.assert_array_equal(markers[:, 4:].sum(axis=1), 1)
    # Every position of each half gets a marker somewhere.
    np.testing.assert_array_equal(markers.sum(axis=0) > 0, True)
    np.testing.assert_allclose(data.y[:, 0], (values * markers).sum(axis=1), rtol=1e-6)


def test_predicting_one_on_the_adding_problem_scores_one_sixth():
    data = make_adding_problem(20000, length=4, seed=2)
    mse = float(np.mean((data.y - 1.0) ** 2))
    # Sampling std of this mean: sqrt((1/15 - 1/36) / 20000) = 0.0014.
    assert abs(mse - ADDING_BASELINE_MSE) < 0.005
    assert ADDING_BASELINE_MSE == pytest.approx(0.1667, abs=1e-4)


# --- copy task -----------------------------------------------------------------------------


def test_copy_task_targets_are_the_copied_symbols_after_the_delimiter():
    length, delay, alphabet = 5, 7, 4
    data = make_copy_task(300, length=length, seed=0, alphabet=alphabet, delay=delay)
    total = 2 * length + delay
    assert data.x.shape == data.y.shape == (300, total)
    assert data.x.dtype == data.y.dtype == np.int32 and data.num_classes == alphabet + 2
    symbols = data.x[:, :length]
    assert symbols.min() == 1 and symbols.max() == alphabet
    np.testing.assert_array_equal(data.y[:, -length:], symbols)
    np.testing.assert_array_equal(data.y[:, :-length], 0)
    # T - 1 blanks, the delimiter, then blanks while the answer is written.
    np.testing.assert_array_equal(data.x[:, length : length + delay - 1], 0)
    np.testing.assert_array_equal(data.x[:, length + delay - 1], alphabet + 1)
    np.testing.assert_array_equal(data.x[:, length + delay :], 0)


def test_copy_task_baseline_is_the_memoryless_cross_entropy():
    assert copy_task_baseline(10, 100, 8) == pytest.approx(10 * math.log(8) / 120)  # Arjovsky
    length, delay, alphabet = 3, 5, 6
    data = make_copy_task(200, length=length, seed=1, alphabet=alphabet, delay=delay)
    # Blank with certainty until the answer, then uniform over the symbols.
    probabilities = np.zeros((2 * length + delay, alphabet + 2))
    probabilities[: length + delay, 0] = 1.0
    probabilities[length + delay :, 1 : alphabet + 1] = 1.0 / alphabet
    steps = np.arange(data.y.shape[1])
    cross_entropy = -np.mean(np.log(probabilities[steps, data.y]))
    assert cross_entropy == pytest.approx(copy_task_baseline(length, delay, alphabet))


def test_array_dataset_takes_per_time_step_labels():
    data = make_copy_task(40, length=2, seed=0, delay=3)
    train, val, test = data.split((0.5, 0.25, 0.25), seed=0)  # unstratified: labels are (n, T)
    assert train.y.shape == (20, 7) and len(val) == len(test) == 10
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\); got range \[0, 10\]"):
        ArrayDataset(data.x, np.where(data.y == 1, 10, data.y), num_classes=10)
    with pytest.raises(ValueError, match="stratify=True needs integer class labels"):
        data.split(stratify=True)


# --- learning to execute -------------------------------------------------------------------


def _print_with_python(program: str) -> str:
    """Run with the real builtins, independently of execute_program's restricted print."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(program, {})
    return out.getvalue().rstrip("\n")


def test_every_program_prints_its_target(task):
    for program, answer, source, target in zip(
        task.programs, task.answers, task.source_ids, task.target_ids, strict=True
    ):
        assert _print_with_python(program) == answer
        assert task.vocab.decode(target) == answer
        assert task.vocab.decode(source) == program


def test_execution_ids_end_in_eos_then_pad(task):
    vocab = task.vocab
    assert (vocab.pad_id, vocab.eos_id) == (0, 1)
    longest = max(len(p) for p in task.programs)
    assert task.source_ids.shape == (400, longest + 1) and task.source_ids.dtype == np.int32
    assert task.target_ids.shape == (400, max(len(a) for a in task.answers) + 1)
    for ids, texts in ((task.source_ids, task.programs), (task.target_ids, task.answers)):
        lengths = np.array([len(t) for t in texts])
        np.testing.assert_array_equal(ids[np.arange(len(ids)), lengths], vocab.eos_id)
        after_eos = np.arange(ids.shape[1]) > lengths[:, None]
        np.testing.assert_array_equal(ids[after_eos], vocab.pad_id)
        assert not np.isin(ids[~after_eos], [vocab.pad_id, vocab.unk_id]).any()


@pytest.mark.parametrize("nesting", [1, 2, 3])
def test_programs_follow_the_grammar(nesting):
    rng = np.random.default_rng(nesting)
    programs = [generate_program(rng, digits=1, nesting=nesting) for _ in range(200)]
    for program in programs:
        lines = program.split("\n")
        assert re.fullmatch(r"print\(.*\)", lines[-1])
        loop_counts = [int(k) for k in re.findall(r"range\((\d+)\)", program)]
        assert all(1 <= k <= 9 for k in loop_counts)
        constants = re.findall(r"\d+", re.sub(r"range\(\d+\)", "", program))
        assert all(len(c) == 1 for c in constants)  # digits=1
        # Each level adds one parenthesised expression or one assignment line.
        parentheses = program.count("(") - program.count("print(") - program.count("range(")
        assignments = sum(bool(re.match(r"[a-z]=", line)) for line in lines)
        assert parentheses + assignments == nesting
    text = "\n".join(programs)
    for construct in ("for x in range(", " if ", " else ", "+", "-", "=", "<", ">"):
        assert construct in text


def test_programs_are_distinct_and_splits_share_none(task):
    assert len(set(task.programs)) == len(task)
    train, val, test = task.split((0.5, 0.25, 0.25), seed=1)
    assert (len(train), len(val), len(test)) == (200, 100, 100)
    assert train.source_ids.shape[1] == task.source_ids.shape[1]
    parts = [set(part.programs) for part in (train, val, test)]
    assert set.union(*parts) == set(task.programs)
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    index = task.programs.index(val.programs[3])
    np.testing.assert_array_equal(val.target_ids[3], task.target_ids[index])
    assert val.answers[3] == task.answers[index]


def test_programs_longer_than_the_limit_are_redrawn_and_too_few_is_an_error():
    short = make_execution_task(50, seed=0, max_program_chars=20)
    assert max(len(p) for p in short.programs) <= 20
    # Only print((a+b)), print((a-b)) and a=5\nprint(a) fit in 12 characters: 450 programs.
    with pytest.raises(ValueError, match=r"found only \d+ distinct programs of at most 12"):
        make_execution_task(600, seed=0, digits=1, max_program_chars=12)


def test_execute_program_allows_only_range_and_one_print():
    assert execute_program("a=5\nfor x in range(3):a-=7\nprint(a)") == "-16"
    with pytest.raises(NameError, match="len"):
        execute_program("print(len('ab'))")
    with pytest.raises(ValueError, match="exactly one line; .* printed 2"):
        execute_program("print(1)\nprint(2)")


def test_most_common_answer_accuracy():
    assert most_common_answer_accuracy(["3", "5", "3"], ["3", "4", "3", "1"]) == 0.5
    assert most_common_answer_accuracy(["7", "2"], ["2", "2"]) == 0.0  # tie: first seen wins

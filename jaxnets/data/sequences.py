"""Synthetic sequence tasks for recurrent nets, generated from a seed.

Lectures and papers:
  * seed 004, Lecture 13 "Recurrent Neural Nets" (line 2721), §2 examples (line 2761):
    Example 3 is the parity of a binary sequence, computed by a hand-designed RNN
    (:func:`make_parity`; :func:`all_binary_sequences` lists every input of a given length so
    a hand-set net can be checked on all of them).
  * seed 004, Lecture 13 §4.3 "Learning to Execute Programs" (line 3014, Figures 6-7):
    short Python programs read one character at a time, the target being what they print
    (:func:`make_execution_task`; Zaremba & Sutskever, "Learning to Execute", ICLR 2015).
  * seed 004, Lecture 14 "Learning Long-Term Dependencies" (line 3022): tasks whose answer
    depends on inputs far in the past. The adding problem (:func:`make_adding_problem`) is
    from Hochreiter & Schmidhuber, "Long Short-Term Memory", 1997, in the form of Le, Jaitly
    & Hinton, "A Simple Way to Initialize Recurrent Networks of Rectified Linear Units"
    (IRNN), 2015; the copy memory task (:func:`make_copy_task`) is from Arjovsky, Shah &
    Bengio, "Unitary Evolution Recurrent Neural Networks", ICML 2016.

Every generator uses its own ``numpy.random.default_rng(seed)``, so the same arguments give
the same data. Real inputs are float32, tokens and class labels int32.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from jaxnets.data.dataset import ArrayDataset, split_sizes
from jaxnets.data.text import CharVocab

__all__ = [
    "ADDING_BASELINE_MSE",
    "ExecutionTask",
    "all_binary_sequences",
    "copy_task_baseline",
    "execute_program",
    "generate_program",
    "make_adding_problem",
    "make_copy_task",
    "make_execution_task",
    "make_parity",
    "most_common_answer_accuracy",
]

# Predicting 1 (the mean of the sum of two U(0, 1)) scores the variance of that sum, 2 / 12.
ADDING_BASELINE_MSE = 1.0 / 6.0
_MAX_ENUMERATED_LENGTH = 20  # 2**20 rows of all_binary_sequences: about 80 MB of int32


def _check_n(n: int, name: str) -> None:
    if int(n) < 1:
        raise ValueError(f"{name}: n must be a positive number of examples; got {n}")


def _check_length(length: int, minimum: int, name: str, why: str) -> None:
    if int(length) < minimum:
        raise ValueError(f"{name}: length must be >= {minimum} ({why}); got {length}")


def all_binary_sequences(length: int) -> np.ndarray:
    """Every binary sequence of ``length`` bits, in counting order.

    Returns:
      int32 ``(2**length, length)``; row ``i`` is ``i`` in binary, most significant bit
      first (so the first row is all zeros and the last all ones).
    """
    if not 1 <= length <= _MAX_ENUMERATED_LENGTH:
        raise ValueError(
            f"all_binary_sequences: length must be in [1, {_MAX_ENUMERATED_LENGTH}] "
            f"(2**length rows); got {length}"
        )
    shifts = np.arange(length - 1, -1, -1)
    return ((np.arange(2**length)[:, None] >> shifts) & 1).astype(np.int32)


def make_parity(n: int = 1000, length: int = 10, seed: int = 0) -> ArrayDataset:
    """Random bit strings labelled by their parity (Lecture 13 §2, Example 3).

    Returns:
      ``x`` float32 ``(n, length, 1)`` bits in {0, 1}; ``y`` int32 ``(n,)`` = the number of
      ones mod 2 (1 when odd); ``num_classes=2``.
    """
    _check_n(n, "make_parity")
    _check_length(length, 1, "make_parity", "at least one bit")
    bits = np.random.default_rng(seed).integers(0, 2, size=(n, length))
    return ArrayDataset(
        x=bits[..., None].astype(np.float32),
        y=(bits.sum(axis=1) % 2).astype(np.int32),
        name=f"parity{length}",
        num_classes=2,
    )


def make_adding_problem(n: int = 1000, length: int = 50, seed: int = 0) -> ArrayDataset:
    """The adding problem: add the two marked numbers of a long sequence.

    Channel 0 holds numbers uniform in [0, 1); channel 1 is 1 at exactly two time steps, one
    uniform in the first half ``[0, length // 2)`` and one in the second half
    ``[length // 2, length)`` (as in Le et al. 2015), and 0 elsewhere. The target is the sum
    of the two marked numbers. Always predicting 1 gives a mean squared error of about
    :data:`ADDING_BASELINE_MSE` = 1/6 ≈ 0.167 (the variance of the sum of two U(0, 1)); a
    net has learned something only below that.

    Returns:
      ``x`` float32 ``(n, length, 2)``; ``y`` float32 ``(n, 1)``.
    """
    _check_n(n, "make_adding_problem")
    _check_length(length, 2, "make_adding_problem", "one marker in each half")
    rng = np.random.default_rng(seed)
    values = rng.random((n, length))
    half = length // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, length, size=n)
    rows = np.arange(n)
    markers = np.zeros((n, length))
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    total = values[rows, first] + values[rows, second]
    return ArrayDataset(
        x=np.stack([values, markers], axis=-1).astype(np.float32),
        y=total[:, None].astype(np.float32),
        name=f"adding{length}",
    )


def make_copy_task(
    n: int = 1000, length: int = 10, seed: int = 0, alphabet: int = 8, delay: int = 20
) -> ArrayDataset:
    """The copy memory task of Arjovsky et al. 2016: recall symbols after a long delay.

    With ``T = delay`` (the paper's T) the input has ``2 * length + T`` tokens: ``length``
    symbols drawn uniformly from ``1..alphabet``, ``T - 1`` blanks (token 0), the delimiter
    ``alphabet + 1``, then ``length`` blanks. The target is ``length + T`` blanks followed by
    the ``length`` symbols: after the delimiter the net must write out what it read
    ``T + length`` steps before. The paper uses ``length=10, alphabet=8``.

    Returns:
      ``x`` int32 ``(n, 2 * length + delay)`` input tokens; ``y`` int32 of the same shape,
      the token to emit at every step; ``num_classes = alphabet + 2``.
    """
    _check_n(n, "make_copy_task")
    _check_length(length, 1, "make_copy_task", "at least one symbol to copy")
    if delay < 1 or alphabet < 1:
        raise ValueError(
            "make_copy_task: delay (T, the steps from the last symbol to the delimiter) and "
            f"alphabet must be >= 1; got delay={delay}, alphabet={alphabet}"
        )
    symbols = np.random.default_rng(seed).integers(1, alphabet + 1, size=(n, length))
    total = 2 * length + delay
    x = np.zeros((n, total), dtype=np.int32)
    x[:, :length] = symbols
    x[:, length + delay - 1] = alphabet + 1
    y = np.zeros((n, total), dtype=np.int32)
    y[:, -length:] = symbols
    return ArrayDataset(x=x, y=y, name=f"copy{length}_T{delay}", num_classes=alphabet + 2)


def copy_task_baseline(length: int = 10, delay: int = 20, alphabet: int = 8) -> float:
    """Cross-entropy per time step (nats) of the best memoryless strategy on the copy task.

    Emitting a blank with certainty for the first ``length + delay`` steps and a uniform
    guess over the ``alphabet`` symbols for the last ``length`` gives
    ``length * log(alphabet) / (2 * length + delay)`` (Arjovsky et al. 2016:
    ``10 log 8 / (T + 20)``); a net that beats it remembers something.
    """
    return length * math.log(alphabet) / (2 * length + delay)


# --- learning to execute -------------------------------------------------------------------

# Every character a program or its printed answer can contain.
_PROGRAM_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz()+-<>=: \n"
_VARIABLES = "abcdefghijklmnopqrstuvwyz"  # x is the loop counter
_OPERATIONS = ("+", "-", "if", "assign", "for")
_MAX_NESTING = 8
_MAX_LOOP_COUNT = 9


def _constant(rng: np.random.Generator, digits: int) -> str:
    return str(int(rng.integers(0, 10**digits)))


def _expression(
    rng: np.random.Generator, digits: int, depth: int, lines: list[str], names: list[str]
) -> str:
    """An expression with ``depth`` nested operations; statements it needs go to ``lines``."""
    if depth == 0:
        return _constant(rng, digits)
    inner = _expression(rng, digits, depth - 1, lines, names)
    operation = _OPERATIONS[int(rng.integers(len(_OPERATIONS)))]
    if operation in ("+", "-"):
        operands = [inner, _constant(rng, digits)]
        rng.shuffle(operands)
        return f"({operands[0]}{operation}{operands[1]})"
    if operation == "if":
        # (p0 if p1<p2 else p3): the inner expression takes one of the four places.
        places = [_constant(rng, digits) for _ in range(4)]
        places[int(rng.integers(4))] = inner
        comparison = "<" if rng.random() < 0.5 else ">"
        return f"({places[0]} if {places[1]}{comparison}{places[2]} else {places[3]})"
    name = names.pop()
    if operation == "assign":
        lines.append(f"{name}={inner}")
        return name
    start, step = [inner, _constant(rng, digits)][:: 1 if rng.random() < 0.5 else -1]
    count = int(rng.integers(1, _MAX_LOOP_COUNT + 1))
    update = "+=" if rng.random() < 0.5 else "-="
    lines.append(f"{name}={start}")
    lines.append(f"for x in range({count}):{name}{update}{step}")
    return name


def generate_program(rng: np.random.Generator, digits: int = 2, nesting: int = 1) -> str:
    """A small random Python program in the style of Zaremba & Sutskever (2015).

    Grammar (every constant a non-negative integer below ``10**digits``)::

        program    := statement* "print(" expr ")"
        expr(0)    := constant
        expr(d)    := "(" expr(d-1) op constant ")" | "(" constant op expr(d-1) ")"   op: + -
                    | "(" p0 " if " p1 cmp p2 " else " p3 ")"   one p is expr(d-1), the
                                                                  rest constants; cmp: < >
                    | var                 after  var "=" expr(d-1)
                    | var                 after  var "=" a  and
                                          "for x in range(" k "):" var ("+="|"-=") b,
                                          one of a, b expr(d-1) and the other a constant

    ``k`` is uniform in 1..9 and every ``var`` a fresh letter (not ``x``). Each of the five
    operations is equally likely at every level; ``nesting`` is the number of levels, so it
    counts the operations in the program. Statements are one per line, without indentation.

    Returns:
      the source, lines joined by ``"\\n"``, the last line ``print(...)``.
    """
    if digits < 1 or not 1 <= nesting <= _MAX_NESTING:
        raise ValueError(
            f"generate_program: need digits >= 1 and nesting in [1, {_MAX_NESTING}]; "
            f"got digits={digits}, nesting={nesting}"
        )
    lines: list[str] = []
    names = list(rng.permutation(list(_VARIABLES)))
    expression = _expression(rng, digits, nesting, lines, names)
    lines.append(f"print({expression})")
    return "\n".join(lines)


def execute_program(source: str) -> str:
    """Run a program of :func:`generate_program` and return the one line it prints.

    The program runs with only ``range`` and ``print`` as builtins. That keeps it from
    reaching anything else by accident; it is not a sandbox for untrusted code.
    """
    printed: list[str] = []

    def capture(*values: object) -> None:
        printed.append(" ".join(str(value) for value in values))

    exec(compile(source, "<program>", "exec"), {"__builtins__": {"range": range, "print": capture}})
    if len(printed) != 1:
        raise ValueError(
            f"execute_program: a program must print exactly one line; {source!r} printed "
            f"{len(printed)}"
        )
    return printed[0]


@dataclasses.dataclass(frozen=True, eq=False)
class ExecutionTask:
    """Programs and their printed answers as padded character ids.

    Attributes:
      source_ids: int32 ``(n, S)``: each program's characters, then ``<eos>``, then
        ``<pad>`` up to the longest program of the task plus one.
      target_ids: int32 ``(n, U)``: each answer's characters, then ``<eos>``, then ``<pad>``
        up to the longest answer plus one. A decoder is fed ``<go>`` then the targets
        (teacher forcing).
      vocab: the fixed program vocabulary (every character of the grammar), shared by
        sources and targets, with the default specials (``<pad>`` = 0).
      programs: the ``n`` program sources.
      answers: the ``n`` printed answers, e.g. ``"-12"``.
    """

    source_ids: np.ndarray
    target_ids: np.ndarray
    vocab: CharVocab
    programs: list[str]
    answers: list[str]

    def __len__(self) -> int:
        return len(self.programs)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ExecutionTask:
        """The examples at ``indices``, keeping the padded widths ``S`` and ``U``."""
        indices = np.asarray(indices, dtype=np.int64)
        return dataclasses.replace(
            self,
            source_ids=self.source_ids[indices],
            target_ids=self.target_ids[indices],
            programs=[self.programs[i] for i in indices],
            answers=[self.answers[i] for i in indices],
        )

    def split(
        self, fractions: Sequence[float] | Sequence[int] = (0.8, 0.1, 0.1), seed: int = 0
    ) -> tuple[ExecutionTask, ExecutionTask, ExecutionTask]:
        """Seeded (train, val, test) split; the programs are distinct, so no program is in
        two parts. ``fractions``: three fractions summing to 1, or three sizes."""
        sizes = split_sizes(fractions, len(self), "execution task")
        order = np.random.default_rng(seed).permutation(len(self))
        bounds = np.cumsum((0, *sizes))
        train, val, test = (
            self.subset(np.sort(order[lo:hi]))
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
        )
        return train, val, test


def _pad(rows: list[np.ndarray], value: int) -> np.ndarray:
    padded = np.full((len(rows), max(len(row) for row in rows)), value, dtype=np.int32)
    for i, row in enumerate(rows):
        padded[i, : len(row)] = row
    return padded


def make_execution_task(
    n: int = 10000,
    seed: int = 0,
    digits: int = 2,
    nesting: int = 1,
    max_program_chars: int | None = 64,
) -> ExecutionTask:
    """``n`` distinct programs of :func:`generate_program` with the answers they print.

    The answers come from running each program (:func:`execute_program`). The default
    difficulty (two-digit constants, one operation) is small enough for a small
    sequence-to-sequence model to learn something in minutes on a CPU; compare its exact-match
    accuracy with :func:`most_common_answer_accuracy`.

    Args:
      n: number of programs; they are all different.
      seed: seeds the program generator.
      digits, nesting: difficulty, as in :func:`generate_program`.
      max_program_chars: programs longer than this are drawn again; ``None`` keeps all.

    Returns:
      an :class:`ExecutionTask` (``source_ids`` int32 ``(n, S)``, ``target_ids`` int32
      ``(n, U)``).
    """
    _check_n(n, "make_execution_task")
    rng = np.random.default_rng(seed)
    vocab = CharVocab.from_text(_PROGRAM_ALPHABET)
    max_draws = 20 * n + 1000
    programs: dict[str, None] = {}  # insertion-ordered set
    draws = 0
    while len(programs) < n and draws < max_draws:
        program = generate_program(rng, digits=digits, nesting=nesting)
        draws += 1
        if max_program_chars is None or len(program) <= max_program_chars:
            programs[program] = None
    if len(programs) < n:
        raise ValueError(
            f"make_execution_task: found only {len(programs)} distinct programs of at most "
            f"{max_program_chars} characters in {max_draws} draws (digits={digits}, "
            f"nesting={nesting}); ask for fewer than n={n}, raise max_program_chars, or use "
            "more digits or nesting"
        )
    sources = list(programs)
    answers = [execute_program(program) for program in sources]
    eos = np.array([vocab.eos_id], dtype=np.int32)
    return ExecutionTask(
        source_ids=_pad([np.concatenate([vocab.encode(p), eos]) for p in sources], vocab.pad_id),
        target_ids=_pad([np.concatenate([vocab.encode(a), eos]) for a in answers], vocab.pad_id),
        vocab=vocab,
        programs=sources,
        answers=answers,
    )


def most_common_answer_accuracy(train_answers: Sequence[str], test_answers: Sequence[str]) -> float:
    """Exact-match accuracy on ``test_answers`` of always predicting the most common training
    answer (ties go to the answer seen first): the score a program executor must beat."""
    if len(train_answers) == 0 or len(test_answers) == 0:
        raise ValueError(
            "most_common_answer_accuracy: needs at least one training and one test answer; "
            f"got {len(train_answers)} and {len(test_answers)}"
        )
    guess = Counter(train_answers).most_common(1)[0][0]
    return sum(answer == guess for answer in test_answers) / len(test_answers)

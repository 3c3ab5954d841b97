"""Gradcheck's numbers and report: the relative error rel(a, n) = ‖a − n‖ / (‖a‖ + ‖n‖)
against hand-computed values, the atol and tol edges, directions mode's norms, the chunks
of 16, the leaves' names and the report table."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradcheck_helpers import planted_gradient

from jaxnets.gradcheck import (
    GradcheckReport,
    LeafCheck,
    gradcheck,
    map_in_chunks,
)

# --- the relative error formula, rel(a, n) = ‖a − n‖ / (‖a‖ + ‖n‖) -------------------------


def _linear_with_gradient(numeric, analytic):
    """f(x) = numeric · x, whose central differences equal ``numeric`` exactly at x = 0 (for
    entries 0 and 1, which are exact in binary), while its custom VJP claims ``analytic``."""
    numeric, analytic = jnp.asarray(numeric, jnp.float64), jnp.asarray(analytic, jnp.float64)
    return planted_gradient(lambda x: jnp.vdot(numeric, x), lambda _: analytic)


def _check_leaf(numeric, analytic, **kwargs):
    f = _linear_with_gradient(numeric, analytic)
    report = gradcheck(lambda p: f(p["w"]), {"w": np.zeros(len(numeric))}, mode="full", **kwargs)
    (leaf,) = report.leaves
    return report, leaf


@pytest.mark.parametrize(
    "analytic, numeric, expected",
    [
        ([3.0, 4.0], [0.0, 0.0], 1.0),  # 5 / (5 + 0)
        ([1.0, 0.0], [0.0, 1.0], np.sqrt(2) / 2),  # √2 / (1 + 1); |‖a‖ − ‖n‖| would give 0
        ([-1.0, 0.0], [1.0, 0.0], 1.0),  # a sign flip: 2 / (1 + 1)
        ([2.0, -1.0], [2.0, -1.0], 0.0),  # agreement
        ([1.0, 1.0], [1.0, 0.0], 1 / (1 + np.sqrt(2))),  # 1 / (√2 + 1)
    ],
)
def test_relative_error_and_norms_equal_hand_computed_values(analytic, numeric, expected):
    with jax.enable_x64(True):
        report, leaf = _check_leaf(numeric, analytic, raise_on_failure=False)
    assert leaf.rel_error == pytest.approx(expected, abs=1e-12)
    assert leaf.analytic_norm == pytest.approx(np.linalg.norm(analytic), abs=1e-12)
    assert leaf.numeric_norm == pytest.approx(np.linalg.norm(numeric), abs=1e-12)
    assert report.passed == (expected < 1e-6)


def test_relative_error_on_random_vectors_is_the_formula():
    """Away from the special cases above: a − n and |‖a‖ − ‖n‖| differ by orders here."""
    rng = np.random.default_rng(0)
    numeric, analytic = rng.standard_normal(5), rng.standard_normal(5)
    with jax.enable_x64(True):
        _, leaf = _check_leaf(numeric, analytic, raise_on_failure=False)
    expected = np.linalg.norm(analytic - numeric) / (
        np.linalg.norm(analytic) + np.linalg.norm(numeric)
    )
    assert leaf.rel_error == pytest.approx(expected, rel=1e-9)


def test_gradients_below_atol_agree_and_above_it_are_compared():
    """The atol branch: an analytic 1e-10 against an exact zero difference is rounding-level
    agreement under the default atol 1e-9, and a total disagreement (rel 1) under 1e-11; an
    analytic 1e-8 is one under the default too (the default is no looser than 1e-8). atol = 0
    is allowed (every nonzero gradient is compared) and two exactly-zero gradients still
    agree there (rel 0, not 0 / 0)."""
    with jax.enable_x64(True):
        report, leaf = _check_leaf([0.0, 0.0], [1e-10, 0.0])
        assert leaf.rel_error == 0.0 and report.passed
        _, leaf = _check_leaf([0.0, 0.0], [1e-10, 0.0], atol=1e-11, raise_on_failure=False)
        assert leaf.rel_error == pytest.approx(1.0)
        _, leaf = _check_leaf([0.0, 0.0], [1e-8, 0.0], raise_on_failure=False)
        assert leaf.rel_error == pytest.approx(1.0)
        _, leaf = _check_leaf([0.0, 0.0], [1e-100, 0.0], atol=0.0, raise_on_failure=False)
        assert leaf.rel_error == pytest.approx(1.0)
        report, leaf = _check_leaf([0.0, 0.0], [0.0, 0.0], atol=0.0)
        assert leaf.rel_error == 0.0 and report.passed


def test_norms_summing_to_exactly_atol_are_still_compared():
    """atol is exclusive: only norms summing to LESS than atol count as agreement."""
    analytic = [1e-10, 0.0]
    atol = float(np.linalg.norm(analytic))  # + ‖numeric‖ = 0: the sum is exactly atol
    with jax.enable_x64(True):
        _, leaf = _check_leaf([0.0, 0.0], analytic, atol=atol, raise_on_failure=False)
    assert leaf.rel_error == 1.0


def test_a_leaf_exactly_at_the_tolerance_is_flagged_and_passing_leaves_carry_no_flag():
    """tol is exclusive: rel_error == tol fails (``passed`` is rel_error < tol), and the
    table flags exactly the failing rows."""
    report = GradcheckReport(
        (LeafCheck("ok", 2, 1e-9, 1.0, 1.0), LeafCheck("edge", 3, 1e-6, 2.0, 2.0)),
        "full",
        1e-5,
        1e-6,
    )
    rows = str(report).splitlines()
    assert not report.passed
    assert rows[2].startswith("ok") and rows[2].endswith("1.000e+00")
    assert rows[3].startswith("edge") and rows[3].endswith("2.000e+00  FAIL")


@pytest.mark.parametrize("num_directions", [None, 20])
def test_directions_mode_probes_each_leaf_along_num_directions_unit_vectors(num_directions):
    """A one-entry leaf has two unit directions, ±1: its k directional derivatives are ±g, so
    the numeric norm is √k |g|, k = 6 by default (unit per direction; normalized over all
    k directions at once they would give |g|). 20 directions run as a padded second chunk
    of 16 (a (20, n) array of directions), and the other leaf still checks out."""
    params = {"b": np.array([0.4]), "w": np.array([0.3, -0.7, 1.1])}

    def loss(p):
        return 3.0 * jnp.sum(jnp.sin(p["b"])) + jnp.sum(jnp.tanh(p["w"]) ** 2)

    kwargs = {} if num_directions is None else {"num_directions": num_directions}
    report = gradcheck(loss, params, mode="directions", **kwargs)
    b = {leaf.path: leaf for leaf in report.leaves}["b"]
    g = 3.0 * np.cos(0.4)
    assert b.analytic_norm == pytest.approx(g, rel=1e-12)
    assert b.numeric_norm == pytest.approx(np.sqrt(num_directions or 6) * g, rel=1e-8)
    assert report.passed and report.worst.rel_error < 1e-8


def test_map_in_chunks_calls_the_batched_function_on_chunks_of_16_rows():
    """The documented chunk size (16: XLA:CPU runs per-example convolution kernels slowly in
    larger batches): 37 rows of (37, 3) are 3 calls on (16, 3), the last one padded with
    copies of row 0, and the result is the function of each row, in order, unpadded."""
    xs = jnp.asarray(np.arange(111.0).reshape(37, 3))
    seen = []

    def batched(chunk):
        seen.append(chunk.shape)
        return jnp.sum(chunk**2, axis=1)

    out = map_in_chunks(batched, xs)
    assert seen == [(16, 3)] * 3
    np.testing.assert_array_equal(out, np.sum(np.asarray(xs) ** 2, axis=1))


class _Affine(NamedTuple):
    weight: np.ndarray
    shift: np.ndarray


def test_leaves_in_lists_and_tuples_are_named_by_their_index():
    """Dict keys and list/tuple indices name a leaf; a named tuple's leaves by their field
    (JAX's attribute key, printed ".field"), so two fields never share a name."""
    params = {
        "layers": [np.ones(2), np.full(3, 0.5)],
        "pair": (np.zeros(1),),
        "affine": _Affine(np.ones(2), np.zeros(2)),
    }
    report = gradcheck(lambda p: sum(jnp.sum(jnp.tanh(v)) for v in jax.tree.leaves(p)), params)
    assert [leaf.path for leaf in report.leaves] == [
        "affine/.weight",
        "affine/.shift",
        "layers/0",
        "layers/1",
        "pair/0",
    ]


def test_the_report_table_names_each_column_flags_failures_and_gives_the_verdict():
    with jax.enable_x64(True):
        bad, _ = _check_leaf([0.0, 1.0], [1.0, 0.0], raise_on_failure=False)
        good, _ = _check_leaf([0.0, 1.0], [0.0, 1.0])
    lines = str(bad).splitlines()
    assert lines[0] == f"gradcheck (full, eps={bad.eps:g}, tol={bad.tol:g}, float64)"
    assert lines[1].split() == ["leaf", "size", "rel", "error", "|grad|"]
    assert lines[2].split()[0] == "w" and lines[2].endswith("FAIL")
    # orthogonal unit vectors: rel = √2 / (1 + 1)
    assert lines[-1] == f"worst: w ({np.sqrt(2) / 2:.2e}) -> FAIL"
    good_lines = str(good).splitlines()
    assert not good_lines[2].endswith("FAIL") and good_lines[-1].endswith("-> PASS")

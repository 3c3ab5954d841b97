"""The primitives of the autodiff engine and their vector-Jacobian products.

Lecture: seed 004, Lecture 6 "Automatic Differentiation" (line 1528), §4.2 "Vector-Jacobian
products" (line 1716): for ``y = f(x)`` and the output error signal ``y-bar`` (``g`` below),
each primitive computes ``x-bar = (dy/dx)^T y-bar`` directly, never forming the Jacobian. For
an elementwise op the Jacobian is diagonal, so the VJP is an elementwise product: ``exp``
gives ``ans * g``, ``log`` gives ``g / x`` (the lecture's exercise), ``tanh`` gives
``(1 - ans^2) g``. Each VJP is written like the lecture's Figure 5, ``vjp(g, ans, *args)``.

Broadcasting: numpy lets ``(n, k) + (k,)`` repeat the bias over the n rows. Each repeated
copy of an input contributes to the output, so the input's error signal is the SUM of the
output's over the repeated axes (:func:`_unbroadcast`), e.g. ``b-bar = sum_n z-bar_n``.

The primitives an MLP and the softmax cross-entropy need: ``add subtract multiply divide
maximum`` (with broadcasting), ``negative exp log tanh sigmoid relu`` (elementwise),
``matmul`` (vectors and matrices), ``sum mean logsumexp`` (over ``axis``). They accept Nodes
(which records them on the tape), numpy arrays and Python numbers, and compute in float64;
use them in place of ``np.exp`` etc. (numpy's own functions refuse Nodes).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from jaxnets.autodiff.core import Primitive

__all__ = [
    "add",
    "divide",
    "exp",
    "log",
    "logsumexp",
    "matmul",
    "maximum",
    "mean",
    "multiply",
    "negative",
    "relu",
    "sigmoid",
    "subtract",
    "sum",
    "tanh",
]


# -- broadcasting binary ops ------------------------------------------------------------------
def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``g`` over the axes that broadcasting added or stretched, down to ``shape``."""
    leading = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(leading))) if leading else g
    stretched = tuple(axis for axis, size in enumerate(shape) if size == 1 and g.shape[axis] != 1)
    return g.sum(axis=stretched, keepdims=True) if stretched else g


def _check_broadcast(name: str, x: np.ndarray, y: np.ndarray) -> None:
    try:
        np.broadcast_shapes(x.shape, y.shape)
    except ValueError:
        raise ValueError(
            f"{name}: shapes {x.shape} and {y.shape} do not broadcast; aligned from the right, "
            "each pair of axes must be equal or contain a 1, e.g. (n, k) with (k,) or (n, 1)"
        ) from None


def _broadcasting(
    name: str, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], vjp_x: Callable, vjp_y: Callable
) -> Primitive:
    """A binary elementwise primitive whose VJPs ``vjp(g, ans, x, y)`` are written for the
    broadcast shape and un-broadcast here to the shape of their argument."""
    return Primitive(
        name,
        fn,
        (
            lambda g, ans, x, y: _unbroadcast(vjp_x(g, ans, x, y), x.shape),
            lambda g, ans, x, y: _unbroadcast(vjp_y(g, ans, x, y), y.shape),
        ),
        check=_check_broadcast,
    )


def _share_of_max(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """1 where x wins, 0 where y wins, 1/2 at ties (as JAX splits the gradient of a tie)."""
    return (x > y) + 0.5 * (x == y)


add = _broadcasting("add", np.add, lambda g, ans, x, y: g, lambda g, ans, x, y: g)
subtract = _broadcasting("subtract", np.subtract, lambda g, ans, x, y: g, lambda g, ans, x, y: -g)
multiply = _broadcasting(
    "multiply", np.multiply, lambda g, ans, x, y: y * g, lambda g, ans, x, y: x * g
)
divide = _broadcasting(
    "divide", np.divide, lambda g, ans, x, y: g / y, lambda g, ans, x, y: -g * ans / y
)
maximum = _broadcasting(
    "maximum",
    np.maximum,
    lambda g, ans, x, y: g * _share_of_max(x, y),
    lambda g, ans, x, y: g * _share_of_max(y, x),
)


# -- elementwise unary ops ------------------------------------------------------------------
def _sigmoid(x: np.ndarray) -> np.ndarray:
    # 1/(1+e^-x) overflows e^-x for x << 0; written with e^-|x| <= 1 it never does.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


negative = Primitive("negative", np.negative, (lambda g, ans, x: -g,))
exp = Primitive("exp", np.exp, (lambda g, ans, x: ans * g,))
log = Primitive("log", np.log, (lambda g, ans, x: g / x,))
tanh = Primitive("tanh", np.tanh, (lambda g, ans, x: (1.0 - ans**2) * g,))
sigmoid = Primitive("sigmoid", _sigmoid, (lambda g, ans, x: ans * (1.0 - ans) * g,))
# The derivative at 0 is taken as 0, as jax.nn.relu does.
relu = Primitive("relu", lambda x: np.maximum(x, 0.0), (lambda g, ans, x: g * (x > 0),))


# -- matmul -----------------------------------------------------------------------------------
def _check_matmul(name: str, x: np.ndarray, y: np.ndarray) -> None:
    if x.ndim not in (1, 2) or y.ndim not in (1, 2):
        raise ValueError(
            f"{name}: {x.shape} @ {y.shape}: this engine multiplies vectors and matrices "
            "(ndim 1 or 2); reshape batches of matrices to 2-D first"
        )
    if x.shape[-1] != y.shape[0]:
        raise ValueError(
            f"{name}: {x.shape} @ {y.shape}: the last axis of the left operand ({x.shape[-1]}) "
            f"must equal the first axis of the right operand ({y.shape[0]})"
        )


def _as_matrices(g: np.ndarray, x: np.ndarray, y: np.ndarray):
    """x as (n, k), y as (k, m) and g as (n, m): a vector operand becomes a row / column."""
    x2 = x.reshape(1, -1) if x.ndim == 1 else x
    y2 = y.reshape(-1, 1) if y.ndim == 1 else y
    return g.reshape(x2.shape[0], y2.shape[1]), x2, y2


def _matmul_vjp_x(g, ans, x, y):
    g2, _, y2 = _as_matrices(g, x, y)
    return (g2 @ y2.T).reshape(x.shape)  # X-bar = Y-bar W^T in the lecture's MLP notation


def _matmul_vjp_y(g, ans, x, y):
    g2, x2, _ = _as_matrices(g, x, y)
    return (x2.T @ g2).reshape(y.shape)  # W-bar = X^T Y-bar


matmul = Primitive("matmul", np.matmul, (_matmul_vjp_x, _matmul_vjp_y), check=_check_matmul)


# -- reductions -------------------------------------------------------------------------------
def _restore_reduced_axes(g: np.ndarray, ndim: int, axis, keepdims: bool) -> np.ndarray:
    """``g`` with the axes a reduction over ``axis`` removed put back as size 1."""
    if keepdims:
        return g
    axes = range(ndim) if axis is None else np.atleast_1d(axis)
    return np.expand_dims(g, tuple(int(a) % ndim for a in axes))


def _sum_vjp(g, ans, x, axis=None, keepdims=False):
    # Every summed entry gets the output's error signal: copy it back along the reduced axes.
    return _restore_reduced_axes(g, x.ndim, axis, keepdims) * np.ones_like(x)


def _mean_vjp(g, ans, x, axis=None, keepdims=False):
    return _sum_vjp(g, ans, x, axis, keepdims) * (ans.size / x.size)


def _exp_minus_max(x: np.ndarray, axis) -> tuple[np.ndarray, np.ndarray]:
    """``(m, e^(x - m))``, ``m = max x`` over ``axis``: the largest term is 1, none overflows."""
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)  # a slice of -inf gives -inf, not nan
    return m, np.exp(x - m)


def _logsumexp(x: np.ndarray, axis=None, keepdims: bool = False) -> np.ndarray:
    # log sum e^x = m + log sum e^(x - m): exact algebra, and no overflow at x ~ 1000.
    m, e = _exp_minus_max(x, axis)
    out = m + np.log(np.sum(e, axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


def _logsumexp_vjp(g, ans, x, axis=None, keepdims=False):
    # d logsumexp / dx = softmax(x): a dense Jacobian row, yet the VJP is one elementwise product.
    # exp(x - ans) is the same softmax, but rounding ans = m + log(...) at |m| ~ 1000 costs 1e-13.
    _, e = _exp_minus_max(x, axis)
    softmax = e / np.sum(e, axis=axis, keepdims=True)
    return _restore_reduced_axes(g, x.ndim, axis, keepdims) * softmax


sum = Primitive("sum", np.sum, (_sum_vjp,))  # shadows the builtin here: ops.sum reads like np.sum
mean = Primitive("mean", np.mean, (_mean_vjp,))
logsumexp = Primitive("logsumexp", _logsumexp, (_logsumexp_vjp,))

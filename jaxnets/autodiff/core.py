"""The engine: nodes, the tape, the backward pass, and ``grad`` / ``value_and_grad`` / ``vjp``.

Lecture: seed 004, Lecture 6 "Automatic Differentiation" (line 1528), §4 "Implementing
autodiff" (the Autodidact design), in its three parts:

1. §4.1 tracing the computation (line 1678). An input is a :class:`Node` made by
   :meth:`Tape.input`. Calling a :class:`Primitive` on Nodes *unboxes* them (takes their
   ``value``), runs the numpy function and *boxes* the result in a new Node that remembers the
   primitive, its arguments and its parent Nodes. The :class:`Tape` lists the Nodes of one
   trace in the order they were made: ``print(tape)`` is the lecture's "sequence of ops".
2. §4.2 vector-Jacobian products (line 1716): a primitive carries, for each argument, a
   function ``vjp(g, ans, *args, **kwargs)`` mapping the output's error signal ``g`` to that
   argument's error signal without forming the Jacobian (see :mod:`jaxnets.autodiff.ops`).
3. §4.3 backprop (line 1754) as message passing: :func:`backward` visits the Nodes in reverse
   topological order (:func:`toposort`), so a Node is processed only after ALL of its
   consumers have sent it their messages; it sums them into its own error signal and sends a
   message (a VJP) to each parent. A Node used twice (``x * x``, or a diamond ``x -> a, b ->
   out``) therefore gets the sum of both messages.

``jax.grad`` computes the same numbers on a different design: it traces the Python function
into a jaxpr, differentiates it (JVP then transposition) and compiles the result with XLA. This
engine is the "under the hood" view next to it: plain numpy, float64, one trace per call, first
derivatives only (the VJPs compute on numpy arrays rather than Nodes, so unlike Autodidact it
cannot differentiate its own backward pass). tests/test_autodiff.py checks it against
``jax.grad`` to 1e-10.

Example (the lecture's logistic unit, Figure 4)::

    tape = Tape()
    z = tape.input(np.array(0.5), name="z")
    y = 1.0 / (1.0 + ops.exp(-z))
    print(tape)                          # z = input (), t1 = negative(z), t2 = exp(t1), ...
    backward(y, np.ones(()))[z]          # dy/dz = y (1 - y)
    grad(lambda z: 1.0 / (1.0 + ops.exp(-z)))(0.5)   # the same, in one call
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "Node",
    "Primitive",
    "Tape",
    "backward",
    "grad",
    "toposort",
    "value_and_grad",
    "vjp",
]

Tree = Any  # a float array, or a dict / list / tuple of trees
Vjp = Callable[..., np.ndarray]


def _operators(op: str) -> tuple[Callable[[Node, Any], Node], Callable[[Node, Any], Node]]:
    """Node's methods for ``x <op> y`` and the reflected ``y <op> x`` (as numpy's
    ``NDArrayOperatorsMixin`` builds them): ``ops.<op>(x, y)`` and ``ops.<op>(y, x)``. ``ops``
    is looked up at call time, since it imports this module."""

    def forward(self: Node, other: Any) -> Node:
        return getattr(_ops, op)(self, other)

    def reflected(self: Node, other: Any) -> Node:
        return getattr(_ops, op)(other, self)

    return forward, reflected


class Node:
    """One value of a traced computation: a float64 array and the op that computed it.

    Arithmetic operators build the graph, so model code reads like numpy: ``x @ W + b``,
    ``-z``, ``2.0 * y``, ``1.0 / t`` (a numpy array on the left defers to the Node).

    Attributes:
      value: the float64 array (any shape) computed in the forward pass.
      primitive: the :class:`Primitive` that made it; ``None`` for an input.
      args: the primitive's arguments as float64 arrays (parents unboxed), for its VJPs.
      kwargs: the primitive's keyword arguments (``axis=1``, ...).
      parents: ``(argnum, Node)`` for each argument that is a Node.
      tape: the :class:`Tape` of the trace this Node belongs to.
      name: the input's name (``"W1"``) or ``"t<k>"``, its position on the tape.
    """

    __slots__ = ("value", "primitive", "args", "kwargs", "parents", "tape", "name")
    # Makes `ndarray + node` return NotImplemented so Python calls Node.__radd__.
    __array_ufunc__ = None

    def __init__(self, value, primitive, args, kwargs, parents, tape, name):
        self.value = value
        self.primitive = primitive
        self.args = args
        self.kwargs = kwargs
        self.parents = parents
        self.tape = tape
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def ndim(self) -> int:
        return self.value.ndim

    def __repr__(self) -> str:
        made_by = self.primitive.name if self.primitive else "input"
        return f"Node({self.name} = {made_by}, shape {self.value.shape})"

    __add__, __radd__ = _operators("add")
    __sub__, __rsub__ = _operators("subtract")
    __mul__, __rmul__ = _operators("multiply")
    __truediv__, __rtruediv__ = _operators("divide")
    __matmul__, __rmatmul__ = _operators("matmul")

    def __neg__(self):
        return _ops.negative(self)

    def sum(self, axis=None, keepdims=False):
        """``ops.sum(self, axis, keepdims)``."""
        return _ops.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        """``ops.mean(self, axis, keepdims)``."""
        return _ops.mean(self, axis=axis, keepdims=keepdims)


class Tape:
    """The record of one trace: every Node in the order it was made (a Wengert list).

    A Node is appended only after its parents exist, so the tape's order is already a
    topological order; :func:`backward` nevertheless sorts from the output (as the lecture
    does), which skips the Nodes the output does not depend on.
    """

    def __init__(self) -> None:
        self.nodes: list[Node] = []

    def input(self, value: Any, name: str = "x") -> Node:
        """A new input Node holding ``value`` (a float array or Python float of any shape)."""
        node = Node(_as_float_input(value, name), None, (), {}, (), self, name)
        self.nodes.append(node)
        return node

    def record(self, primitive: Primitive, value, args, kwargs, parents) -> Node:
        """Append the Node made by ``primitive`` (called by :meth:`Primitive.__call__`)."""
        node = Node(value, primitive, args, kwargs, parents, self, f"t{len(self.nodes)}")
        self.nodes.append(node)
        return node

    def __len__(self) -> int:
        return len(self.nodes)

    def __str__(self) -> str:
        return "\n".join(_describe(node) for node in self.nodes)


def _describe(node: Node) -> str:
    """``t3 = add(1.0, t2)``: one line of the tape's listing."""
    if node.primitive is None:
        return f"{node.name} = input {node.value.shape}"
    names = {argnum: parent.name for argnum, parent in node.parents}
    args = [
        names.get(i, repr(float(a)) if a.ndim == 0 else f"array{a.shape}")
        for i, a in enumerate(node.args)
    ]
    args += [f"{key}={value!r}" for key, value in node.kwargs.items()]
    return f"{node.name} = {node.primitive.name}({', '.join(args)})"


class Primitive:
    """A numpy function the engine can differentiate: its forward function and its VJPs.

    Args:
      name: shown in the tape listing and in error messages.
      fn: ``fn(*arrays, **kwargs) -> array`` on float64 numpy arrays.
      vjps: one function per positional argument, ``vjp(g, ans, *args, **kwargs)`` -> the
        error signal of that argument (its shape), given ``g`` (the shape of ``ans``), the
        forward output ``ans`` and the unboxed arguments (lecture §4.2, Figure 5).
      check: optional ``check(name, *args, **kwargs)`` that raises a clear error for
        arguments ``fn`` cannot take (a shape mismatch) before numpy raises its own.

    Calling a primitive on plain arrays just computes ``fn`` (a float64 array); calling it
    on at least one Node records a new Node on that Node's tape.
    """

    def __init__(
        self,
        name: str,
        fn: Callable[..., np.ndarray],
        vjps: Sequence[Vjp],
        check: Callable[..., None] | None = None,
    ):
        self.name = name
        self.fn = fn
        self.vjps = tuple(vjps)
        self.check = check

    def __repr__(self) -> str:
        return f"Primitive({self.name})"

    def __call__(self, *args, **kwargs):
        if len(args) != len(self.vjps):
            raise TypeError(f"{self.name} takes {len(self.vjps)} array arguments; got {len(args)}")
        values = tuple(_unbox(arg, self.name, i) for i, arg in enumerate(args))
        if self.check is not None:
            self.check(self.name, *values, **kwargs)
        ans = np.asarray(self.fn(*values, **kwargs), dtype=np.float64)
        parents = tuple((i, arg) for i, arg in enumerate(args) if isinstance(arg, Node))
        if not parents:
            return ans
        tape = parents[0][1].tape
        if any(parent.tape is not tape for _, parent in parents):
            raise ValueError(
                f"{self.name} combines Nodes from different traces; a Node kept from an "
                "earlier trace (another grad call or Tape) cannot join a new one: pass its "
                ".value (a constant) or make it an input of the new trace"
            )
        return tape.record(self, ans, values, kwargs, parents)


def _unbox(arg: Any, op_name: str, argnum: int) -> np.ndarray:
    """A primitive's argument as a float64 array: a Node's value, or a numeric constant."""
    if isinstance(arg, Node):
        return arg.value
    if isinstance(arg, (bool, int, float, np.ndarray, np.number, np.bool_)):
        array = np.asarray(arg)
        if array.dtype.kind in "biuf":
            return array.astype(np.float64)
    raise TypeError(
        f"{op_name}: argument {argnum} is a {type(arg).__name__}"
        + (f" of dtype {arg.dtype}" if hasattr(arg, "dtype") else "")
        + "; expected a Node, a real-valued numpy array or a Python number"
        " (convert JAX arrays and lists with np.asarray)"
    )


def _as_float_input(value: Any, name: str) -> np.ndarray:
    """An input to differentiate, as a float64 array; integers and non-numpy types are refused."""
    if isinstance(value, (float, np.ndarray, np.floating)):
        array = np.asarray(value)
        if array.dtype.kind == "f":
            return array.astype(np.float64)
        raise TypeError(
            f"cannot differentiate with respect to {name}: dtype {array.dtype} has no "
            "gradient; pass floats, e.g. np.asarray(x, dtype=np.float64)"
        )
    raise TypeError(
        f"cannot differentiate with respect to {name}: got a {type(value).__name__}; expected "
        "a float numpy array or a Python float, or a dict/list/tuple of them "
        "(convert JAX arrays with np.asarray)"
    )


def toposort(end_node: Node) -> list[Node]:
    """The Nodes ``end_node`` depends on (itself first), each after all of its consumers.

    Kahn's algorithm on the reversed graph: count each Node's consumers among the Nodes that
    lead to ``end_node``, and release a Node once every consumer has been emitted. This
    ordering is what lets :func:`backward` finish a Node's error signal before using it.
    """
    consumers: dict[Node, int] = {end_node: 0}
    stack = [end_node]
    while stack:
        node = stack.pop()
        for _, parent in node.parents:
            if parent not in consumers:
                consumers[parent] = 0
                stack.append(parent)
            consumers[parent] += 1
    order, ready = [], [end_node]
    while ready:
        node = ready.pop()
        order.append(node)
        for _, parent in node.parents:
            consumers[parent] -= 1
            if consumers[parent] == 0:
                ready.append(parent)
    return order


def backward(end_node: Node, g: np.ndarray) -> dict[Node, np.ndarray]:
    """Backprop from ``end_node`` with output error signal ``g`` (the shape of ``end_node``).

    Returns every Node's error signal (``v-bar = d<g, end>/dv``, the shape of ``v``), keyed by
    Node, for the Nodes ``end_node`` depends on. Nodes are visited in :func:`toposort` order,
    so a Node's signal is complete (all consumers' messages summed) before it is passed on.
    """
    g = np.asarray(g, dtype=np.float64)
    if g.shape != end_node.shape:
        raise ValueError(
            f"output error signal has shape {g.shape}; expected the output's shape {end_node.shape}"
        )
    error_signals = {end_node: g}
    for node in toposort(end_node):
        node_bar = error_signals[node]
        for argnum, parent in node.parents:
            message = node.primitive.vjps[argnum](node_bar, node.value, *node.args, **node.kwargs)
            if parent in error_signals:
                error_signals[parent] = error_signals[parent] + message
            else:
                error_signals[parent] = message
    return error_signals


def _tree_map(fn: Callable[[Any, str], Any], tree: Tree, path: str) -> Tree:
    """``fn(leaf, path)`` over the leaves of nested dicts, lists and tuples."""
    if isinstance(tree, dict):
        return {key: _tree_map(fn, value, f"{path}[{key!r}]") for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_tree_map(fn, value, f"{path}[{i}]") for i, value in enumerate(tree))
    return fn(tree, path)


def vjp(fun: Callable[..., Any], *args: Tree) -> tuple[np.ndarray, Callable]:
    """Trace ``fun(*args)`` and return ``(value, vjp_fn)``, like ``jax.vjp``.

    Args:
      fun: built from :mod:`jaxnets.autodiff.ops` and Node operators; returns one array.
      args: float arrays or Python floats, or dicts / lists / tuples of them (pytrees).

    Returns:
      ``value``: ``fun(*args)`` as a float64 array; ``vjp_fn(g)``: for an output error signal
      ``g`` of ``value``'s shape, a tuple with one gradient tree per argument, shaped like it
      (zeros for leaves the output does not depend on).
    """
    tape = Tape()
    inputs = tuple(_tree_map(tape.input, arg, f"arg{i}") for i, arg in enumerate(args))
    out = fun(*inputs)
    if isinstance(out, Node):
        if out.tape is not tape:
            raise ValueError(
                "the function returned a Node from another trace; it must compute its result "
                "from its arguments"
            )
        value = out.value
    elif isinstance(out, (int, float, np.ndarray, np.number)):
        value = np.asarray(out, dtype=np.float64)  # independent of the inputs: gradient zero
    else:
        raise TypeError(
            f"the function must return one array (a Node built from its arguments); got a "
            f"{type(out).__name__}"
        )

    def vjp_fn(g: np.ndarray) -> tuple[Tree, ...]:
        signals = backward(out, g) if isinstance(out, Node) else {}
        return tuple(
            _tree_map(lambda node, _: signals.get(node, np.zeros_like(node.value)), tree, "")
            for tree in inputs
        )

    return value, vjp_fn


def value_and_grad(
    fun: Callable[..., Any], argnums: int | Sequence[int] = 0
) -> Callable[..., tuple[float, Tree]]:
    """``f -> (args -> (f(args), gradient))`` for a scalar ``f``, like ``jax.value_and_grad``.

    ``argnums`` picks the argument(s) to differentiate: an int gives that argument's gradient
    tree (e.g. ``{"W1": (64, 32), ...}`` for a parameter dict), a sequence a tuple of them.
    The other arguments (data, labels) are passed through as constants. The value is a float.
    """
    selected = (argnums,) if isinstance(argnums, int) else tuple(argnums)

    @functools.wraps(fun)
    def wrapped(*args):
        for argnum in selected:
            if not -len(args) <= argnum < len(args):
                raise ValueError(
                    f"argnums={argnums} asks for argument {argnum}, but "
                    f"{getattr(fun, '__name__', 'the function')} got {len(args)} arguments"
                )

        def fun_of_selected(*chosen):
            full = list(args)
            for argnum, arg in zip(selected, chosen, strict=True):
                full[argnum] = arg
            return fun(*full)

        value, vjp_fn = vjp(fun_of_selected, *(args[argnum] for argnum in selected))
        if value.shape != ():
            raise TypeError(
                f"grad needs a scalar output; {getattr(fun, '__name__', 'the function')} "
                f"returned shape {value.shape} (reduce it with ops.sum / ops.mean, or use vjp "
                "with an output error signal)"
            )
        grads = vjp_fn(np.ones(()))
        return float(value), grads[0] if isinstance(argnums, int) else grads

    return wrapped


def grad(fun: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Callable[..., Tree]:
    """``f -> (args -> gradient)`` for a scalar-valued ``f``, like ``jax.grad``.

    See :func:`value_and_grad` for ``argnums`` and the shape of the gradient.
    """
    with_value = value_and_grad(fun, argnums)

    @functools.wraps(fun)
    def gradient(*args):
        return with_value(*args)[1]

    return gradient


# At the end: ops builds its primitives from Primitive above and Node's operators call them.
from jaxnets.autodiff import ops as _ops  # noqa: E402

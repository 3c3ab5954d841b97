"""A small reverse-mode autodiff engine on numpy, for teaching: the view under ``jax.grad``.

Lecture: seed 004, Lecture 6 "Automatic Differentiation" (line 1528), §4 "Implementing
autodiff": §4.1 tracing the computation (line 1678) -> :class:`Node`, :class:`Tape`,
:class:`Primitive`; §4.2 vector-Jacobian products (line 1716) -> :mod:`.ops`; §4.3 backprop
(line 1754) -> :func:`toposort`, :func:`backward`, and on top of them :func:`vjp`,
:func:`grad` and :func:`value_and_grad` with ``jax.grad``'s calling convention (``argnums``;
arguments may be dicts / lists / tuples of arrays). :mod:`.nn` writes an MLP classifier and
its SGD training with it.

``jax.grad`` traces a function into a jaxpr, transposes its linearisation and compiles the
result; this engine boxes numpy values in Nodes and walks the recorded graph backwards in
Python. Same numbers (tests/test_autodiff.py checks them to 1e-10 in float64), very different
machinery and speed. Example::

    from jaxnets.autodiff import grad, ops, nn

    params = nn.init_mlp((64, 32, 10))
    grads = grad(nn.mlp_loss)(params, x, labels)   # {"W1": (64, 32), "b1": (32,), ...}
"""

from jaxnets.autodiff import nn, ops
from jaxnets.autodiff.core import (
    Node,
    Primitive,
    Tape,
    backward,
    grad,
    toposort,
    value_and_grad,
    vjp,
)

__all__ = [
    "Node",
    "Primitive",
    "Tape",
    "backward",
    "grad",
    "nn",
    "ops",
    "toposort",
    "value_and_grad",
    "vjp",
]

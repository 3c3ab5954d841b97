"""A planted wrong gradient, shared by the gradcheck tests (test_gradcheck.py,
test_gradcheck_report.py)."""

from collections.abc import Callable

import jax


def planted_gradient(
    forward: Callable[[jax.Array], jax.Array], corrupt: Callable[[jax.Array], jax.Array]
) -> Callable[[jax.Array], jax.Array]:
    """``forward`` with a custom VJP whose backward returns ``corrupt(true gradient)``.

    ``forward`` maps an array x (any shape) to a scalar; ``corrupt`` maps its gradient (the
    shape of x) to an array of that shape. The finite differences see only ``forward``;
    ``jax.grad`` sees the corrupted rule, so the checker's analytic side is exactly the wrong
    gradient we plant.
    """

    @jax.custom_vjp
    def f(x):
        return forward(x)

    def fwd(x):
        return forward(x), x

    def bwd(x, g):
        return (g * corrupt(jax.grad(forward)(x)),)

    f.defvjp(fwd, bwd)
    return f

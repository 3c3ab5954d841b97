"""The activation zoo: every hidden-unit nonlinearity of the lectures, by name.

Lectures: seed 002 "Hidden Units" (line 848: ReLU; line 980: absolute value, leaky,
parametric and randomized ReLU, g(z, a)_i = max(0, z_i) + a_i min(0, z_i); line 1020: ELU;
line 1044: maxout; line 1083: sigmoid; line 1124: tanh; line 1145: RBF, softplus, hard tanh),
seed 000 "Multilayer Perceptrons" (line 103: identity, ReLU, soft ReLU, hard threshold,
logistic, tanh), seed 004 §3 (line 971: the hard threshold of the perceptron-style XOR net).

Three kinds of activation live in one table, :data:`ACTIVATIONS`:

* ``"elementwise"``: a plain function ``g(z)`` of the pre-activations, no parameters
  (identity, relu, leaky_relu, abs, elu, softplus, sigmoid, tanh, hard_tanh, hard_threshold).
* ``"module"``: elementwise too, but with parameters or randomness, so a linen Module
  called as ``module(z, train)`` (:class:`PReLU`, :class:`RReLU`).
* ``"layer"``: does not fit the (dot product -> nonlinearity) mold, so it replaces the affine
  map and acts on the layer input ``x`` (:class:`Maxout`, :class:`RBF`).

:func:`make_activation` turns an elementwise or module name into one uniform callable
``(z, train) -> h``; :func:`make_layer` builds a layer-kind activation.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = [
    "ACTIVATIONS",
    "RBF",
    "ActivationSpec",
    "Maxout",
    "PReLU",
    "RReLU",
    "UnknownActivationError",
    "absolute",
    "elu",
    "get_activation",
    "hard_tanh",
    "hard_threshold",
    "identity",
    "leaky_relu",
    "make_activation",
    "make_layer",
    "relu",
    "sigmoid",
    "softplus",
    "tanh",
]


def identity(z: jax.Array) -> jax.Array:
    """g(z) = z (a linear unit; a deep net of these is still linear, seed 000 line 192)."""
    return z


def relu(z: jax.Array) -> jax.Array:
    """Rectified linear unit g(z) = max(0, z); its gradient at exactly 0 is taken as 0.

    ``jax.nn.relu`` carries a custom derivative: ~3% faster backward than ``jnp.maximum``."""
    return jax.nn.relu(z)


def leaky_relu(z: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """Leaky ReLU (Maas et al., 2013): max(0, z) + a min(0, z) with a fixed small slope a."""
    return jnp.where(z > 0, z, negative_slope * z)


def absolute(z: jax.Array) -> jax.Array:
    """Absolute value rectification (Jarrett et al., 2009): the a = 1 case, g(z) = |z|."""
    return jnp.abs(z)


def elu(z: jax.Array, alpha: float = 1.0) -> jax.Array:
    """Exponential linear unit (Clevert et al., 2016): z if z > 0 else alpha (e^z - 1)."""
    # The unused branch of where() must not overflow for large z, so expm1 sees 0 there; a
    # where() rather than min(z, 0), whose gradient at the tie z = 0 would be halved.
    return jnp.where(z > 0, z, alpha * jnp.expm1(jnp.where(z > 0, 0.0, z)))


def softplus(z: jax.Array) -> jax.Array:
    """Softplus / soft ReLU log(1 + e^z), a smooth rectifier (Dugas et al., 2001)."""
    return jnp.logaddexp(z, 0.0)


def sigmoid(z: jax.Array) -> jax.Array:
    """Logistic sigmoid 1 / (1 + e^-z): squashes to (0, 1) and saturates at both ends."""
    return jax.nn.sigmoid(z)


def tanh(z: jax.Array) -> jax.Array:
    """tanh(z) = 2 sigmoid(2z) - 1: zero-centred, squashes to (-1, 1)."""
    return jnp.tanh(z)


def hard_tanh(z: jax.Array) -> jax.Array:
    """Hard tanh max(-1, min(1, z)) (Collobert, 2004): like the rectifier, but bounded."""
    return jnp.clip(z, -1.0, 1.0)


def hard_threshold(z: jax.Array) -> jax.Array:
    """Hard threshold 1[z > 0] (the perceptron's step, seed 000 line 113).

    Its true derivative is 0 wherever it exists (everywhere but z = 0), and the gradient
    returned here is exactly 0 everywhere. A net of hard-threshold units therefore cannot be
    trained by gradient descent: that is the lectures' reason for smooth or piecewise-linear
    units, and why the hand-set XOR net (``xor_handset("hard_threshold")``) is set by hand.
    """
    # where() on a comparison has no path from z to the output, so jax.grad gives exactly 0.
    return jnp.where(z > 0, jnp.ones_like(z), jnp.zeros_like(z))


class PReLU(nn.Module):
    """Parametric ReLU (He et al., 2015): max(0, z) + a min(0, z) with a learned slope a.

    One slope per unit (the last axis). ``z: (..., units) -> (..., units)``.

    Attributes:
      init_slope: initial value of every slope (0.25 as in He et al.).
    """

    init_slope: float = 0.25

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
        slope = self.param("slope", nn.initializers.constant(self.init_slope), (z.shape[-1],))
        return jnp.maximum(z, 0.0) + slope * jnp.minimum(z, 0.0)


class RReLU(nn.Module):
    """Randomized leaky ReLU (Xu et al., 2015): the negative slope is random while training.

    With ``train=True`` every activation draws its own slope a ~ U[lower, upper] from the
    ``'dropout'`` rng stream; at evaluation the slope is fixed at the mean (lower + upper)/2,
    so the evaluation net is the expected training net. ``z: (...) -> (...)``.

    Attributes:
      lower, upper: range of the slope (1/8 and 1/3, the defaults of Xu et al.'s 1/a ~ U[3, 8]).
    """

    lower: float = 1.0 / 8.0
    upper: float = 1.0 / 3.0

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
        if not 0.0 <= self.lower <= self.upper:
            raise ValueError(f"RReLU needs 0 <= lower <= upper; got {self.lower}, {self.upper}")
        if train:
            slope = jax.random.uniform(
                self.make_rng("dropout"), z.shape, z.dtype, self.lower, self.upper
            )
        else:
            slope = 0.5 * (self.lower + self.upper)
        return jnp.where(z > 0, z, slope * z)


class Maxout(nn.Module):
    """Maxout units (Goodfellow et al., 2013): g(x)_i = max_j (w_ij^T x + b_ij), j < pieces.

    Each unit is the max of ``pieces`` affine functions: a piecewise-linear, convex
    activation learned with the weights (with 2 pieces it can be ReLU, |z| or PReLU).
    ``x: (..., in) -> (..., features)``; the kernel is ``(in, features, pieces)``.

    Attributes:
      features: number of maxout units.
      pieces: number k of linear pieces per unit.
    """

    features: int
    pieces: int = 2

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.pieces < 1:
            raise ValueError(f"Maxout needs pieces >= 1; got {self.pieces}")
        z = nn.DenseGeneral((self.features, self.pieces), name="pieces")(x)
        return jnp.max(z, axis=-1)


class RBF(nn.Module):
    """Radial basis function units: g(x)_j = exp(-||x - c_j||^2 / (2 sigma_j^2)).

    Unit j is most active (value 1) when the input equals its template c_j and decays with
    distance; seed 002 line 1145 writes exp(||W_:,j x||^2 / sigma_j^2), an OCR-garbled
    form of this. Centres ``c: (features, in)`` and widths (as ``log_sigma: (features,)``
    so sigma stays positive) are learned. ``x: (..., in) -> (..., features)``.

    Attributes:
      features: number of RBF units.
      init_sigma: initial width; None uses sqrt(in), so for standard-normal inputs and
        centres (E||x - c||^2 = 2 in) a unit starts near exp(-1) instead of vanishing.
    """

    features: int
    init_sigma: float | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        d = x.shape[-1]
        sigma0 = math.sqrt(d) if self.init_sigma is None else self.init_sigma
        if sigma0 <= 0:
            raise ValueError(f"RBF init_sigma must be > 0; got {sigma0}")
        centers = self.param("centers", nn.initializers.normal(1.0), (self.features, d))
        log_sigma = self.param(
            "log_sigma", nn.initializers.constant(math.log(sigma0)), (self.features,)
        )
        sq_dist = jnp.sum(jnp.square(x[..., None, :] - centers), axis=-1)
        return jnp.exp(-0.5 * sq_dist * jnp.exp(-2.0 * log_sigma))


@dataclasses.dataclass(frozen=True)
class ActivationSpec:
    """One entry of the zoo.

    Attributes:
      name: registry name (``"leaky_relu"``).
      fn: the function or Module class.
      lecture: where the lectures introduce it.
      kind: ``"elementwise"`` (plain function), ``"module"`` (elementwise Module with
        params or rng) or ``"layer"`` (replaces the affine map: maxout, RBF).
      trainable: False when the gradient is zero almost everywhere (hard threshold).
    """

    name: str
    fn: Callable[..., Any]
    lecture: str
    kind: str = "elementwise"
    trainable: bool = True


def _hidden_unit(title: str, line: int) -> str:
    """Where seed 002's survey of hidden units introduces ``title``: its ``lecture`` field."""
    return f"002 hidden units: {title} (line {line})"


ACTIVATIONS: dict[str, ActivationSpec] = {
    spec.name: spec
    for spec in (
        ActivationSpec("identity", identity, "000 activation functions (line 103)"),
        ActivationSpec("relu", relu, _hidden_unit("ReLU", 848)),
        ActivationSpec("leaky_relu", leaky_relu, _hidden_unit("leaky ReLU", 985)),
        ActivationSpec("prelu", PReLU, _hidden_unit("parametric ReLU", 993), "module"),
        ActivationSpec("rrelu", RReLU, _hidden_unit("randomized ReLU", 1000), "module"),
        ActivationSpec("abs", absolute, _hidden_unit("absolute value", 980)),
        ActivationSpec("elu", elu, _hidden_unit("ELU", 1020)),
        ActivationSpec("softplus", softplus, _hidden_unit("softplus", 1154)),
        ActivationSpec("sigmoid", sigmoid, _hidden_unit("sigmoid", 1083)),
        ActivationSpec("tanh", tanh, _hidden_unit("tanh", 1124)),
        ActivationSpec("hard_tanh", hard_tanh, _hidden_unit("hard tanh", 1159)),
        ActivationSpec(
            "hard_threshold",
            hard_threshold,
            "000 activation functions: hard threshold (line 113)",
            trainable=False,
        ),
        ActivationSpec("maxout", Maxout, _hidden_unit("maxout", 1044), "layer"),
        ActivationSpec("rbf", RBF, _hidden_unit("RBF", 1145), "layer"),
    )
}


class UnknownActivationError(KeyError):
    """Raised for an activation name not in :data:`ACTIVATIONS`; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


def get_activation(name: str) -> ActivationSpec:
    """The :class:`ActivationSpec` named ``name``; unknown names list close matches."""
    if name not in ACTIVATIONS:
        close = difflib.get_close_matches(name, list(ACTIVATIONS), n=3, cutoff=0.5)
        hint = f" — did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownActivationError(
            f"unknown activation {name!r}{hint} (known: {', '.join(ACTIVATIONS)})"
        )
    return ACTIVATIONS[name]


def _option_names(fn: Callable[..., Any]) -> list[str]:
    if isinstance(fn, type) and issubclass(fn, nn.Module):
        skip = {"parent", "name", "features"}
        return [f.name for f in dataclasses.fields(fn) if f.name not in skip]
    return list(inspect.signature(fn).parameters)[1:]


def _check_options(spec: ActivationSpec, options: dict[str, Any]) -> None:
    accepted = _option_names(spec.fn)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"activation {spec.name!r} has no option {', '.join(map(repr, unknown))}; "
            f"it accepts {', '.join(accepted) or 'no options'}"
        )


def make_activation(
    name: str, *, module_name: str | None = None, **options: Any
) -> Callable[[jax.Array, bool], jax.Array]:
    """A callable ``(z, train) -> h`` for an elementwise or module activation.

    Call it inside a ``@nn.compact`` method: module kinds (PReLU, RReLU) are created there,
    named ``module_name``. ``options`` are the activation's keyword arguments or fields
    (``negative_slope`` for leaky_relu, ``alpha`` for elu, ``init_slope`` for prelu,
    ``lower``/``upper`` for rrelu). Layer kinds (maxout, rbf) act on the layer input, not on
    pre-activations: build them with :func:`make_layer`.
    """
    spec = get_activation(name)
    _check_options(spec, options)
    if spec.kind == "layer":
        raise ValueError(
            f"activation {name!r} replaces the affine map (it acts on the layer input); "
            "build it with make_layer(name, features)"
        )
    if spec.kind == "module":
        return spec.fn(**options, name=module_name)
    fn = spec.fn

    def apply(z: jax.Array, train: bool = False) -> jax.Array:
        return fn(z, **options)

    return apply


def make_layer(
    name: str, features: int, *, module_name: str | None = None, **options: Any
) -> nn.Module:
    """A layer-kind activation Module (maxout, RBF) with ``features`` units.

    Called as ``layer(x, train)`` with x the layer input ``(..., in) -> (..., features)``.
    ``options``: ``pieces`` for maxout, ``init_sigma`` for rbf.
    """
    spec = get_activation(name)
    if spec.kind != "layer":
        raise ValueError(
            f"activation {name!r} is {spec.kind}, not a layer; use a Dense layer followed by "
            f"make_activation({name!r})"
        )
    _check_options(spec, options)
    return spec.fn(features=features, **options, name=module_name)

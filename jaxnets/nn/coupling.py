"""NICE's invertible layers: the additive coupling layer and the diagonal scaling layer.

Lecture: seed 004, Lecture 15 "Autoregressive and Reversible Models" (line 3300), §1
"Reversible Models": the reversible block y1 = x1 + F(x2), y2 = x2 (Eq. 3), its inverse
x1 = y1 − F(x2) (Eq. 4), whose Jacobian is unit triangular so its determinant is 1 (volume
preserving, Eq. 8); NICE (Dinh, Krueger & Bengio 2014, "NICE: Non-linear Independent
Components Estimation", arXiv:1410.8516) trains such layers by maximum likelihood with the
change-of-variables formula (Eq. 1, 9).

Direction: each layer's ``__call__`` is the paper's direction, data toward latent (the
encoder, the lecture's f^{-1}), and returns ``(y, log_det)`` with ``log_det`` = log|det ∂y/∂x|
per example; ``inverse`` goes back (the generator direction, the lecture's f). Call the inverse
on a bound model with ``layer.apply(variables, y, method="inverse")``.

Additive coupling (paper §3.2-3.3): split the D coordinates by a fixed partition into a kept
part I1 and a changed part I2; y_I1 = x_I1, y_I2 = x_I2 + m(x_I1) with m an MLP. The
partition is by index parity (``parity=0`` keeps the even coordinates 0, 2, ..., changes the
odd ones; ``parity=1`` the other way round), so consecutive layers with alternating parity
change every coordinate. The Jacobian is unit triangular after permuting coordinates, so
log|det| = 0 whatever m is: m need not be invertible.

Diagonal scaling (paper §3.3): y = x ⊙ exp(s), log|det| = Σ_i s_i; the only layer of NICE
that changes volume, so the flow can spread or concentrate probability mass at all.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.nn.activations import get_activation

__all__ = ["AdditiveCoupling", "DiagonalScaling", "check_coupling_function", "coupling_partition"]


def coupling_partition(features: int, parity: int) -> tuple[np.ndarray, np.ndarray]:
    """Coordinate indices ``(kept, changed)`` of a coupling layer on ``features`` coordinates.

    ``kept`` are the indices i with ``i % 2 == parity`` (I1, passed through and fed to m),
    ``changed`` the others (I2, shifted). Both are static numpy arrays of indices.
    """
    if features < 2:
        raise ValueError(
            f"a coupling layer needs at least 2 features to split into a kept and a changed "
            f"part; got features={features}"
        )
    if parity not in (0, 1):
        raise ValueError(f"parity must be 0 (keep even coordinates) or 1 (keep odd); got {parity}")
    indices = np.arange(features)
    return indices[parity::2], indices[1 - parity :: 2]


def check_coupling_function(hidden: int, layers: int, activation: str) -> None:
    """Raise ``ValueError`` unless the coupling function m can be built with these settings."""
    if hidden < 1 or layers < 1:
        raise ValueError(
            f"the coupling function m needs hidden >= 1 units and layers >= 1 hidden "
            f"layers; got hidden={hidden}, layers={layers}"
        )
    kind = get_activation(activation).kind
    if kind != "elementwise":
        raise ValueError(
            f"the coupling function m takes an elementwise activation (relu, tanh, ...); "
            f"{activation!r} is a {kind}"
        )


def _check_features(x: jax.Array, features: int, layer: str) -> None:
    if x.ndim < 1 or x.shape[-1] != features:
        raise ValueError(
            f"{layer} was built for inputs (..., {features}); got shape {tuple(x.shape)}"
        )


class AdditiveCoupling(nn.Module):
    """NICE's additive coupling layer: y_I1 = x_I1, y_I2 = x_I2 + m(x_I1); log|det| = 0.

    ``x: (..., features) -> (y: (..., features), log_det: (...,))`` (all zeros).

    Attributes:
      features: D, the number of coordinates (>= 2).
      hidden: width of each hidden layer of the coupling function m.
      layers: number of hidden layers of m (>= 1); its output layer is affine, with
        ``len(changed)`` units.
      parity: which coordinates are kept (see :func:`coupling_partition`).
      activation: an elementwise hidden unit of :data:`jaxnets.nn.activations.ACTIVATIONS`
        (the paper uses ReLU).
    """

    features: int
    hidden: int = 64
    layers: int = 3
    parity: int = 0
    activation: str = "relu"

    def __post_init__(self):
        coupling_partition(self.features, self.parity)  # validates features and parity
        check_coupling_function(self.hidden, self.layers, self.activation)
        super().__post_init__()

    def setup(self):
        self.kept, self.changed = coupling_partition(self.features, self.parity)
        self.hidden_layers = [nn.Dense(self.hidden) for _ in range(self.layers)]
        self.output_layer = nn.Dense(len(self.changed))

    def shift(self, x_kept: jax.Array) -> jax.Array:
        """The coupling function m: ``x_kept: (..., len(kept)) -> (..., len(changed))``."""
        h = x_kept
        for layer in self.hidden_layers:
            h = get_activation(self.activation).fn(layer(h))
        return self.output_layer(h)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Data toward latent: ``x: (..., features) -> (y, log_det: (...,) zeros)``."""
        _check_features(x, self.features, "AdditiveCoupling")
        y = x.at[..., self.changed].add(self.shift(x[..., self.kept]))
        return y, jnp.zeros(x.shape[:-1], x.dtype)

    def inverse(self, y: jax.Array) -> jax.Array:
        """Latent toward data, exactly: ``x_I1 = y_I1``, ``x_I2 = y_I2 − m(y_I1)``.

        y: (..., features) -> x: (..., features).
        """
        _check_features(y, self.features, "AdditiveCoupling")
        return y.at[..., self.changed].add(-self.shift(y[..., self.kept]))


class DiagonalScaling(nn.Module):
    """NICE's diagonal scaling layer: y = x ⊙ exp(s), log|det| = Σ_i s_i.

    ``x: (..., features) -> (y: (..., features), log_det: (...,))``. The parameter is
    ``log_scale`` s: (features,), initialised to 0 (the identity); parametrising the scale by
    its logarithm keeps it positive, so the layer is always invertible.

    Attributes:
      features: D, the number of coordinates.
    """

    features: int

    def setup(self):
        self.log_scale = self.param("log_scale", nn.initializers.zeros, (self.features,))

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Data toward latent: ``x: (..., features) -> (x ⊙ exp(s), Σ s broadcast to (...,))``."""
        _check_features(x, self.features, "DiagonalScaling")
        log_det = jnp.broadcast_to(jnp.sum(self.log_scale), x.shape[:-1]).astype(x.dtype)
        return x * jnp.exp(self.log_scale), log_det

    def inverse(self, y: jax.Array) -> jax.Array:
        """Latent toward data: ``y: (..., features) -> y ⊙ exp(−s)``."""
        _check_features(y, self.features, "DiagonalScaling")
        return y * jnp.exp(-self.log_scale)

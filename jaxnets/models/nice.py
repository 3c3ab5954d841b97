"""NICE: a normalising flow of additive coupling layers, trained by maximum likelihood.

Lecture: seed 004, Lecture 15 "Autoregressive and Reversible Models" (line 3300), §1
"Reversible Models": the change-of-variables formula p_X(x) = p_Z(z) |det ∂x/∂z|^{-1} with
z = f^{-1}(x) (Eq. 1); reversible blocks (Eq. 3-4) have determinant 1, so a network of them
is volume preserving (Eq. 8) and p_X(x) = p_Z(f^{-1}(x)) (Eq. 9); maximum likelihood over the
data set (Eq. 10). Reference: Dinh, Krueger & Bengio (2014), "NICE: Non-linear Independent
Components Estimation", arXiv:1410.8516, whose last layer is a diagonal scaling (§3.3) so the
flow is not restricted to volume-preserving maps.

Directions (the lecture and the paper name them oppositely):

* the lecture's f maps latent z to data x (the generator). Here that is :meth:`NICE.decode`;
  :meth:`NICE.sample` draws z from the prior and decodes it.
* :meth:`NICE.encode` is f^{-1} (the paper's f): x -> z through the coupling layers, then the
  scaling layer, and returns log|det ∂z/∂x| = −log|det ∂x/∂z| = Σ_i s_i.
* the model's output, ``model.apply(variables, x)``, is log p(x) = log p_Z(z) + log|det ∂z/∂x|
  per example, in nats: what the ``negative_log_likelihood`` loss negates.

The prior p_Z factorises over coordinates: the standard logistic of the paper,
log p(z_d) = −softplus(z_d) − softplus(−z_d), or a standard Gaussian.

Also here: the full-covariance Gaussian fitted by maximum likelihood, the baseline that the
experiment (``experiments/nice.py``) compares NICE's test log-likelihood with.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnets.nn.coupling import (
    AdditiveCoupling,
    DiagonalScaling,
    check_coupling_function,
    coupling_partition,
)
from jaxnets.registry import register_model
from jaxnets.validation import check_counts

__all__ = [
    "NICE",
    "PRIORS",
    "Prior",
    "fit_gaussian",
    "gaussian_log_likelihood",
    "get_prior",
]


class Prior(NamedTuple):
    """A factorised prior over z: ``log_density(z: (..., D)) -> (...,)`` summed over the
    coordinates, and ``sample(rng, shape) -> z`` of that shape."""

    log_density: Callable[[jax.Array], jax.Array]
    sample: Callable[[jax.Array, tuple[int, ...]], jax.Array]


def _logistic_log_density(z: jax.Array) -> jax.Array:
    # log σ(z) + log(1 − σ(z)) through softplus: no overflow and no lost digits at large |z|
    return -jnp.sum(jax.nn.softplus(z) + jax.nn.softplus(-z), axis=-1)


def _gaussian_log_density(z: jax.Array) -> jax.Array:
    return -0.5 * jnp.sum(jnp.square(z) + math.log(2.0 * math.pi), axis=-1)


PRIORS: dict[str, Prior] = {
    "logistic": Prior(_logistic_log_density, jax.random.logistic),
    "gaussian": Prior(_gaussian_log_density, jax.random.normal),
}
"""The priors by name: NICE's standard logistic and the standard Gaussian."""


def get_prior(name: str) -> Prior:
    """The :class:`Prior` named ``name`` (a key of :data:`PRIORS`)."""
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; choose one of {', '.join(PRIORS)}")
    return PRIORS[name]


class NICE(nn.Module):
    """NICE flow: ``x: (batch, features) -> log p(x): (batch,)`` in nats.

    ``num_coupling`` additive coupling layers of alternating parity (so each coordinate is
    shifted by a function of the others every second layer), then a diagonal scaling layer.

    Attributes:
      features: D, the data dimension (>= 2).
      num_coupling: number of additive coupling layers (the paper uses 4).
      hidden: width of the hidden layers of each coupling function m.
      layers: hidden layers per coupling function m.
      activation: elementwise hidden unit of m (the paper: ReLU).
      prior: ``"logistic"`` (the paper's) or ``"gaussian"``, see :data:`PRIORS`.
    """

    features: int = 2
    num_coupling: int = 4
    hidden: int = 64
    layers: int = 3
    activation: str = "relu"
    prior: Literal["logistic", "gaussian"] = "logistic"

    def __post_init__(self):
        # bad settings fail when the model is built, not when it is first applied
        get_prior(self.prior)
        coupling_partition(self.features, parity=0)
        check_coupling_function(self.hidden, self.layers, self.activation)
        if self.num_coupling < 1:
            raise ValueError(f"num_coupling must be >= 1; got {self.num_coupling}")
        super().__post_init__()

    def setup(self):
        self.couplings = [
            AdditiveCoupling(
                self.features, self.hidden, self.layers, parity=i % 2, activation=self.activation
            )
            for i in range(self.num_coupling)
        ]
        self.scaling = DiagonalScaling(self.features)

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """f^{-1}, data to latent: ``x: (batch, features) -> (z: (batch, features),
        log_det: (batch,))`` with log_det = log|det ∂z/∂x| (= Σ_i s_i: couplings add 0)."""
        log_det = jnp.zeros(x.shape[:-1], x.dtype)
        for layer in (*self.couplings, self.scaling):
            x, layer_log_det = layer(x)
            log_det = log_det + layer_log_det
        return x, log_det

    def decode(self, z: jax.Array) -> jax.Array:
        """The generator f (the lecture's direction), latent to data, exactly inverting
        :meth:`encode`: ``z: (batch, features) -> x: (batch, features)``."""
        for layer in (self.scaling, *reversed(self.couplings)):
            z = layer.inverse(z)
        return z

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """log p(x) = log p_Z(f^{-1}(x)) + log|det ∂f^{-1}/∂x| (Eq. 1): ``x: (batch, features)
        -> (batch,)`` nats. ``train`` is accepted for the Trainer and changes nothing."""
        del train
        if x.ndim != 2:
            raise ValueError(
                f"NICE expects x of shape (batch, {self.features}); got {tuple(x.shape)}"
            )
        z, log_det = self.encode(x)
        return get_prior(self.prior).log_density(z) + log_det

    def sample(self, rng: jax.Array, n: int) -> jax.Array:
        """``n`` samples x = f(z), z drawn from the prior with ``rng`` itself (no split):
        ``-> (n, features)``. ``n`` must be static under ``jit``."""
        check_counts("NICE.sample", [("n", "int", n)], zero_ok=("n",))
        z = get_prior(self.prior).sample(rng, (n, self.features))
        return self.decode(z.astype(self.scaling.log_scale.dtype))


def fit_gaussian(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Maximum-likelihood Gaussian of the data: ``x: (n, D) -> (mean: (D,), cov: (D, D))``,
    the covariance divided by n (the ML estimate, not the unbiased n − 1)."""
    mean = jnp.mean(x, axis=0)
    centred = x - mean
    return mean, centred.T @ centred / x.shape[0]


def gaussian_log_likelihood(x: jax.Array, mean: jax.Array, cov: jax.Array) -> jax.Array:
    """log N(x; mean, cov) per example: ``x: (n, D), mean: (D,), cov: (D, D) -> (n,)`` nats.

    −½ (x−μ)ᵀ Σ^{-1} (x−μ) − ½ log det Σ − (D/2) log 2π, through the Cholesky factor
    Σ = L Lᵀ: the Mahalanobis term is ‖L^{-1}(x−μ)‖² and log det Σ = 2 Σ_i log L_ii.
    """
    chol = jnp.linalg.cholesky(cov)
    whitened = jax.scipy.linalg.solve_triangular(chol, (x - mean).T, lower=True)
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diag(chol)))
    dim = x.shape[-1]
    return -0.5 * (jnp.sum(jnp.square(whitened), axis=0) + log_det + dim * math.log(2 * math.pi))


register_model(
    "nice",
    NICE,
    family="flows",
    lecture="004 Lecture 15 §1 Reversible models, NICE, change of variables (line 3300)",
    reference="Dinh, Krueger & Bengio (2014), NICE: Non-linear Independent Components "
    "Estimation, arXiv:1410.8516",
    task="density",
    input_shape=(2,),
    loss="negative_log_likelihood",
    defaults={"features": 2, "num_coupling": 4, "hidden": 64, "layers": 3},
    test_config={"num_coupling": 2, "hidden": 4, "layers": 1},
    description="NICE flow on 2-D points: 4 additive couplings (MLP 64x3) + diagonal scaling, "
    "logistic prior; outputs log p(x)",
)

"""Linear models: regression (closed form and gradient descent), feature maps, the perceptron,
logistic and softmax regression, linear and multiclass SVMs.

Lectures:
  * seed 004 §2.1 "Linear regression" (line 163): squared-error cost (Eq. 4), direct solution
    from the normal equations (§3.1, line 256), gradient descent (§3.2, line 284), vectorised
    ``w <- w - (α/N) Xᵀ(y - t)`` (§4, Eq. 21), polynomial feature maps (§5, line 363).
  * seed 004 §2.2 "Linear classification" (line 406): the perceptron learning rule
    "if z t <= 0: w <- w + t x" (§4, line 548) and XOR's non-separability (§5, line 603).
  * seed 004 §2.3 "Training a classifier" (line 668): logistic regression with cross-entropy,
    hinge loss / SVM (§2.6, line 852), softmax regression (§3, line 874).
  * seed 001: the single neuron as a linear classifier (line 28), perceptron algorithm (line 40),
    logistic regression (line 190), multiclass linear classifiers with hinge loss (line 176).
  * seed 003: the softmax classifier, multinomial logistic regression (line 61).

Every model here is one :class:`LinearModel` (``z = x W + b``); what distinguishes logistic
regression from a linear SVM is only the loss its card names (see :mod:`jaxnets.losses`).
Parameters always have the format ``{'params': {'dense': {'kernel': (D, K), 'bias': (K,)}}}``,
so the closed-form, gradient-descent and perceptron solvers below return variables that
``LinearModel(num_outputs=K).apply`` accepts.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.losses import squared_error
from jaxnets.registry import register_model

__all__ = [
    "LinearModel",
    "PerceptronResult",
    "fit_least_squares",
    "fit_linear_gd",
    "perceptron_mistake_bound",
    "perceptron_train",
    "polynomial_features",
]

_LAYER = "dense"


class LinearModel(nn.Module):
    """A linear map of the flattened input, ``z = x W + b``.

    Attributes:
      num_outputs: K, the number of outputs (1 for regression with one target and for
        binary classifiers, which output one logit; the number of classes otherwise).

    Call: ``x`` (batch, *input_shape) -> (batch, K); non-batch axes are flattened, so an
    8x8 image and its 64-vector give the same model.
    """

    num_outputs: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x_BxD = x.reshape(x.shape[0], -1)
        return nn.Dense(self.num_outputs, name=_LAYER)(x_BxD)


def _variables(kernel_DxK: jax.Array, bias_K: jax.Array) -> dict[str, Any]:
    return {"params": {_LAYER: {"kernel": kernel_DxK, "bias": bias_K}}}


def _check_regression_data(X: jax.Array, t: jax.Array, fn: str) -> tuple[jax.Array, jax.Array]:
    """Validate X (n, D) and t (n,) or (n, K); return X and t as (n, K)."""
    X, t = jnp.asarray(X), jnp.asarray(t)
    if X.ndim != 2:
        raise ValueError(f"{fn}: X must be a (n, D) design matrix; got shape {X.shape}")
    if t.ndim not in (1, 2) or t.shape[0] != X.shape[0]:
        raise ValueError(
            f"{fn}: t must be (n,) or (n, K) with n = {X.shape[0]} rows like X; got {t.shape}"
        )
    dtype = jnp.result_type(X.dtype, t.dtype, jnp.float32)
    return X.astype(dtype), (t[:, None] if t.ndim == 1 else t).astype(dtype)


def _concrete(value: Any) -> np.ndarray | None:
    """``value`` as numpy, or None when it is traced (under an outer jit the checks that need
    values are skipped)."""
    try:
        return np.asarray(value)
    except jax.errors.TracerArrayConversionError:
        return None


def _check_l2(l2: float, fn: str) -> None:
    value = _concrete(l2)
    if value is not None and value < 0:
        raise ValueError(f"{fn}: l2 must be >= 0 (a ridge penalty); got {l2}")


def fit_least_squares(
    X: jax.Array, t: jax.Array, l2: float = 0.0, fit_bias: bool = True
) -> dict[str, Any]:
    """Closed-form (ridge) least squares.

    Minimises ``J(W, b) = 1/(2N) Σ_i ||x_i W + b - t_i||² + (l2/2) ||W||²`` — the lecture's
    cost (seed 004 §2.1 Eq. 4) plus a ridge penalty on the WEIGHTS ONLY: penalising the bias
    would pull predictions towards 0 rather than towards the mean target, and would make the
    fit depend on where the origin of ``t`` is. With ``fit_bias`` the data are centred (which
    solves for the bias exactly: ``b = mean(t) - mean(x) W``) and ``W`` solves the ridge
    problem as the least-squares system ``[Xc; sqrt(N l2) I] W = [tc; 0]`` by
    ``jnp.linalg.lstsq``, which never forms ``XᵀX`` (squaring the condition number) and
    returns the minimum-norm solution when ``XᵀX`` is singular and ``l2 = 0``.

    Args:
      X: (n, D) inputs (apply :func:`polynomial_features` first for polynomial regression).
      t: (n,) or (n, K) targets; (n,) is treated as K = 1.
      l2: ridge coefficient (>= 0).
      fit_bias: if False the bias is fixed at 0 (the lecture's "dummy feature" formulation:
        include a constant column in ``X`` instead).

    Returns:
      ``{'params': {'dense': {'kernel': (D, K), 'bias': (K,)}}}`` for ``LinearModel(K)``.
    """
    X, t = _check_regression_data(X, t, "fit_least_squares")
    _check_l2(l2, "fit_least_squares")
    return _least_squares(X, t, l2, fit_bias)


@functools.partial(jax.jit, static_argnames="fit_bias")
def _least_squares(X_NxD: jax.Array, t_NxK: jax.Array, l2: jax.Array, fit_bias: bool):
    n, d = X_NxD.shape
    x_mean_D = X_NxD.mean(axis=0) if fit_bias else jnp.zeros(d, X_NxD.dtype)
    t_mean_K = t_NxK.mean(axis=0) if fit_bias else jnp.zeros(t_NxK.shape[1], t_NxK.dtype)
    ridge_DxD = jnp.sqrt(n * jnp.asarray(l2, X_NxD.dtype)) * jnp.eye(d, dtype=X_NxD.dtype)
    A = jnp.concatenate([X_NxD - x_mean_D, ridge_DxD])
    B = jnp.concatenate([t_NxK - t_mean_K, jnp.zeros((d, t_NxK.shape[1]), t_NxK.dtype)])
    kernel_DxK = jnp.linalg.lstsq(A, B)[0]
    return _variables(kernel_DxK, t_mean_K - x_mean_D @ kernel_DxK)


def fit_linear_gd(
    X: jax.Array, t: jax.Array, lr: float, steps: int, l2: float = 0.0
) -> tuple[dict[str, Any], jax.Array]:
    """Full-batch gradient descent on the same cost as :func:`fit_least_squares`.

    Starts from zero weights and bias (seed 004 §2.1 §3.2) and applies
    ``θ <- θ - lr ∇J(θ)`` ``steps`` times inside one compiled ``lax.scan``; the gradient is
    ``jax.grad`` of ``J``, which for this cost equals the lecture's
    ``(1/N) Xᵀ(y - t) + l2 W`` (Eq. 21 plus the ridge term; the bias is not penalised).

    Args:
      X: (n, D) inputs. t: (n,) or (n, K) targets.
      lr: learning rate; GD converges for ``lr < 2 / λ_max`` of the cost's Hessian.
      steps: number of updates (static: changing it recompiles).
      l2: ridge coefficient (>= 0).

    Returns:
      ``(variables, losses)``: variables in the :class:`LinearModel` format and the cost
      ``J`` (steps,) at each iterate before its update.
    """
    X, t = _check_regression_data(X, t, "fit_linear_gd")
    _check_l2(l2, "fit_linear_gd")
    if int(steps) < 1:
        raise ValueError(f"fit_linear_gd: steps must be a positive integer; got {steps}")
    return _linear_gd(X, t, lr, l2, int(steps))


def _ridge_cost(variables: dict[str, Any], X_NxD, t_NxK, l2) -> jax.Array:
    y_NxK = LinearModel(t_NxK.shape[1]).apply(variables, X_NxD)
    kernel = variables["params"][_LAYER]["kernel"]
    return jnp.mean(squared_error(y_NxK, t_NxK)) + 0.5 * l2 * jnp.sum(kernel**2)


@functools.partial(jax.jit, static_argnames="steps")
def _linear_gd(X_NxD: jax.Array, t_NxK: jax.Array, lr, l2, steps: int):
    d, k = X_NxD.shape[1], t_NxK.shape[1]
    init = _variables(jnp.zeros((d, k), X_NxD.dtype), jnp.zeros(k, X_NxD.dtype))
    cost_and_grad = jax.value_and_grad(_ridge_cost)

    def step(variables, _):
        cost, grads = cost_and_grad(variables, X_NxD, t_NxK, l2)
        variables = jax.tree.map(lambda p, g: p - lr * g, variables, grads)
        return variables, cost

    return jax.lax.scan(step, init, length=steps)


def polynomial_features(x: jax.Array, degree: int, include_constant: bool = False) -> jax.Array:
    """The polynomial feature map ψ(x) of seed 004 §2.1 §5 (Eq. 23) for scalar inputs.

    Args:
      x: (n,) or (n, 1) scalar inputs.
      degree: highest power (>= 1).
      include_constant: the lecture's ψ(x) starts with a constant 1 standing in for the bias.
        Our :class:`LinearModel` has an explicit bias, so the default leaves it out: the
        bias takes the constant, and a constant column would duplicate it (making ``XᵀX``
        singular). Set True for the bias-free formulation (``fit_bias=False``).

    Returns:
      (n, degree) columns ``x, x², ..., x^degree``, or (n, degree + 1) with a leading
      column of ones when ``include_constant``.
    """
    x = jnp.asarray(x)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise ValueError(f"polynomial_features: x must be (n,) or (n, 1) scalars; got {x.shape}")
    if int(degree) < 1:
        raise ValueError(f"polynomial_features: degree must be >= 1; got {degree}")
    first = 0 if include_constant else 1
    return x[:, None] ** jnp.arange(first, int(degree) + 1)


class PerceptronResult(NamedTuple):
    """What :func:`perceptron_train` returns.

    Attributes:
      weights: (D,) final weight vector.
      bias: () final bias.
      epochs: () number of epochs run (including the final mistake-free one if converged).
      mistakes: (max_epochs,) int32 mistakes (= updates) in each epoch; 0 after the last.
      converged: () bool, True if an epoch made no mistake (every training point has
        ``s (w·x + b) > 0`` with s = ±1).
    """

    weights: jax.Array
    bias: jax.Array
    epochs: jax.Array
    mistakes: jax.Array
    converged: jax.Array

    @property
    def variables(self) -> dict[str, Any]:
        """The result as ``LinearModel(num_outputs=1)`` variables (e.g. ``"perceptron"``)."""
        return _variables(self.weights[:, None], self.bias[None])


def perceptron_train(
    X: jax.Array, t: jax.Array, max_epochs: int = 100, seed: int = 0, shuffle: bool = True
) -> PerceptronResult:
    """Rosenblatt's perceptron learning algorithm (seed 004 §2.2 §4, line 548).

    With s = 2t - 1 in {-1, +1} and z = w·x + b, each example in turn: if ``z s <= 0``
    (misclassified, or on the boundary) then ``w <- w + s x`` and ``b <- b + s`` (the bias is
    the weight of a dummy input fixed at 1). Starts from w = 0, b = 0. One epoch is a
    ``lax.scan`` over the examples; epochs run in a ``lax.while_loop`` that stops after the
    first epoch without mistakes or after ``max_epochs``. For separable data the total
    number of updates is at most :func:`perceptron_mistake_bound` (Novikoff 1962).

    Args:
      X: (n, D) inputs. t: (n,) labels in {0, 1}.
      max_epochs: most passes over the data (static).
      seed: seeds the example order of each epoch.
      shuffle: visit the examples in a fresh random order each epoch (else in index order).

    Returns:
      :class:`PerceptronResult`.
    """
    X, t = jnp.asarray(X), jnp.asarray(t)
    if X.ndim != 2 or t.shape != (X.shape[0],):
        raise ValueError(
            f"perceptron_train: need X (n, D) and t (n,); got X {X.shape} and t {t.shape}"
        )
    labels = _concrete(t)
    if labels is not None and not np.all((labels == 0) | (labels == 1)):
        raise ValueError("perceptron_train: labels t must be 0 or 1 (binary convention)")
    if int(max_epochs) < 1:
        raise ValueError(f"perceptron_train: max_epochs must be >= 1; got {max_epochs}")
    X = X.astype(jnp.result_type(X.dtype, jnp.float32))
    return _perceptron(
        X, (2 * t - 1).astype(X.dtype), jax.random.key(seed), int(max_epochs), shuffle
    )


@functools.partial(jax.jit, static_argnames=("max_epochs", "shuffle"))
def _perceptron(X_NxD, s_N, key, max_epochs: int, shuffle: bool) -> PerceptronResult:
    n, d = X_NxD.shape

    def visit(carry, i):
        w_D, b, mistakes = carry
        wrong = s_N[i] * (X_NxD[i] @ w_D + b) <= 0
        w_D = jnp.where(wrong, w_D + s_N[i] * X_NxD[i], w_D)
        b = jnp.where(wrong, b + s_N[i], b)
        return (w_D, b, mistakes + wrong.astype(jnp.int32)), None

    def epoch(state):
        w_D, b, done_epochs, history, _ = state
        order = jax.random.permutation(jax.random.fold_in(key, done_epochs), n)
        order = order if shuffle else jnp.arange(n)
        (w_D, b, mistakes), _ = jax.lax.scan(visit, (w_D, b, jnp.int32(0)), order)
        return w_D, b, done_epochs + 1, history.at[done_epochs].set(mistakes), mistakes == 0

    def keep_going(state):
        return (state[2] < max_epochs) & ~state[4]

    init = (
        jnp.zeros(d, X_NxD.dtype),
        jnp.zeros((), X_NxD.dtype),
        jnp.int32(0),
        jnp.zeros(max_epochs, jnp.int32),
        jnp.bool_(False),
    )
    w_D, b, epochs, history, converged = jax.lax.while_loop(keep_going, epoch, init)
    return PerceptronResult(w_D, b, epochs, history, converged)


def perceptron_mistake_bound(
    X: np.ndarray, t: np.ndarray, weights: np.ndarray, bias: float
) -> float:
    """Novikoff's bound ``(R / γ)²`` on the perceptron's total number of updates.

    Computed in the augmented space x' = (x, 1) where the perceptron (with its bias) starts
    from 0: ``R = max_i ||x'_i||`` and ``γ = min_i s_i u·x'_i`` for the unit vector
    ``u = (w, b) / ||(w, b)||`` of ANY separating hyperplane ``(weights, bias)``; the bound
    holds for each of them, and the max-margin one makes it tightest.

    Args:
      X: (n, D) inputs; t: (n,) labels in {0, 1}; weights: (D,); bias: scalar.

    Raises:
      ValueError: if ``(weights, bias)`` does not separate the data (γ <= 0).
    """
    X_aug = np.concatenate([np.asarray(X, np.float64), np.ones((len(X), 1))], axis=1)
    u = np.append(np.asarray(weights, np.float64).ravel(), float(bias))
    u /= np.linalg.norm(u)
    gamma = float(np.min((2.0 * np.asarray(t) - 1.0) * (X_aug @ u)))
    if gamma <= 0:
        raise ValueError(
            f"perceptron_mistake_bound: the hyperplane does not separate the data "
            f"(smallest signed margin {gamma:.3g} <= 0); pass a separating (weights, bias)"
        )
    radius = float(np.max(np.linalg.norm(X_aug, axis=1)))
    return (radius / gamma) ** 2


# What each task's linear model reads and writes: a 1-D input for regression, 2-D points for
# the binary classifiers, 64 pixels (8x8 digits) -> 10 classes for the multiclass ones. The
# registry-wide tests feed 4 inputs and, except for binary tasks, expect 3 outputs.
_TASK_SHAPES = {  # task: (input shape, outputs, test outputs)
    "regression": ((1,), 1, 3),
    "binary": ((2,), 1, 1),
    "classification": ((64,), 10, 3),
}


def _register_linear(
    name: str, task: str, loss: str, *, lecture: str, reference: str, description: str
) -> None:
    """Register a :class:`LinearModel` whose input and output sizes follow from its ``task``."""
    input_shape, outputs, test_outputs = _TASK_SHAPES[task]
    register_model(
        name,
        LinearModel,
        family="linear",
        task=task,
        input_shape=input_shape,
        loss=loss,
        defaults={"num_outputs": outputs},
        test_config={"num_outputs": test_outputs},
        test_input_shape=(4,),
        lecture=lecture,
        reference=reference,
        description=description,
    )


_register_linear(
    "linear_regression",
    "regression",
    "squared_error",
    lecture="004 §2.1 Linear regression (line 163)",
    reference="Legendre 1805, Gauss 1809 (least squares); Bishop 2006 §3.1",
    description="y = x W + b fitted by squared error; closed form in fit_least_squares",
)
_register_linear(
    "logistic_regression",
    "binary",
    "binary_cross_entropy",
    lecture="004 §2.3 Training a classifier (line 668); 001 logistic regression (line 190)",
    reference="Cox 1958, 'The regression analysis of binary sequences'",
    description="one logit z = w·x + b, P(t=1|x) = σ(z), trained by cross-entropy",
)
_register_linear(
    "softmax_regression",
    "classification",
    "softmax_cross_entropy",
    lecture="004 §2.3 §3 Multiclass classification (line 874); 003 softmax classifier (line 61)",
    reference="Bridle 1990 (softmax); Bishop 2006 §4.3.4 (multiclass logistic regression)",
    description="K logits z = x W + b with softmax cross-entropy (digits: 64 pixels -> 10)",
)
_register_linear(
    "linear_svm",
    "binary",
    "binary_hinge",
    lecture="004 §2.3 §2.6 Hinge loss (line 852)",
    reference="Cortes & Vapnik 1995, 'Support-vector networks'",
    description="one score z = w·x + b trained by the hinge loss max(0, 1 - s z)",
)
_register_linear(
    "multiclass_svm",
    "classification",
    "multiclass_hinge",
    lecture="001 multiclass linear classifier, hinge loss (line 176); 004 §2.3 (line 852)",
    reference="Weston & Watkins 1999, 'Support vector machines for multi-class pattern "
    "recognition'",
    description="K scores z = x W + b with the multiclass hinge loss (digits: 64 -> 10)",
)
_register_linear(
    "perceptron",
    "binary",
    "perceptron_criterion",
    lecture="004 §2.2 §4 The perceptron learning rule (line 548); 001 perceptron (line 40)",
    reference="Rosenblatt 1958; Novikoff 1962 (convergence bound)",
    description="w·x + b >= 0 threshold unit; perceptron_train runs the learning rule itself",
)

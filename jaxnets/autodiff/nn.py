"""An MLP classifier written with the autodiff engine, trained by minibatch SGD.

Lecture: seed 004, Lecture 6 "Automatic Differentiation" (line 1528), §3 "What autodiff is"
(line 1601): "it feels like you just write ordinary code for the forward pass, and then call
a function to compute the derivatives" (its Figure 2 trains logistic regression with
Autograd's ``grad``). Here the same for an MLP (seed 004, Lecture 3 "Multilayer Perceptrons",
line 971) with a softmax cross-entropy from logits, trained by minibatch SGD (seed 004,
Lecture 7 "Optimization", line 1841).
No derivative is written by hand: compare :mod:`jaxnets.backprop`, which writes out every
error signal, and :class:`jaxnets.train.Trainer`, which calls ``jax.grad`` inside one compiled
step. tests/test_autodiff.py trains both on the digits and checks they agree.

Parameters are a flat dict ``{"W1": (in, h1), "b1": (h1,), ..., "WL": (h_{L-1}, classes),
"bL": (classes,)}``; layer l computes ``H_l = phi(H_{l-1} W_l + b_l)`` with Flax's ``(in,
out)`` kernels, so the params of :class:`jaxnets.models.mlp.MLP` map onto it one to one
(:func:`params_from_flax`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxnets import backprop
from jaxnets.autodiff import ops
from jaxnets.autodiff.core import value_and_grad

__all__ = [
    "ACTIVATIONS",
    "accuracy",
    "init_mlp",
    "minibatch_order",
    "mlp_logits",
    "mlp_loss",
    "one_hot",
    "params_from_flax",
    "sgd_step",
    "softmax_cross_entropy",
    "train_mlp",
]

Params = dict[str, np.ndarray]

ACTIVATIONS = {"tanh": ops.tanh, "relu": ops.relu, "sigmoid": ops.sigmoid}


def _num_layers(params: Mapping[str, Any]) -> int:
    num_layers = len([key for key in params if key.startswith("W")])
    expected = {f"{kind}{layer}" for layer in range(1, num_layers + 1) for kind in "Wb"}
    if num_layers == 0 or set(params) != expected:
        raise ValueError(
            f"expected MLP parameters W1, b1, ..., WL, bL (one W and one b per layer); got keys "
            f"{sorted(params)}"
        )
    return num_layers


def _activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def init_mlp(sizes: Sequence[int], seed: int = 0) -> Params:
    """Random MLP parameters for layer widths ``sizes = (in, h1, ..., classes)``.

    ``W_l: (sizes[l-1], sizes[l])`` drawn from N(0, 1 / fan_in) (LeCun normal), ``b_l:
    (sizes[l],)`` zeros, all float64.
    """
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must be (in, ..., out) with every width >= 1; got {sizes}")
    rng = np.random.default_rng(seed)
    params = {}
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
        params[f"W{layer}"] = rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)
        params[f"b{layer}"] = np.zeros(fan_out)
    return params


def params_from_flax(flax_params: Mapping[str, Any]) -> Params:
    """The params of :class:`jaxnets.models.mlp.MLP` (``hidden_0, ..., out``, each ``{kernel,
    bias}``, parameter-free activations) as a float64 ``{"W1", "b1", ...}`` dict."""
    layers = backprop.layers_from_mlp_params(flax_params)
    params = {}
    for layer, (kernel, bias) in enumerate(layers, start=1):
        params[f"W{layer}"] = np.asarray(kernel, dtype=np.float64)
        params[f"b{layer}"] = np.asarray(bias, dtype=np.float64)
    return params


def mlp_logits(params: Mapping[str, Any], x, activation: str = "tanh"):
    """Logits of the MLP: x (batch, in) -> (batch, classes).

    ``params`` may hold Nodes (inside :func:`jaxnets.autodiff.grad`) or plain arrays (then
    the result is a plain float64 array). The output layer is affine: the softmax is left to
    the loss, which works from logits.
    """
    phi = _activation(activation)
    num_layers = _num_layers(params)
    h = x
    for layer in range(1, num_layers):
        h = phi(h @ params[f"W{layer}"] + params[f"b{layer}"])
    return h @ params[f"W{num_layers}"] + params[f"b{num_layers}"]


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """labels (batch,) integers in [0, num_classes) -> (batch, num_classes) float64 0/1 rows."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(
            f"labels must be a (batch,) integer array; got dtype {labels.dtype}, "
            f"shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) for {num_classes} classes; got range "
            f"[{labels.min()}, {labels.max()}]"
        )
    return np.eye(num_classes)[labels]


def softmax_cross_entropy(logits, labels: np.ndarray):
    """Mean over the batch of ``-log softmax(z_n)[t_n] = logsumexp(z_n) - z_n[t_n]``.

    logits: (batch, classes), a Node or an array; labels: (batch,) integer classes -> ().
    ``z_n[t_n]`` is picked out as the product with a one-hot row, a constant of the graph.
    """
    if len(logits.shape) != 2 or logits.shape[0] != len(labels):
        raise ValueError(
            f"expected logits (batch, classes) with one label per row; got logits "
            f"{logits.shape} and {len(labels)} labels"
        )
    targets = one_hot(labels, logits.shape[1])
    return ops.mean(ops.logsumexp(logits, axis=1) - ops.sum(targets * logits, axis=1))


def mlp_loss(params: Mapping[str, Any], x, labels: np.ndarray, activation: str = "tanh"):
    """Mean softmax cross-entropy of the MLP on x (batch, in), labels (batch,) -> ()."""
    return softmax_cross_entropy(mlp_logits(params, x, activation), labels)


_loss_and_grad = value_and_grad(mlp_loss)


def accuracy(params: Params, x: np.ndarray, labels: np.ndarray, activation: str = "tanh") -> float:
    """Fraction of x (n, in) whose highest logit is the label (n,)."""
    predictions = np.argmax(mlp_logits(params, x, activation), axis=1)
    return float(np.mean(predictions == np.asarray(labels)))


def minibatch_order(n: int, batch_size: int, epochs: int, seed: int = 0) -> np.ndarray:
    """Example indices (epochs, n // batch_size, batch_size): a fresh permutation per epoch
    from ``np.random.default_rng(seed)``, its last ``n % batch_size`` indices left out (as
    :meth:`jaxnets.train.Trainer.train_epoch` does)."""
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must lie in [1, n={n}]; got {batch_size}")
    rng = np.random.default_rng(seed)
    num_batches = n // batch_size
    orders = [rng.permutation(n)[: num_batches * batch_size] for _ in range(epochs)]
    return np.asarray(orders, dtype=np.int64).reshape(epochs, num_batches, batch_size)


def sgd_step(
    params: Params, x: np.ndarray, labels: np.ndarray, learning_rate: float, activation: str
) -> tuple[Params, float]:
    """One SGD step on a minibatch x (batch, in), labels (batch,): ``theta -= lr * dL/dtheta``.

    Returns the new params and the minibatch loss before the step.
    """
    loss, grads = _loss_and_grad(params, x, labels, activation)
    return {key: value - learning_rate * grads[key] for key, value in params.items()}, loss


def train_mlp(
    params: Params,
    x: np.ndarray,
    labels: np.ndarray,
    *,
    activation: str = "tanh",
    learning_rate: float = 0.1,
    batch_size: int = 32,
    epochs: int = 10,
    seed: int = 0,
) -> tuple[Params, np.ndarray]:
    """Minibatch SGD on the mean softmax cross-entropy, every gradient from the engine.

    Args:
      params: initial ``{"W1", "b1", ...}`` (see :func:`init_mlp`, :func:`params_from_flax`).
      x: (n, in) inputs; labels: (n,) integer classes.
      activation: hidden units, one of :data:`ACTIVATIONS`.
      batch_size, epochs, seed: the minibatches are :func:`minibatch_order` ``(n,
        batch_size, epochs, seed)``.

    Returns:
      the trained params and the minibatch losses, (epochs * (n // batch_size),).
    """
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or len(x) != len(labels):
        raise ValueError(
            f"expected x (n, in) and labels (n,); got x {x.shape} and labels {labels.shape}"
        )
    losses = []
    for batch in minibatch_order(len(x), batch_size, epochs, seed).reshape(-1, batch_size):
        params, loss = sgd_step(params, x[batch], labels[batch], learning_rate, activation)
        losses.append(loss)
    return params, np.asarray(losses)

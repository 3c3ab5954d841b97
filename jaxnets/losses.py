"""Per-example losses and metrics, numerically stable from logits.

Lectures: seed 004 §2.3 "Training a classifier" (line 668: 0-1 loss, squared error,
logistic regression + cross-entropy, hinge loss, softmax regression), seed 004 §2.2
(line 406: the perceptron), seed 003 (softmax classifier, multiclass SVM loss).

Every function takes the model output for ONE example and its target and returns a
scalar; the callers ``jax.vmap`` it over the minibatch and reduce (mean). Written with
last-axis operations, they also broadcast over leading batch axes.

Target conventions:
  * ``"class"``: an integer class index; outputs are logits ``(num_classes,)``.
  * ``"binary"``: a label in {0, 1}; outputs are one logit ``(1,)`` or ``()``.
  * ``"real"``: a real vector with the same shape as the outputs.
  * ``"binary_array"``: an array of {0, 1} with the outputs' shape (one logit per element:
    a binarised image under PixelCNN).
  * ``"none"``: no target; the output is the model's own log-likelihood of the example
    (a normalising flow such as NICE), and the target passed in is ignored.

Lecture 15 (seed 004, line 3300) for the two likelihood losses: an autoregressive model's
negative log-likelihood is a sum of per-pixel terms (Eq. 11), and a flow's comes from the
change-of-variables formula (Eq. 1).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.checks import check_finite_array, first_index

__all__ = [
    "LOSSES",
    "LossSpec",
    "TargetError",
    "accuracy",
    "bernoulli_nll",
    "binary_cross_entropy",
    "binary_hinge",
    "get_loss",
    "multiclass_hinge",
    "negative_log_likelihood",
    "perceptron_criterion",
    "random_targets",
    "sequence_accuracy",
    "sequence_cross_entropy",
    "softmax_cross_entropy",
    "squared_error",
    "zero_one",
]


def _logit(z: jax.Array) -> jax.Array:
    """A binary classifier's single logit: (1,) or () -> ()."""
    return jnp.squeeze(z, axis=-1) if z.ndim and z.shape[-1] == 1 else z


def _signed(t: jax.Array) -> jax.Array:
    """{0, 1} labels -> {-1, +1}."""
    return 2.0 * t - 1.0


def squared_error(y: jax.Array, t: jax.Array) -> jax.Array:
    """Squared error ½‖y − t‖², y and t: (outputs,) -> ()."""
    return 0.5 * jnp.sum(jnp.square(y - t), axis=-1)


def binary_cross_entropy(z: jax.Array, t: jax.Array) -> jax.Array:
    """Logistic cross-entropy from a logit, −t log σ(z) − (1−t) log(1−σ(z)).

    z: (1,) or (); t in {0, 1}: () -> (). Computed as ``softplus(z) − t z`` written so
    no exponential of a large positive number is ever taken.
    """
    z = _logit(z)
    return jnp.maximum(z, 0.0) - z * t + jnp.log1p(jnp.exp(-jnp.abs(z)))


def softmax_cross_entropy(z: jax.Array, t: jax.Array) -> jax.Array:
    """Cross-entropy of softmax(z) against class ``t``: logsumexp(z) − z_t.

    z: (num_classes,) logits; t: () integer class -> ().
    """
    return jax.nn.logsumexp(z, axis=-1) - jnp.take_along_axis(
        z, jnp.asarray(t, jnp.int32)[..., None], axis=-1
    ).squeeze(-1)


def sequence_cross_entropy(z: jax.Array, t: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy over the time steps of one sequence, padding left out.

    z: (time, num_classes) logits; t: (time,) integer classes, negative where padded -> ()
    (the mean over the valid steps; 0 for a sequence with none).
    """
    valid = t >= 0
    per_step = softmax_cross_entropy(z, jnp.where(valid, t, 0))
    return jnp.sum(jnp.where(valid, per_step, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


def sequence_accuracy(z: jax.Array, t: jax.Array) -> jax.Array:
    """Fraction of one sequence's valid steps (t >= 0) whose argmax is right.

    z: (time, num_classes); t: (time,) -> ().
    """
    valid = t >= 0
    right = (jnp.argmax(z, axis=-1) == t) & valid
    return jnp.sum(right) / jnp.maximum(jnp.sum(valid), 1)


def bernoulli_nll(z: jax.Array, t: jax.Array) -> jax.Array:
    """Negative log-likelihood in nats of binary data under independent Bernoulli logits.

    z: logits of any shape, e.g. (height, width, channels) for one image; t: {0, 1} of the
    same shape -> () summed over all elements, −Σ_i [t_i log σ(z_i) + (1 − t_i) log(1 − σ(z_i))].
    Divide by (number of elements × ln 2) for bits per dimension.
    """
    t = jnp.asarray(t, z.dtype)
    return jnp.sum(jnp.logaddexp(0.0, z) - t * z)


def negative_log_likelihood(log_likelihood: jax.Array, t: jax.Array | None = None) -> jax.Array:
    """−log p(x) for a model whose output is its own log-likelihood of the example.

    log_likelihood: () (or (1,)) in nats; t is ignored (density models have no target) -> ().
    """
    del t
    return -jnp.sum(log_likelihood)


def binary_hinge(z: jax.Array, t: jax.Array) -> jax.Array:
    """Hinge loss max(0, 1 − s z) with s = 2t − 1 ∈ {−1, +1}; z: (1,) or (); t in {0,1} -> ()."""
    return jnp.maximum(0.0, 1.0 - _signed(t) * _logit(z))


def multiclass_hinge(z: jax.Array, t: jax.Array, margin: float = 1.0) -> jax.Array:
    """Multiclass SVM loss Σ_{j≠t} max(0, z_j − z_t + margin) (Weston–Watkins, seed 003).

    z: (num_classes,); t: () integer class -> ().
    """
    t = jnp.asarray(t, jnp.int32)
    z_t = jnp.take_along_axis(z, t[..., None], axis=-1)
    margins = jnp.maximum(0.0, z - z_t + margin)
    not_target = jnp.arange(z.shape[-1]) != t[..., None]
    return jnp.sum(jnp.where(not_target, margins, 0.0), axis=-1)


def perceptron_criterion(z: jax.Array, t: jax.Array) -> jax.Array:
    """Perceptron criterion max(0, −s z) with s = 2t − 1: zero iff the example is classified
    correctly; its subgradient step is the perceptron update. z: (1,) or (); t in {0,1} -> ()."""
    return jnp.maximum(0.0, -_signed(t) * _logit(z))


def zero_one(z: jax.Array, t: jax.Array) -> jax.Array:
    """0-1 loss (a metric: its gradient is zero almost everywhere) -> () in {0., 1.}.

    For logits (num_classes,) with num_classes > 1 it compares argmax to the class ``t``;
    for one logit it compares ``z > 0`` to the label ``t`` in {0, 1}.
    """
    if z.ndim and z.shape[-1] > 1:
        prediction = jnp.argmax(z, axis=-1)
    else:
        prediction = (_logit(z) > 0).astype(jnp.int32)
    return (prediction != jnp.asarray(t, jnp.int32)).astype(jnp.float32)


def accuracy(z: jax.Array, t: jax.Array) -> jax.Array:
    """1 − zero_one: () in {0., 1.}."""
    return 1.0 - zero_one(z, t)


class TargetError(ValueError):
    """Targets that the loss cannot take: wrong shape, non-integer or out-of-range labels,
    NaN/inf values. The message says what was given and what the loss expects."""


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """A named loss: its function and the kind of target it takes (class, binary, real)."""

    name: str
    fn: Callable[[jax.Array, jax.Array], jax.Array]
    target: str

    @property
    def is_classification(self) -> bool:
        return self.target in ("class", "binary", "sequence")

    @property
    def accuracy(self) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """Per-example accuracy for this loss's targets (per valid step for sequences)."""
        return sequence_accuracy if self.target == "sequence" else accuracy

    def _target_shape(self, output_shape: tuple[int, ...]) -> tuple[tuple[int, ...], str]:
        """One example's target shape for outputs of ``output_shape``, and its description."""
        if self.target in ("class", "sequence"):
            if len(output_shape) < 1 + (self.target == "sequence") or output_shape[-1] < 2:
                wanted = "(time, num_classes)" if self.target == "sequence" else "(num_classes,)"
                raise TargetError(
                    f"{self.name} needs logits {wanted} with at least 2 classes per example; "
                    f"the model gives outputs of shape {output_shape}"
                    + (
                        ": use binary_cross_entropy for one logit"
                        if output_shape[-1:] == (1,)
                        else ""
                    )
                )
            return output_shape[:-1], f"integer classes in [0, {output_shape[-1]})"
        if self.target == "binary":
            if output_shape not in ((), (1,)):
                raise TargetError(
                    f"{self.name} needs one logit per example (outputs (1,) or ()); the model "
                    f"gives outputs of shape {output_shape}: use softmax_cross_entropy for "
                    "several classes"
                )
            return (), "labels in {0, 1}"
        if self.target == "binary_array":
            return output_shape, "labels in {0, 1}"
        return (() if output_shape == (1,) else output_shape), "real values"

    def check_targets(self, y: Any, output_shape: tuple[int, ...], *, name: str = "y") -> None:
        """Raise :class:`TargetError` unless ``y`` (n, ...) are targets this loss can take for a
        model whose outputs for ONE example have shape ``output_shape``.

        * ``class``: integer classes (int, or float holding whole numbers) in [0, K) with K =
          ``output_shape[-1]``, shape (n,); (n, 1) and one-hot (n, K) are named as such.
        * ``sequence``: (n, time) classes in [0, K), negative where padded.
        * ``binary``: (n,) labels in {0, 1} (bool, int or float); (n, 1) too for one logit (1,).
        * ``binary_array``: {0, 1} labels of the outputs' shape (n, *output_shape).
        * ``real``: finite values of the outputs' shape ((n,) also for one output).
        * ``none``: anything (the target is ignored).
        Runs on the host (numpy), before anything is compiled.
        """
        if self.target == "none":
            return
        y = np.asarray(y)
        if y.ndim == 0:
            raise TargetError(f"{name} needs a batch axis: (n, ...) targets; got a scalar")
        if not (y.dtype == bool or jnp.issubdtype(y.dtype, jnp.number)):
            raise TargetError(f"{name} must hold numbers for {self.name}; got dtype {y.dtype}")
        try:
            check_finite_array(name, y)
        except ValueError as error:
            raise TargetError(f"{error} (targets of {self.name})") from None
        expected, kind = self._target_shape(tuple(output_shape))
        given = y.shape[1:]
        also_ok = [tuple(output_shape)] if self.target in ("binary", "real") else []
        if given != expected and given not in also_ok:
            n = y.shape[0]
            hint = ""
            if self.target in ("class", "sequence", "binary"):
                classes = output_shape[-1] if self.target != "binary" else 2
                if given == (*expected, classes):
                    hint = f": one-hot rows? pass class indices, {name}.argmax(-1)"
                elif given == (*expected, 1):
                    hint = f": pass {name}.reshape({', '.join(map(str, (n, *expected)))})"
            raise TargetError(
                f"{self.name} takes {kind} of shape {(n, *expected)} for outputs of shape "
                f"{('n', *output_shape)}; got {name} of shape {y.shape}{hint}".replace("'n'", "n")
            )
        if self.target == "real":
            return
        values = y.astype(np.float64)
        fractional = values != np.round(values)
        if fractional.any():
            raise TargetError(
                f"{self.name} takes {kind}; got non-integer labels such as "
                f"{name}{first_index(fractional)} = {values[fractional][0]:g}"
            )
        if self.target in ("class", "sequence"):
            high = output_shape[-1]
            bad = (values >= high) | ((values < 0) if self.target == "class" else False)
            why = f" (the model has {high} outputs" + (
                "; negative labels mark padding)" if self.target == "sequence" else ")"
            )
        else:
            bad = (values != 0) & (values != 1)
            signs = set(np.unique(values)) == {-1.0, 1.0}
            why = " (for -1/+1 labels pass (y + 1) / 2)" if signs else ""
        if bad.any():
            raise TargetError(
                f"{self.name} takes {kind}{why}; got values in [{values.min():g}, "
                f"{values.max():g}], e.g. {name}{first_index(bad)} = {values[bad][0]:g}"
            )


LOSSES: dict[str, LossSpec] = {
    spec.name: spec
    for spec in (
        LossSpec("squared_error", squared_error, "real"),
        LossSpec("binary_cross_entropy", binary_cross_entropy, "binary"),
        LossSpec("softmax_cross_entropy", softmax_cross_entropy, "class"),
        LossSpec("sequence_cross_entropy", sequence_cross_entropy, "sequence"),
        LossSpec("bernoulli_nll", bernoulli_nll, "binary_array"),
        LossSpec("negative_log_likelihood", negative_log_likelihood, "none"),
        LossSpec("binary_hinge", binary_hinge, "binary"),
        LossSpec("multiclass_hinge", multiclass_hinge, "class"),
        LossSpec("perceptron_criterion", perceptron_criterion, "binary"),
    )
}


def get_loss(name: str) -> LossSpec:
    """The :class:`LossSpec` named ``name``; unknown names list close matches."""
    if name not in LOSSES:
        close = difflib.get_close_matches(name, list(LOSSES), n=3, cutoff=0.4)
        hint = f" — did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KeyError(f"unknown loss {name!r}{hint} (known: {', '.join(LOSSES)})")
    return LOSSES[name]


def random_targets(loss: str, rng: jax.Array, outputs: jax.Array) -> jax.Array:
    """Random targets for a batch of ``outputs`` (batch, ...) suited to the loss ``loss``."""
    spec = get_loss(loss)
    batch = outputs.shape[0]
    if spec.target == "class":
        return jax.random.randint(rng, (batch,), 0, outputs.shape[-1])
    if spec.target == "sequence":
        return jax.random.randint(rng, outputs.shape[:-1], 0, outputs.shape[-1])
    if spec.target == "binary":
        return jax.random.bernoulli(rng, 0.5, (batch,)).astype(outputs.dtype)
    if spec.target == "binary_array":
        return jax.random.bernoulli(rng, 0.5, outputs.shape).astype(outputs.dtype)
    if spec.target == "none":
        return jnp.zeros((batch,), outputs.dtype)
    return jax.random.normal(rng, outputs.shape, outputs.dtype)

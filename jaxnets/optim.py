"""Optimizers and learning-rate schedules as Optax chains.

Lecture: seed 004 §7 "Optimization" (line 1841: SGD, batch size, learning rate and its
decay, momentum), seed 001 (minibatch SGD), seed 003 (gradient descent).

``make_optimizer("momentum", 0.1, schedule="cosine", total_steps=1000, clip_norm=1.0)``
returns ``clip_by_global_norm -> optimizer(schedule)``; ``weight_decay`` is decoupled for
adamw and added to the gradient (L2 weight decay, ``add_decayed_weights``) otherwise.
"""

from __future__ import annotations

import difflib

import optax

from jaxnets.checks import check_number, check_positive_int

__all__ = ["OPTIMIZERS", "SCHEDULES", "make_optimizer", "make_schedule"]

OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "exponential", "cosine")


def _choice(kind: str, value: str, options: tuple[str, ...]) -> str:
    if value not in options:
        close = difflib.get_close_matches(value, options, n=2, cutoff=0.4)
        hint = f" — did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown {kind} {value!r}{hint} (choose one of {', '.join(options)})")
    return value


def make_schedule(
    learning_rate: float,
    schedule: str = "constant",
    *,
    total_steps: int | None = None,
    decay_rate: float = 0.1,
    decay_every: int | None = None,
) -> optax.Schedule:
    """A learning-rate schedule ``step -> lr``.

    * ``constant``: ``lr``.
    * ``step``: ``lr · decay_rate^floor(step / decay_every)`` (staircase).
    * ``exponential``: ``lr · decay_rate^(step / decay_every)`` (smooth).
    * ``cosine``: ``lr · ½(1 + cos(π step / total_steps))``, reaching 0 at ``total_steps``.

    Every number is checked here, before any step: ``learning_rate`` finite and > 0,
    ``decay_rate`` finite in (0, 1], ``total_steps`` an integer >= 0 (0 counts as not given)
    and ``decay_every`` a positive integer; NaN or ±inf raise ValueError, bools and strings
    TypeError.
    """
    _choice("schedule", schedule, SCHEDULES)
    check_number("learning_rate", learning_rate, above=0)
    check_number("decay_rate", decay_rate, above=0, at_most=1)
    if total_steps is not None:
        check_positive_int("total_steps", total_steps, minimum=0)
    if decay_every is not None:
        check_positive_int("decay_every", decay_every)
    if schedule == "constant":
        return optax.constant_schedule(learning_rate)
    if schedule == "cosine":
        if not total_steps:
            raise ValueError("schedule='cosine' needs total_steps > 0")
        return optax.cosine_decay_schedule(learning_rate, decay_steps=total_steps)
    every = decay_every or (total_steps // 3 if total_steps else None)
    if not every:
        raise ValueError(f"schedule={schedule!r} needs decay_every or total_steps")
    decay = optax.exponential_decay(
        learning_rate, transition_steps=every, decay_rate=decay_rate, staircase=schedule == "step"
    )
    # Optax divides the int32 step count by transition_steps, which is float32 even with x64
    # on: a float64 run got a float32-rounded rate (0.1 -> 0.10000000149). A float count
    # computes the rate in the default float type (float32 runs are unchanged).
    return lambda count: decay(count * 1.0)


def make_optimizer(
    name: str,
    learning_rate: float,
    *,
    schedule: str = "constant",
    total_steps: int | None = None,
    decay_rate: float = 0.1,
    decay_every: int | None = None,
    momentum: float = 0.9,
    clip_norm: float | None = None,
    weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    """An Optax optimizer by name: sgd, momentum, nesterov, rmsprop, adam, adamw.

    Args:
      name: the update rule.
      learning_rate: peak learning rate.
      schedule: constant / step / exponential / cosine (see :func:`make_schedule`).
      momentum: β for momentum and nesterov (also rmsprop's decay stays Optax's default).
      clip_norm: if set, gradients are first rescaled to global norm <= clip_norm.
      weight_decay: decoupled decay for adamw; L2 decay added to the gradient otherwise.
    Raises:
      ValueError: an unknown name, or a number that is NaN, ±inf or out of range (the
        schedule's numbers as in :func:`make_schedule`; ``momentum`` in [0, 1),
        ``weight_decay`` >= 0, ``clip_norm`` > 0); TypeError for a non-number.
    """
    _choice("optimizer", name, OPTIMIZERS)
    check_number("momentum", momentum, at_least=0, below=1)
    check_number("weight_decay", weight_decay, at_least=0)
    if clip_norm is not None:
        check_number("clip_norm", clip_norm, above=0)
    lr = make_schedule(
        learning_rate,
        schedule,
        total_steps=total_steps,
        decay_rate=decay_rate,
        decay_every=decay_every,
    )
    if name == "adamw":
        rule = optax.adamw(lr, weight_decay=weight_decay)
    else:
        rule = {
            "sgd": lambda: optax.sgd(lr),
            "momentum": lambda: optax.sgd(lr, momentum=momentum),
            "nesterov": lambda: optax.sgd(lr, momentum=momentum, nesterov=True),
            "rmsprop": lambda: optax.rmsprop(lr),
            "adam": lambda: optax.adam(lr),
        }[name]()
        if weight_decay:
            rule = optax.chain(optax.add_decayed_weights(weight_decay), rule)
    if clip_norm is not None:
        rule = optax.chain(optax.clip_by_global_norm(clip_norm), rule)
    return rule

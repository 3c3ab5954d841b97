"""The Trainer's checks of data before any step runs on it: inputs against the model card
and the state's parameter shapes, targets against the loss, NaN/inf, batch sizes (issue 17)."""

from __future__ import annotations

import functools
import weakref
from typing import Any

import jax
import numpy as np

from jaxnets import losses as _losses
from jaxnets import registry
from jaxnets.checks import check_finite_array, check_positive_int
from jaxnets.train.state import TrainState

__all__ = ["DataChecks"]

PyTree = Any


class DataChecks:
    """Mixin of :class:`~jaxnets.train.Trainer`: checks of its inputs, targets and states
    (it reads the Trainer's ``model``, ``loss`` and ``card``)."""

    def check_input(self, x: Any) -> None:
        """Raise :class:`~jaxnets.registry.InputSpecError` if x does not fit the card."""
        if self.card is not None:
            registry.check_input(self.card, x)

    def check_data(
        self,
        x: Any,
        y: Any,
        *,
        state: TrainState | None = None,
        batch_size: Any = None,
        train: bool = False,
        name: str = "training",
    ) -> None:
        """Check data (x (n, *input_shape), y (n, ...)) before any step runs on it.

        Checked: x against the card (:meth:`check_input`); as many targets as inputs;
        ``batch_size`` a positive integer (for ``train``, at most n: an epoch takes at least
        one step); with ``state``, x's example shape against the one its parameters were
        initialised for; x free of NaN/inf; y valid targets for the loss and the model's
        outputs (:meth:`jaxnets.losses.LossSpec.check_targets`: classes in [0, K), {0, 1}
        labels, shapes). The scans of the values run on the host, once per pair of
        ``jax.Array`` objects (immutable, so an epoch loop over the same arrays pays once),
        and only on concrete data: under ``jit`` with traced x or y only shapes are checked.

        Raises:
          InputSpecError: x does not fit the card or the state; TargetError: bad targets;
          ValueError / TypeError: NaN/inf inputs, a bad batch size, unequal lengths. Each
          message starts with ``name`` (``"training data: ..."``).
        """
        try:
            self.check_input(x)
            n = len(x)
            if len(y) != n:
                raise ValueError(f"{n} inputs but {len(y)} targets; give one target per input")
            if batch_size is not None:
                check_positive_int("batch_size", batch_size)
                if train and batch_size > n:
                    raise ValueError(
                        f"batch_size {batch_size} is larger than the {n} examples: an epoch "
                        f"would take no step; use a batch_size in [1, {n}]"
                    )
            dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
            example = jax.ShapeDtypeStruct(np.shape(x)[1:], dtype)
            if state is not None:
                self._check_state_fits(state, example)
            traced = isinstance(x, jax.core.Tracer) or isinstance(y, jax.core.Tracer)
            if not traced and not self._already_checked(x, y):
                check_finite_array("x", x)
                outputs = self.abstract_shapes(example)[1]
                self.loss.check_targets(y, outputs.shape[1:])
                self._remember_checked(x, y)
        except ValueError as error:  # TypeErrors (a batch size of 2.5) need no context
            if type(error) not in (ValueError, _losses.TargetError, registry.InputSpecError):
                raise  # not one of these checks' own errors: leave it as it is
            raise type(error)(f"{name} data: {error}") from None

    @functools.lru_cache(maxsize=8)  # noqa: B019  (the Trainer is immutable and hashable)
    def abstract_shapes(self, example: jax.ShapeDtypeStruct) -> tuple[PyTree, jax.ShapeDtypeStruct]:
        """Shapes, without computing anything, of the variables that :meth:`init` makes for
        one example like ``example`` and of the outputs (1, ...) for it."""
        x = jax.ShapeDtypeStruct((1, *example.shape), example.dtype)
        rngs = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}
        variables = jax.eval_shape(lambda x: self.model.init(rngs, x, train=False), x)
        outputs = jax.eval_shape(
            lambda v, x: self.model.apply(v, x, train=False, rngs=rngs), variables, x
        )
        return variables, outputs

    def _check_state_fits(self, state: TrainState, example: jax.ShapeDtypeStruct) -> None:
        """Raise InputSpecError unless ``state.params`` have the shapes that initialising on
        examples like ``example`` gives (a model initialised for 64 features fed 100)."""
        want = jax.tree_util.tree_leaves_with_path(self.abstract_shapes(example)[0]["params"])
        have = jax.tree.leaves(state.params)
        if len(want) != len(have):
            raise registry.InputSpecError(
                f"the state has {len(have)} parameter arrays but this model has {len(want)}: "
                "the state was initialised for another model; make it with this Trainer's init"
            )
        for (path, w), h in zip(want, have, strict=True):
            if tuple(w.shape) == tuple(np.shape(h)):
                continue
            where = jax.tree_util.keystr(path, simple=True, separator="/")
            features = example.shape[-1] if example.shape else None
            changed = [(a, b) for a, b in zip(np.shape(h), w.shape, strict=False) if a != b]
            summary = (
                f"the model was initialised for {changed[0][0]} features, got {features}: "
                if len(changed) == 1 and changed[0][1] == features and len(w.shape) == len(h.shape)
                else "the model was initialised for inputs of another shape: "
            )
            raise registry.InputSpecError(
                f"{summary}its parameter {where} has shape {tuple(np.shape(h))}, but inputs of "
                f"example shape {tuple(example.shape)} need {tuple(w.shape)}; pass inputs of the "
                "shape the state was initialised for, or initialise a state on these inputs"
            )

    @functools.cached_property
    def _checked(self) -> list[tuple[weakref.ref, weakref.ref]]:
        return []

    def _already_checked(self, x: Any, y: Any) -> bool:
        return any(rx() is x and ry() is y for rx, ry in self._checked)

    def _remember_checked(self, x: Any, y: Any) -> None:
        """Remember (x, y) as checked if both are immutable ``jax.Array`` objects (weakly: a
        dead array's entry is dropped, so a new array at its address is checked again)."""
        if isinstance(x, jax.Array) and isinstance(y, jax.Array):
            live = [(rx, ry) for rx, ry in self._checked if rx() is not None and ry() is not None]
            self._checked[:] = [*live[-3:], (weakref.ref(x), weakref.ref(y))]

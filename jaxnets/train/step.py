"""Pure, jit-compiled training and evaluation steps.

Lectures: seed 004 §2.3 (line 668, average loss over the training set), §7 "Optimization"
(line 1841: minibatch SGD, one step = gradient of the minibatch loss), seed 001 (minibatch
SGD). The per-example loss is written for ONE example and ``jax.vmap``-ped over the
minibatch's outputs; the same loss under ``vmap(grad)`` over single examples gives
per-example gradients. Models whose examples interact (batch norm) have no per-example
gradient; their cards say ``per_example_grads=False``.

When the training data fits on the device an epoch is one compiled ``lax.scan`` over
minibatches (:meth:`Trainer.train_epoch`): no Python, no host round-trip per step.

On a device mesh (``Trainer(..., mesh=...)`` or the default mesh of
:func:`jaxnets.distributed.configure`) the same step is compiled for every device of the
mesh's ``"data"`` axis: each minibatch is split along that axis, the parameters and optimizer
state are replicated (or, with ``fsdp``, their large arrays split too), and XLA inserts the
gradient all-reduce. Batch statistics, dropout masks and augmentation draws are those of
the global batch, so 1, 2, 4 or 8 devices take the same steps to float32 rounding. Each epoch
every process reads from its host copy of the data only the rows of the shuffled minibatches
that its own devices hold (``jax.make_array_from_callback``); the epoch then runs as one
compiled program.

Exception, measured on jax 0.10.2: XLA:CPU compiles a convolution inside a while loop
(``lax.scan``/``lax.map``) to a generic loop nest instead of its fast library call, 13-27x
slower than the same convolution outside a loop. So on the CPU, models with convolutions step
from Python by default (``epoch_mode="auto"``): one dispatch per minibatch of the same jitted
step on the same shuffled indices, with the data kept on the device.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxnets import distributed, registry
from jaxnets import losses as _losses
from jaxnets.checks import check_finite_array, check_positive_int
from jaxnets.train.state import TrainState

__all__ = ["Trainer", "batch_loss", "model_outputs"]

PyTree = Any
Batch = tuple[jax.Array, jax.Array]

# Distinct fold-in tags so the shuffle of epoch k and the dropout of step k never share a key.
_SHUFFLE_TAG = 0x5EED
_AUGMENT_TAG = 0xA06
EPOCH_MODES = ("auto", "scan", "python")


def _jaxpr_has_convolution(jaxpr) -> bool:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            return True
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)  # ClosedJaxpr -> Jaxpr
            if hasattr(inner, "eqns") and _jaxpr_has_convolution(inner):
                return True
    return False


def model_outputs(
    model: nn.Module,
    params: PyTree,
    model_state: PyTree,
    x: jax.Array,
    rng: jax.Array,
    *,
    train: bool,
) -> tuple[jax.Array, PyTree]:
    """Outputs (batch, ...) and the updated model state for inputs x (batch, ...).

    The model is applied to the whole batch: vmapping it over single examples gives the
    same numbers but adds a transpose before every weight-gradient matmul (measured 4-7%
    slower at batch 128); only the loss is vmapped.
    """
    variables = {"params": params, **model_state}
    if train and model_state:
        outputs, new_state = model.apply(
            variables, x, train=True, rngs={"dropout": rng}, mutable=list(model_state)
        )
        return outputs, new_state
    return model.apply(variables, x, train=train, rngs={"dropout": rng}), model_state


def metric_sums(
    loss: _losses.LossSpec, outputs: jax.Array, y: jax.Array, weight: jax.Array | None = None
) -> dict[str, jax.Array]:
    """Per-example losses (and, for classifiers, accuracies) summed over a batch:
    outputs (batch, ...), y (batch, ...), optional weight (batch,) -> {"loss": (), ...}."""
    per_example = {"loss": jax.vmap(loss.fn)(outputs, y)}
    if loss.is_classification:
        per_example["accuracy"] = jax.vmap(loss.accuracy)(outputs, y)
    if weight is not None:
        per_example = {k: weight * v for k, v in per_example.items()}
    return {k: jnp.sum(v) for k, v in per_example.items()}


def _sum_in_order(stacked: jax.Array) -> jax.Array:
    """stacked (groups, ...) summed group after group: ((g0 + g1) + g2) + ..., an order that
    does not depend on where the groups were computed."""
    total = stacked[0]
    for i in range(1, stacked.shape[0]):
        total = total + stacked[i]
    return total


def batch_loss(
    model: nn.Module,
    loss: _losses.LossSpec,
    params: PyTree,
    model_state: PyTree,
    batch: Batch,
    rng: jax.Array,
    *,
    train: bool,
    regularizer: Callable[[PyTree], jax.Array] | None = None,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], PyTree]]:
    """Mean per-example loss (+ regularizer) of a minibatch.

    Args:
      batch: ``(x, y)`` with x (batch, *input_shape) and y (batch, ...) targets.
      rng: key for the model's ``dropout`` stream.
    Returns:
      ``(objective, (metrics, new_model_state))``: ``metrics`` holds the mean data ``loss``
      and, for classifiers, ``accuracy``.
    """
    x, y = batch
    outputs, new_state = model_outputs(model, params, model_state, x, rng, train=train)
    metrics = {k: v / x.shape[0] for k, v in metric_sums(loss, outputs, y).items()}
    objective = metrics["loss"]
    if regularizer is not None:
        objective = objective + regularizer(params)
    return objective, (metrics, new_state)


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer:
    """A model, a loss and an optimizer, with their compiled steps.

    The compiled functions are built once per Trainer (``functools.cached_property``) and
    reused for every step and epoch; a new input shape is the only thing that recompiles.

    Attributes:
      model: a linen Module called as ``model.apply(variables, x, train=...)``.
      loss: a :class:`jaxnets.losses.LossSpec` or its name.
      optimizer: an Optax ``GradientTransformation`` (see :func:`jaxnets.optim.make_optimizer`).
      regularizer: optional ``params -> ()`` penalty added to the objective.
      augment: optional pure ``(rng, x_batch) -> x_batch`` applied to training batches.
      per_example: whether per-example gradients exist (False for batch-norm models).
      card: the model's :class:`~jaxnets.registry.ModelCard`; when given, inputs to ``init``
        and ``fit`` are checked against its input shape and dtype (see :meth:`for_model`).
      mesh: a :class:`jax.sharding.Mesh` with a ``"data"`` axis to train data-parallel on
        (see the module docstring); default: :func:`jaxnets.distributed.default_mesh`, which
        is None (one device) unless ``--devices``/``jaxnets launch`` configured one.
      fsdp: with a mesh, also split every parameter of at least ``fsdp_min_size`` elements,
        and its optimizer state, over the data axis (fully sharded data parallel: each
        device holds 1/N of them; the compiler gathers them for each step).
      reduction_groups: split each minibatch into this many equal groups, take each group's
        gradient separately and add the groups' gradients (and metrics) one after the other
        in a fixed order. The arithmetic is then the same whether the groups sit on 1 device
        or are spread over 2, 4, ... (any device count that divides the group count), so the
        trained parameters are bitwise equal across device counts instead of equal to float32
        rounding (whose differences grow over a long run until single test predictions flip).
        Costs speed (about 3x per step for an MLP at batch 32 on the CPU). Each group draws
        its own dropout mask. Not for batch-norm models, whose statistics span the batch.
        None (default): one reduction over the whole batch.
      epoch_mode: how :attr:`train_epoch` and :attr:`evaluate` loop over minibatches:
        ``"scan"`` (one compiled ``lax.scan``), ``"python"`` (a Python loop over the jitted
        step) or ``"auto"``: python on the CPU when the step contains a convolution (see the
        module docstring), scan otherwise. Both modes take the same steps.
    """

    model: nn.Module
    loss: _losses.LossSpec | str
    optimizer: optax.GradientTransformation
    regularizer: Callable[[PyTree], jax.Array] | None = None
    augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None
    per_example: bool = True
    card: registry.ModelCard | None = None
    epoch_mode: str = "auto"
    mesh: Mesh | None = None
    fsdp: bool = False
    fsdp_min_size: int = 1 << 16
    reduction_groups: int | None = None

    def __post_init__(self):
        if isinstance(self.loss, str):
            object.__setattr__(self, "loss", _losses.get_loss(self.loss))
        if self.epoch_mode not in EPOCH_MODES:
            raise ValueError(
                f"unknown epoch_mode {self.epoch_mode!r}; expected one of {', '.join(EPOCH_MODES)}"
            )
        if self.mesh is None:
            object.__setattr__(self, "mesh", distributed.default_mesh())
        if self.mesh is not None and distributed.DATA_AXIS not in self.mesh.axis_names:
            raise ValueError(
                f"the mesh needs a {distributed.DATA_AXIS!r} axis to split minibatches over; "
                f"its axes are {self.mesh.axis_names}"
            )
        if self.fsdp and self.mesh is None:
            raise ValueError("fsdp shards parameters over a mesh: pass mesh= (or --devices N)")
        if self.reduction_groups is not None:
            check_positive_int("reduction_groups", self.reduction_groups)
            if not self.per_example:
                raise ValueError(
                    "reduction_groups needs a model whose examples do not interact: this one "
                    "couples the examples of a batch (batch norm), so its groups cannot be "
                    "computed apart; leave reduction_groups=None"
                )
            if self.reduction_groups % self.data_devices:
                raise ValueError(
                    f"reduction_groups={self.reduction_groups} does not split over the mesh's "
                    f"{self.data_devices} devices; use a multiple of {self.data_devices}"
                )

    @property
    def data_devices(self) -> int:
        """How many devices a minibatch is split over (1 without a mesh)."""
        return 1 if self.mesh is None else self.mesh.shape[distributed.DATA_AXIS]

    @classmethod
    def for_model(
        cls, name: str, optimizer: optax.GradientTransformation, **overrides: Any
    ) -> Trainer:
        """A Trainer for the registered model ``name`` with its card's default loss and
        per-example setting; inputs are checked against the card. ``overrides`` are the
        model's hyperparameters, except the Trainer's own options (``regularizer``,
        ``augment``, ``epoch_mode``, ``mesh``, ``fsdp``, ``fsdp_min_size``,
        ``reduction_groups``)."""
        trainer_options = (
            "regularizer",
            "augment",
            "epoch_mode",
            "mesh",
            "fsdp",
            "fsdp_min_size",
            "reduction_groups",
        )
        options = {k: overrides.pop(k) for k in trainer_options if k in overrides}
        card = registry.model_card(name)
        return cls(
            registry.create_model(name, **overrides),
            card.loss,
            optimizer,
            per_example=card.per_example_grads,
            card=card,
            **options,
        )

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
                outputs = self._abstract(example)[1]
                self.loss.check_targets(y, outputs.shape[1:])
                self._remember_checked(x, y)
        except ValueError as error:  # TypeErrors (a batch size of 2.5) need no context
            if type(error) not in (ValueError, _losses.TargetError, registry.InputSpecError):
                raise  # not one of these checks' own errors: leave it as it is
            raise type(error)(f"{name} data: {error}") from None

    @functools.lru_cache(maxsize=8)  # noqa: B019  (the Trainer is immutable and hashable)
    def _abstract(self, example: jax.ShapeDtypeStruct) -> tuple[PyTree, jax.ShapeDtypeStruct]:
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
        want = jax.tree_util.tree_leaves_with_path(self._abstract(example)[0]["params"])
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

    # -- construction -------------------------------------------------------------------
    def init(self, rng: jax.Array, sample_x: jax.Array) -> TrainState:
        """A fresh TrainState; ``sample_x`` (batch, *input_shape) fixes the parameter shapes."""
        self.check_input(sample_x)
        init_rng, params_rng, dropout_rng = jax.random.split(rng, 3)
        variables = self._jitted_init(
            {"params": params_rng, "dropout": dropout_rng}, jnp.asarray(sample_x)
        )
        variables = dict(variables)
        params = variables.pop("params")
        state = TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=self.optimizer.init(params),
            model_state=variables,
            rng=init_rng,
        )
        return self.place(state)

    # -- placement on the mesh -------------------------------------------------------------
    def state_shardings(self, state: TrainState) -> Any:
        """A NamedSharding per leaf of ``state``: replicated, or split by FSDP (see ``fsdp``)."""
        min_size = self.fsdp_min_size if self.fsdp else None
        return distributed.state_shardings(state, self.mesh, fsdp_min_size=min_size)

    def place(self, state: TrainState) -> TrainState:
        """``state`` on the mesh's devices with :meth:`state_shardings` (unchanged without a
        mesh); a state restored or built elsewhere is placed before it is trained."""
        if self.mesh is None:
            return state
        return jax.device_put(state, self.state_shardings(state))

    def _batch_sharding(self, leading: int = 0) -> NamedSharding:
        """Split the example axis (after ``leading`` unsplit axes) over the data axis."""
        spec = PartitionSpec(*([None] * leading), distributed.DATA_AXIS)
        return NamedSharding(self.mesh, spec)

    def _constrain(self, state: TrainState, batch: Batch) -> tuple[TrainState, Batch]:
        """Inside the compiled step: the state as placed, the batch split over the mesh."""
        if self.mesh is None:
            return state, batch
        state = jax.lax.with_sharding_constraint(state, self.state_shardings(state))
        batch = jax.lax.with_sharding_constraint(batch, self._batch_sharding())
        return state, batch

    def check_batch_size(self, batch_size: int) -> None:
        """Raise unless ``batch_size`` is a positive integer (TypeError for bools and floats,
        ValueError below 1) that splits evenly over the mesh's data axis and into
        ``reduction_groups`` (ValueError)."""
        check_positive_int("batch_size", batch_size)
        for parts, what in (
            (self.data_devices, "devices"),
            (self.reduction_groups or 1, "reduction groups"),
        ):
            if batch_size % parts:
                raise ValueError(
                    f"batch_size {batch_size} does not split into {parts} {what}; "
                    f"use a multiple of {parts}"
                )

    def _put_rows(self, arrays: tuple[np.ndarray, ...], rows: np.ndarray) -> list[jax.Array]:
        """``a[rows]`` for each host array ``a`` (n, ...), as global arrays of shape
        (*rows.shape, ...) split over the data axis along rows' last axis. Built with
        ``jax.make_array_from_callback``: each process reads from ``a`` only the rows that
        its own devices hold."""
        sharding = self._batch_sharding(rows.ndim - 1)

        def put(a: np.ndarray) -> jax.Array:
            shape = (*rows.shape, *a.shape[1:])
            return jax.make_array_from_callback(
                shape, sharding, lambda index: a[rows[index[: rows.ndim]]]
            )

        return [put(np.asarray(a)) for a in arrays]

    @functools.cached_property
    def _jitted_init(self):
        # Eager flax init compiles every primitive separately: dozens of programs for a CNN.
        return jax.jit(functools.partial(self.model.init, train=False))

    # -- the pure step -------------------------------------------------------------------
    def _objective(self, params, model_state, batch, rng, train):
        return batch_loss(
            self.model,
            self.loss,
            params,
            model_state,
            batch,
            rng,
            train=train,
            regularizer=self.regularizer,
        )

    def step_with_grads(
        self, state: TrainState, batch: Batch
    ) -> tuple[TrainState, dict[str, jax.Array], PyTree]:
        """The pure step that also returns the gradients it applied:
        ``(state, (x, y)) -> (state, metrics, grads)``, grads shaped like ``state.params``
        (the objective's gradient, regularizer included, before the optimizer's transform)."""
        state, batch = self._constrain(state, batch)
        rng = jax.random.fold_in(state.rng, state.step)
        x, y = batch
        if self.augment is not None:
            x = self.augment(jax.random.fold_in(rng, _AUGMENT_TAG), x)
        if self.reduction_groups is None:
            grad_fn = jax.value_and_grad(self._objective, has_aux=True)
            (_, (metrics, model_state)), grads = grad_fn(
                state.params, state.model_state, (x, y), rng, True
            )
        else:
            metrics, grads = self._grouped_grads(state, x, y, rng)
            model_state = state.model_state
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(
            step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state
        )
        if self.mesh is not None:
            new_state = jax.lax.with_sharding_constraint(new_state, self.state_shardings(new_state))
        return new_state, metrics, grads

    def _grouped_grads(self, state: TrainState, x: jax.Array, y: jax.Array, rng: jax.Array):
        """Metrics and gradients of the batch objective, as sums over ``reduction_groups``
        groups of the batch, added in a fixed order (see ``reduction_groups``).

        Each device loops (``lax.map``) over the groups it holds, so every group is computed
        by the same program on arrays of the same shape whatever the device count: XLA's
        CPU matmuls round each row differently for different row counts, so a ``vmap`` over
        groups (one matmul of all the device's rows) would not be invariant."""
        groups, n = self.reduction_groups, x.shape[0]
        self.check_batch_size(n)  # shapes are static: this runs while tracing
        xs = x.reshape(groups, n // groups, *x.shape[1:])
        ys = y.reshape(groups, n // groups, *y.shape[1:])
        keys = jax.random.split(rng, groups)

        def group_objective(params, model_state, xg, yg, key):
            outputs, _ = model_outputs(self.model, params, model_state, xg, key, train=True)
            sums = {k: v / n for k, v in metric_sums(self.loss, outputs, yg).items()}
            return sums["loss"], sums

        def local_groups(params, model_state, xs, ys, keys):
            grad_fn = jax.grad(group_objective, has_aux=True)
            return jax.lax.map(lambda g: grad_fn(params, model_state, *g), (xs, ys, keys))

        if self.mesh is not None:
            split, whole = PartitionSpec(distributed.DATA_AXIS), PartitionSpec()
            # check_vma=False: model code (a scan's zero initial carry) need not mark values
            # as varying over devices, and the gradient with respect to the replicated
            # params stays each device's own, not summed over the devices in XLA's order
            run_groups = jax.shard_map(
                local_groups,
                mesh=self.mesh,
                in_specs=(whole, whole, split, split, split),
                out_specs=split,
                check_vma=False,
            )
        else:
            run_groups = local_groups
        grads, metrics = run_groups(state.params, state.model_state, xs, ys, keys)
        if self.mesh is not None:  # gather every group's sums before adding them in order
            replicated = NamedSharding(self.mesh, PartitionSpec())
            grads, metrics = jax.lax.with_sharding_constraint((grads, metrics), replicated)
        grads, metrics = jax.tree.map(_sum_in_order, (grads, metrics))
        if self.regularizer is not None:
            grads = jax.tree.map(jnp.add, grads, jax.grad(self.regularizer)(state.params))
        return metrics, grads

    def step(self, state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        """The pure, unjitted step ``(state, (x, y)) -> (state, metrics)``: compose it under
        ``jit``/``vmap``/``scan`` (see :attr:`train_step` and :mod:`jaxnets.train.ensemble`)."""
        new_state, metrics, _ = self.step_with_grads(state, batch)
        return new_state, metrics

    @functools.cached_property
    def train_step(self) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
        """``(state, (x, y)) -> (state, metrics)``, jitted; the input state is donated."""
        return jax.jit(self.step, donate_argnums=0)

    def _epoch_order(self, state: TrainState, n: int, batch_size: int) -> jax.Array:
        """(n // batch_size, batch_size) example indices of this epoch's minibatches."""
        num_batches = n // batch_size
        shuffle_rng = jax.random.fold_in(jax.random.fold_in(state.rng, _SHUFFLE_TAG), state.step)
        order = jax.random.permutation(shuffle_rng, n)[: num_batches * batch_size]
        return order.reshape(num_batches, batch_size)

    def _indexed_step(self, state: TrainState, x: jax.Array, y: jax.Array, idx: jax.Array):
        return self.step(state, (x[idx], y[idx]))

    def epoch(self, state: TrainState, x: jax.Array, y: jax.Array, batch_size: int):
        """The pure, unjitted epoch ``(state, x, y, batch_size) -> (state, metrics)`` on data
        held by the device (x (n, ...)): a ``lax.scan`` of :meth:`step` over this epoch's
        shuffled minibatches; compose it under ``vmap`` (ensembles) or ``jit``."""
        order = self._epoch_order(state, x.shape[0], batch_size)
        return jax.lax.scan(lambda carry, idx: self._indexed_step(carry, x, y, idx), state, order)

    @functools.cached_property
    def _scan_epoch(self):
        return jax.jit(self.epoch, static_argnames="batch_size", donate_argnums=0)

    def _batches_epoch(self, state: TrainState, xs: jax.Array, ys: jax.Array):
        """A scan of :meth:`step` over minibatches laid out as (steps, batch, ...)."""
        return jax.lax.scan(self.step, state, (xs, ys))

    @functools.cached_property
    def _scan_batches_epoch(self):
        return jax.jit(self._batches_epoch, donate_argnums=0)

    def _mesh_epoch(self, state: TrainState, x: Any, y: Any, *, batch_size: int):
        """One epoch on the mesh: the same shuffled minibatches as :meth:`epoch`, each process
        reading from the host data only its devices' part of every minibatch."""
        x, y = np.asarray(x), np.asarray(y)
        order = distributed.to_host(self._jitted_order(state, x.shape[0], batch_size))
        if not self.uses_python_loops(x):
            return self._scan_batches_epoch(state, *self._put_rows((x, y), order))
        per_step = []
        for idx in order:
            state, metrics = self.train_step(state, tuple(self._put_rows((x, y), idx)))
            per_step.append(metrics)
        return state, jax.tree.map(lambda *m: jnp.stack(m), *per_step)

    @functools.cached_property
    def _jitted_order(self):
        return jax.jit(self._epoch_order, static_argnums=(1, 2))

    @functools.cached_property
    def _jitted_indexed_step(self):
        return jax.jit(self._indexed_step, donate_argnums=0)

    def _python_epoch(self, state: TrainState, x: jax.Array, y: jax.Array, *, batch_size: int):
        x, y = jnp.asarray(x), jnp.asarray(y)  # on the device once, not once per step
        rows = []
        for idx in self._jitted_order(state, x.shape[0], batch_size):
            state, metrics = self._jitted_indexed_step(state, x, y, idx)
            rows.append(metrics)
        return state, jax.tree.map(lambda *m: jnp.stack(m), *rows)

    def uses_python_loops(self, sample_x: jax.Array) -> bool:
        """Whether ``"auto"`` mode loops from Python for inputs like ``sample_x`` (batch, ...):
        on the CPU when the model's forward pass contains a convolution."""
        if self.epoch_mode != "auto":
            return self.epoch_mode == "python"
        if jax.default_backend() != "cpu":
            return False
        return self._has_convolution(jax.ShapeDtypeStruct(sample_x.shape[1:], sample_x.dtype))

    @functools.lru_cache(maxsize=8)  # noqa: B019  (the Trainer is immutable and hashable)
    def _has_convolution(self, example: jax.ShapeDtypeStruct) -> bool:
        x = jax.ShapeDtypeStruct((1, *example.shape), example.dtype)
        variables = self._abstract(example)[0]
        jaxpr = jax.make_jaxpr(lambda v, x: self.model.apply(v, x, train=False))(variables, x)
        return _jaxpr_has_convolution(jaxpr.jaxpr)

    def train_epoch(self, state: TrainState, x: jax.Array, y: jax.Array, *, batch_size: int):
        """One shuffled pass: ``(state, x, y, batch_size) -> (state, metrics)``.

        x: (n, *input_shape), y: (n, ...); ``n // batch_size`` steps (the remainder of the
        shuffled order is left out this epoch); metrics are stacked per step: (steps,). A
        compiled ``lax.scan`` or a Python loop over the jitted step (see ``epoch_mode``); the
        input state is donated either way. The data are checked first (:meth:`check_data`).
        """
        self.check_data(x, y, state=state, batch_size=batch_size, train=True)
        self.check_batch_size(batch_size)
        if self.mesh is not None:
            return self._mesh_epoch(state, x, y, batch_size=batch_size)
        if self.uses_python_loops(x):
            return self._python_epoch(state, x, y, batch_size=batch_size)
        return self._scan_epoch(state, x, y, batch_size=batch_size)

    # -- evaluation ----------------------------------------------------------------------
    @staticmethod
    def _padded(x: jax.Array, y: jax.Array, batch_size: int):
        """x, y zero-padded to whole chunks, and a (chunks * batch_size,) 0/1 weight."""
        n = x.shape[0]
        num_chunks = -(-n // batch_size)
        pad = num_chunks * batch_size - n
        x_pad = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
        y_pad = jnp.concatenate([y, jnp.zeros((pad, *y.shape[1:]), y.dtype)])
        weight = (jnp.arange(num_chunks * batch_size) < n).astype(jnp.float32)
        return x_pad, y_pad, weight, num_chunks

    def _chunk_sums(self, state: TrainState, padded, i: jax.Array, batch_size: int):
        """Summed loss (and accuracy) over chunk ``i`` of the padded data, padding excluded."""
        x_pad, y_pad, weight = padded
        sl = lambda a: jax.lax.dynamic_slice_in_dim(a, i * batch_size, batch_size)  # noqa: E731
        return self._weighted_sums(state, sl(x_pad), sl(y_pad), sl(weight))

    def _weighted_sums(self, state: TrainState, xb: jax.Array, yb: jax.Array, wb: jax.Array):
        """Loss (and accuracy) summed over a chunk xb (chunk, ...) with 0/1 weights wb."""
        if self.mesh is not None:
            state, (xb, yb) = self._constrain(state, (xb, yb))
        outputs, _ = model_outputs(
            self.model, state.params, state.model_state, xb, state.rng, train=False
        )
        return metric_sums(self.loss, outputs, yb, wb)

    def pure_evaluate(self, state: TrainState, x: jax.Array, y: jax.Array, batch_size: int):
        """The pure, unjitted :meth:`evaluate` on data held by the device: a ``lax.map`` over
        chunks; compose it under ``vmap`` (ensembles) or ``jit``."""
        x_pad, y_pad, weight, num_chunks = self._padded(x, y, batch_size)
        sums = jax.lax.map(
            lambda i: self._chunk_sums(state, (x_pad, y_pad, weight), i, batch_size),
            jnp.arange(num_chunks),
        )
        return {k: jnp.sum(v) / x.shape[0] for k, v in sums.items()}

    @functools.cached_property
    def _scan_evaluate(self):
        return jax.jit(self.pure_evaluate, static_argnames="batch_size")

    def _mesh_evaluate(self, state: TrainState, x: Any, y: Any, batch_size: int):
        """Evaluation on the mesh: chunks of ``batch_size`` rounded up to whole multiples of the
        data axis, laid out (chunks, chunk, ...) and split along the chunk axis."""
        x, y, n, devices = np.asarray(x), np.asarray(y), len(x), self.data_devices
        chunk = -(-batch_size // devices) * devices
        positions = np.arange(-(-n // chunk) * chunk).reshape(-1, chunk)
        rows = np.minimum(positions, n - 1)  # padding repeats the last example, weight 0
        weight = (np.arange(positions.size) < n).astype(np.float32)

        def put(i=slice(None)):
            return (*self._put_rows((x, y), rows[i]), *self._put_rows((weight,), positions[i]))

        if self.uses_python_loops(x):
            chunks = [self._jitted_weighted_sums(state, *put(i)) for i in range(len(rows))]
            sums = {k: sum(c[k] for c in chunks) for k in chunks[0]}
        else:
            sums = self._jitted_chunked_sums(state, *put())
        return {k: v / n for k, v in sums.items()}

    @functools.cached_property
    def _jitted_weighted_sums(self):
        return jax.jit(self._weighted_sums)

    @functools.cached_property
    def _jitted_chunked_sums(self):
        def chunked(state, xs, ys, ws):
            sums = jax.lax.map(lambda c: self._weighted_sums(state, *c), (xs, ys, ws))
            return {k: jnp.sum(v) for k, v in sums.items()}

        return jax.jit(chunked)

    @functools.cached_property
    def _jitted_chunk_sums(self):
        return jax.jit(self._chunk_sums, static_argnames="batch_size")

    def _python_evaluate(self, state: TrainState, x: jax.Array, y: jax.Array, batch_size: int):
        x_pad, y_pad, weight, num_chunks = self._padded(jnp.asarray(x), jnp.asarray(y), batch_size)
        chunks = [
            self._jitted_chunk_sums(state, (x_pad, y_pad, weight), i, batch_size=batch_size)
            for i in range(num_chunks)
        ]
        return {k: sum(c[k] for c in chunks) / x.shape[0] for k in chunks[0]}

    def evaluate(self, state: TrainState, x: jax.Array, y: jax.Array, *, batch_size: int):
        """``(state, x, y, batch_size) -> metrics``: mean loss (and accuracy) over all n examples,
        computed in chunks of ``batch_size`` in evaluation mode (``train=False``); compiled as
        one ``lax.map`` (which ``vmap`` can batch over ensemble members) or, for convolutional
        models on the CPU, a Python loop over a jitted chunk (see ``epoch_mode``). The data
        are checked first (:meth:`check_data`)."""
        self.check_data(x, y, state=state, batch_size=batch_size, name="evaluation")
        if self.mesh is not None:
            return self._mesh_evaluate(state, x, y, batch_size)
        if self.uses_python_loops(x):
            return self._python_evaluate(state, x, y, batch_size)
        return self._scan_evaluate(state, x, y, batch_size=batch_size)

    @functools.cached_property
    def predict(self):
        """``(state, x) -> outputs`` (batch, ...) in evaluation mode."""

        def _predict(state, x):
            return model_outputs(
                self.model, state.params, state.model_state, x, state.rng, train=False
            )[0]

        return jax.jit(_predict)

    # -- per-example gradients -------------------------------------------------------------
    @functools.cached_property
    def per_example_grads(self):
        """``(state, (x, y)) -> grads`` with a leading batch axis on every leaf: (batch, *leaf).

        Each example's gradient of its own loss (no regularizer), from ``vmap(grad)`` over
        single examples, each with its own dropout key (so with dropout their mean is not the
        batch step's gradient, whose mask is drawn for the whole batch). Not defined for models
        that couple examples (batch norm): raises ``ValueError``.
        """
        if not self.per_example:
            raise ValueError(
                "per-example gradients are not defined for this model: it couples the examples "
                "of a batch (batch norm); see its model card (per_example_grads=False)"
            )

        def one(params, model_state, x_i, y_i, key):
            outputs, _ = model_outputs(self.model, params, model_state, x_i[None], key, train=True)
            return self.loss.fn(outputs[0], y_i)

        def grads(state: TrainState, batch: Batch):
            x, y = batch
            keys = jax.random.split(jax.random.fold_in(state.rng, state.step), x.shape[0])
            return jax.vmap(jax.grad(one), in_axes=(None, None, 0, 0, 0))(
                state.params, state.model_state, x, y, keys
            )

        return jax.jit(grads)

    def per_example_grad_norms(
        self, state: TrainState, x: jax.Array, y: jax.Array, *, batch_size: int = 256
    ) -> jax.Array:
        """Global L2 norm of each example's own loss gradient (all parameters together).

        x (n, *input_shape), y (n, ...) -> (n,) norms, computed in chunks of ``batch_size``
        with :attr:`per_example_grads`. A large norm marks an example the model fits badly:
        a hard example or a wrong label.
        """
        norms = []
        for start in range(0, x.shape[0], batch_size):
            chunk = (x[start : start + batch_size], y[start : start + batch_size])
            leaves = jax.tree.leaves(self.per_example_grads(state, chunk))
            squares = sum(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1) for g in leaves)
            norms.append(jnp.sqrt(squares))
        return jnp.concatenate(norms)

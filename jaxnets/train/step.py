"""Pure, jit-compiled training and evaluation steps.

Lectures: seed 004 §2.3 (line 668, average loss over the training set), §7 "Optimization"
(line 1841: minibatch SGD, one step = gradient of the minibatch loss), seed 001 (minibatch
SGD). The per-example loss is written for ONE example and ``jax.vmap``-ped over the
minibatch's outputs; the same loss under ``vmap(grad)`` over single examples gives
per-example gradients. Models whose examples interact (batch norm) have no per-example
gradient; their cards say ``per_example_grads=False``.

An epoch (:meth:`Trainer.train_epoch`) is one compiled ``lax.scan`` over minibatches of data
held by the device: no Python, no host round-trip per step. Except on the CPU for models
with a convolution that XLA computes (the image CNNs, PixelCNN, RevNet when jaxnets' oneDNN
kernels are not built), which step from Python (see below).

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
slower than the same convolution outside a loop. So on the CPU, models whose lowered forward
pass has a convolution that XLA computes step from Python by default (``epoch_mode="auto"``):
one dispatch per minibatch of the same jitted step on the same shuffled indices, with the
data kept on the device. Convolutions that run on oneDNN (:mod:`jaxnets.native`, issue 20)
are custom calls, as fast inside the loop as outside, and those models scan (measured on a
2-core Xeon: LeNet-5, 2048 examples at batch 64: 0.092 s per epoch scanned, 0.10 s from
Python; ResNet-18 on 32x32 images, 16 steps at batch 32: 0.83-0.90 s either way). On a mesh
of several devices the model runs XLA's convolutions (``kernels_for_mesh``) and so steps from
Python again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxnets import distributed, native, registry
from jaxnets import losses as _losses
from jaxnets.checks import check_positive_int
from jaxnets.train.data_checks import DataChecks
from jaxnets.train.evaluation import Evaluation
from jaxnets.train.objective import (
    batch_loss,
    lowers_to_xla_convolution,
    metric_sums,
    model_outputs,
    sum_in_order,
)
from jaxnets.train.per_example import PerExampleGrads
from jaxnets.train.placement import MeshPlacement
from jaxnets.train.state import TrainState

__all__ = ["Trainer", "batch_loss", "model_outputs"]

PyTree = Any
Batch = tuple[jax.Array, jax.Array]

# Distinct fold-in tags so the shuffle of epoch k and the dropout of step k never share a key.
_SHUFFLE_TAG = 0x5EED
_AUGMENT_TAG = 0xA06
EPOCH_MODES = ("auto", "scan", "python")


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer(DataChecks, MeshPlacement, Evaluation, PerExampleGrads):
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
        state, batch = self.constrain(state, batch)
        rng = jax.random.fold_in(state.rng, state.step)
        x, y = batch
        if self.augment is not None:
            x = self.augment(jax.random.fold_in(rng, _AUGMENT_TAG), x)
        if self.reduction_groups is None:
            grad_fn = jax.value_and_grad(self._objective, has_aux=True)
            with self.kernels_for_mesh():
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
        grads, metrics = jax.tree.map(sum_in_order, (grads, metrics))
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
            return self._scan_batches_epoch(state, *self.put_rows((x, y), order))
        per_step = []
        for idx in order:
            state, metrics = self.train_step(state, tuple(self.put_rows((x, y), idx)))
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
        on the CPU when the model's forward pass, as the steps apply it, has a convolution that
        XLA computes rather than a oneDNN kernel (see the module docstring)."""
        if self.epoch_mode != "auto":
            return self.epoch_mode == "python"
        if jax.default_backend() != "cpu":
            return False
        with self.kernels_for_mesh():
            kernels = native.enabled()
        example = jax.ShapeDtypeStruct(sample_x.shape[1:], sample_x.dtype)
        return self._has_xla_convolution(example, kernels)

    @functools.lru_cache(maxsize=8)  # noqa: B019  (the Trainer is immutable and hashable)
    def _has_xla_convolution(self, example: jax.ShapeDtypeStruct, kernels: bool) -> bool:
        x = jax.ShapeDtypeStruct((1, *example.shape), example.dtype)
        variables = self.abstract_shapes(example)[0]
        kernels_off = contextlib.nullcontext() if kernels else native.pure_jax()
        with kernels_off:
            return lowers_to_xla_convolution(
                lambda v, x: self.model.apply(v, x, train=False), variables, x
            )

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

"""Per-layer tables of a network: units, connections, weights, receptive fields and FLOPs.

Lectures: seed 004, Lecture 10 §3 "LeNet" (line 2406), Table 1 (line 2446) and the cost argument
after it ("one add-multiply operation per connection", "the backwards pass is about as expensive
as two forward passes"); Lecture 9 §3 (line 2264: sparse connections, weight sharing) and §4
(line 2290: pooling grows receptive fields); Lecture 13 §2 (line 2765: an RNN "unrolled" over
its time steps is a feed-forward net whose weights are shared between all time steps).

Definitions, per example:

* units: output elements. connections: convolution ``units x kernel area x input channels /
  groups`` (taps on zero padding included, no bias connections); pooling ``units x window
  area``; fully connected ``inputs x outputs``; in general the multiply-adds of the layer's
  convolutions and matrix products plus the inputs its window reductions read.
* weights: parameter entries other than biases, counted once however many connections share
  them; biases: entries of parameters named ``bias`` or ``*_bias`` (the GRU's
  ``hidden_to_hidden_bias``); weights + biases = parameters.
* recurrent layers count the unrolled network: a ``lax.scan`` body (or a module in ``nn.scan``)
  runs ``length`` times, so its connections and FLOPs count ``length`` times (nested scans
  multiply). A :class:`~jaxnets.nn.recurrent.Recurrent` over T steps with H hidden units
  (G = 1, 4, 3 gate blocks for Elman, LSTM, GRU) gives two rows: its cell's
  ``input_to_hidden``, fully connected over all T steps (``T x G·H`` units, ``T x F x G·H``
  connections), and the ``Recurrent`` itself, kind "recurrent": ``T x H`` units (hidden units
  per step times steps), ``T x H x G·H`` connections (per-step recurrent connections times
  steps) and the cell's ``hidden_to_hidden`` (H x G·H) as weights, counted once. A module
  never called itself (the cell: the scan body reads its weights through a method) has its
  parameters shown in its nearest enclosing called module's row. A module called inside a
  scan has output shape ``(steps, *one step's shape)``. A ``while`` body counts once.
* receptive field: the extent, in input pixels per spatial axis, of the input region that can
  influence one unit (a max-pooling window counts whole); stride: input pixels between
  neighbouring units' fields. A chain follows ``r_l = r_(l-1) + (k_l - 1) j_(l-1)``,
  ``j_l = j_(l-1) s_l``; here intervals are propagated through the traced program (jaxpr), so
  branches (Inception, shortcuts) give the union of their paths, and transposed convolutions
  the largest field of any unit. Fields at least as large as the input are "whole input".
* forward FLOPs: 2 per multiply-add connection, 1 per pooling connection, 1 per unit for each
  ``bias`` or ``scale`` parameter, and 1 per entry and step for a cell's bias read in the scan
  (the GRU's 3H); activation functions, gating products and the add that joins a recurrent
  layer's input projection to its recurrent product are not counted. Backward: 2 x forward.

XLA's ``cost_analysis()["flops"]`` also takes 2 per multiply-add but only for taps inside the
input ("same"-padded convolutions on small maps count fewer), plus 1 per ReLU, ``window - 1``
per max-pooling unit and ``window - 1`` adds and a division per mean-pooling unit: for LeNet-5
the totals agree exactly. XLA's backward skips the input gradient of the first layer.
XLA counts a ``while`` loop's body once, so a scanned RNN compares with its ``unroll=True``
program, taken before optimisation (fusion recomputes the hoisted projection's bias add in
every step's fusion): for an Elman RNN it counts the table's FLOPs plus the H adds per step
that join input and recurrent pre-activations (tanh is no FLOP to it).

All of it runs on abstract values (``jax.eval_shape``, ``jax.make_jaxpr``): no parameter is
allocated, and ResNet-50 at 224x224 costs about one trace.
"""

from __future__ import annotations

import dataclasses
import inspect as _pyinspect
import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import native
from jaxnets._receptive_field import (
    KINDS,
    Axis,
    Call,
    Event,
    Field,
    Recorder,
    Walker,
    batch_axis_error,
)
from jaxnets.registry import list_models, model_card

__all__ = ["LayerRow", "LayerTable", "layer_table"]


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One layer call: the columns of Lecture 10's Table 1, plus receptive field and FLOPs.

    Attributes:
      name: module path from the root (``"C1"``, ``"stage2_block1/conv1"``); pooling or matrix
        products called as functions in a parameter-free container: ``"<path>/max_pooling"``.
      call: 1, or 2, 3, ... when a module is called again (its weights are shared: counted once).
      module: class name; kind: ``"convolution"``, ``"fully connected"``, ``"subsampling"``
        (mean pooling, LeNet's name), ``"max pooling"``, ``"recurrent"`` (matrix products
        or convolutions inside a scan body: the same weights at every step), ``"batch norm"``, ...
      output_shape: one example's output shape; units ... forward_flops: see the module doc.
      receptive_field: extent per spatial input axis (height, width), clipped to the input;
        None for inputs without spatial axes. whole_input: whether it covers the whole input.
      field_stride: input pixels between neighbouring units (None once units mix the axis);
      field_start: where unit 0's field starts (negative: in the zero padding).
    """

    name: str
    call: int
    module: str
    kind: str
    output_shape: tuple[int, ...]
    units: int
    connections: int
    weights: int
    biases: int
    forward_flops: int
    receptive_field: tuple[int | float, ...] | None = None
    whole_input: tuple[bool, ...] | None = None
    field_stride: tuple[int | float | None, ...] | None = None
    field_start: tuple[int | float, ...] | None = None

    @property
    def parameters(self) -> int:
        return self.weights + self.biases

    @property
    def backward_flops(self) -> int:
        return 2 * self.forward_flops


def _total(field: str) -> property:
    return property(lambda self: sum(getattr(r, field) for r in self.rows), doc=f"Sum of {field}.")


_COUNTS = ("units", "connections", "weights", "biases")


@dataclasses.dataclass(frozen=True)
class LayerTable:
    """A model's layers in order (:attr:`rows`) and their totals, per example.

    ``str(table)`` is an aligned text table like Lecture 10's Table 1 (thousands separators),
    :meth:`to_markdown` the same in Markdown; both end with a summary line.
    """

    model: str
    input_shape: tuple[int, ...]
    rows: tuple[LayerRow, ...]

    units, connections, weights, biases = map(_total, _COUNTS)
    parameters, forward_flops, backward_flops = map(
        _total, ("parameters", "forward_flops", "backward_flops")
    )

    def _cells(self) -> list[list[str]]:
        spatial = any(r.receptive_field is not None for r in self.rows)
        header = ["layer", "type", "output", *_COUNTS]
        header += ["receptive field", "stride"] * spatial + ["forward FLOPs", "backward FLOPs"]
        table = [header]
        for r in [*self.rows, self]:
            if isinstance(r, LayerRow):
                name = r.name or f"({r.module})"
                cells = [name + (f" (call {r.call})" if r.call > 1 else ""), r.kind]
                cells.append("x".join(map(str, r.output_shape)) or "scalar")
                field = [_field_text(r), _xs(r.field_stride)]
            else:
                cells, field = ["total", "", ""], ["", ""]
            cells += [f"{getattr(r, f):,}" for f in _COUNTS] + field * spatial
            table.append(cells + [f"{r.forward_flops:,}", f"{r.backward_flops:,}"])
        return table

    def _summary(self) -> str:
        return (
            f"{self.model} on one {'x'.join(map(str, self.input_shape))} input: "
            f"{self.parameters:,} parameters ({self.weights:,} weights + {self.biases:,} biases), "
            f"{self.units:,} units, {self.connections:,} connections, "
            f"{self.forward_flops + self.backward_flops:,} FLOPs forward + backward"
        )

    def __str__(self) -> str:
        table = self._cells()
        widths = [max(map(len, column)) for column in zip(*table, strict=True)]
        lines = [
            "  ".join(
                c.ljust(w) if i < 3 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()
            for r in table
        ]
        rule = "  ".join("-" * w for w in widths)
        return "\n".join([lines[0], rule, *lines[1:-1], rule, lines[-1], self._summary()])

    def to_markdown(self) -> str:
        """The table in GitHub Markdown (numbers right-aligned), then the summary line."""
        table = self._cells()
        table.insert(1, ["---" if i < 3 else "---:" for i in range(len(table[0]))])
        table[-1] = [f"**{c}**" if c else "" for c in table[-1]]
        return "\n".join(f"| {' | '.join(r)} |" for r in table) + f"\n\n{self._summary()}\n"


def _xs(values: Sequence | None) -> str:
    return "-" if values is None or None in values else "x".join(map(str, values))


def _field_text(row: LayerRow) -> str:
    if row.whole_input is None or not any(row.whole_input):
        return _xs(row.receptive_field)
    whole = "whole input" if all(row.whole_input) else "whole input along some axes"
    return f"{_xs(row.receptive_field)} ({whole})"


# ----------------------------------------------------------------------------- the table

_MODULE_KINDS = {"BatchNorm": "batch norm", "LayerNorm": "layer norm", "GroupNorm": "group norm"}


def layer_table(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    variables: Mapping[str, Any] | None = None,
    dtype: Any = jnp.float32,
    receptive_fields: bool = True,
    apply_kwargs: Mapping[str, Any] | None = None,
) -> LayerTable:
    """Units, connections, weights, biases, receptive fields and FLOPs of every layer of ``model``.

    Nothing runs on real arrays: parameter shapes come from ``jax.eval_shape(model.init)`` (or
    from ``variables``), the layers from one ``jax.make_jaxpr`` of ``model.apply`` under
    :func:`flax.linen.intercept_methods`. Rows are the module calls that own parameters or make
    connections (convolution, dense, pooling, batch norm, ...), in the order of their first
    connection (of their first equation, if they make none); parameter-free element-wise
    modules (activations, dropout) are left out. A module called twice gives two rows, the
    second with ``call=2`` and no weights (they are shared). Scan bodies count once per step
    (recurrent layers: see the module doc); every unit after a scan sees the whole input
    (fields are not followed through it).

    Args:
      model: any ``flax.linen`` module, applied as ``model.apply(variables, x, **apply_kwargs)``.
      input_shape: ONE example's shape without the batch axis, e.g. ``(32, 32, 1)``: the last
        axis is channels, the axes before it spatial (vectors have none).
      variables: the model's variables (arrays or ``jax.ShapeDtypeStruct``s); default: the
        shapes ``model.init`` would give.
      dtype: the input dtype (``jnp.int32`` for token ids).
      receptive_fields: False leaves the receptive-field columns out.
      apply_kwargs: call arguments; default ``train=False`` if ``__call__`` takes ``train``.

    Returns:
      A :class:`LayerTable`, every count per example.

    Raises:
      ValueError: ``input_shape`` is not a tuple of positive ints.
        :class:`~jaxnets.registry.InputSpecError` (a ValueError): a convolution gets an input
        of too low a rank, or ``input_shape`` has one axis more than the model's example (a
        registered family's cards say its rank; a convolution, its kernel's), i.e. it includes
        the batch axis.
    """
    input_shape = tuple(input_shape)
    if not input_shape or not all(isinstance(n, (int, np.integer)) and n > 0 for n in input_shape):
        raise ValueError(
            f"input_shape must be one example's shape, positive ints without the batch axis, "
            f"e.g. (32, 32, 1); got {input_shape!r}"
        )
    input_shape = tuple(map(int, input_shape))
    cards = [model_card(name) for name in list_models()]
    ranks = {
        len(c.input_shape) for c in cards if getattr(c.builder, "func", c.builder) is type(model)
    }
    if ranks == {len(input_shape) - 1}:  # a registered family: its cards give the example rank
        raise batch_axis_error(input_shape, len(input_shape) - 1)
    if apply_kwargs is None:
        takes_train = "train" in _pyinspect.signature(type(model).__call__).parameters
        apply_kwargs = {"train": False} if takes_train else {}
    x = jax.ShapeDtypeStruct((1, *input_shape), np.dtype(dtype))
    rngs = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}
    if variables is None:
        with nn.intercept_methods(Recorder(input_shape)):
            variables = jax.eval_shape(lambda x: model.init(rngs, x, **apply_kwargs), x)
    variables = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), variables)
    recorder = Recorder(input_shape)

    def forward(variables, x):
        with nn.intercept_methods(recorder):
            return model.apply(variables, x, rngs=rngs, mutable=True, **apply_kwargs)

    with native.pure_jax():  # the walker reads lax's convolutions, not oneDNN's custom calls
        closed = jax.make_jaxpr(forward)(variables, x)
    spatial = len(input_shape) - 1 if receptive_fields else 0
    field = tuple(Axis(a + 1, Fraction(0), Fraction(1), Fraction(1)) for a in range(spatial))
    walker = Walker()
    walker.walk(closed.jaxpr, [None] * len(jax.tree.leaves(variables)) + [field], None)
    rows = _rows(recorder.calls, walker, variables.get("params", {}), input_shape)
    return LayerTable(type(model).__name__, input_shape, rows)


def _own_params(params: Mapping[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for key in path:
        params = params.get(key, {})
    return {k: v for k, v in params.items() if not isinstance(v, Mapping)}


def _module_params(params: Mapping[str, Any], path: tuple[str, ...] = ()):
    """``(module path, its own parameter leaves)`` for every module of a parameter tree."""
    leaves = {k: v for k, v in params.items() if not isinstance(v, Mapping)}
    if leaves:
        yield path, leaves
    for key, value in params.items():
        if isinstance(value, Mapping):
            yield from _module_params(value, (*path, key))


def _adopted_params(calls: list[Call], live, params: Mapping) -> dict[int, dict[str, Any]]:
    """Parameters of modules that are never called themselves (a recurrent cell, whose
    ``hidden_to_hidden`` its ``Recurrent`` reads through a method for the scan body), by the
    first live call of their nearest enclosing called module, keyed by their path below it."""
    called = {call.path for call in calls}
    first: dict[tuple[str, ...], int] = {}
    for index, call in enumerate(calls):
        if index in live:
            first.setdefault(call.path, index)
    adopted: dict[int, dict[str, Any]] = {}
    for path, leaves in _module_params(params):
        enclosing = [p for p in first if path[: len(p)] == p]
        if path in called or not enclosing:
            continue
        owner = max(enclosing, key=len)
        below = "/".join(path[len(owner) :])
        adopted.setdefault(first[owner], {}).update({f"{below}/{k}": v for k, v in leaves.items()})
    return adopted


def _is_bias(name: str) -> bool:
    """``bias``, or a named bias such as the GRU's ``hidden_to_hidden_bias``."""
    leaf = name.rsplit("/", 1)[-1]
    return leaf == "bias" or leaf.endswith("_bias")


def _plain(value: Fraction) -> int | float:
    return int(value) if value.denominator == 1 else float(value)


def _field_columns(field: Field | None, input_shape: tuple[int, ...]) -> dict[str, Any]:
    if not field:
        return {}
    sizes = [Fraction(n) for n in input_shape[: len(field)]]
    return {
        "receptive_field": tuple(_plain(min(a.size, n)) for a, n in zip(field, sizes, strict=True)),
        "whole_input": tuple(a.size >= n for a, n in zip(field, sizes, strict=True)),
        "field_stride": tuple(None if a.jump is None else _plain(a.jump) for a in field),
        "field_start": tuple(_plain(a.start) for a in field),
    }


def _rows(calls: list[Call], walker: Walker, params: Mapping, input_shape) -> tuple:
    """A row per module call that owns parameters or makes connections, in the order of their
    first connection; a parameter-free container's own pooling or matrix products get rows of
    their own. Parameters of never-called modules go to their enclosing call's row."""
    parents = {c.parent for c in calls}
    events: dict[int | None, list[Event]] = {}
    for event in walker.events:
        events.setdefault(event.layer, []).append(event)
    adopted_by = _adopted_params(calls, walker.outputs, params)
    calls_of: dict[str, int] = {}
    placed = []

    def add(seq, name, module, kind, out_shape, found, field, own, adopted, number=1):
        mine = {**own, **adopted}
        sizes = {k: math.prod(np.shape(v)) for k, v in mine.items()} if number == 1 else {}
        units, biases = math.prod(out_shape), sum(n for k, n in sizes.items() if _is_bias(k))
        macs, reads = sum(e.macs for e in found), sum(e.reads for e in found)
        # a layer's bias or scale acts once per unit; a cell's bias, read by the scan body,
        # once per entry and step
        per_unit = sum(_is_bias(k) or k == "scale" for k in own)
        steps = max((math.prod(e.scans) for e in found), default=1)
        per_step = sum(math.prod(np.shape(v)) for k, v in adopted.items() if _is_bias(k))
        flops = 2 * macs + reads + units * per_unit + steps * per_step
        counts = (units, macs + reads, sum(sizes.values()) - biases, biases, flops)
        row = LayerRow(
            name, number, module, kind, out_shape, *counts, **_field_columns(field, input_shape)
        )
        placed.append((seq, row))

    for index, call in enumerate(calls):
        own, found = _own_params(params, call.path), events.get(index, [])
        adopted, path = adopted_by.get(index, {}), "/".join(call.path)
        if not own and not adopted and index in parents:
            for e in found:
                base = "/".join(filter(None, [path, e.kind.replace(" ", "_")]))
                count = calls_of[base] = calls_of.get(base, 0) + 1
                name = base if count == 1 else f"{base}_{count - 1}"
                shape = (*e.scans, *e.out_shape[1:])
                add(e.seq, name, e.kind, e.kind, shape, [e], e.field, {}, {})
        elif (own or adopted or found) and index in walker.outputs:  # not a shape-only trace
            kinds = [k for k in KINDS if any(e.kind == k for e in found)]
            module = type(call.module).__name__
            kind = kinds[0] if kinds else _MODULE_KINDS.get(module, module)
            step_shape = call.output_shapes[0][1:] if call.output_shapes else ()
            out_shape = (*walker.output_scans[index], *step_shape)
            number = calls_of[path] = calls_of.get(path, 0) + 1
            seq = min((e.seq for e in found), default=walker.first_seq[index])
            field = walker.outputs[index]
            add(seq, path, module, kind, out_shape, found, field, own, adopted, number)
    return tuple(row for _, row in sorted(placed, key=lambda p: p[0]))

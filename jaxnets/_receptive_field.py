"""Receptive fields by interval propagation over a traced program (jaxpr), and the module
calls each equation of it belongs to: the tracing behind :func:`jaxnets.inspect.layer_table`.

Lectures: seed 004, Lecture 9 §4 "Pooling layers" (line 2291; line 2299: pooling increases the
size of units' receptive fields, the regions of the input image which influence their
activations) and Lecture 10 §3 "LeNet" (line 2388), whose layers' fields :mod:`jaxnets.inspect`
tabulates.

Each spatial input axis is followed, equation by equation through the jaxpr of a model's forward
pass, as one interval per unit: unit ``i`` along some array axis sees input positions
``[start + i * jump, start + i * jump + size)``. A convolution or window reduction with window
``k``, stride ``s``, window dilation ``d`` and input (base) dilation ``b`` sets ``step = jump /
b``, grows ``size`` by ``(k - 1) d step`` and makes ``jump = s step``: the chain rule ``r_l =
r_(l-1) + (k_l - 1) j_(l-1)``, ``j_l = j_(l-1) s_l``, with fractions keeping transposed
convolutions exact. Reshapes, transposes, slices and pads move or re-index the interval;
operands meeting on one grid (element-wise ops, shortcuts, Inception branches) give the union;
an axis that units mix (contracted by a matrix product, reduced, concatenated along, sorted,
or inside a scan, while or cond body) is spanned: every unit sees all of it.

:class:`Recorder`, installed with ``flax.linen.intercept_methods`` while the forward pass is
traced, lists the module calls (:class:`Call`), traces each call under a ``jax.named_scope``
(``_LAYER_SCOPE`` + call index) and marks its outputs with an ``optimization_barrier`` under
``_OUTPUT_SCOPE`` + call index. :class:`Walker` then records every convolution, matrix product
and window reduction as an :class:`Event`, attributed to the innermost call whose scope it
was traced in, and the field of each call's marked outputs.

A ``scan`` body runs ``length`` times: its events count ``length`` times (nested scans
multiply), the unrolled network of Lecture 13 §2 (line 2765), and its matrix products and
convolutions, the same weights applied at every step, are of kind ``"recurrent"``. A
``while`` body counts once (its trip count is not known when tracing), as do ``cond`` branches,
each of them.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.extend.core as jex
import numpy as np

from jaxnets.registry import InputSpecError

__all__ = ["KINDS", "Axis", "Call", "Event", "Field", "Recorder", "Walker", "batch_axis_error"]

_LAYER_SCOPE, _OUTPUT_SCOPE = "_jaxnets_layer", "_jaxnets_output"
_LAYER_RE, _OUTPUT_RE = re.compile(_LAYER_SCOPE + r"(\d+)"), re.compile(_OUTPUT_SCOPE + r"(\d+)")


class Axis(NamedTuple):
    """Where one spatial input axis went: unit ``i`` along array axis ``axis`` sees input
    positions ``[start + i * jump, start + i * jump + size)``; ``axis`` is None once units mix
    the whole axis, and then ``[start, start + size)`` is everything they see."""

    axis: int | None
    start: Fraction
    size: Fraction
    jump: Fraction | None


Field = tuple[Axis, ...]  # one per spatial input axis; () only marks dependence on the input


def _span(ax: Axis, shape: Sequence[int]) -> Axis:
    """The whole extent that all units along ``ax.axis`` (of size ``shape[ax.axis]``) see."""
    if ax.axis is None:
        return ax
    reach = (shape[ax.axis] - 1) * ax.jump
    return Axis(None, ax.start + min(reach, 0), ax.size + abs(reach), None)


def _merge(fields: Sequence[tuple[Field, Sequence[int]]], same_grid: bool) -> Field:
    """Union of operands' fields: axis by axis on a shared grid (element-wise ops, branches
    joining), every axis spanned otherwise (the output mixes all its operands see)."""
    fields = [(tuple(a if same_grid else _span(a, s) for a in f), s) for f, s in fields]
    out = list(fields[0][0])
    for f, shape in fields[1:]:
        for d, b in enumerate(f):
            a = out[d]
            if a.axis is None or (a.axis, a.jump) != (b.axis, b.jump):
                a, b = _span(a, shape), _span(b, shape)
            start = min(a.start, b.start)
            out[d] = Axis(a.axis, start, max(a.start + a.size, b.start + b.size) - start, a.jump)
    return tuple(out)


def _remap(field: Field, shape: Sequence[int], moves: Mapping[int, Any]) -> Field:
    """Move each axis by ``moves[axis]``: a new axis index, or ``(axis, window, stride, pad_lo,
    base_dilation, window_dilation)`` for a sliding window; other axes are spanned."""
    out = []
    for ax in field:
        move = None if ax.axis is None else moves.get(ax.axis)
        if move is None or isinstance(move, int):
            out.append(_span(ax, shape) if move is None else ax._replace(axis=move))
            continue
        axis, window, stride, pad_lo, base, dilation = move
        step = ax.jump / base
        size = ax.size + (window - 1) * dilation * step
        out.append(Axis(axis, ax.start - pad_lo * step, size, stride * step))
    return tuple(out)


_POOLS = {
    "reduce_window_sum": "subsampling",
    "reduce_window_max": "max pooling",
    "reduce_window_min": "min pooling",
    "reduce_window": "pooling",
}
_RECURRENT = "recurrent"  # a matrix product or convolution inside a scan body
KINDS = (_RECURRENT, "convolution", "fully connected", *_POOLS.values())
_REDUCTIONS = ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin")
_MIXING = ("cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp", "sort", "fft", "rev")
_OPAQUE = ("scan", "while", "cond")  # bodies are counted, but fields are not followed through


class Event(NamedTuple):
    """A convolution, matrix product or window reduction applied to the signal: ``out_shape``
    is one step's, ``macs`` and ``reads`` count every step of the enclosing scans, whose
    lengths ``scans`` lists outermost first (``()`` outside any scan)."""

    seq: int
    layer: int | None
    kind: str
    out_shape: tuple[int, ...]
    field: Field
    macs: int
    reads: int
    scans: tuple[int, ...] = ()


def _transfer(eqn, ins: list, shapes: list) -> tuple[list, Event | None]:
    """Output fields of one call-free equation, and its event if it makes connections."""
    prim, p = eqn.primitive.name, eqn.params
    outs = [tuple(v.aval.shape) for v in eqn.outvars]
    live = [(f, s) for f, s in zip(ins, shapes, strict=True) if f is not None]
    if prim == "optimization_barrier" or not live:
        return list(ins) if prim == "optimization_barrier" else [None] * len(outs), None
    (f, shape), size = live[0], math.prod(outs[0])
    kind, macs, reads, moves = None, 0, 0, None
    if prim == "conv_general_dilated" and ins[0] is not None:
        lhs, rhs, out = p["dimension_numbers"]
        kernel, moves = shapes[1], {lhs[0]: out[0]}
        for k, a in enumerate(lhs[2:]):
            moves[a] = (out[2 + k], kernel[rhs[2 + k]], p["window_strides"][k])
            moves[a] += (p["padding"][k][0], p["lhs_dilation"][k], p["rhs_dilation"][k])
        kind = "convolution"
        macs = size * math.prod(kernel[a] for a in rhs[2:]) * kernel[rhs[1]]
    elif prim in _POOLS and ins[0] is not None:
        keys = ("window_dimensions", "window_strides", "padding", "base_dilation")
        windows = zip(*(p[k] for k in keys), p["window_dilation"], strict=True)
        moves = {a: (a, w, s, pad[0], b, d) for a, (w, s, pad, b, d) in enumerate(windows)}
        kind, reads = _POOLS[prim], size * math.prod(p["window_dimensions"])
    elif prim == "dot_general":
        (lc, rc), (lb, rb) = p["dimension_numbers"]
        sides = [(shapes[0], lc, lb), (shapes[1], rc, rb)]
        free = [[a for a in range(len(s)) if a not in c and a not in b] for s, c, b in sides]
        fields = []
        for side, batch in enumerate((lb, rb)):
            if ins[side] is not None:
                first = len(lb) + side * len(free[0])
                move = {a: i for i, a in enumerate(batch)}
                move |= {a: first + i for i, a in enumerate(free[side])}
                fields.append((_remap(ins[side], shapes[side], move), outs[0]))
        field, macs = _merge(fields, True), size * math.prod(shapes[0][a] for a in lc)
        return [field], Event(0, None, "fully connected", outs[0], field, macs, 0)
    elif prim in _REDUCTIONS or prim == "squeeze":
        gone = p["axes"] if prim in _REDUCTIONS else p["dimensions"]
        moves = {a: i for i, a in enumerate(a for a in range(len(shape)) if a not in gone)}
    elif prim == "broadcast_in_dim":
        moves = dict(enumerate(p["broadcast_dimensions"]))
    elif prim == "reshape":
        moves = _reshape_moves(shape, outs[0])
    elif prim == "transpose":
        moves = {a: b for b, a in enumerate(p["permutation"])}
    elif prim == "slice":
        steps = zip(p["start_indices"], p["strides"] or (1,) * len(shape), strict=True)
        moves = {a: (a, 1, s, -lo, 1, 1) for a, (lo, s) in enumerate(steps)}
    elif prim == "pad":
        moves = {a: (a, 1, 1, lo, 1 + mid, 1) for a, (lo, _, mid) in enumerate(p["padding_config"])}
    elif prim == "concatenate":
        dim = p["dimension"]
        live = [(tuple(_span(a, s) if a.axis == dim else a for a in g), s) for g, s in live]
    if moves is not None:
        field = _remap(f, shape, moves)
        return [field] * len(outs), (
            Event(0, None, kind, outs[0], field, macs, reads) if kind else None
        )
    same = prim == "concatenate" or (
        prim not in _MIXING and all(s == o for _, s in live for o in outs)
    )
    return [_merge(live, same)] * len(outs), None


def _reshape_moves(old: Sequence[int], new: Sequence[int]) -> dict[int, int]:
    """Axes a reshape keeps: same size and the same number of elements before them."""
    where: dict[tuple[int, int], int] = {}
    for b, n in enumerate(new):
        where.setdefault((math.prod(new[:b]), n), b)
    keys = [(a, (math.prod(old[:a]), n)) for a, n in enumerate(old)]
    return {a: where[key] for a, key in keys if key in where}


def _subjaxprs(eqn) -> list:
    """The jaxprs among an equation's parameters (a pjit body, cond branches, a while body...)."""
    found = []
    for value in eqn.params.values():
        for item in value if isinstance(value, (tuple, list)) else [value]:
            if isinstance(item, (jex.ClosedJaxpr, jex.Jaxpr)):
                found.append(getattr(item, "jaxpr", item))
    return found


def _loop_inputs(eqn, body, fields: list) -> list:
    """A scan or while body's carried inputs depend on the signal once its outputs do (a carry
    that starts as zeros, like a recurrent state), so iterate to the fixed point."""
    p = eqn.params
    if eqn.primitive.name == "scan":
        first, count = p["num_consts"], p["num_carry"]
    elif eqn.primitive.name == "while" and body is p["body_jaxpr"].jaxpr:
        first, count = p["body_nconsts"], len(body.outvars)
    else:
        return fields
    fields, carried = list(fields), slice(first, first + count)
    for _ in range(count):
        outs = Walker().walk(body, fields, None)[:count]
        pairs = zip(fields[carried], outs, strict=True)
        fields[carried] = [o if f is None else f for f, o in pairs]
    return fields


def _repeated(event: Event, seq: int, layer: int | None, scans: tuple[int, ...]) -> Event:
    """``event`` placed at ``seq`` in ``layer``, counted once per step of the enclosing scans."""
    steps = math.prod(scans)  # 1 outside any scan
    kind = _RECURRENT if scans and event.kind in ("convolution", "fully connected") else event.kind
    return event._replace(
        seq=seq,
        layer=layer,
        kind=kind,
        macs=event.macs * steps,
        reads=event.reads * steps,
        scans=scans,
    )


class Walker:
    """Walks a jaxpr once, propagating receptive fields and attributing each equation to the
    innermost layer call in whose scope it was traced. ``output_scans[call]``: the lengths of
    the scans around the call's marked outputs (``()`` outside any; a module in ``nn.scan``)."""

    def __init__(self):
        self.seq = 0
        self.first_seq: dict[int, int] = {}
        self.events: list[Event] = []
        self.outputs: dict[int, Field | None] = {}
        self.output_scans: dict[int, tuple[int, ...]] = {}

    def walk(
        self,
        jaxpr,
        in_fields: Sequence[Field | None],
        layer: int | None,
        scans: tuple[int, ...] = (),
    ) -> list:
        """Fields of ``jaxpr``'s outputs given its inputs' (None: independent of the input);
        equations outside any layer scope are attributed to ``layer``; ``scans``: the lengths
        of the scans whose bodies ``jaxpr`` is in, outermost first."""
        env = dict(zip(jaxpr.invars, in_fields, strict=False))

        def read(v):
            return None if isinstance(v, jex.Literal) else env.get(v)

        for eqn in jaxpr.eqns:
            stack, name = str(eqn.source_info.name_stack), eqn.primitive.name
            scopes = _LAYER_RE.findall(stack)
            owner = int(scopes[-1]) if scopes else layer
            self.seq += 1
            self.first_seq.setdefault(owner, self.seq)
            ins = [read(v) for v in eqn.invars]
            shapes = [tuple(getattr(v.aval, "shape", ())) for v in eqn.invars]
            subs = [] if name in _POOLS else _subjaxprs(eqn)  # a reducer is not a call
            if len(subs) == 1 and name not in _OPAQUE and len(subs[0].invars) == len(ins):
                outs = self.walk(subs[0], ins, owner, scans)
            elif subs:
                inner = (*scans, eqn.params["length"]) if name == "scan" else scans
                spanned = [
                    f and tuple(_span(a, s) for a in f) for f, s in zip(ins, shapes, strict=True)
                ]
                for sub in subs:
                    fields = spanned[max(len(ins) - len(sub.invars), 0) :]
                    self.walk(sub, _loop_inputs(eqn, sub, fields), owner, inner)
                live = [(f, s) for f, s in zip(ins, shapes, strict=True) if f is not None]
                outs = [_merge(live, False) if live else None] * len(eqn.outvars)
            else:
                outs, event = _transfer(eqn, ins, shapes)
                if event is not None:
                    self.events.append(_repeated(event, self.seq, owner, scans))
            marks = _OUTPUT_RE.findall(stack)
            if name == "optimization_barrier" and marks:
                self.outputs.setdefault(int(marks[-1]), outs[0] if outs else None)
                self.output_scans.setdefault(int(marks[-1]), scans)
                self.first_seq.setdefault(int(marks[-1]), self.seq)
            env.update(zip(eqn.outvars, outs, strict=True))
        return [read(v) for v in jaxpr.outvars]


# ----------------------------------------------------------------------------- module calls


@dataclasses.dataclass
class Call:
    """One module call seen by :class:`Recorder`: the module, its path from the root, the index
    of the call it was made in (None at the top) and its array outputs' shapes (with batch)."""

    path: tuple[str, ...]
    module: nn.Module
    parent: int | None
    output_shapes: list[tuple[int, ...]] = dataclasses.field(default_factory=list)


class Recorder:
    """Intercepts module calls: checks input ranks, scopes each call so that its jaxpr
    equations can be attributed to it, and marks its outputs with an optimization barrier (a
    no-op: this trace is only analysed) so the jaxpr walk finds their receptive fields."""

    def __init__(self, input_shape: tuple[int, ...]):
        self.input_shape = input_shape
        self.calls: list[Call] = []
        self.stack: list[int] = []

    def __call__(self, next_fun, args, kwargs, context):
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        module, index = context.module, len(self.calls)
        _check_conv_rank(module, args, self.input_shape)
        self.calls.append(Call(module.path, module, self.stack[-1] if self.stack else None))
        self.stack.append(index)
        try:
            with jax.named_scope(f"{_LAYER_SCOPE}{index}"):
                out = next_fun(*args, **kwargs)
        finally:
            self.stack.pop()
        leaves, treedef = jax.tree.flatten(out)
        arrays = [i for i, leaf in enumerate(leaves) if isinstance(leaf, jax.Array)]
        self.calls[index].output_shapes = [tuple(leaves[i].shape) for i in arrays]
        with jax.named_scope(f"{_OUTPUT_SCOPE}{index}"):
            marked = jax.lax.optimization_barrier([leaves[i] for i in arrays])
        for i, leaf in zip(arrays, marked, strict=True):
            leaves[i] = leaf
        return jax.tree.unflatten(treedef, leaves)


def batch_axis_error(input_shape: tuple[int, ...], rank: int) -> InputSpecError:
    """The error for an ``input_shape`` that has one axis more than a model's example of rank
    ``rank``: it includes the batch axis."""
    return InputSpecError(
        f"input_shape {input_shape} looks like it includes a batch axis: the model takes one "
        f"example of rank {rank}, so pass {input_shape[1:]} (layer_table adds the batch axis)"
    )


def _check_conv_rank(module: nn.Module, args: tuple, input_shape: tuple[int, ...]) -> None:
    if not isinstance(module, (nn.Conv, nn.ConvTranspose, nn.ConvLocal)) or not args:
        return
    spatial, shape = len(module.kernel_size), tuple(np.shape(args[0]))
    if len(shape) > spatial + 2 and len(input_shape) > spatial + 1:
        raise batch_axis_error(input_shape, spatial + 1)
    if len(shape) < spatial + 2:
        hint = f"; did you mean {(*input_shape, 1)}?" if len(input_shape) == spatial else ""
        raise InputSpecError(
            f"layer {'/'.join(module.path)!r} ({type(module).__name__}, {spatial}-D kernel) needs "
            f"inputs (batch, {spatial} spatial axes, channels) but got shape {shape}: input_shape "
            f"{input_shape} must be one example of rank {spatial + 1} without the batch axis{hint}"
        )

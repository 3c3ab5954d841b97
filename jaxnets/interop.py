"""Weights from and to PyTorch: :func:`from_torch` and :func:`to_torch`.

A PyTorch ``state_dict`` (torch tensors or numpy arrays) becomes the ``variables`` of the
registered jaxnets model with the same architecture, and back. The PyTorch counterparts:

* ``resnet18``, ``resnet34``, ``resnet50``: ``torchvision.models.ResNet`` (any
  ``stage_sizes``/``widths``; keys ``conv1``, ``bn1``, ``layer{s}.{j}.conv{k}``,
  ``layer{s}.{j}.downsample.{0,1}``, ``fc``);
* ``vgg11`` ... ``vgg19`` (``batch_norm=True`` for ``vgg*_bn``), ``vgg_small``:
  ``torchvision.models.VGG`` (``features.{i}``, ``classifier.{0,3,6}``); ``alexnet``,
  ``alexnet_small``: ``torchvision.models.AlexNet`` (``features.{i}``, ``classifier.{1,4,6}``);
* ``lenet5``: ``nn.Sequential(Conv2d, act, pool, Conv2d, act, pool, Flatten, Linear, act,
  Linear, act, Linear)`` (keys ``0``, ``3``, ``7``, ``9``, ``11``);
* the MLP family (``mlp``, ``mlp_<activation>`` but maxout and RBF, ``mlp_sigmoid_head``,
  ``mlp_regression``, ``xor_mlp``): ``nn.Sequential(Linear, act, [Dropout,] Linear, act, ...,
  Linear)``; a PReLU activation is ``nn.PReLU(width)`` (its ``weight`` is the slope);
* ``{rnn,lstm,gru}_{classifier,regressor}``: ``recurrent.*`` of ``nn.RNN``/``nn.LSTM``/
  ``nn.GRU(features, hidden, num_layers=layers, bidirectional=..., batch_first=True)`` and
  ``readout.*`` of ``nn.Linear`` on the top layer's final h (both directions concatenated);
  ``char_lm``: ``embedding.*`` (``nn.Embedding``), ``recurrent.*`` (as above) and ``readout.*``.

Conversions: conv kernels OIHW <-> HWIO; dense weights (out, in) <-> kernels (in, out), and
the first dense layer after a flatten also reorders its inputs from PyTorch's (C, H, W) to
jaxnets' (H, W, C); batch norm ``running_mean``/``running_var`` <-> ``batch_stats``
``mean``/``var`` (``num_batches_tracked`` is optional on input, written as 0), and the bias
of a VGG conv before batch norm, which jaxnets leaves out, is folded into the running mean
(``to_torch`` writes it as 0); recurrent
gates keep their order (PyTorch's (i, f, g, o) and (r, z, n) are jaxnets' own), the RNN's and
LSTM's ``bias_ih + bias_hh`` is jaxnets' one input bias (``to_torch`` writes it as
``bias_ih`` with a zero ``bias_hh``), and the GRU keeps its two biases, since r multiplies
``bias_hh``'s n part in both. Models without such a counterpart, or whose counterpart differs
by design (GoogLeNet: torchvision's has auxiliary heads), are refused with the reason.

Batch norm differs in training only: PyTorch updates ``running_var`` with the unbiased batch
variance, Flax with the biased one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.models.cnn import VGG, AlexNet, LeNet5
from jaxnets.models.mlp import MLP
from jaxnets.models.resnet import ResNet
from jaxnets.models.rnn import CharLM, SequenceModel
from jaxnets.nn.activations import get_activation
from jaxnets.registry import create_model, model_card

__all__ = ["from_torch", "to_torch"]

Array = np.ndarray


@dataclasses.dataclass(frozen=True)
class _Entry:
    """PyTorch keys <-> one jaxnets leaf (``path``: collection first; None for a buffer that
    jaxnets does not keep). ``to_jax(*torch_arrays)``, ``to_torch(leaf) -> torch_arrays``."""

    keys: tuple[str, ...]
    path: tuple[str, ...] | None
    to_jax: Callable[..., Array]
    to_torch: Callable[[Array], tuple[Array, ...]]
    optional: bool = False


# (to_jax, to_torch) pairs: a copy, a dense weight (out, in) <-> kernel (in, out), and a conv
# weight (O, I, H, W) <-> kernel (H, W, I, O)
_COPY = (lambda a: a, lambda a: (a,))
_DENSE = (np.transpose, lambda k: (k.T,))
_CONV = (lambda w: w.transpose(2, 3, 1, 0), lambda k: (k.transpose(3, 2, 0, 1),))


def _side(features: int, channels: int) -> int:
    """Side of the square (side, side, channels) map that flattens to ``features``."""
    side = math.isqrt(features // channels)
    if side * side * channels != features:
        raise ValueError(
            f"a dense layer after a flatten of {channels} square maps needs side**2 * "
            f"{channels} inputs; got {features}"
        )
    return side


def _flat_dense(channels: int) -> tuple[Callable[..., Array], Callable[[Array], tuple[Array]]]:
    """Dense after a flatten: PyTorch's inputs are ordered (C, H, W), jaxnets' (H, W, C)."""

    def to_jax(w: Array) -> Array:
        s = _side(w.shape[1], channels)
        return w.reshape(-1, channels, s, s).transpose(2, 3, 1, 0).reshape(-1, w.shape[0])

    def to_torch(k: Array) -> tuple[Array]:
        s = _side(k.shape[0], channels)
        return (k.reshape(s, s, channels, -1).transpose(3, 2, 0, 1).reshape(k.shape[1], -1),)

    return to_jax, to_torch


def _layer(key: str, path: tuple[str, ...], params: Any, kernel=_DENSE) -> list[_Entry]:
    """``{key}.weight`` -> ``kernel`` (``kernel``: its two transforms; dense by default) and
    ``{key}.bias`` -> ``bias`` when the jaxnets layer has one."""
    entries = [_Entry((f"{key}.weight",), ("params", *path, "kernel"), *kernel)]
    if "bias" in _get(params, path):
        entries.append(_Entry((f"{key}.bias",), ("params", *path, "bias"), *_COPY))
    return entries


def _conv(key: str, path: tuple[str, ...], params: Any) -> list[_Entry]:
    return _layer(key, path, params, _CONV)


def _batch_norm(key: str, path: tuple[str, ...], conv_bias: str | None = None) -> list[_Entry]:
    """Batch norm ``key`` <-> ``path``. ``conv_bias``: the key of the bias of the conv before
    it, which jaxnets leaves out; it is folded into the running mean (exact in evaluation,
    and the batch mean absorbs it in training): ``mean = running_mean - bias``."""
    pairs = [("weight", "params", "scale"), ("bias", "params", "bias")]
    entries = [_Entry((f"{key}.{t}",), (c, *path, j), *_COPY) for t, c, j in pairs]
    mean = ("batch_stats", *path, "mean")
    if conv_bias is None:
        entries.append(_Entry((f"{key}.running_mean",), mean, *_COPY))
    else:
        entries.append(_Entry((conv_bias, f"{key}.running_mean"), mean, _fold, _unfold))
    var = ("batch_stats", *path, "var")
    entries.append(_Entry((f"{key}.running_var",), var, *_COPY))
    counter = _Entry((f"{key}.num_batches_tracked",), None, _COPY[0], _zero_count, optional=True)
    return [*entries, counter]


def _fold(bias: Array, running_mean: Array) -> Array:
    return running_mean - bias


def _unfold(mean: Array) -> tuple[Array, Array]:
    return np.zeros_like(mean), mean


def _zero_count(_: Any) -> tuple[Array]:
    return (np.zeros((), np.int64),)


def _get(tree: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        tree = tree[name]
    return tree


# -- layouts: the entries of one model ---------------------------------------------------------


def _resnet(model: ResNet, params: Any) -> list[_Entry]:
    entries = _conv("conv1", ("conv1",), params) + _batch_norm("bn1", ("bn1",))
    convs = 2 if model.block == "basic" else 3
    for s, size in enumerate(model.stage_sizes, start=1):
        for j in range(size):
            block = f"stage{s}_block{j + 1}"
            key = f"layer{s}.{j}"
            for k in range(1, convs + 1):
                entries += _conv(f"{key}.conv{k}", (block, f"conv{k}"), params)
                entries += _batch_norm(f"{key}.bn{k}", (block, f"bn{k}"))
            if "shortcut_conv" in params[block]:
                entries += _conv(f"{key}.downsample.0", (block, "shortcut_conv"), params)
                entries += _batch_norm(f"{key}.downsample.1", (block, "shortcut_bn"))
    return entries + _layer("fc", ("output",), params)


def _classifier(model: VGG | AlexNet, params: Any, channels: int, first: int) -> list[_Entry]:
    """torchvision's classifier: Linear, ReLU and Dropout in threes from index ``first``."""
    entries = []
    for i in range(1, len(model.hidden) + 1):
        kernel = _flat_dense(channels) if i == 1 else _DENSE
        entries += _layer(f"classifier.{first + 3 * (i - 1)}", (f"fc{i}",), params, kernel)
    last = f"classifier.{3 * len(model.hidden)}"
    kernel = _flat_dense(channels) if not model.hidden else _DENSE
    return entries + _layer(last, ("output",), params, kernel)


def _vgg(model: VGG, params: Any) -> list[_Entry]:
    entries, i = [], 0
    for s, depth in enumerate(model.depths, start=1):
        for j in range(1, depth + 1):
            entries += _conv(f"features.{i}", (f"conv{s}_{j}",), params)
            if model.batch_norm:  # torchvision's conv keeps its bias
                bias = f"features.{i}.bias"
                entries += _batch_norm(f"features.{i + 1}", (f"conv{s}_{j}_bn",), bias)
            i += 3 if model.batch_norm else 2
        i += 1  # the max pool
    return entries + _classifier(model, params, model.widths[-1], 0)


def _alexnet(model: AlexNet, params: Any) -> list[_Entry]:
    entries, i = [], 0
    for c in range(1, 6):
        entries += _conv(f"features.{i}", (f"conv{c}",), params)
        i += 3 if c in (1, 2, 5) else 2  # conv, ReLU and the max pool after 1, 2 and 5
    return entries + _classifier(model, params, model.widths[-1], 1)


def _lenet(model: LeNet5, params: Any) -> list[_Entry]:
    convs = _conv("0", ("C1",), params) + _conv("3", ("C3",), params)
    dense = _layer("7", ("F5",), params, _flat_dense(model.c3))
    return convs + dense + _layer("9", ("F6",), params) + _layer("11", ("output",), params)


def _mlp(model: MLP, params: Any) -> list[_Entry]:
    step = 3 if model.dropout_rate else 2  # Linear, activation[, Dropout]
    entries = []
    for i in range(len(model.hidden)):
        entries += _layer(str(step * i), (f"hidden_{i}",), params)
        if model.activation == "prelu":
            slope = ("params", f"act_{i}", "slope")
            entries.append(_Entry((f"{step * i + 1}.weight",), slope, *_COPY))
    return entries + _layer(str(step * len(model.hidden)), ("out",), params)


def _input_bias(a_ih: Array, a_hh: Array) -> Array:
    return a_ih + a_hh


def _split_bias(b: Array) -> tuple[Array, Array]:
    return b, np.zeros_like(b)


def _recurrent(kind: str, prefix: str, cells: list[tuple[str, tuple[str, ...]]]) -> list[_Entry]:
    """Entries of a ``torch.nn`` RNN/LSTM/GRU under ``prefix``: ``cells`` pairs each key suffix
    (``_l0``, ``_l0_reverse``, ...) with the jaxnets path of that layer's cell."""
    entries = []
    for suffix, path in cells:
        cell = ("params", *path)
        entries.append(
            _Entry((f"{prefix}weight_ih{suffix}",), (*cell, "input_to_hidden", "kernel"), *_DENSE)
        )
        entries.append(
            _Entry((f"{prefix}weight_hh{suffix}",), (*cell, "hidden_to_hidden"), *_DENSE)
        )
        biases = (f"{prefix}bias_ih{suffix}", f"{prefix}bias_hh{suffix}")
        input_bias = (*cell, "input_to_hidden", "bias")
        if kind == "gru":  # r multiplies bias_hh's n part: the two biases stay apart
            entries.append(_Entry(biases[:1], input_bias, *_COPY))
            entries.append(_Entry(biases[1:], (*cell, "hidden_to_hidden_bias"), *_COPY))
        else:
            entries.append(_Entry(biases, input_bias, _input_bias, _split_bias))
    return entries


def _sequence_model(model: SequenceModel, params: Any) -> list[_Entry]:
    directions = (
        [("", "forward"), ("_reverse", "backward")] if model.bidirectional else [("", None)]
    )
    cells = []
    for layer in range(model.layers):
        stack = () if model.layers == 1 else (f"layers_{layer}",)
        for suffix, direction in directions:
            path = ("recurrent", *stack, *((direction,) if direction else ()), "cell")
            cells.append((f"_l{layer}{suffix}", path))
    entries = _recurrent(_cell_kind(model.cell), "recurrent.", cells)
    return entries + _layer("readout", ("readout",), params)


def _char_lm(model: CharLM, params: Any) -> list[_Entry]:
    cells = [(f"_l{layer}", (f"recurrent_{layer}", "cell")) for layer in range(model.layers)]
    table = _Entry(("embedding.weight",), ("params", "embedding", "embedding"), *_COPY)
    entries = _recurrent(_cell_kind(model.cell), "recurrent.", cells)
    return [table, *entries, *_layer("readout", ("readout",), params)]


def _cell_kind(cell: str) -> str:
    """The torch.nn class of a jaxnets cell: irnn and relu_rnn are ``nn.RNN(nonlinearity=
    'relu')``, whose weights are laid out as the tanh RNN's."""
    return {"lstm": "lstm", "gru": "gru"}.get(cell, "rnn")


_LAYOUTS: list[tuple[type, Callable[[Any, Any], list[_Entry]]]] = [
    (ResNet, _resnet),
    (VGG, _vgg),
    (AlexNet, _alexnet),
    (LeNet5, _lenet),
    (MLP, _mlp),
    (SequenceModel, _sequence_model),
    (CharLM, _char_lm),
]
_DIFFERENT_BY_DESIGN = {
    "googlenet": "torchvision's GoogLeNet has two auxiliary classifiers and batch norm after "
    "every conv; jaxnets' googlenet follows the paper's Table 1 without auxiliary heads",
}


def _refusal(name: str, model: Any) -> str | None:
    """Why ``model`` (registered as ``name``) cannot be converted, or None."""
    if name in _DIFFERENT_BY_DESIGN:
        return f"differs from its PyTorch counterpart by design: {_DIFFERENT_BY_DESIGN[name]}"
    if isinstance(model, ResNet) and (model.stem, model.shortcut) != ("imagenet", "projection"):
        return (
            "only ImageNet ResNets (stem='imagenet', shortcut='projection') have a torchvision "
            f"counterpart; got stem={model.stem!r}, shortcut={model.shortcut!r}"
        )
    if isinstance(model, MLP) and get_activation(model.activation).kind == "layer":
        return (
            f"an MLP of {model.activation} units has no torch.nn counterpart (the unit replaces "
            "the affine map); activations with one: every elementwise kind, prelu and rrelu"
        )
    if not any(isinstance(model, cls) for cls, _ in _LAYOUTS):
        supported = ", ".join(cls.__name__ for cls, _ in _LAYOUTS)
        return (
            f"{type(model).__name__} has no PyTorch counterpart in jaxnets.interop; the "
            f"families with one: {supported}"
        )
    return None


# -- conversion ---------------------------------------------------------------------------------


def _numpy(value: Any) -> Array:
    """A numpy array of a torch tensor (without importing torch) or of any array-like."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _leaf_paths(tree: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(tree, Mapping):
        return [p for k, sub in tree.items() for p in _leaf_paths(sub, (*prefix, k))]
    return [prefix]


def _check_paths(name: str, entries: list[_Entry], variables: Any) -> None:
    """Raise unless the layout's jaxnets paths are exactly the leaves of ``variables``."""
    wanted = [e.path for e in entries if e.path is not None]
    given = _leaf_paths(variables)
    for path in wanted:
        if path not in given:
            raise ValueError(f"model {name!r}: variables lack {'/'.join(path)}")
    for path in given:
        if path not in wanted:
            raise ValueError(
                f"model {name!r}: unexpected variable {'/'.join(path)} (not in the model)"
            )


def _set(tree: dict, path: tuple[str, ...], value: Array) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _structure(
    name: str, input_shape: tuple[int, ...] | None, hyperparameters: dict[str, Any]
) -> tuple[Any, list[_Entry]]:
    """The variable shapes of ``name`` (``jax.eval_shape``, no compute) and its layout."""
    model = create_model(name, **hyperparameters)
    reason = _refusal(name, model)
    if reason is not None:
        raise ValueError(f"model {name!r} cannot be converted: {reason}")
    card = model_card(name)
    shape = (1, *(card.input_shape if input_shape is None else input_shape))
    x = jax.ShapeDtypeStruct(shape, jnp.dtype(card.input_dtype))
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    shapes = jax.eval_shape(model.init, rngs, x)
    layout = next(layout for cls, layout in _LAYOUTS if isinstance(model, cls))
    entries = layout(model, shapes["params"])
    _check_paths(name, entries, shapes)
    return shapes, entries


def from_torch(
    name: str,
    state_dict: Mapping[str, Any],
    *,
    input_shape: tuple[int, ...] | None = None,
    **hyperparameters: Any,
) -> dict[str, Any]:
    """jaxnets variables of model ``name`` from a PyTorch ``state_dict``.

    Args:
      name: a registered model with a PyTorch counterpart (see the module docstring).
      state_dict: key -> torch tensor or numpy array, as ``module.state_dict()`` returns.
      input_shape: one example's shape (no batch axis), for the models whose parameter shapes
        depend on it (LeNet-5's F5, the recurrent nets' input width); default: the card's.
      **hyperparameters: as for :func:`jaxnets.create_model`.
    Returns:
      ``{"params": ..., ["batch_stats": ...]}`` of numpy arrays in the state_dict's dtype,
      for ``create_model(name, **hyperparameters).apply``.
    Raises:
      ValueError: naming the first missing, unexpected or wrongly shaped key (expected vs got
        shape), or why the model has no counterpart.
    """
    shapes, entries = _structure(name, input_shape, hyperparameters)
    expected = {}
    for entry in entries:
        zeros = (
            np.broadcast_to(np.float32(0), _get(shapes, entry.path).shape) if entry.path else None
        )
        expected.update(zip(entry.keys, (a.shape for a in entry.to_torch(zeros)), strict=True))
    optional = {k for e in entries if e.optional for k in e.keys}
    for key in expected:
        if key not in state_dict and key not in optional:
            raise ValueError(f"model {name!r}: state_dict lacks {key!r} (shape {expected[key]})")
    for key in state_dict:
        if key not in expected:
            raise ValueError(f"model {name!r}: unexpected key {key!r} in the state_dict")
    arrays = {k: _numpy(v) for k, v in state_dict.items()}
    for key, array in arrays.items():
        if array.shape != expected[key]:
            raise ValueError(
                f"model {name!r}: {key!r} has shape {array.shape}; expected {expected[key]}"
            )
    variables: dict[str, Any] = {}
    for entry in entries:
        if entry.path is not None:
            _set(variables, entry.path, entry.to_jax(*(arrays[k] for k in entry.keys)))
    return variables


def to_torch(
    name: str,
    variables: Mapping[str, Any],
    *,
    input_shape: tuple[int, ...] | None = None,
    **hyperparameters: Any,
) -> dict[str, Array]:
    """A PyTorch ``state_dict`` (key -> numpy array) of model ``name``'s ``variables``.

    ``torch_module.load_state_dict({k: torch.from_numpy(v) for k, v in ...})`` loads it into
    the counterpart named in the module docstring. ``variables``: ``{"params": ...,
    ["batch_stats": ...]}`` of ``create_model(name, **hyperparameters)``; ``input_shape`` as
    for :func:`from_torch` (only the variables' names are checked, not their shapes). Raises
    ValueError naming the first missing or unexpected variable, or why the model has no
    counterpart.
    """
    _, entries = _structure(name, input_shape, hyperparameters)
    _check_paths(name, entries, variables)
    state: dict[str, Array] = {}
    for entry in entries:
        leaf = np.asarray(_get(variables, entry.path)) if entry.path else None
        state.update(zip(entry.keys, entry.to_torch(leaf), strict=True))
    return state

"""CNN outputs pinned to NumPy references written from the lectures' equations (issue 15).

Each reference below is a direct loop over output positions, written once and composed into
the blocks and the whole tiny models, so a test compares jaxnets' output (and, in training
mode, its updated batch-norm statistics) with numbers computed without JAX or Flax:

* filtering, what a conv layer computes (seed 004, Lecture 9 eq. 9-10, line 2115):
  ``z[n, i, j, m] = sum_{a, b, c} x_pad[n, s*i + a, s*j + b, c] w[a, b, c, m] + b[m]``;
* pooling (Lecture 9 §4): max or mean over each window, windows spaced by the stride;
* "same" padding (Lecture 10 §3, line 2410) pads ``ceil(n / s)`` outputs' worth of zeros with
  the odd one after (XLA's and TensorFlow's rule): jaxnets uses it for ``filtering`` and for the
  stride-2 max pools of the GoogLeNet stem, which then pad (0, 1) on an even side and (1, 1)
  on an odd one; the ResNet stem's max pool pads (1, 1) on every side and the model
  convolutions ``k // 2``, as torchvision does;
* batch norm (Ioffe & Szegedy 2015, lecture line 2095): per channel, batch mean and biased
  variance over (batch, height, width) in training, running statistics in evaluation,
  ``scale * (h - mean) / sqrt(var + 1e-5) + bias``; training moves the running statistics
  ``r <- 0.9 r + 0.1 batch`` (Flax's convention, momentum 0.9, biased variance);
* the blocks: ResNet's basic and bottleneck blocks ``relu(shortcut(x) + F(x))`` (He et al.
  2016, Lecture 14 §4 line 3254), Inception's four branches concatenated in the paper's order
  1x1, 3x3, 5x5, pool (Szegedy et al. 2014, Figure 2b), and LeNet-5, AlexNet, VGG, GoogLeNet
  and ResNet end to end (Lecture 10 §3-4, lines 2406-2500).

Variables are drawn with NumPy in float64 (shapes from ``jax.eval_shape``, no init compile) and
everything runs under ``jax.enable_x64``, so the tolerances are tight.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxnets.models.cnn import VGG, AlexNet, LeNet5
from jaxnets.models.googlenet import GoogLeNet, Inception
from jaxnets.models.resnet import BasicBlock, BottleneckBlock, ResNet
from jaxnets.nn.conv import filtering, pool

EPSILON = 1e-5  # flax.linen.BatchNorm's default, which jaxnets keeps
MOMENTUM = 0.9  # every batch norm in jaxnets
TOL = {"rtol": 1e-10, "atol": 1e-10}


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


# -- the references ------------------------------------------------------------------------


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _same_pads(size: int, window: int, stride: int) -> tuple[int, int]:
    """Zeros before and after an axis for "same": ``ceil(size / stride)`` outputs, odd one after."""
    total = max((-(-size // stride) - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def _pads(x, window, stride, padding):
    """Padding of the two spatial axes: "valid", "same", "full", an int per side, or pairs."""
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        return tuple(map(_same_pads, x.shape[1:3], window, stride))
    if padding == "full":
        return tuple((k - 1, k - 1) for k in window)
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    return padding


def _windows(x, window, stride, padding, fill=0.0):
    """Yield ``(i, j, x_pad[:, s*i : s*i + k, s*j : s*j + k, :], inside)`` per output position;
    ``inside`` marks the window's pixels that lie in ``x`` (not in the padding)."""
    window, stride = _pair(window), _pair(stride)
    pads = _pads(x, window, stride, padding)
    xp = np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=fill)
    inside = np.pad(np.ones(x.shape[1:3]), pads)
    rows, cols = ((n - k) // s + 1 for n, k, s in zip(xp.shape[1:3], window, stride, strict=True))
    for i, j in itertools.product(range(rows), range(cols)):
        at = np.s_[
            i * stride[0] : i * stride[0] + window[0], j * stride[1] : j * stride[1] + window[1]
        ]
        yield i, j, xp[(slice(None), *at)], inside[at]


def conv_ref(x, kernel, bias=None, stride=1, padding="valid"):
    """Filtering, eq. (9)-(10): x (N, H, W, C), kernel (kh, kw, C, M) -> (N, H', W', M)."""
    cells = list(_windows(x, kernel.shape[:2], stride, padding))
    out = np.zeros((x.shape[0], cells[-1][0] + 1, cells[-1][1] + 1, kernel.shape[-1]))
    for i, j, patch, _ in cells:
        out[:, i, j] = np.einsum("nabc,abcm->nm", patch, kernel)
    return out if bias is None else out + bias


def pool_ref(x, window, stride, padding, kind):
    """Max or mean over each window; padding is -inf for max, left out of the mean's count."""
    cells = list(_windows(x, window, stride, padding, fill=-np.inf if kind == "max" else 0.0))
    out = np.zeros((x.shape[0], cells[-1][0] + 1, cells[-1][1] + 1, x.shape[-1]))
    for i, j, patch, inside in cells:
        out[:, i, j] = patch.max((1, 2)) if kind == "max" else patch.sum((1, 2)) / inside.sum()
    return out


def relu(h):
    return np.maximum(h, 0.0)


class Ref:
    """One module's float64 variables in NumPy, the mode, and the batch statistics that the
    reference's training-mode batch norms write (same tree as Flax's ``batch_stats``)."""

    def __init__(self, variables, train: bool):
        self.params = variables["params"]
        self.running = variables.get("batch_stats", {})
        self.train = train
        self.stats = {}

    def scope(self, name: str) -> Ref:
        child = Ref(
            {"params": self.params[name], "batch_stats": self.running.get(name, {})}, self.train
        )
        self.stats[name] = child.stats
        return child

    def conv(self, name, h, stride=1, padding="valid"):
        p = self.params[name]
        return conv_ref(h, p["kernel"], p.get("bias"), stride, padding)

    def dense(self, name, h):
        p = self.params[name]
        return h.reshape(h.shape[0], -1) @ p["kernel"] + p["bias"]

    def bn(self, name, h):
        p, running = self.params[name], self.running[name]
        if self.train:
            mean, var = h.mean(axis=(0, 1, 2)), h.var(axis=(0, 1, 2))
            self.stats[name] = {
                key: MOMENTUM * running[key] + (1 - MOMENTUM) * batch
                for key, batch in (("mean", mean), ("var", var))
            }
        else:
            mean, var = running["mean"], running["var"]
        return p["scale"] * (h - mean) / np.sqrt(var + EPSILON) + p["bias"]

    def conv_relu(self, name, h, stride=1, batch_norm=False):
        """ReLU of a conv padded ``k // 2`` on every side, with batch norm ``{name}_bn``."""
        h = self.conv(name, h, stride, self.params[name]["kernel"].shape[0] // 2)
        return relu(self.bn(f"{name}_bn", h) if batch_norm else h)


def shortcut_ref(r: Ref, x, features, stride, kind):
    """Identity; else option A (every stride-th pixel, zero channels appended) or option B
    (1x1 conv with the block's stride, then batch norm)."""
    if x.shape[-1] == features and stride == 1:
        return x
    if kind == "zero_pad":
        x = x[:, ::stride, ::stride]
        return np.concatenate([x, np.zeros((*x.shape[:3], features - x.shape[-1]))], axis=-1)
    return r.bn("shortcut_bn", r.conv("shortcut_conv", x, stride))


def basic_block_ref(r: Ref, x, features, stride, shortcut):
    y = relu(r.bn("bn1", r.conv("conv1", x, stride, 1)))
    y = r.bn("bn2", r.conv("conv2", y, 1, 1))
    return relu(shortcut_ref(r, x, features, stride, shortcut) + y)


def bottleneck_ref(r: Ref, x, features, stride, shortcut, expansion=4):
    y = relu(r.bn("bn1", r.conv("conv1", x)))
    y = relu(r.bn("bn2", r.conv("conv2", y, stride, 1)))
    y = r.bn("bn3", r.conv("conv3", y))
    return relu(shortcut_ref(r, x, features * expansion, stride, shortcut) + y)


def inception_ref(r: Ref, x, batch_norm):
    layer = functools.partial(r.conv_relu, batch_norm=batch_norm)
    branches = [
        layer("branch1x1", x),
        layer("branch3x3", layer("branch3x3_reduce", x)),
        layer("branch5x5", layer("branch5x5_reduce", x)),
        layer("branch_pool_proj", pool_ref(x, 3, 1, "same", "max")),
    ]
    return np.concatenate(branches, axis=-1)


def lenet_ref(r: Ref, x, kind, phi):
    h = pool_ref(phi(r.conv("C1", x)), 2, 2, "valid", kind)
    h = pool_ref(phi(r.conv("C3", h)), 2, 2, "valid", kind)
    return r.dense("output", phi(r.dense("F6", phi(r.dense("F5", h)))))


def classifier_ref(r: Ref, h, hidden):
    """ReLU layers fc1, fc2, ... (dropout is the identity here) and the linear output."""
    for i in range(1, len(hidden) + 1):
        h = relu(r.dense(f"fc{i}", h))
    return r.dense("output", h)


def alexnet_ref(r: Ref, x, model: AlexNet):
    h = x
    layers = zip(model.kernels, model.strides, model.paddings, strict=True)
    for i, (_, stride, padding) in enumerate(layers, start=1):
        h = relu(r.conv(f"conv{i}", h, stride, padding))
        if i in (1, 2, 5):
            h = pool_ref(h, 3, 2, "valid", "max")
    return classifier_ref(r, h, model.hidden)


def vgg_ref(r: Ref, x, model: VGG):
    h = x
    for s, depth in enumerate(model.depths, start=1):
        for j in range(1, depth + 1):
            h = r.conv_relu(f"conv{s}_{j}", h, batch_norm=model.batch_norm)
        h = pool_ref(h, 2, 2, "valid", "max")
    return classifier_ref(r, h, model.hidden)


def googlenet_ref(r: Ref, x, model: GoogLeNet):
    layer = functools.partial(r.conv_relu, batch_norm=model.batch_norm)
    if model.stem == "imagenet":
        h = pool_ref(layer("conv1", x, stride=2), 3, 2, "same", "max")
    else:
        h = layer("conv1", x)
    h = pool_ref(layer("conv2", layer("conv2_reduce", h)), 3, 2, "same", "max")
    for s in range(3, 3 + len(model.stages)):
        if s > 3:
            h = pool_ref(h, 3, 2, 1, "max")
        for letter in "abcdefgh"[: len(model.stages[s - 3])]:
            h = inception_ref(r.scope(f"inception_{s}{letter}"), h, model.batch_norm)
    return r.dense("output", h.mean(axis=(1, 2)))


def resnet_ref(r: Ref, x, model: ResNet):
    imagenet = model.stem == "imagenet"
    h = relu(r.bn("bn1", r.conv("conv1", x, *((2, 3) if imagenet else (1, 1)))))
    if imagenet:
        h = pool_ref(h, 3, 2, 1, "max")
    block = basic_block_ref if model.block == "basic" else bottleneck_ref
    for s, (size, width) in enumerate(zip(model.stage_sizes, model.widths, strict=True)):
        for j in range(size):
            stride = 2 if s > 0 and j == 0 else 1
            h = block(r.scope(f"stage{s + 1}_block{j + 1}"), h, width, stride, model.shortcut)
    return r.dense("output", h.mean(axis=(1, 2)))


# -- running jaxnets against them ----------------------------------------------------------


def _flat(tree):
    return traverse_util.flatten_dict(tree, sep="/")


def _variables(model, x_shape, seed=0):
    """Float64 variables of ``model``: kernels with variance 2 / fan_in (ReLU nets keep their
    scale), biases and batch-norm shifts and means spread around 0, scales and variances in
    [0.5, 1.5], so that no unit sits at a constant and every mode differs."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(x_shape)))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        if path[-1] == "kernel":
            return rng.standard_normal(leaf.shape) * np.sqrt(2 / np.prod(leaf.shape[:-1]))
        if path[-1] in ("scale", "var"):
            return rng.uniform(0.5, 1.5, leaf.shape)
        return 0.3 * rng.standard_normal(leaf.shape)

    flat = traverse_util.flatten_dict(dict(shapes))
    return traverse_util.unflatten_dict({p: draw(p, leaf) for p, leaf in flat.items()})


def _prune(tree):
    """The statistics tree without the scopes that hold no batch norm (as Flax stores it)."""
    pruned = {k: _prune(v) if isinstance(v, dict) else v for k, v in tree.items()}
    return {k: v for k, v in pruned.items() if not isinstance(v, dict) or v}


def check_against_reference(model, reference, x_shape, modes=(False,), seed=0):
    """Apply ``model`` in each mode (train: batch statistics, returned updated) to a random
    float64 batch and compare with ``reference(Ref, x)`` on the same variables."""
    variables = _variables(model, x_shape, seed)
    x = np.random.default_rng(seed + 1).standard_normal(x_shape)
    for train in modes:
        if train:
            apply = functools.partial(model.apply, train=True, mutable=["batch_stats"])
            y, updated = jax.jit(apply)(variables, x)
        else:
            y, updated = jax.jit(functools.partial(model.apply, train=False))(variables, x), None
        r = Ref(variables, train)
        np.testing.assert_allclose(np.asarray(y), reference(r, x), **TOL, err_msg=f"{train=}")
        if train:
            got, want = _flat(updated["batch_stats"]), _flat(_prune(r.stats))
            assert got.keys() == want.keys()
            for key in want:
                np.testing.assert_allclose(np.asarray(got[key]), want[key], **TOL, err_msg=key)


# -- the layers of jaxnets.nn.conv ---------------------------------------------------------


@pytest.mark.parametrize("padding", ["valid", "same", "full"])
def test_strided_filtering_equals_the_loop(padding):
    """Stride (2, 3) on a 7x8 image, a 3x4 kernel: an odd and an even side, an even window,
    so "same" pads unevenly on both axes."""
    rng = np.random.default_rng(0)
    x, kernel = rng.standard_normal((2, 7, 8, 3)), rng.standard_normal((3, 4, 3, 2))
    got = filtering(jnp.asarray(x), jnp.asarray(kernel), stride=(2, 3), padding=padding)
    np.testing.assert_allclose(np.asarray(got), conv_ref(x, kernel, None, (2, 3), padding), **TOL)


@pytest.mark.parametrize("kind", ["max", "mean"])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_pooling_equals_the_loop(kind, padding):
    """Overlapping 3x3 windows, stride 2, on 7x8 signed maps: "same" pads (1, 1) on the odd side
    and (0, 1) on the even one; a mean over a window at the border counts only real pixels."""
    x = np.random.default_rng(1).standard_normal((2, 7, 8, 3))
    got = pool(jnp.asarray(x), 3, 2, kind=kind, padding=padding)
    np.testing.assert_allclose(np.asarray(got), pool_ref(x, 3, 2, padding, kind), **TOL)


# -- blocks --------------------------------------------------------------------------------

BOTH = (True, False)


@pytest.mark.parametrize(
    "channels, features, stride, shortcut",
    [(4, 4, 1, "projection"), (3, 4, 2, "projection"), (3, 4, 2, "zero_pad")],
    ids=["identity", "projection", "zero_pad"],
)
def test_basic_block(channels, features, stride, shortcut):
    """relu(shortcut + F(x)) in training (batch statistics, running ones moved) and evaluation;
    the stride-2 conv pads one pixel each side of the 7x8 map (not "same")."""
    block = BasicBlock(features, stride, shortcut)
    ref = functools.partial(basic_block_ref, features=features, stride=stride, shortcut=shortcut)
    check_against_reference(block, ref, (3, 7, 8, channels), modes=BOTH)


@pytest.mark.parametrize("channels, stride", [(8, 1), (3, 2)], ids=["identity", "projection"])
def test_bottleneck_block(channels, stride):
    """1x1 reduce, 3x3 with the stride, 1x1 expand to 4 x 2 maps, relu after the addition."""
    ref = functools.partial(bottleneck_ref, features=2, stride=stride, shortcut="projection")
    check_against_reference(BottleneckBlock(2, stride), ref, (3, 5, 6, channels), modes=BOTH)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_inception_module(batch_norm):
    """Four branches of distinct widths in the order 1x1, 3x3, 5x5, pool projection; the
    pool branch is a 3x3 stride-1 max pool padded on every side."""
    module = Inception(2, 2, 3, 1, 4, 5, batch_norm=batch_norm)
    ref = functools.partial(inception_ref, batch_norm=batch_norm)
    check_against_reference(module, ref, (2, 5, 6, 3), modes=BOTH if batch_norm else (False,))


# -- whole tiny models ---------------------------------------------------------------------


@pytest.mark.parametrize("kind, activation", [("mean", "tanh"), ("max", "relu")])
def test_lenet5(kind, activation):
    """C1, S2, C3, S4 (2x2 valid pools: 15 -> 13 -> 6, the odd row dropped, -> 4 -> 2), F5, F6,
    output."""
    model = LeNet5(
        num_classes=3, c1=2, c3=3, f5=5, f6=4, kernel=3, pool=kind, activation=activation
    )
    ref = functools.partial(lenet_ref, kind=kind, phi={"tanh": np.tanh, "relu": relu}[activation])
    check_against_reference(model, ref, (2, 15, 15, 1))


def test_alexnet():
    """conv1 5x5, stride 2, padded 2 (31 -> 16); overlapping 3x3/2 valid max pools after conv1,
    conv2 and conv5 (16 -> 7, 7 -> 3, 3 -> 1); two ReLU fully connected layers."""
    model = AlexNet(
        num_classes=3,
        widths=(3, 4, 4, 3, 3),
        kernels=(5, 3, 3, 3, 3),
        strides=(2, 1, 1, 1, 1),
        paddings=(2, 1, 1, 1, 1),
        hidden=(5, 4),
    )
    check_against_reference(model, functools.partial(alexnet_ref, model=model), (2, 31, 31, 2))


def test_vgg_with_batch_norm():
    """3x3 convs padded 1, batch norm before each ReLU, 2x2 max pools (10 -> 5 -> 2)."""
    model = VGG(
        num_classes=3, depths=(1, 2), widths=(3, 4), hidden=(6,), batch_norm=True, dropout_rate=0.0
    )
    check_against_reference(model, functools.partial(vgg_ref, model=model), (2, 10, 10, 1), BOTH)


def test_googlenet():
    """ImageNet stem on 13x16: conv1 7x7/2 pads 3 (7x8), then "same" 3x3/2 max pools that pad
    (1, 1) on the odd side and (0, 1) on the even one (4x4, 2x2, 1x1), two Inception stages."""
    model = GoogLeNet(
        num_classes=3,
        stem_widths=(3, 3, 4),
        stages=(((2, 2, 3, 2, 2, 2),), ((2, 1, 2, 1, 2, 1),)),
        batch_norm=True,
        dropout_rate=0.0,
    )
    ref = functools.partial(googlenet_ref, model=model)
    check_against_reference(model, ref, (3, 13, 16, 2), modes=(True,))


@pytest.mark.parametrize(
    "config",
    [
        {"stem": "imagenet", "block": "basic", "shortcut": "projection"},
        {"stem": "cifar", "block": "bottleneck", "shortcut": "zero_pad"},
    ],
    ids=["imagenet_basic", "cifar_bottleneck"],
)
def test_resnet(config):
    """Stem, a stage of stride 1 and one of stride 2, global average pool, output; on 13x16
    the ImageNet stem's max pool pads (1, 1) rows and columns, as torchvision (7x8 -> 4x4)."""
    model = ResNet(stage_sizes=(1, 1), widths=(2, 3), num_classes=3, **config)
    shape = (3, 13, 16, 2) if config["stem"] == "imagenet" else (3, 6, 7, 2)
    check_against_reference(model, functools.partial(resnet_ref, model=model), shape, BOTH)

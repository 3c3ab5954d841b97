"""The conv nets of the conv-net benchmark as their users write them, without jaxnets:
plain ``flax.linen`` modules with a hand-written jitted step, and eager PyTorch modules.

Lectures: seed 004 Lecture 10 "Image Classification" (line 2311): §3 LeNet (line 2406; Table 1
at line 2446) and Lecture 14 §4 "ResNets" (line 3254); batch normalization (line 2095).

* ``lenet5``: LeNet-5 as the lecture's Table 1 (tanh, mean pooling), x: (B, 32, 32, 1);
* ``resnet18``: torchvision's ResNet-18 (ImageNet stem: 7x7/2 conv and 3x3/2 max pool; batch
  norm in training mode) on CIFAR-shaped x: (B, 32, 32, 3), 11,181,642 parameters for 10
  classes. The Flax version mirrors jaxnets' parameter names; its max pool, jaxnets' and
  PyTorch's pad one pixel on each side as torchvision's does, so the steps agree to rounding
  on the same variables.

flax and torch are imported inside the functions, when a case needs them.
:mod:`benchmarks.cnn` times them against jaxnets' registry models.
"""

from __future__ import annotations

import collections
import functools

from benchmarks.common import choice

MODELS = ("lenet5", "resnet18")
INPUT_SHAPES = {"lenet5": (32, 32, 1), "resnet18": (32, 32, 3)}

__all__ = ["INPUT_SHAPES", "MODELS", "flax_model", "flax_train_step", "torch_model"]

_RESNET18_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (width, first stride), 2 blocks each
_BN_MOMENTUM, _BN_EPSILON = 0.9, 1e-5  # flax convention; PyTorch's momentum=0.1 is the same


def flax_model(model: str, classes: int = 10, dtype: str = "float32"):
    """The benchmark's plain ``flax.linen`` version of ``model`` (no jaxnets code).

    x: (batch, 32, 32, channels) -> float32 logits (batch, classes); called as
    ``apply(variables, x, train=bool)``. ``dtype`` is the computation dtype of the ResNet.
    """
    import flax.linen as nn
    import jax.numpy as jnp

    choice("model", model, MODELS)
    compute = jnp.dtype(dtype)

    class LeNet5(nn.Module):
        """Table 1 of the lecture: C1 6@5x5, S2 mean pool, C3 16@5x5, S4, F5 120, F6 84."""

        @nn.compact
        def __call__(self, x, train: bool = False):
            h = nn.avg_pool(
                jnp.tanh(nn.Conv(6, (5, 5), padding="VALID", name="C1")(x)), (2, 2), (2, 2)
            )
            h = nn.avg_pool(
                jnp.tanh(nn.Conv(16, (5, 5), padding="VALID", name="C3")(h)), (2, 2), (2, 2)
            )
            h = h.reshape(h.shape[0], -1)
            h = jnp.tanh(nn.Dense(120, name="F5")(h))
            h = jnp.tanh(nn.Dense(84, name="F6")(h))
            return nn.Dense(classes, name="output")(h)

    def conv(features, kernel, strides, name):
        pad = kernel // 2
        return nn.Conv(
            features,
            (kernel, kernel),
            strides,
            ((pad, pad), (pad, pad)),
            use_bias=False,
            kernel_init=nn.initializers.he_normal(),
            dtype=compute,
            name=name,
        )

    def norm(train, name):
        return nn.BatchNorm(
            use_running_average=not train,
            momentum=_BN_MOMENTUM,
            epsilon=_BN_EPSILON,
            dtype=compute,
            name=name,
        )

    class BasicBlock(nn.Module):
        """Two 3x3 convs with batch norm; a 1x1 projection when the shape changes."""

        features: int
        strides: int

        @nn.compact
        def __call__(self, x, train: bool):
            h = nn.relu(norm(train, "bn1")(conv(self.features, 3, self.strides, "conv1")(x)))
            h = norm(train, "bn2")(conv(self.features, 3, 1, "conv2")(h))
            if self.strides != 1 or x.shape[-1] != self.features:
                x = norm(train, "shortcut_bn")(
                    conv(self.features, 1, self.strides, "shortcut_conv")(x)
                )
            return nn.relu(x + h)

    class ResNet18(nn.Module):
        """7x7/2 conv, 3x3/2 max pool, 4 stages of 2 blocks, global mean, linear output."""

        @nn.compact
        def __call__(self, x, train: bool = False):
            h = nn.relu(norm(train, "bn1")(conv(64, 7, 2, "conv1")(x)))
            h = nn.max_pool(h, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
            for stage, (width, strides) in enumerate(_RESNET18_STAGES, start=1):
                for block in (1, 2):
                    h = BasicBlock(
                        width, strides if block == 1 else 1, name=f"stage{stage}_block{block}"
                    )(h, train)
            # The output layer computes in the float32 of its parameters.
            return nn.Dense(classes, name="output")(jnp.mean(h, axis=(1, 2)))

    return {"lenet5": LeNet5, "resnet18": ResNet18}[model]()


def flax_train_step(model, optimizer):
    """What a Flax user writes: ``(state, (x, y)) -> (state, {"loss"})`` under
    ``jax.jit(donate_argnums=0)``; ``state`` is a ``flax.training.train_state.TrainState``
    with a ``model_state`` field (``{"batch_stats": ...}`` or ``{}``).

    Returns ``(train_step, create_state)``; ``create_state(variables) -> state`` takes the
    variables of ``model.init``.
    """
    import jax
    import optax
    from flax.training import train_state

    class TrainState(train_state.TrainState):
        model_state: dict

    def create_state(variables):
        model_state = dict(variables)
        params = model_state.pop("params")
        return TrainState.create(
            apply_fn=model.apply, params=params, tx=optimizer, model_state=model_state
        )

    @functools.partial(jax.jit, donate_argnums=0)
    def train_step(state, batch):
        x, y = batch

        def loss_fn(params):
            logits, model_state = state.apply_fn(
                {"params": params, **state.model_state},
                x,
                train=True,
                mutable=list(state.model_state),
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, model_state

        (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads=grads, model_state=model_state), {"loss": loss}

    return train_step, create_state


def torch_model(model: str, classes: int = 10):
    """The benchmark's eager PyTorch version of ``model``: x: (batch, channels, 32, 32) ->
    logits (batch, classes). Parameters are named as :func:`flax_model`'s (``stage1_block1.conv1
    .weight`` is Flax's ``stage1_block1/conv1/kernel``). The ResNet's max pool pads one pixel on
    each side, as torchvision's, Flax's and jaxnets'."""
    from torch import nn

    choice("model", model, MODELS)
    if model == "lenet5":
        layers = collections.OrderedDict(
            C1=nn.Conv2d(1, 6, 5),
            tanh1=nn.Tanh(),
            S2=nn.AvgPool2d(2),
            C3=nn.Conv2d(6, 16, 5),
            tanh3=nn.Tanh(),
            S4=nn.AvgPool2d(2),
            flatten=nn.Flatten(),
            F5=nn.Linear(400, 120),
            tanh5=nn.Tanh(),
            F6=nn.Linear(120, 84),
            tanh6=nn.Tanh(),
            output=nn.Linear(84, classes),
        )
        return nn.Sequential(layers)

    def conv(c_in, c_out, kernel, stride=1):
        return nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)

    class BasicBlock(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1, self.bn1 = conv(c_in, c_out, 3, stride), nn.BatchNorm2d(c_out)
            self.conv2, self.bn2 = conv(c_out, c_out, 3), nn.BatchNorm2d(c_out)
            self.projection = stride != 1 or c_in != c_out
            if self.projection:
                self.shortcut_conv = conv(c_in, c_out, 1, stride)
                self.shortcut_bn = nn.BatchNorm2d(c_out)

        def forward(self, x):
            h = self.bn2(self.conv2(self.bn1(self.conv1(x)).relu()))
            if self.projection:
                x = self.shortcut_bn(self.shortcut_conv(x))
            return (x + h).relu()

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = conv(3, 64, 7, 2), nn.BatchNorm2d(64)
            self.pool1 = nn.MaxPool2d(3, 2, 1)
            self.blocks = []
            c_in = 64
            for stage, (width, stride) in enumerate(_RESNET18_STAGES, start=1):
                for block in (1, 2):
                    name = f"stage{stage}_block{block}"
                    setattr(self, name, BasicBlock(c_in, width, stride if block == 1 else 1))
                    self.blocks.append(name)
                    c_in = width
            self.output = nn.Linear(512, classes)

        def forward(self, x):
            h = self.pool1(self.bn1(self.conv1(x)).relu())
            for name in self.blocks:
                h = getattr(self, name)(h)
            return self.output(h.mean(dim=(2, 3)))

    return ResNet18()

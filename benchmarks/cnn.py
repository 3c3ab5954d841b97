"""One benchmark case: a conv net trained for a fixed number of SGD steps by one framework.

Lectures: seed 004 Lecture 10 "Image Classification" (line 2311): §3 LeNet (line 2406; Table 1
at line 2446, and the note after it that a forward pass costs about one multiply-add per
connection and backprop about three) and Lecture 14 §4 "ResNets" (line 3254); Lecture 7
"Optimization" (line 1841: SGD with momentum) and batch normalization (line 2095).

The work is identical for every framework: ``steps`` SGD steps (momentum 0.9, learning rate
0.01, softmax cross-entropy) on minibatches of ``batch`` synthetic images, cycling through
``data_batches`` batches held on the device, of

* ``lenet5``: LeNet-5 as the lecture's Table 1 (tanh, mean pooling), x: (B, 32, 32, 1);
* ``resnet18``: torchvision's ResNet-18 (ImageNet stem: 7x7/2 conv and 3x3/2 max pool; batch
  norm in training mode) on CIFAR-shaped x: (B, 32, 32, 3), 11,181,642 parameters for 10
  classes. The Flax version mirrors jaxnets' parameter names and "same" max pool, so the two
  steps agree to rounding on the same variables; PyTorch pads the pool as torchvision does.

* ``jaxnets``: the registry's model and :class:`jaxnets.train.Trainer`'s jitted ``train_step``.
* ``flax``: the same architecture written here as plain ``flax.linen`` modules and a
  hand-written ``jax.jit(donate_argnums=0)`` step with Optax: the baseline.
* ``torch``: the same architecture in eager PyTorch with ``torch.optim.SGD``; on the CPU with
  ``torch.set_num_threads`` at the core count, on a GPU channels-last under
  ``torch.autocast(bfloat16)`` when ``dtype`` is bfloat16.

``dtype`` is the computation dtype (parameters stay float32). JAX cases also report XLA's
FLOP count of one step and the device's measured matmul peak (a ``peak_size``-cubed matmul in
``dtype``), from which :mod:`benchmarks.run` computes the fraction of peak.

Run as ``python -m benchmarks.cnn --framework flax --model lenet5 --batch 32``; the last
stdout line is one JSON record (see :func:`run_case`).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import math
import os

import numpy as np

from benchmarks.common import Timer, case_main, run_jax_steps, step_record

FRAMEWORKS = ("jaxnets", "flax", "torch")
MODELS = ("lenet5", "resnet18")
DEVICES = ("cpu", "gpu")
DTYPES = ("float32", "bfloat16")
INPUT_SHAPES = {"lenet5": (32, 32, 1), "resnet18": (32, 32, 3)}

__all__ = [
    "FRAMEWORKS",
    "MODELS",
    "INPUT_SHAPES",
    "CaseConfig",
    "make_data",
    "flax_model",
    "flax_train_step",
    "torch_model",
    "run_case",
    "main",
]

_RESNET18_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (width, first stride), 2 blocks each
_BN_MOMENTUM, _BN_EPSILON = 0.9, 1e-5  # flax convention; PyTorch's momentum=0.1 is the same


def _choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(options)}")


@dataclasses.dataclass(frozen=True)
class CaseConfig:
    """What one process trains and times.

    Attributes:
      framework: one of :data:`FRAMEWORKS`; model: one of :data:`MODELS`.
      batch: minibatch size B; x: (B, *INPUT_SHAPES[model]).
      steps: timed steps, after ``warmup_steps`` untimed ones (the first compiles).
      data_batches: distinct synthetic batches the steps cycle through.
      device: ``"cpu"`` or ``"gpu"`` (JAX's platform is set by the parent process).
      dtype: computation dtype, ``"float32"`` or ``"bfloat16"`` (parameters stay float32).
      torch_threads: ``torch.set_num_threads`` for the torch case; 0 means every core.
      peak_size: n of the (n, n) @ (n, n) matmul timed for the device's peak (JAX cases).
    """

    framework: str
    model: str
    batch: int
    steps: int = 20
    warmup_steps: int = 3
    data_batches: int = 4
    device: str = "cpu"
    dtype: str = "float32"
    classes: int = 10
    learning_rate: float = 0.01
    momentum: float = 0.9
    seed: int = 0
    torch_threads: int = 0
    peak_size: int = 1024

    def __post_init__(self):
        for name, options in (
            ("framework", FRAMEWORKS),
            ("model", MODELS),
            ("device", DEVICES),
            ("dtype", DTYPES),
        ):
            _choice(name, getattr(self, name), options)
        if self.batch < 1 or self.warmup_steps < 1 or self.peak_size < 1:
            raise ValueError(
                f"batch, warmup_steps (the first compiles) and peak_size must be >= 1; got "
                f"batch={self.batch}, warmup_steps={self.warmup_steps}, peak_size={self.peak_size}"
            )
        if not 1 <= self.data_batches <= self.steps:
            raise ValueError(
                f"need 1 <= data_batches <= steps (the final loss averages the last "
                f"data_batches timed steps); got data_batches={self.data_batches}, "
                f"steps={self.steps}"
            )
        if self.dtype == "bfloat16" and self.model == "lenet5":
            raise ValueError(
                "dtype bfloat16 needs a model with a dtype field: use model resnet18 "
                "(jaxnets' lenet5 computes in float32 only)"
            )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return INPUT_SHAPES[self.model]


def make_data(config: CaseConfig) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic images, identical in every process for a given seed.

    Returns x: (data_batches, batch, 32, 32, channels) float32 standard normal and
    y: (data_batches, batch) int32 labels of a random linear teacher on the pixels, so the
    task is learnable and a falling loss shows that training ran.
    """
    rng = np.random.default_rng(config.seed)
    shape = (config.data_batches, config.batch, *config.input_shape)
    x = rng.standard_normal(shape, dtype=np.float32)
    teacher = rng.standard_normal((math.prod(config.input_shape), config.classes), np.float32)
    y = np.argmax(x.reshape(-1, teacher.shape[0]) @ teacher, axis=1).astype(np.int32)
    return x, y.reshape(shape[:2])


# -- the hand-written Flax models and step ----------------------------------------------------
def flax_model(model: str, classes: int = 10, dtype: str = "float32"):
    """The benchmark's plain ``flax.linen`` version of ``model`` (no jaxnets code).

    x: (batch, 32, 32, channels) -> float32 logits (batch, classes); called as
    ``apply(variables, x, train=bool)``. ``dtype`` is the computation dtype of the ResNet.
    flax is imported here so that torch processes never load it.
    """
    import flax.linen as nn
    import jax.numpy as jnp

    _choice("model", model, MODELS)
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
            h = nn.max_pool(h, (3, 3), (2, 2), padding="SAME")
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


# -- JAX cases ----------------------------------------------------------------------------------
def _jaxnets_setup(config: CaseConfig, sample_x):
    import jax
    import jax.numpy as jnp

    import jaxnets
    import jaxnets.models  # noqa: F401  (registers the models)
    from jaxnets.optim import make_optimizer
    from jaxnets.train import Trainer

    overrides = {"num_classes": config.classes}
    if config.dtype != "float32":
        overrides["dtype"] = jnp.dtype(config.dtype)
    model = jaxnets.create_model(config.model, **overrides)
    card = jaxnets.model_card(config.model)
    trainer = Trainer(
        model,
        "softmax_cross_entropy",
        make_optimizer("momentum", config.learning_rate, momentum=config.momentum),
        per_example=card.per_example_grads,
    )
    # Jitted: Trainer.init runs model.init op by op (64 small compiles for LeNet-5).
    return trainer.train_step, jax.jit(trainer.init)(jax.random.PRNGKey(config.seed), sample_x)


def _flax_setup(config: CaseConfig, sample_x):
    import jax
    import optax

    model = flax_model(config.model, config.classes, config.dtype)
    optimizer = optax.sgd(config.learning_rate, momentum=config.momentum)
    train_step, create_state = flax_train_step(model, optimizer)
    init = jax.jit(functools.partial(model.init, train=False))
    return train_step, create_state(init(jax.random.PRNGKey(config.seed), sample_x))


# -- PyTorch ------------------------------------------------------------------------------------
def torch_model(model: str, classes: int = 10):
    """The benchmark's eager PyTorch version of ``model``: x: (batch, channels, 32, 32) ->
    logits (batch, classes). Parameters are named as :func:`flax_model`'s (``stage1_block1.conv1
    .weight`` is Flax's ``stage1_block1/conv1/kernel``). The ResNet's max pool pads one pixel on
    each side, as torchvision's (Flax's and jaxnets' "same" pad the extra pixel after: same
    shapes and work, windows shifted by one pixel)."""
    from torch import nn

    _choice("model", model, MODELS)
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


def _run_torch(config: CaseConfig, x_np: np.ndarray, y_np: np.ndarray) -> dict:
    import torch

    torch.set_num_threads(config.torch_threads or os.cpu_count() or 1)
    torch.manual_seed(config.seed)
    gpu = config.device == "gpu"
    device = torch.device("cuda" if gpu else "cpu")
    # Channels-last is the fast layout for bf16 convolutions on NVIDIA GPUs; the CPU's
    # oneDNN kernels are fastest from the default NCHW layout.
    layout = torch.channels_last if gpu else torch.contiguous_format
    torch.backends.cudnn.benchmark = gpu  # autotune convolutions, as XLA does
    model = torch_model(config.model, config.classes).to(device, memory_format=layout).train()
    opt = torch.optim.SGD(model.parameters(), lr=config.learning_rate, momentum=config.momentum)
    batches = [
        (
            torch.from_numpy(x).permute(0, 3, 1, 2).to(device).contiguous(memory_format=layout),
            torch.from_numpy(y).long().to(device),
        )
        for x, y in zip(x_np, y_np, strict=True)
    ]
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if config.dtype == "bfloat16"
        else contextlib.nullcontext()
    )
    sync = torch.cuda.synchronize if gpu else (lambda: None)

    def step(i):
        x, y = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    losses = [step(i) for i in range(config.warmup_steps)]
    sync()
    with Timer() as timed:
        losses += [step(config.warmup_steps + i) for i in range(config.steps)]
        sync()
    return {
        "timer": timed,
        "compile_s": None,
        "losses": torch.stack(losses).float().cpu().tolist(),
        "step_flops": None,
        "peak_flops_per_s": None,
        "device": torch.cuda.get_device_name() if gpu else "cpu",
    }


_RUNNERS = {
    "jaxnets": functools.partial(run_jax_steps, setup=_jaxnets_setup),
    "flax": functools.partial(run_jax_steps, setup=_flax_setup),
    "torch": _run_torch,
}


def run_case(config: CaseConfig) -> dict:
    """Train and time one case in this process.

    Returns a JSON-ready dict: the config, ``images_per_s``, ``steps_per_s``, ``ms_per_step``,
    ``cpu_ms_per_step`` (CPU time of all threads), ``seconds`` (timed steps), ``compile_s``
    (first step minus a steady one; None for eager torch), ``first_loss`` and ``final_loss``
    (mean training loss of the first and of the last ``data_batches`` steps), ``step_flops``
    (XLA's count) and ``peak_flops_per_s`` (measured matmul; both None for torch) and the
    ``device`` it ran on.
    """
    x, y = make_data(config)
    return step_record(config, _RUNNERS[config.framework](config, x, y), "images")


def main(argv: list[str] | None = None) -> dict:
    """CLI entry: run one case and print its record as the last line of stdout."""
    return case_main(CaseConfig, run_case, argv)


if __name__ == "__main__":
    main()

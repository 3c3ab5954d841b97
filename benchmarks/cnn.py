"""The conv-net benchmark: LeNet-5 and ResNet-18 trained for a fixed number of SGD steps by
jaxnets, hand-written Flax and eager PyTorch; its cases, their ratios and goals.

Lectures: seed 004 Lecture 10 "Image Classification" (line 2311): §3 LeNet (line 2406; Table 1
at line 2446, and the note after it that a forward pass costs about one multiply-add per
connection and backprop about three) and Lecture 14 §4 "ResNets" (line 3254); Lecture 7
"Optimization" (line 1841: SGD with momentum) and batch normalization (line 2095).

The work is identical for every framework: ``steps`` SGD steps (momentum 0.9, learning rate
0.01, softmax cross-entropy) on minibatches of ``batch`` synthetic images, cycling through
``data_batches`` batches held on the device, of the models of :mod:`benchmarks.cnn_models`:

* ``jaxnets``: the registry's model and :class:`jaxnets.train.Trainer`'s jitted ``train_step``.
* ``flax``: the same architecture as plain ``flax.linen`` modules and a hand-written
  ``jax.jit(donate_argnums=0)`` step with Optax (:func:`benchmarks.cnn_models.flax_model`):
  the baseline.
* ``torch``: the same architecture in eager PyTorch with ``torch.optim.SGD``; on the CPU with
  ``torch.set_num_threads`` at the core count, on a GPU channels-last under
  ``torch.autocast(bfloat16)`` when ``dtype`` is bfloat16.

``dtype`` is the computation dtype (parameters stay float32). JAX cases also report XLA's
FLOP count of one step and the device's measured matmul peak (a ``peak_size``-cubed matmul in
``dtype``), from which :func:`ratios_and_goals` computes the fraction of peak.

The plan (:func:`run_benchmark`, ``--cases lenet5 resnet18`` of :mod:`benchmarks.run`): per
device, CPU: LeNet-5 at batch 32 and 256, ResNet-18 at 32, float32; GPU: LeNet-5 at 256 in
float32, ResNet-18 at 512 in bfloat16. Goals: jaxnets' step time at most 1.05x hand-written
Flax's everywhere (issue 2); jaxnets' images/s at least PyTorch eager's for every (model,
batch) on the CPU (issue 20) and at least 1.8x PyTorch's for the ResNet-18 on a GPU (issue 2);
and, added by :mod:`benchmarks.run`, both ratios within 10% of the recorded ones (``WATCHED``).

A case runs as ``python -m benchmarks.cnn --framework flax --model lenet5 --batch 32``; the
last stdout line is one JSON record (see :func:`run_case`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import statistics

import numpy as np

from benchmarks import common, steps
from benchmarks.cnn_models import INPUT_SHAPES, MODELS, flax_model, flax_train_step, torch_model
from benchmarks.common import FRAMEWORKS, case_main

__all__ = ["CASES", "NAME", "RESULT_FILES", "CaseConfig", "main", "make_data", "run_case"]
__all__ += ["WATCHED", "Plan", "ratios_and_goals", "run_benchmark"]

NAME, CASES = "cnn", MODELS
RESULT_FILES = {"cpu": "cnn.json", "gpu": "cnn_gpu.json"}
WATCHED = common.Watched(
    identity=("model", "batch"),
    higher_is_better={
        "jaxnets_over_flax_step_time": False,
        "jaxnets_over_torch_images_per_s": True,
    },
)
# The least jaxnets images/s over PyTorch's, per device and model: every model on the CPU
# (issue 20), the ResNet-18 on a GPU (issue 2).
_MIN_SPEEDUP_VS_TORCH = {"cpu": {"lenet5": 1.0, "resnet18": 1.0}, "gpu": {"resnet18": 1.8}}
# Batch sizes and the images each process times, per device: a few seconds of steps per
# process on a 2-core CPU (the ResNet's XLA compile takes longer than its steps), about a
# second of JAX steps on an H100 (a 32x32 ResNet-18 step at batch 512 is ~65 GFLOPs).
_BATCHES = {
    "cpu": {"lenet5": (32, 256), "resnet18": (32,)},
    "gpu": {"lenet5": (256,), "resnet18": (512,)},
}
_TIMED_IMAGES = {
    "cpu": {"lenet5": 6400, "resnet18": 256},
    "gpu": {"lenet5": 1_024_000, "resnet18": 512_000},
}
# Mixed precision where it pays: the ResNet on a GPU (jaxnets' LeNet-5 is float32 only).
_DTYPES = {
    "cpu": {"lenet5": "float32", "resnet18": "float32"},
    "gpu": {"lenet5": "float32", "resnet18": "bfloat16"},
}
_PEAK_SIZE = {"cpu": 1024, "gpu": 8192}
_KEYS = ("images_per_s", *steps.STEP_METRICS, "step_flops", "peak_flops_per_s")


@dataclasses.dataclass(frozen=True)
class CaseConfig(steps.StepCase):
    """One conv net trained and timed by one process; the step fields (steps, warmup_steps,
    data_batches, device, dtype, seed, torch_threads, peak_size) are :class:`StepCase`'s.

    Attributes:
      framework: one of :data:`FRAMEWORKS`; model: one of :data:`MODELS`.
      batch: minibatch size B; x: (B, *INPUT_SHAPES[model]).
      classes, learning_rate, momentum: the task and SGD's settings.
    """

    framework: str
    model: str
    batch: int
    classes: int = 10
    learning_rate: float = 0.01
    momentum: float = 0.9

    def __post_init__(self):
        super().__post_init__()
        common.choice("model", self.model, MODELS)
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1; got batch={self.batch}")
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
def _run_torch(config: CaseConfig, x_np: np.ndarray, y_np: np.ndarray) -> dict:
    import torch

    device = steps.torch_device(config)
    gpu = config.device == "gpu"
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

    def loss_of(batch):
        x, y = batch
        return torch.nn.functional.cross_entropy(model(x), y)

    autocast = steps.torch_autocast(device, config.dtype)
    return {**steps.run_torch_steps(config, opt, batches, loss_of, autocast), "step_flops": None}


_RUNNERS = {
    "jaxnets": functools.partial(steps.run_jax_steps, setup=_jaxnets_setup),
    "flax": functools.partial(steps.run_jax_steps, setup=_flax_setup),
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
    return steps.step_record(config, _RUNNERS[config.framework](config, x, y), "images")


# -- the plan -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Plan:
    """The conv-net benchmark's options (``--cnn.<field>`` of :mod:`benchmarks.run`); None
    takes the device's default (see the module docstring).

    Attributes:
      batches: minibatch sizes, for every model.
      steps: timed steps per process (default: a fixed number of images; 4 with ``--quick``).
      dtype: computation dtype of every model (default: bfloat16 for the ResNet on a GPU).
      peak_size: n of the peak matmul (CPU 1024, GPU 8192).
    """

    batches: tuple[int, ...] | None = None
    steps: int | None = None
    dtype: str | None = None
    peak_size: int | None = None

    def __post_init__(self):
        if self.dtype is not None:
            common.choice("dtype", self.dtype, steps.DTYPES)


def ratios_and_goals(cases: list[dict], device: str) -> tuple[list[dict], list[dict]]:
    """Ratios and goals per (model, batch) of summarized ``cases``.

    Each ratio has ``jaxnets_over_flax_step_time`` (below 1: jaxnets faster),
    ``jaxnets_over_torch_images_per_s`` (above 1: jaxnets faster), ``step_flops`` (XLA's count
    for the Flax step, else jaxnets'), the median measured ``peak_flops_per_s`` of the JAX
    processes and ``peak_fraction[framework] = step_flops * steps/s / peak`` (None where a
    number is missing). Goals: jaxnets/Flax step time <= 1.05 everywhere; jaxnets/PyTorch
    images/s >= 1.0 for every model on the CPU and >= 1.8 for the ResNet-18 on a GPU.
    """
    by = {(c["framework"], c["model"], c["batch"]): c for c in cases}
    median = common.median
    ratios, goals = [], []
    for model, batch in sorted({(c["model"], c["batch"]) for c in cases}):
        jx, vs_flax, vs_torch = common.versus(by, (model, batch), "images_per_s")
        fx, th = by.get(("flax", model, batch)), by.get(("torch", model, batch))
        flops = median(fx, "step_flops") or median(jx, "step_flops")
        peaks = [r["peak_flops_per_s"] for c in (jx, fx) if c for r in c["repeats"]]
        peak = statistics.median(peaks) if peaks else None
        fraction = {
            f: flops * median(c, "images_per_s") / batch / peak if flops and peak else None
            for f, c in zip(FRAMEWORKS, (jx, fx, th), strict=True)
            if c
        }
        ratios.append(
            {
                "model": model,
                "batch": batch,
                "jaxnets_over_flax_step_time": vs_flax,
                "jaxnets_over_torch_images_per_s": vs_torch,
                "step_flops": flops,
                "peak_flops_per_s": peak,
                "peak_fraction": fraction,
            }
        )
        where = {"model": model, "batch": batch}
        if vs_flax is not None:
            goals.append(common.flax_goal(f"{model} batch {batch}", vs_flax, **where))
        least = _MIN_SPEEDUP_VS_TORCH[device].get(model)
        if vs_torch is not None and least is not None:
            goals.append(
                common.make_goal(
                    f"{model} batch {batch}{' on GPU' if device == 'gpu' else ''}: jaxnets "
                    f"images/s / PyTorch images/s >= {least}",
                    "jaxnets_over_torch_images_per_s",
                    vs_torch,
                    least,
                    "above",
                    **where,
                )
            )
    return ratios, goals


def run_benchmark(settings: common.Settings, plan: Plan, cases=CASES, log=print) -> dict:
    """The conv-net benchmark: every (model of ``cases``, batch, framework) case ``repeats``
    times (default 3).

    Returns ``{"benchmark": "cnn", "created", "machine", "config", "cases", "ratios",
    "goals"}``; ``cases[i]`` has framework, model, batch, steps, dtype, device, a
    ``{"median", "min", "max"}`` of each of images_per_s, ms_per_step, cpu_ms_per_step,
    compile_s, seconds, first_loss, final_loss, step_flops, peak_flops_per_s (the last three
    None for torch), and the raw ``repeats``; ratios and goals as :func:`ratios_and_goals`.
    """
    common.check_frameworks(settings.frameworks)
    device, models = settings.device, tuple(m for m in MODELS if m in cases)
    repeats = settings.repeats_for(3)
    peak_size = plan.peak_size or _PEAK_SIZE[device]
    given_steps = plan.steps or (4 if settings.quick else None)

    def config(model, batch, framework):
        timed = given_steps or max(round(_TIMED_IMAGES[device][model] / batch), 4)
        return CaseConfig(
            framework,
            model,
            batch,
            steps=timed,
            data_batches=min(4, timed),
            device=device,
            dtype=plan.dtype or _DTYPES[device][model],
            torch_threads=settings.torch_threads,
            peak_size=peak_size,
        )

    configs = [
        config(m, b, f)
        for m in models
        for b in (plan.batches or _BATCHES[device][m])
        for f in settings.frameworks
    ]
    records, machine = common.run_cases(
        "benchmarks.cnn",
        configs,
        repeats,
        device,
        lambda r: (
            f"{r['model']:8s} batch {r['batch']:4d}: {r['images_per_s']:9.1f} images/s  "
            f"{r['ms_per_step']:8.2f} ms/step"
        ),
        log,
    )
    identity = ("framework", "model", "batch", "steps", "dtype", "device")
    summaries = [common.summarize(recs, identity, _KEYS) for recs in records]
    ratios, goals = ratios_and_goals(summaries, device)
    first = configs[0]
    config = {
        "frameworks": list(settings.frameworks),
        "models": list(models),
        "batches": {m: sorted({c.batch for c in configs if c.model == m}) for m in models},
        "repeats": repeats,
        "device": device,
        "dtypes": {m: next(c.dtype for c in configs if c.model == m) for m in models},
        **{k: getattr(first, k) for k in ("warmup_steps", "data_batches", "classes")},
        **{k: getattr(first, k) for k in ("learning_rate", "momentum")},
        "torch_threads": settings.torch_threads or os.cpu_count(),
        "peak_size": peak_size,
    }
    return common.benchmark_result(NAME, machine, config, summaries, ratios=ratios, goals=goals)


def main(argv: list[str] | None = None) -> dict:
    """CLI entry: run one case and print its record as the last line of stdout."""
    return case_main(CaseConfig, run_case, argv)


if __name__ == "__main__":
    main()

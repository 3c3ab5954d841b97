"""Benchmark: the cost of partitioning, the same training step on a mesh of 1 and of 8 devices.

Lecture: seed 004 §7 "Optimization" (line 1841): a minibatch gradient is the mean of the
examples' gradients, so a step split over D devices (each differentiating B / D examples,
then an all-reduce) takes the same step. :class:`jaxnets.train.Trainer` compiles it for a
``jax.sharding`` mesh (see :mod:`jaxnets.distributed`); this benchmark times what that costs
for the *same global batch*:

* ``none``: the plain Trainer without a mesh (one device, no sharding annotations);
* ``1``: ``Trainer(..., mesh=data_mesh(1))``: the mesh program on one device;
* ``8``: ``Trainer(..., mesh=data_mesh(8))``: the batch split over 8 devices, parameters and
  optimizer state replicated, XLA's all-reduce of the gradients (and, in the ResNet, of the
  batch-norm statistics over the global batch).

On the CPU the 8 devices are *virtual* (``jax_num_cpu_devices``) and share this machine's
cores, so ``8 / 1`` is the overhead of partitioning (more, smaller kernels, the collectives,
dispatching to 8 devices), not a speed-up claim. The device count is fixed when JAX's backend
starts, so every case runs in its own process that sets it first (all three set-ups in the
same backend, with spare devices as :func:`jaxnets.distributed.configure` makes them; see
:func:`run_case`). With ``--device gpu`` (an NVIDIA GPU; not yet run: this machine has none) a
case times one GPU: ``Trainer`` without a mesh against a mesh of that one GPU.

Per process, every set-up is timed two ways through the public engine, after an untimed call
that compiles: ``step`` = ``steps`` calls of :attr:`Trainer.train_step` on minibatches already
on the devices (split over the mesh), ``epoch`` = one :meth:`Trainer.train_epoch` of ``steps``
minibatches from data on the host (mesh) or the device (no mesh), as ``fit`` hands them over.
On the CPU, dispatch is synchronous in every set-up (each call completes before the next
starts; see :func:`run_case`). ``rounds`` rounds alternate the set-ups so a change in machine
load falls on all of them; a process reports each set-up's median over its rounds. All
set-ups train from the same initial state on the same minibatches, so their losses agree to
float32 rounding (the record keeps the largest difference from the no-mesh run as a check).

``python -m benchmarks.run --cases partition`` (:func:`run_benchmark`; part of ``make bench``)
runs each model ``repeats`` times round-robin, each in a fresh process
(``python -m benchmarks.partition --model ...``, the flags of :class:`CaseConfig`), and
writes ``<out>/partition.json`` (``partition_gpu.json`` with ``--device gpu``); the README
table is :func:`benchmarks.readme_table.render_markdown`'s.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence

import numpy as np

from benchmarks import common
from benchmarks.common import case_main
from benchmarks.steps import Timer, fresh_jax_compiles

__all__ = ["CASES", "MODELS", "NAME", "RESULT_FILES", "SETUPS", "TIMINGS", "CaseConfig"]
__all__ += ["Plan", "main", "run_benchmark", "run_case", "summarize_case"]

NAME, CASES = "partition", ("partition",)
RESULT_FILES = {"cpu": "partition.json", "gpu": "partition_gpu.json"}

# The registry models timed, with their hyperparameters, global batch and timed steps per
# round (a round of a set-up takes a few hundred milliseconds on a 2-core CPU). The ResNet is
# the CIFAR ResNet with one basic block per stage: a batch-norm conv net that compiles in
# seconds.
MODELS = {
    "mlp": {"hyper": {"hidden": (512,), "num_outputs": 10}, "batch": 256, "steps": 40},
    "resnet20": {
        "hyper": {"stage_sizes": (1, 1, 1), "widths": (16, 32, 64), "num_classes": 10},
        "batch": 64,
        "steps": 4,
    },
    "lstm_classifier": {"hyper": {"hidden": 64, "outputs": 2}, "batch": 256, "steps": 10},
}
SETUPS = ("none", "1", "8")  # no mesh, a mesh of 1 device, of 8 devices
TIMINGS = ("step", "epoch")
_GPU_SETUPS = ("none", "1")


@dataclasses.dataclass(frozen=True)
class CaseConfig:
    """What one process times.

    Attributes:
      model: a registry name, a key of :data:`MODELS`.
      batch: the global minibatch B, split B / D per device on a mesh of D devices.
      steps: timed ``train_step`` calls per round, and the minibatches of one timed epoch.
      rounds: rounds alternating the set-ups; each set-up's median over them is reported.
      setups: what is timed, of :data:`SETUPS` (``"none"``: no mesh; ``"D"``: a mesh of D).
      device: ``"cpu"`` (virtual CPU devices, as many as the largest mesh) or ``"gpu"``.
      hidden: a width replacing the MLP's or the LSTM's (0: that of :data:`MODELS`), for
        tiny runs.
    """

    model: str
    batch: int
    steps: int
    rounds: int = 5
    setups: tuple[str, ...] = SETUPS
    device: str = "cpu"
    hidden: int = 0
    learning_rate: float = 1e-3
    seed: int = 0

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        unknown = [s for s in self.setups if s != "none" and not s.isdigit()]
        if unknown or not self.setups:
            raise ValueError(
                f"setups are 'none' (no mesh) or a device count like '8'; got {self.setups}"
            )
        if self.batch % self.largest_mesh:
            raise ValueError(
                f"global batch {self.batch} does not split over {self.largest_mesh} devices; "
                f"use a multiple of {self.largest_mesh}"
            )
        if self.hidden and "hidden" not in MODELS[self.model]["hyper"]:
            raise ValueError(f"hidden sets the width of mlp or lstm_classifier, not {self.model}")
        if self.steps < 1 or self.rounds < 1:
            raise ValueError(
                f"steps and rounds must be >= 1; got steps={self.steps}, rounds={self.rounds}"
            )

    @property
    def largest_mesh(self) -> int:
        """The most devices a set-up uses (1 when only ``"none"`` is timed)."""
        return max([int(s) for s in self.setups if s != "none"] or [1])


def _hyperparameters(config: CaseConfig) -> dict:
    hyper = dict(MODELS[config.model]["hyper"])
    if config.hidden:
        width = hyper["hidden"]
        hyper["hidden"] = (
            (config.hidden,) * len(width) if isinstance(width, tuple) else config.hidden
        )
    return hyper


def _label(config: CaseConfig) -> str:
    """The README's name of the model ``config`` trains."""
    from jaxnets import registry

    hyper = _hyperparameters(config)
    if config.model == "mlp":
        widths = (*registry.model_card("mlp").input_shape, *hyper["hidden"], hyper["num_outputs"])
        return "MLP " + "-".join(map(str, widths))
    if config.model == "lstm_classifier":
        time_steps = registry.model_card(config.model).input_shape[0]
        return f"LSTM (H={hyper['hidden']}, T={time_steps})"
    widths = "-".join(map(str, hyper["widths"]))
    return f"ResNet-{2 * sum(hyper['stage_sizes']) + 2} (batch norm, widths {widths})"


def _data(config: CaseConfig) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` minibatches of synthetic data: x (steps * batch, *input_shape) standard
    normal float32, y (steps * batch,) int32 labels in {0, 1} (every model has >= 2 classes)."""
    from jaxnets import registry

    card = registry.model_card(config.model)
    rng = np.random.default_rng(config.seed)
    n = config.steps * config.batch
    x = rng.standard_normal((n, *card.input_shape), dtype=np.float32)
    return x, rng.integers(0, 2, n).astype(np.int32)


def _setup(config: CaseConfig, setup: str, x: np.ndarray, y: np.ndarray):
    """The Trainer of ``setup``, its initial state, the minibatches on its devices (split over
    the mesh) and the epoch's (x, y) where ``fit`` would hold them (host for a mesh)."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec

    from jaxnets import distributed
    from jaxnets.optim import make_optimizer
    from jaxnets.train import Trainer

    mesh = None if setup == "none" else distributed.data_mesh(int(setup))
    trainer = Trainer.for_model(
        config.model,
        make_optimizer("adam", config.learning_rate),
        mesh=mesh,
        **_hyperparameters(config),
    )
    state = trainer.init(jax.random.PRNGKey(config.seed), x[:1])
    place = (
        jax.devices()[0]
        if mesh is None
        else NamedSharding(mesh, PartitionSpec(distributed.DATA_AXIS))
    )
    rows = np.arange(len(x)).reshape(config.steps, config.batch)
    batches = [(jax.device_put(x[r], place), jax.device_put(y[r], place)) for r in rows]
    epoch_data = (x, y) if mesh is not None else (jnp.asarray(x), jnp.asarray(y))
    return trainer, state, batches, epoch_data


def run_case(config: CaseConfig) -> dict:
    """Time every set-up of ``config`` in this process (whose JAX backend must not have
    started yet on the CPU: it gets ``CPU_DEVICE_SPARE_FACTOR * largest_mesh`` virtual
    devices of :mod:`jaxnets.distributed`, whose spares keep XLA's collectives in threads).

    Returns ``{"model", "batch", "steps", "rounds", "setups", "framework": "jaxnets",
    "device", "device_count", "results"}`` where ``results[setup][timing]`` (timing
    ``"step"`` or ``"epoch"``) has ``ms_per_step`` (median over the rounds), ``rounds_ms``
    (each round's), ``compile_s`` (first call minus a steady one), and ``results[setup]``
    also ``final_loss`` (mean loss of the last epoch) and ``loss_difference`` (largest
    |difference| of the step losses from the first set-up's: float32 rounding).
    """
    fresh_jax_compiles()
    import jax

    if config.device == "cpu":
        from jaxnets import distributed

        # Spare virtual devices (as jaxnets.distributed.configure makes them), so that XLA's
        # CPU all-reduce, which holds a thread per device, cannot run out of threads; and each
        # call completes before the next is dispatched, in every set-up.
        jax.config.update("jax_cpu_enable_async_dispatch", False)
        devices = distributed.CPU_DEVICE_SPARE_FACTOR * config.largest_mesh
        try:
            jax.config.update("jax_num_cpu_devices", devices)
        except RuntimeError:
            raise RuntimeError(
                f"{devices} virtual CPU devices must be set before JAX's backend starts; run "
                "the case in a fresh process (python -m benchmarks.partition --model ...)"
            ) from None

    x, y = _data(config)
    runs = {s: list(_setup(config, s, x, y)) for s in config.setups}
    losses = {s: [] for s in config.setups}
    times = {s: {t: [] for t in TIMINGS} for s in config.setups}

    def timed_steps(setup: str) -> float:
        trainer, state, batches, _ = runs[setup]
        with Timer() as t:
            for i in range(config.steps):
                state, metrics = trainer.train_step(state, batches[i])
                losses[setup].append(metrics["loss"])
            jax.block_until_ready(state)
        runs[setup][1] = state
        return 1e3 * t.seconds / config.steps

    def timed_epoch(setup: str) -> float:
        trainer, state, _, (xe, ye) = runs[setup]
        with Timer() as t:
            state, metrics = trainer.train_epoch(state, xe, ye, batch_size=config.batch)
            jax.block_until_ready(state)
        runs[setup][1] = state
        losses[setup].extend(np.asarray(jax.device_get(metrics["loss"])))
        return 1e3 * t.seconds / config.steps

    timers = {"step": timed_steps, "epoch": timed_epoch}
    compile_s = {s: {} for s in config.setups}
    for setup in config.setups:  # the first call of each program compiles it
        for timing, run in timers.items():
            first = run(setup)
            compile_s[setup][timing] = max((first - run(setup)) * config.steps / 1e3, 0.0)
    for _ in range(config.rounds):
        for setup in config.setups:
            for timing, run in timers.items():
                times[setup][timing].append(run(setup))

    host_losses = {s: np.asarray(jax.device_get(v), np.float64) for s, v in losses.items()}
    reference = host_losses[config.setups[0]]
    if not np.all(np.isfinite(reference)):
        raise FloatingPointError(f"{config}: a training loss is not finite; it did not train")
    results = {}
    for setup in config.setups:
        results[setup] = {
            t: {
                "ms_per_step": statistics.median(times[setup][t]),
                "rounds_ms": times[setup][t],
                "compile_s": compile_s[setup][t],
            }
            for t in TIMINGS
        }
        results[setup]["final_loss"] = float(host_losses[setup][-config.steps :].mean())
        results[setup]["loss_difference"] = float(np.abs(host_losses[setup] - reference).max())
    return {
        **dataclasses.asdict(config),
        "framework": "jaxnets",
        "device": str(jax.devices()[0].device_kind),
        "device_count": jax.device_count(),
        "results": results,
    }


def summarize_case(records: Sequence[dict]) -> dict:
    """One model over its processes: per set-up and timing a spread of the processes'
    medians (``ms_per_step``) and compile times; ratios of the medians of medians."""
    first = records[0]
    setups = first["setups"]
    summary = {k: first[k] for k in ("model", "batch", "steps", "rounds", "device")}
    summary["setups"] = {
        s: {
            **{
                t: {
                    key: common.spread([r["results"][s][t][key] for r in records])
                    for key in ("ms_per_step", "compile_s")
                }
                for t in TIMINGS
            },
            "final_loss": statistics.median(r["results"][s]["final_loss"] for r in records),
            "loss_difference": max(r["results"][s]["loss_difference"] for r in records),
        }
        for s in setups
    }
    summary["ratios"] = {t: _ratios(summary["setups"], t) for t in TIMINGS}
    summary["repeats"] = [r["results"] for r in records]
    return summary


def _ratios(setups: dict, timing: str) -> dict:
    """Step-time ratios of the medians: each mesh over the 1-device mesh (``"D_over_1"``: the
    cost of partitioning) and the 1-device mesh over no mesh (``"1_over_none"``)."""
    ms = {s: v[timing]["ms_per_step"]["median"] for s, v in setups.items()}
    ratios = {f"{s}_over_1": ms[s] / ms["1"] for s in ms if s not in ("none", "1") and "1" in ms}
    if "1" in ms and "none" in ms:
        ratios["1_over_none"] = ms["1"] / ms["none"]
    return ratios


@dataclasses.dataclass(frozen=True)
class Plan:
    """The partition benchmark's options (``--partition.<field>`` of :mod:`benchmarks.run`).

    Attributes:
      models: keys of :data:`MODELS`.
      rounds: rounds of the set-ups per process.
      batch: a global batch for every model (None: each model's of :data:`MODELS`).
      steps: timed steps per round for every model (None: each model's).
      hidden: a width for every model (0: each model's), for small runs.
    """

    models: tuple[str, ...] = tuple(MODELS)
    rounds: int = 5
    batch: int | None = None
    steps: int | None = None
    hidden: int = 0

    def __post_init__(self):
        for model in self.models:
            common.choice("model", model, tuple(MODELS))


def run_benchmark(settings: common.Settings, plan: Plan, cases=CASES, log=print) -> dict:
    """Every model ``repeats`` times (default 3), one process each, round-robin over the models.

    Returns ``{"benchmark": "partition", "created", "machine", "config", "cases", "goals": []}``
    (no goals: the ratios are costs on shared cores, not claims); ``cases[i]`` as
    :func:`summarize_case`: model, batch, steps, rounds, device, per set-up and timing a
    ``{"median", "min", "max"}`` of ``ms_per_step`` and ``compile_s`` over the processes,
    ``final_loss``, ``loss_difference``, the ``ratios`` and the raw ``repeats``.
    """
    device, repeats = settings.device, settings.repeats_for(3)
    setups = SETUPS if device == "cpu" else _GPU_SETUPS
    configs = [
        CaseConfig(
            model=m,
            batch=plan.batch or MODELS[m]["batch"],
            steps=plan.steps or MODELS[m]["steps"],
            rounds=plan.rounds,
            setups=setups,
            device=device,
            hidden=plan.hidden,
        )
        for m in plan.models
    ]
    records, machine = common.run_cases(
        "benchmarks.partition",
        configs,
        repeats,
        device,
        lambda r: (
            f"{r['model']:16s} batch {r['batch']:4d}: "
            + "  ".join(
                f"{s}: {r['results'][s]['step']['ms_per_step']:.2f} ms/step" for s in r["setups"]
            )
        ),
        log,
    )
    config = {
        "models": list(plan.models),
        "labels": {c.model: _label(c) for c in configs},
        "hyperparameters": {
            c.model: {
                k: list(v) if isinstance(v, tuple) else v for k, v in _hyperparameters(c).items()
            }
            for c in configs
        },
        "setups": list(setups),
        "device": device,
        "device_count": records[0][0]["device_count"],
        "repeats": repeats,
        "rounds": plan.rounds,
        "optimizer": "adam",
        "learning_rate": configs[0].learning_rate,
    }
    cases = [summarize_case(recs) for recs in records]
    return common.benchmark_result(NAME, machine, config, cases, goals=[])


def main(argv: Sequence[str] | None = None) -> dict:
    """A case process (``python -m benchmarks.partition --model ...``): run one case and
    print its record as the last line of stdout."""
    return case_main(CaseConfig, run_case, argv)


if __name__ == "__main__":
    main()

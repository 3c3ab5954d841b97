"""One benchmark case: an MLP trained for a fixed number of SGD steps by one framework.

Lectures: seed 004 §7 "Optimization" (line 1841: minibatch SGD, batch size, momentum with
mu = 0.9, line 1997) and §3 "Multilayer perceptrons" (line 971); seed 001 "Vanilla Minibatch
Gradient Descent" (line 328: each SGD step is cheap, so per-step overhead matters).

The work is identical for every framework: a 784-512-512-10 ReLU MLP, float32, softmax
cross-entropy, SGD with momentum 0.9 and learning rate 0.01, on ``examples`` synthetic
examples of 784 features in 10 classes, ``epochs`` shuffled passes in minibatches of
``batch`` (``examples // batch`` steps per epoch). Each step gathers its minibatch from
the full data set held in memory, computes the loss and its gradient, and updates.

* ``jaxnets``: :func:`jaxnets.train.fit` on the registry's ``mlp``; every epoch is one
  compiled ``lax.scan`` (:meth:`Trainer.train_epoch`), the shuffle included.
* ``flax``: what a typical user writes: ``@jax.jit`` ``train_step`` with Optax and a donated
  state, called from a Python loop over index arrays shuffled ahead of time and already on
  the device (so the shuffle is not timed; jaxnets' is).
* ``torch``: eager PyTorch, ``nn.Sequential`` + ``torch.optim.SGD`` in a Python loop, with
  ``torch.set_num_threads`` at the core count (no ``torch.compile``).

The plan (:func:`run_benchmark`, ``--cases mlp`` of :mod:`benchmarks.run`, on the CPU): every
(framework, batch) case in its own process, ``repeats`` times round-robin. Goals: jaxnets'
step time at most 1.05x hand-written Flax's at every batch, and jaxnets at least 1.3x eager
PyTorch's steps/s at batch 8, where Python's per-step overhead dominates (issue 2).

A case runs as ``python -m benchmarks.mlp --framework flax --batch 8``; the last stdout line
is one JSON record (see :func:`run_case`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time

import numpy as np

from benchmarks import common, steps
from benchmarks.common import FRAMEWORKS, case_main

__all__ = ["CASES", "NAME", "RESULT_FILES", "CaseConfig", "main", "make_data", "run_case"]
__all__ += ["WATCHED", "Plan", "ratios_and_goals", "run_benchmark"]

NAME, CASES = "mlp", ("mlp",)
RESULT_FILES = {"cpu": "mlp.json"}  # PyTorch's case is CPU-only
WATCHED = common.Watched(  # ratios held within 10% of the recorded ones (benchmarks.run)
    identity=("batch",),
    higher_is_better={"jaxnets_over_flax_step_time": False, "jaxnets_over_torch_steps_per_s": True},
)
_MIN_SPEEDUP_VS_TORCH = 1.3  # at batch _TORCH_GOAL_BATCH
_TORCH_GOAL_BATCH = 8
_KEYS = ("steps_per_s", *steps.STEP_METRICS)


@dataclasses.dataclass(frozen=True)
class CaseConfig:
    """What one process trains and times.

    Attributes:
      framework: one of :data:`FRAMEWORKS`.
      batch: minibatch size B; an epoch is ``examples // batch`` steps.
      examples: size n of the synthetic training set, x: (n, features), y: (n,).
      epochs: timed epochs, after ``warmup_epochs`` untimed ones (the first compiles).
      hidden: widths of the hidden layers.
      torch_threads: ``torch.set_num_threads`` for the torch case; 0 means every core.
    """

    framework: str
    batch: int
    examples: int = 8192
    epochs: int = 2
    warmup_epochs: int = 1
    features: int = 784
    hidden: tuple[int, ...] = (512, 512)
    classes: int = 10
    learning_rate: float = 0.01
    momentum: float = 0.9
    seed: int = 0
    torch_threads: int = 0

    def __post_init__(self):
        common.choice("framework", self.framework, FRAMEWORKS)
        if not 1 <= self.batch <= self.examples:
            raise ValueError(f"batch must be in [1, {self.examples}] (examples); got {self.batch}")
        if self.epochs < 1 or self.warmup_epochs < 1:
            raise ValueError(
                f"epochs and warmup_epochs must be >= 1 (the first warm-up epoch compiles); "
                f"got epochs={self.epochs}, warmup_epochs={self.warmup_epochs}"
            )

    @property
    def steps_per_epoch(self) -> int:
        return self.examples // self.batch

    # What the step runners read: steps counted in epochs, the CPU, float32.
    @property
    def steps(self) -> int:
        """Timed steps."""
        return self.epochs * self.steps_per_epoch

    @property
    def warmup_steps(self) -> int:
        return self.warmup_epochs * self.steps_per_epoch

    @property
    def data_batches(self) -> int:
        """Steps the first and final losses average over: an epoch."""
        return self.steps_per_epoch

    device = "cpu"


def make_data(config: CaseConfig) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic classification data, identical in every process for a given seed.

    Returns x: (examples, features) float32 standard normal, y: (examples,) int32 labels of
    a random linear teacher, so the task is learnable and a falling loss shows training ran.
    """
    rng = np.random.default_rng(config.seed)
    x = rng.standard_normal((config.examples, config.features), dtype=np.float32)
    teacher = rng.standard_normal((config.features, config.classes), dtype=np.float32)
    return x, np.argmax(x @ teacher, axis=1).astype(np.int32)


def _shuffled_rows(config: CaseConfig, epochs: int) -> list[np.ndarray]:
    """Index rows (batch,) for ``epochs`` shuffled passes, made before any timing starts."""
    rng = np.random.default_rng(config.seed + 1)
    per_epoch = config.steps_per_epoch
    rows = []
    for _ in range(epochs):
        order = rng.permutation(config.examples)[: per_epoch * config.batch].astype(np.int32)
        rows.extend(order.reshape(per_epoch, config.batch))
    return rows


def _run_jaxnets(config: CaseConfig, x_np: np.ndarray, y_np: np.ndarray) -> dict:
    steps.fresh_jax_compiles()
    import jax

    import jaxnets
    import jaxnets.models  # noqa: F401  (registers "mlp")
    from jaxnets.optim import make_optimizer
    from jaxnets.train import Trainer, fit

    model = jaxnets.create_model("mlp", hidden=config.hidden, num_outputs=config.classes)
    trainer = Trainer(
        model,
        "softmax_cross_entropy",
        make_optimizer("momentum", config.learning_rate, momentum=config.momentum),
    )
    x, y = jax.device_put(x_np), jax.device_put(y_np)
    state = trainer.init(jax.random.PRNGKey(config.seed), x[:1])
    # The warm-up goes through fit too: it compiles the epoch and fit's own small
    # host-side programs (array staging, metric means), none of which should be timed.
    t0 = time.perf_counter()
    warm = fit(
        trainer, state, (x, y), epochs=config.warmup_epochs, batch_size=config.batch, progress=False
    )
    jax.block_until_ready(warm.state)
    warm_s = time.perf_counter() - t0

    with steps.Timer() as timed:
        run = fit(
            trainer,
            warm.state,
            (x, y),
            epochs=config.epochs,
            batch_size=config.batch,
            progress=False,
        )
        jax.block_until_ready(run.state)
    # fit's history times each compiled epoch alone (the call and the losses on the host).
    return {
        "timer": timed,
        "epoch_seconds": sum(h["seconds"] for h in run.history),
        "compile_s": max(warm_s - config.warmup_epochs * timed.seconds / config.epochs, 0.0),
        "first_loss": warm.history[0]["train_loss"],
        "final_loss": run.history[-1]["train_loss"],
        "device": str(jax.devices()[0].device_kind),
    }


def _flax_mlp(hidden: tuple[int, ...], classes: int):
    """The hand-written Flax model (flax is imported when a case needs it)."""
    import flax.linen as nn

    class MLP(nn.Module):
        """x: (batch, features) -> logits (batch, classes)."""

        @nn.compact
        def __call__(self, x):
            for width in hidden:
                x = nn.relu(nn.Dense(width)(x))
            return nn.Dense(classes)(x)

    return MLP()


def _run_flax(config: CaseConfig, x_np: np.ndarray, y_np: np.ndarray) -> dict:
    steps.fresh_jax_compiles()
    import jax
    import optax
    from flax.training import train_state

    model = _flax_mlp(config.hidden, config.classes)
    x, y = jax.device_put(x_np), jax.device_put(y_np)
    state = train_state.TrainState.create(
        apply_fn=model.apply,
        params=model.init(jax.random.PRNGKey(config.seed), x[:1])["params"],
        tx=optax.sgd(config.learning_rate, momentum=config.momentum),
    )

    # The minibatch is gathered inside the step (one dispatch per step): the strongest
    # version of the user's loop; gathering outside would add two dispatches per step.
    @functools.partial(jax.jit, donate_argnums=0)
    def train_step(state, x, y, idx):
        xb, yb = x[idx], y[idx]

        def loss_fn(params):
            logits = state.apply_fn({"params": params}, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    total_epochs = config.warmup_epochs + config.epochs
    rows = [jax.device_put(r) for r in _shuffled_rows(config, total_epochs)]
    jax.block_until_ready(rows)
    warm = config.warmup_epochs * config.steps_per_epoch

    t0 = time.perf_counter()
    state, loss = train_step(state, x, y, rows[0])
    jax.block_until_ready(loss)
    first_s = time.perf_counter() - t0
    warm_losses = [loss]
    for idx in rows[1:warm]:
        state, loss = train_step(state, x, y, idx)
        warm_losses.append(loss)
    jax.block_until_ready((state, warm_losses))

    losses = []
    with steps.Timer() as timed:
        for idx in rows[warm:]:
            state, loss = train_step(state, x, y, idx)
            losses.append(loss)
        jax.block_until_ready((state, losses))
    return {
        "timer": timed,
        "compile_s": max(first_s - timed.seconds / (len(rows) - warm), 0.0),
        "losses": [float(v) for v in jax.device_get(warm_losses + losses)],
        "device": str(jax.devices()[0].device_kind),
    }


def _run_torch(config: CaseConfig, x_np: np.ndarray, y_np: np.ndarray) -> dict:
    import torch

    steps.torch_device(config)
    widths = (config.features, *config.hidden)
    layers = []
    for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [torch.nn.Linear(w_in, w_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(widths[-1], config.classes))
    opt = torch.optim.SGD(model.parameters(), lr=config.learning_rate, momentum=config.momentum)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np).long()
    total_epochs = config.warmup_epochs + config.epochs
    rows = [torch.from_numpy(r).long() for r in _shuffled_rows(config, total_epochs)]
    return steps.run_torch_steps(config, opt, rows, lambda idx: loss_fn(model(x[idx]), y[idx]))


_RUNNERS = {"jaxnets": _run_jaxnets, "flax": _run_flax, "torch": _run_torch}


def run_case(config: CaseConfig) -> dict:
    """Train and time one case in this process.

    Returns a JSON-ready dict: the config, ``steps`` timed, ``seconds`` they took,
    ``steps_per_s``, ``examples_per_s``, ``ms_per_step``, ``cpu_ms_per_step`` (CPU time of all
    threads), ``compile_s`` (first call minus a steady call; None for eager torch),
    ``first_loss`` and ``final_loss`` (mean training loss over the first warm-up epoch and
    over the last timed epoch), and the ``device`` it ran on.
    """
    x, y = make_data(config)
    result = _RUNNERS[config.framework](config, x, y)
    return {**steps.step_record(config, result, "examples"), "steps": config.steps}


# -- the plan -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Plan:
    """The MLP benchmark's options (``--mlp.<field>`` of :mod:`benchmarks.run`).

    Attributes:
      batches: the minibatch sizes timed.
      examples: training set size (None: 8192; 2048 with ``--quick``).
      epochs: timed epochs per process (None: 2; 1 with ``--quick``).
      hidden: widths of the hidden layers.
    """

    batches: tuple[int, ...] = (8, 128)
    examples: int | None = None
    epochs: int | None = None
    hidden: tuple[int, ...] = (512, 512)


def ratios_and_goals(cases: list[dict]) -> tuple[list[dict], list[dict]]:
    """Per batch of summarized ``cases``: jaxnets' step time over Flax's and its steps/s over
    PyTorch's (None where a framework did not run), and the goals they meet or miss."""
    by = {(c["framework"], c["batch"]): c for c in cases}
    ratios, goals = [], []
    for batch in sorted({c["batch"] for c in cases}):
        _, vs_flax, vs_torch = common.versus(by, (batch,), "steps_per_s")
        ratios.append(
            {
                "batch": batch,
                "jaxnets_over_flax_step_time": vs_flax,
                "jaxnets_over_torch_steps_per_s": vs_torch,
            }
        )
        if vs_flax is not None:
            goals.append(common.flax_goal(f"batch {batch}", vs_flax, batch=batch))
        if vs_torch is not None and batch == _TORCH_GOAL_BATCH:
            goals.append(
                common.make_goal(
                    f"batch {batch}: jaxnets steps/s / PyTorch steps/s >= {_MIN_SPEEDUP_VS_TORCH}",
                    "jaxnets_over_torch_steps_per_s",
                    vs_torch,
                    _MIN_SPEEDUP_VS_TORCH,
                    "above",
                    batch=batch,
                )
            )
    return ratios, goals


def run_benchmark(settings: common.Settings, plan: Plan, cases=CASES, log=print) -> dict:
    """The MLP benchmark (on the CPU): every (framework, batch) case ``repeats`` times
    (default 5).

    Returns ``{"benchmark": "mlp", "created", "machine", "config", "cases", "ratios",
    "goals"}``; ``cases[i]`` has framework, batch, steps (timed per repeat), device, a
    ``{"median", "min", "max"}`` of each of steps_per_s, ms_per_step, cpu_ms_per_step,
    compile_s (None for torch), seconds, first_loss, final_loss, and the raw ``repeats``.
    """
    common.check_frameworks(settings.frameworks)
    repeats = settings.repeats_for(5)
    examples = plan.examples or (2048 if settings.quick else 8192)
    epochs = plan.epochs or (1 if settings.quick else 2)
    configs = [
        CaseConfig(
            framework=f,
            batch=b,
            examples=examples,
            epochs=epochs,
            hidden=plan.hidden,
            torch_threads=settings.torch_threads,
        )
        for b in plan.batches
        for f in settings.frameworks
    ]
    records, machine = common.run_cases(
        "benchmarks.mlp",
        configs,
        repeats,
        "cpu",
        lambda r: (
            f"batch {r['batch']:4d}: {r['steps_per_s']:8.1f} steps/s  "
            f"{r['ms_per_step']:7.3f} ms/step"
        ),
        log,
    )
    identity = ("framework", "batch", "steps", "device")
    summaries = [common.summarize(recs, identity, _KEYS) for recs in records]
    ratios, goals = ratios_and_goals(summaries)
    first = configs[0]
    config = {
        "frameworks": list(settings.frameworks),
        "batches": list(plan.batches),
        "repeats": repeats,
        "examples": examples,
        "epochs": epochs,
        "warmup_epochs": first.warmup_epochs,
        "hidden": list(plan.hidden),
        **{k: getattr(first, k) for k in ("features", "classes", "learning_rate", "momentum")},
        "torch_threads": settings.torch_threads or os.cpu_count(),
        "jax_platform": "cpu",
    }
    return common.benchmark_result(NAME, machine, config, summaries, ratios=ratios, goals=goals)


def main(argv: list[str] | None = None) -> dict:
    """CLI entry: run one case and print its record as the last line of stdout."""
    return case_main(CaseConfig, run_case, argv)


if __name__ == "__main__":
    main()

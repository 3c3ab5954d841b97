"""The LSTM benchmark: an LSTM sequence-to-one regressor trained for a fixed number of Adam
steps by jaxnets, hand-written Flax and PyTorch; its cases, their ratios and goals.

Lectures: seed 004 Lecture 13 "Recurrent Neural Nets" (line 2721: §3 backprop through time is
backprop on the unrolled graph, so a step costs about three passes of the recurrence) and
Lecture 14 "Learning Long-Term Dependencies" (line 3022: §4 long short-term memory).

The work is identical for every framework: ``steps`` Adam steps (learning rate 1e-3) on
minibatches of ``batch`` synthetic sequences x: (batch, time, features), cycling through
``data_batches`` batches held on the device, of an LSTM with ``hidden`` units, gates (i, f, g, o),
whose last hidden state h_T feeds a linear readout to one number; the loss is the batch mean
of ½ (prediction − target)² (jaxnets' ``squared_error``). The target is a leaky sum of a random
projection of the inputs (:func:`make_data`), learnable by the LSTM, so a falling loss shows
that training ran. Every framework starts near ½ (unit-variance targets, small initial outputs).

* ``jaxnets``: the registry's ``lstm_regressor`` (``make_recurrent("lstm", hidden,
  unroll=unroll)`` and a Dense(1) readout; :func:`jaxnets_model`), trained by
  :class:`jaxnets.train.Trainer`'s jitted ``train_step``: the input projection of all steps
  is one matmul before the ``lax.scan``, whose body is the recurrent matmul and the gates.
* ``flax``: what a Flax user writes: ``nn.RNN(nn.OptimizedLSTMCell(hidden), unroll=unroll)``
  and ``nn.Dense(1)`` (:func:`benchmarks.rnn_models.flax_model`) with a hand-written
  ``jax.jit(donate_argnums=0)`` step and ``optax.adam``; the cell projects its input inside
  the scan, step by step.
* ``torch``: ``torch.nn.LSTM(features, hidden, batch_first=True)`` and ``nn.Linear(hidden, 1)``
  in eager PyTorch with ``torch.optim.Adam``; on the CPU with ``torch.set_num_threads`` at the
  core count, on a GPU cuDNN's LSTM (under ``torch.autocast(bfloat16)`` when ``dtype`` is
  bfloat16; the record's ``compute_dtype`` is the dtype cuDNN's output came out in).

``dtype`` is the computation dtype (parameters stay float32). Float32 matmuls run at each
framework's default precision (on NVIDIA GPUs JAX's default and cuDNN's RNNs may use TF32).
Every record has the step's matmul FLOPs (:func:`step_flops`, the same for every framework);
JAX cases also time the device's matmul peak, from which :func:`ratios_and_goals` computes
the fraction of peak.

The plan (:func:`run_benchmark`, ``--cases lstm`` of :mod:`benchmarks.run`), per device:
jaxnets at every ``unroll`` of the sweep (CPU: 1, 2, 4, 8 and full; GPU: 1, 2, 4, 8 and 16),
hand-written Flax at the comparison ``unroll`` (CPU 1, GPU 8) and PyTorch's ``nn.LSTM``. The
sizes are H=256, T=100, batch 32 on the CPU and H=1024, T=200, batch 128 on a GPU (cuDNN's
LSTM), both with 64 input features. The goal (CPU, issue 20): jaxnets' step at the comparison
unroll is at least as fast as PyTorch's (sequences/s at every batch of the plan, 32 by
default). The jaxnets/Flax step-time ratio has no goal of its own; :mod:`benchmarks.run` adds
the regression goals: both ratios of every row within 10% of the recorded ones (``WATCHED``).

A case runs as ``python -m benchmarks.rnn --framework jaxnets --unroll 4``; the last stdout
line is one JSON record (see :func:`run_case`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import statistics

import numpy as np

from benchmarks import common, steps
from benchmarks.common import case_main
from benchmarks.rnn_models import (
    flax_model,
    flax_train_step,
    half_mse,
    jaxnets_model,
    torch_model,
)

__all__ = ["CASES", "NAME", "RESULT_FILES", "CaseConfig", "make_data", "step_flops"]
__all__ += ["FULL", "SHAPES", "Plan", "main", "resolve_unroll", "run_case"]
__all__ += ["WATCHED", "ratios_and_goals", "run_benchmark"]

NAME, CASES = "rnn", ("lstm",)
RESULT_FILES = {"cpu": "rnn.json", "gpu": "rnn_gpu.json"}
WATCHED = common.Watched(
    identity=("batch", "unroll"),
    higher_is_better={
        "jaxnets_over_torch_sequences_per_s": True,
        "jaxnets_over_flax_step_time": False,
    },
)
_TARGET_DECAY = 0.9  # per step, of the leaky sum the regressor learns
FULL = "full"  # an unroll of every time step
SHAPES = {
    "cpu": {"batch": 32, "time": 100, "features": 64, "hidden": 256},
    "gpu": {"batch": 128, "time": 200, "features": 64, "hidden": 1024},
}
# The unroll of the jaxnets/Flax/PyTorch comparison, and the sweep of jaxnets' step. On the
# CPU the comparison runs at the default, 1 (unrolling measured no faster there); on a GPU at 8
# (not measured here: a while-loop iteration costs kernel launches there). A fully unrolled
# T=100 CPU step compiles for ~3 minutes and runs ~3 s; at T=200 on a GPU 16 is the sweep's end.
_COMPARISON_UNROLL = {"cpu": 1, "gpu": 8}
_SWEEP = {"cpu": (1, 2, 4, 8, FULL), "gpu": (1, 2, 4, 8, 16)}
# Timed steps per process: a few seconds of steps on a 2-core CPU (~0.15 s a step), about a
# second on an H100 (a step is ~0.7 TFLOPs at the GPU sizes); a fully unrolled case times
# _FULL_UNROLL_STEPS.
_STEPS = {"cpu": 20, "gpu": 100}
_FULL_UNROLL_STEPS = 5
_PEAK_SIZE = {"cpu": 1024, "gpu": 8192}
_MIN_SPEEDUP_VS_TORCH = 1.0
_KEYS = ("sequences_per_s", *steps.STEP_METRICS, "peak_flops_per_s")


@dataclasses.dataclass(frozen=True)
class CaseConfig(steps.StepCase):
    """One LSTM trained and timed by one process, with the keyword-only step fields of
    :class:`benchmarks.steps.StepCase` (steps, warmup_steps, data_batches, device, dtype, seed,
    torch_threads, peak_size).

    Attributes:
      framework: one of :data:`benchmarks.common.FRAMEWORKS`.
      batch, time, features: x is (batch, time, features); hidden: LSTM units H.
      unroll: time steps per ``lax.scan`` iteration of the JAX cases (``time``: fully
        unrolled); PyTorch's LSTM has no such knob.
      learning_rate: Adam's.
    """

    framework: str
    # the CPU's sizes by default
    batch: int = SHAPES["cpu"]["batch"]
    time: int = SHAPES["cpu"]["time"]
    features: int = SHAPES["cpu"]["features"]
    hidden: int = SHAPES["cpu"]["hidden"]
    unroll: int = 1
    learning_rate: float = 1e-3

    def __post_init__(self):
        super().__post_init__()
        sizes = {k: getattr(self, k) for k in ("batch", "time", "features", "hidden")}
        if min(sizes.values()) < 1:
            raise ValueError(
                "batch, time, features and hidden must be >= 1; got "
                + ", ".join(f"{k}={v}" for k, v in sizes.items())
            )
        if not 1 <= self.unroll <= self.time:
            raise ValueError(
                f"unroll must be in [1, time={self.time}] (time: fully unrolled); got {self.unroll}"
            )


def step_flops(config: CaseConfig) -> float:
    """Matmul FLOPs of one training step (a multiply-add is 2), the same for every framework.

    Forward: the input projection (batch·time, F) @ (F, 4H), the recurrent (batch, H) @ (H, 4H)
    at each of the ``time`` steps, the readout (batch, H) @ (H, 1). Backward (Lecture 13 §3):
    each matmul again for its weight gradient and once more for its input gradient, except the
    projection's (nothing needs dL/dx). Gates, Adam and the loss are left out.
    """
    rows, gates = config.batch * config.time, 4 * config.hidden
    projection = 2 * rows * config.features * gates
    recurrent = 2 * rows * config.hidden * gates
    readout = 2 * config.batch * config.hidden
    return float(2 * projection + 3 * recurrent + 3 * readout)


def make_data(config: CaseConfig) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic sequences, identical in every process for a given seed.

    Returns x: (data_batches, batch, time, features) float32 standard normal and
    y: (data_batches, batch, 1) float32 targets ``Σ_t 0.9^(T−1−t) x_t·v`` for a random unit
    vector v, standardised to mean 0 and variance 1 (a leaky sum, which an LSTM can learn).
    """
    rng = np.random.default_rng(config.seed)
    shape = (config.data_batches, config.batch, config.time, config.features)
    x = rng.standard_normal(shape, dtype=np.float32)
    v = rng.standard_normal(config.features).astype(np.float32)
    weights = _TARGET_DECAY ** np.arange(config.time - 1, -1, -1, dtype=np.float32)
    y = np.einsum("dbtf,f,t->db", x, v / np.linalg.norm(v), weights)
    y = (y - y.mean()) / y.std()
    return x, y[..., None].astype(np.float32)


def _jaxnets_setup(config: CaseConfig, sample_x):
    import jax

    from jaxnets.optim import make_optimizer
    from jaxnets.train import Trainer

    model = jaxnets_model(config.hidden, config.unroll, config.dtype)
    # The card's loss is squared_error, ½ (prediction − target)², like the other two.
    trainer = Trainer(model, "squared_error", make_optimizer("adam", config.learning_rate))
    return trainer.train_step, trainer.init(jax.random.PRNGKey(config.seed), sample_x)


def _flax_setup(config: CaseConfig, sample_x):
    import jax
    import optax

    model = flax_model(config.hidden, config.unroll, config.dtype)
    train_step, create_state = flax_train_step(model, optax.adam(config.learning_rate))
    init = jax.jit(functools.partial(model.init, train=False))
    return train_step, create_state(init(jax.random.PRNGKey(config.seed), sample_x))


def _run_jax(config: CaseConfig, x_np: np.ndarray, y_np: np.ndarray, setup) -> dict:
    # XLA's FLOP count would count the scan body once; step_flops is the per-step count.
    return {
        **steps.run_jax_steps(config, x_np, y_np, setup, count_flops=False),
        "compute_dtype": None,
    }


def _run_torch(config: CaseConfig, x_np: np.ndarray, y_np: np.ndarray) -> dict:
    import torch

    device = steps.torch_device(config)
    model = torch_model(config.features, config.hidden).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    batches = [
        (torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
        for x, y in zip(x_np, y_np, strict=True)
    ]
    autocast = steps.torch_autocast(device, config.dtype)
    result = steps.run_torch_steps(
        config, opt, batches, lambda b: half_mse(model(b[0]), b[1]), autocast
    )
    with torch.no_grad(), steps.torch_autocast(device, config.dtype):
        compute_dtype = str(model.lstm(batches[0][0][:1])[0].dtype).removeprefix("torch.")
    return {**result, "compute_dtype": compute_dtype}


_RUNNERS = {
    "jaxnets": functools.partial(_run_jax, setup=_jaxnets_setup),
    "flax": functools.partial(_run_jax, setup=_flax_setup),
    "torch": _run_torch,
}


def run_case(config: CaseConfig) -> dict:
    """Train and time one case in this process.

    Returns a JSON-ready dict: the config, ``sequences_per_s``, ``steps_per_s``,
    ``ms_per_step``, ``cpu_ms_per_step`` (CPU time of all threads), ``seconds`` (timed steps),
    ``compile_s`` (first step minus a steady one; None for eager torch), ``first_loss`` and
    ``final_loss`` (mean training loss of the first and of the last ``data_batches`` steps),
    ``step_flops`` (:func:`step_flops`), ``peak_flops_per_s`` (measured matmul; None for
    torch), ``compute_dtype`` (torch: the dtype its LSTM computed in; None for JAX) and the
    ``device`` it ran on.
    """
    x, y = make_data(config)
    result = _RUNNERS[config.framework](config, x, y)
    return {**steps.step_record(config, result, "sequences"), "step_flops": step_flops(config)}


# -- the plan -----------------------------------------------------------------------------------
def resolve_unroll(value: int | str, time: int) -> int:
    """``value`` as a number of time steps per scan iteration: ``"full"`` is ``time``.

    Raises ValueError unless it is ``"full"`` or an integer in [1, time].
    """
    if value == FULL:
        return time
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= time:
        raise ValueError(f"unroll must be {FULL!r} or an integer in [1, {time}]; got {value!r}")
    return count


def ratios_and_goals(
    cases: list[dict], device: str, comparison_unroll: int
) -> tuple[list[dict], list[dict]]:
    """Ratios per (batch, jaxnets unroll) of summarized LSTM ``cases``, and the goals.

    Each ratio has ``jaxnets_over_torch_sequences_per_s`` (above 1: jaxnets faster),
    ``jaxnets_over_flax_step_time`` (below 1: jaxnets faster; where Flax ran at that unroll),
    ``over_unroll_1_step_time`` (jaxnets' step time over its own at unroll 1), ``step_flops``,
    the median measured ``peak_flops_per_s`` of the JAX processes and ``peak_fraction``
    (jaxnets' at that unroll, and Flax's and PyTorch's where they ran). None where a number is
    missing. Goal, on the CPU at ``comparison_unroll``: jaxnets/PyTorch sequences/s >= 1.0.
    """
    by = {(c["framework"], c["batch"], c["unroll"]): c for c in cases}
    median = common.median

    # PyTorch has no unroll: its one case per batch compares with every jaxnets unroll.
    torch_cases = {c["batch"]: c for c in cases if c["framework"] == "torch"}
    ratios, goals = [], []
    for batch, unroll in sorted(key[1:] for key in by if key[0] == "jaxnets"):
        jx, fx = by[("jaxnets", batch, unroll)], by.get(("flax", batch, unroll))
        th = torch_cases.get(batch)
        base = by.get(("jaxnets", batch, 1))
        speed = median(jx, "sequences_per_s")
        vs_torch = speed / median(th, "sequences_per_s") if th else None
        flops = jx["step_flops"]
        peaks = [r["peak_flops_per_s"] for c in (jx, fx) if c for r in c["repeats"]]
        peak = statistics.median(peaks) if peaks else None
        ratios.append(
            {
                "batch": batch,
                "unroll": unroll,
                "jaxnets_over_torch_sequences_per_s": vs_torch,
                "jaxnets_over_flax_step_time": (
                    median(jx, "ms_per_step") / median(fx, "ms_per_step") if fx else None
                ),
                "over_unroll_1_step_time": (
                    median(jx, "ms_per_step") / median(base, "ms_per_step") if base else None
                ),
                "step_flops": flops,
                "peak_flops_per_s": peak,
                "peak_fraction": {
                    f: flops * median(c, "sequences_per_s") / batch / peak if peak else None
                    for f, c in (("jaxnets", jx), ("flax", fx), ("torch", th))
                    if c
                },
            }
        )
        if vs_torch is not None and device == "cpu" and unroll == comparison_unroll:
            goals.append(
                common.make_goal(
                    f"LSTM batch {batch}, unroll {unroll}: jaxnets sequences/s / PyTorch "
                    f"nn.LSTM sequences/s >= {_MIN_SPEEDUP_VS_TORCH}",
                    "jaxnets_over_torch_sequences_per_s",
                    vs_torch,
                    _MIN_SPEEDUP_VS_TORCH,
                    "above",
                    batch=batch,
                    unroll=unroll,
                )
            )
    return ratios, goals


@dataclasses.dataclass(frozen=True)
class Plan:
    """The LSTM benchmark's options (``--lstm.<field>`` of :mod:`benchmarks.run`); None takes
    the device's default (see the module docstring).

    Attributes:
      batches: minibatch sizes.
      time: sequence length T.
      hidden: LSTM units H.
      unroll: the comparison unroll, an integer or ``"full"``.
      unrolls: jaxnets' unroll sweep (``"full"`` allowed; ``--quick``: 1 and the comparison).
      steps: timed steps per process (``--quick``: 4).
      dtype: computation dtype.
      peak_size: n of the peak matmul (CPU 1024, GPU 8192).
    """

    batches: tuple[int, ...] | None = None
    time: int | None = None
    hidden: int | None = None
    unroll: str | None = None
    unrolls: tuple[str, ...] | None = None
    steps: int | None = None
    dtype: str = "float32"
    peak_size: int | None = None

    def __post_init__(self):
        common.choice("dtype", self.dtype, steps.DTYPES)


def run_benchmark(settings: common.Settings, plan: Plan, cases=CASES, log=print) -> dict:
    """The LSTM benchmark: every planned case ``repeats`` times (default 3), round-robin.

    Sizes, the comparison ``unroll``, the sweep's ``unrolls`` (``"full"`` allowed), ``steps``
    and ``peak_size`` default per device (see the module docstring); jaxnets runs at every
    unroll of the sweep and the comparison, Flax at the comparison unroll, PyTorch once per
    batch. Returns ``{"benchmark": "rnn", "created", "machine", "config", "cases", "ratios",
    "goals"}``; ``cases[i]`` has framework, batch, unroll, time, hidden, steps, dtype, device,
    step_flops, a ``{"median", "min", "max"}`` of each of sequences_per_s, ms_per_step,
    cpu_ms_per_step, compile_s (None for torch), seconds, first_loss, final_loss,
    peak_flops_per_s (None for torch), and the raw ``repeats``; ratios and goals as
    :func:`ratios_and_goals`.
    """
    common.check_frameworks(settings.frameworks)
    device, repeats = settings.device, settings.repeats_for(3)
    sizes = (("time", plan.time), ("hidden", plan.hidden))
    shape = {**SHAPES[device], **{k: v for k, v in sizes if v}}
    compare = resolve_unroll(plan.unroll or _COMPARISON_UNROLL[device], shape["time"])
    sweep = plan.unrolls or ((1,) if settings.quick else _SWEEP[device])
    sweep = sorted({resolve_unroll(u, shape["time"]) for u in sweep} | {compare})
    plan_units = {"jaxnets": sweep, "flax": [compare], "torch": [1]}
    units = [(framework, u) for framework in settings.frameworks for u in plan_units[framework]]
    given_steps = plan.steps or (4 if settings.quick else None)

    def timed_steps(u):
        default = min(_STEPS[device], _FULL_UNROLL_STEPS) if u == shape["time"] else _STEPS[device]
        return given_steps or default

    configs = [
        CaseConfig(
            framework,
            **{**shape, "batch": batch},
            unroll=u,
            steps=timed_steps(u),
            data_batches=min(4, timed_steps(u)),
            device=device,
            dtype=plan.dtype,
            torch_threads=settings.torch_threads,
            peak_size=plan.peak_size or _PEAK_SIZE[device],
        )
        for batch in plan.batches or (shape["batch"],)
        for framework, u in units
    ]
    records, machine = common.run_cases(
        "benchmarks.rnn",
        configs,
        repeats,
        device,
        lambda r: (
            f"LSTM batch {r['batch']:4d} unroll {r['unroll']:3d}: "
            f"{r['sequences_per_s']:9.1f} sequences/s  {r['ms_per_step']:8.2f} ms/step"
        ),
        log,
    )
    identity = ("framework", "batch", "unroll", "time", "hidden", "steps", "dtype", "device")
    summaries = [
        {**common.summarize(recs, identity, _KEYS), "step_flops": recs[0]["step_flops"]}
        for recs in records
    ]
    ratios, goals = ratios_and_goals(summaries, device, compare)
    first = configs[0]
    config = {
        "frameworks": list(settings.frameworks),
        "batches": sorted({c.batch for c in configs}),
        **{k: getattr(first, k) for k in ("time", "features", "hidden")},
        "unroll": compare,
        "unrolls": sweep,
        "repeats": repeats,
        "device": device,
        "dtype": plan.dtype,
        "steps": first.steps,
        "full_unroll_steps": timed_steps(shape["time"]),
        "warmup_steps": first.warmup_steps,
        "data_batches": first.data_batches,
        "optimizer": "adam",
        "learning_rate": first.learning_rate,
        "torch_threads": settings.torch_threads or os.cpu_count(),
        "peak_size": first.peak_size,
    }
    return common.benchmark_result(NAME, machine, config, summaries, ratios=ratios, goals=goals)


def main(argv: list[str] | None = None) -> dict:
    """CLI entry: run one case and print its record as the last line of stdout."""
    return case_main(CaseConfig, run_case, argv)


if __name__ == "__main__":
    main()

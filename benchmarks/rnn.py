"""One benchmark case: an LSTM sequence-to-one regressor trained for a fixed number of Adam
steps by one framework.

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
  and ``nn.Dense(1)`` (:func:`flax_model`) with a hand-written ``jax.jit(donate_argnums=0)``
  step and ``optax.adam``; the cell projects its input inside the scan, step by step.
* ``torch``: ``torch.nn.LSTM(features, hidden, batch_first=True)`` and ``nn.Linear(hidden, 1)``
  in eager PyTorch with ``torch.optim.Adam``; on the CPU with ``torch.set_num_threads`` at the
  core count, on a GPU cuDNN's LSTM (under ``torch.autocast(bfloat16)`` when ``dtype`` is
  bfloat16; the record's ``compute_dtype`` is the dtype cuDNN's output came out in).

``dtype`` is the computation dtype (parameters stay float32). Float32 matmuls run at each
framework's default precision (on NVIDIA GPUs JAX's default and cuDNN's RNNs may use TF32).
Every record has the step's matmul FLOPs (:func:`step_flops`, the same for every framework);
JAX cases also time the device's matmul peak, from which :mod:`benchmarks.run_rnn` computes
the fraction of peak.

Run as ``python -m benchmarks.rnn --framework jaxnets --unroll 4``; the last stdout line is
one JSON record (see :func:`run_case`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os

import numpy as np

from benchmarks.common import FRAMEWORKS, Timer, case_main, run_jax_steps, step_record

DEVICES = ("cpu", "gpu")
DTYPES = ("float32", "bfloat16")
_TARGET_DECAY = 0.9  # per step, of the leaky sum the regressor learns

__all__ = [
    "FRAMEWORKS",
    "DEVICES",
    "DTYPES",
    "CaseConfig",
    "step_flops",
    "make_data",
    "jaxnets_model",
    "flax_model",
    "flax_train_step",
    "torch_model",
    "run_case",
    "main",
]


def _choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(options)}")


@dataclasses.dataclass(frozen=True)
class CaseConfig:
    """What one process trains and times.

    Attributes:
      framework: one of :data:`FRAMEWORKS`.
      batch, time, features: x is (batch, time, features); hidden: LSTM units H.
      unroll: time steps per ``lax.scan`` iteration of the JAX cases (``time``: fully
        unrolled); PyTorch's LSTM has no such knob.
      steps: timed steps, after ``warmup_steps`` untimed ones (the first compiles).
      data_batches: distinct synthetic batches the steps cycle through.
      device: ``"cpu"`` or ``"gpu"`` (JAX's platform is set by the parent process).
      dtype: computation dtype, ``"float32"`` or ``"bfloat16"`` (parameters stay float32).
      torch_threads: ``torch.set_num_threads`` for the torch case; 0 means every core.
      peak_size: n of the (n, n) @ (n, n) matmul timed for the device's peak (JAX cases).
    """

    framework: str
    batch: int = 32
    time: int = 100
    features: int = 64
    hidden: int = 256
    unroll: int = 1
    steps: int = 20
    warmup_steps: int = 3
    data_batches: int = 4
    device: str = "cpu"
    dtype: str = "float32"
    learning_rate: float = 1e-3
    seed: int = 0
    torch_threads: int = 0
    peak_size: int = 1024

    def __post_init__(self):
        for name, options in (("framework", FRAMEWORKS), ("device", DEVICES), ("dtype", DTYPES)):
            _choice(name, getattr(self, name), options)
        sizes = {k: getattr(self, k) for k in ("batch", "time", "features", "hidden")}
        sizes.update(warmup_steps=self.warmup_steps, peak_size=self.peak_size)
        if min(sizes.values()) < 1:
            raise ValueError(
                "batch, time, features, hidden, warmup_steps (the first compiles) and peak_size "
                f"must be >= 1; got {', '.join(f'{k}={v}' for k, v in sizes.items())}"
            )
        if not 1 <= self.unroll <= self.time:
            raise ValueError(
                f"unroll must be in [1, time={self.time}] (time: fully unrolled); got {self.unroll}"
            )
        if not 1 <= self.data_batches <= self.steps:
            raise ValueError(
                f"need 1 <= data_batches <= steps (the final loss averages the last "
                f"data_batches timed steps); got data_batches={self.data_batches}, "
                f"steps={self.steps}"
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


# -- the two JAX models and the hand-written Flax step -------------------------------------------
# jaxnets and flax are imported inside these functions so that torch processes never load them.
def jaxnets_model(hidden: int, unroll: int = 1, dtype: str = "float32"):
    """The registry's ``lstm_regressor`` (:class:`jaxnets.models.rnn.SequenceModel`): jaxnets'
    LSTM and a Dense(1) readout of its last hidden state h_T.

    x: (batch, time, features) -> (batch, 1); called as ``apply(variables, x, train=bool)``.
    Parameters: ``recurrent/cell`` (jaxnets' layout: ``input_to_hidden/{kernel (F, 4H),
    bias (4H,)}``, ``hidden_to_hidden (H, 4H)``, gates (i, f, g, o)) and ``readout``.
    ``dtype`` other than float32 is passed on as the model's computation dtype.
    """
    import jax.numpy as jnp

    import jaxnets
    import jaxnets.models  # noqa: F401  (registers the models)

    overrides = {} if dtype == "float32" else {"dtype": jnp.dtype(dtype)}
    return jaxnets.create_model("lstm_regressor", hidden=hidden, unroll=unroll, **overrides)


def flax_model(hidden: int, unroll: int = 1, dtype: str = "float32"):
    """The benchmark's plain Flax model: ``nn.RNN(nn.OptimizedLSTMCell(hidden))`` and a Dense(1)
    readout of h_T (no jaxnets code).

    x: (batch, time, features) -> (batch, 1) float32; called as ``apply(variables, x,
    train=bool)``. Parameters: ``cell/{ii,if,ig,io}/kernel (F, H)`` (no bias),
    ``cell/{hi,hf,hg,ho}/{kernel (H, H), bias (H,)}`` and ``readout``.
    """
    import flax.linen as nn
    import jax.numpy as jnp

    class FlaxLSTMRegressor(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            del train
            cell = nn.OptimizedLSTMCell(hidden, dtype=jnp.dtype(dtype), name="cell")
            _, h = nn.RNN(cell, unroll=unroll, return_carry=True, name="lstm")(x)[0]
            return nn.Dense(1, name="readout")(h.astype(jnp.float32))

    return FlaxLSTMRegressor()


def _half_mse(prediction, target):
    return 0.5 * ((prediction - target) ** 2).mean()


def flax_train_step(model, optimizer):
    """What a Flax user writes: ``(state, (x, y)) -> (state, {"loss"})`` under
    ``jax.jit(donate_argnums=0)``, the loss the batch mean of ½ (model(x) − y)²; ``state`` is a
    ``flax.training.train_state.TrainState``.

    Returns ``(train_step, create_state)``; ``create_state(variables) -> state`` takes the
    variables of ``model.init``.
    """
    import jax
    from flax.training import train_state

    def create_state(variables):
        return train_state.TrainState.create(
            apply_fn=model.apply, params=variables["params"], tx=optimizer
        )

    @functools.partial(jax.jit, donate_argnums=0)
    def train_step(state, batch):
        x, y = batch

        def loss_fn(params):
            return _half_mse(state.apply_fn({"params": params}, x, train=True), y)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), {"loss": loss}

    return train_step, create_state


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
    return {**run_jax_steps(config, x_np, y_np, setup, count_flops=False), "compute_dtype": None}


# -- PyTorch ------------------------------------------------------------------------------------
def torch_model(features: int, hidden: int):
    """The eager PyTorch model: ``nn.LSTM(features, hidden, batch_first=True)`` and an
    ``nn.Linear(hidden, 1)`` readout of h_T: x (batch, time, features) -> (batch, 1).

    Attributes ``lstm`` and ``readout``; the LSTM's ``weight_ih_l0`` (4H, F), ``weight_hh_l0``
    (4H, H) and two biases (4H,) are in gate order (i, f, g, o), as jaxnets'.
    """
    from torch import nn

    class TorchLSTMRegressor(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(features, hidden, batch_first=True)
            self.readout = nn.Linear(hidden, 1)

        def forward(self, x):
            _, (h, _) = self.lstm(x)  # h: (layers, batch, H)
            return self.readout(h[-1].float())

    return TorchLSTMRegressor()


def _run_torch(config: CaseConfig, x_np: np.ndarray, y_np: np.ndarray) -> dict:
    import torch

    torch.set_num_threads(config.torch_threads or os.cpu_count() or 1)
    torch.manual_seed(config.seed)
    gpu = config.device == "gpu"
    device = torch.device("cuda" if gpu else "cpu")
    model = torch_model(config.features, config.hidden).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    batches = [
        (torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
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
            loss = _half_mse(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    losses = [step(i) for i in range(config.warmup_steps)]
    sync()
    with Timer() as timed:
        losses += [step(config.warmup_steps + i) for i in range(config.steps)]
        sync()
    with torch.no_grad(), autocast:
        compute_dtype = str(model.lstm(batches[0][0][:1])[0].dtype).removeprefix("torch.")
    return {
        "timer": timed,
        "compile_s": None,
        "losses": torch.stack(losses).float().cpu().tolist(),
        "peak_flops_per_s": None,
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "compute_dtype": compute_dtype,
    }


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
    return {**step_record(config, result, "sequences"), "step_flops": step_flops(config)}


def main(argv: list[str] | None = None) -> dict:
    """CLI entry: run one case and print its record as the last line of stdout."""
    return case_main(CaseConfig, run_case, argv)


if __name__ == "__main__":
    main()

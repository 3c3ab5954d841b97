"""RevNet trains without storing activations: the memory of one training step, RevNet vs the
same net with stored activations vs an ordinary residual network of the same depth and width.

Lecture: seed 004, Lecture 15 "Autoregressive and Reversible Models" §1 Reversible Models
(line 3309): a reversible block (eq. 5, line 3343) is inverted exactly (eq. 6, line 3347), so
backprop can reconstruct each block's input from its output instead of storing it (Gomez et
al. 2017); the residual block it is built from is Lecture 14 §4 (line 3269).

Memory: each variant's jitted training step (loss, gradient and Adam update, as
:meth:`jaxnets.train.Trainer.step`) is compiled for one batch of ``batch_size`` 8x8 images, and
XLA's memory analysis of the executable is read: ``temp_size_in_bytes`` is the buffer
assignment of the step's intermediate values, which is where stored activations live;
``argument``/``output`` sizes (parameters, optimizer state, batch) are reported separately.
XLA:CPU's ``peak_memory_in_bytes`` (jax 0.10.2) leaves the temporaries out (it reads about
the size of the arguments), so it is not used. The sweep over depth shows the residual nets'
memory growing by one block's activations per block and RevNet's staying nearly flat. The
recomputation is not free: XLA's cost analysis counts the step's operations (one more forward
pass through the blocks), and the compiled steps are timed, the variants taking turns.

Learning: RevNet (recomputing) and the residual net train on the digits (8x8, stratified
70/10/20 split) with Adam; both are compared on test accuracy, over ``seeds`` seeds (each its
own split, initialisation and minibatch order; the table shows means). The memory analysis is
of the compiled program, which no seed changes, so the memory claims have one value each.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import create_model, model_card
from jaxnets.data import ArrayDataset, load_digits
from jaxnets.experiment import Claim, Run, format_table, parse_config
from jaxnets.models.revnet import residual_net
from jaxnets.optim import make_optimizer
from jaxnets.sweep import SeededConfig, fit_and_test, sweep_seeds
from jaxnets.train import Trainer
from jaxnets.validation import check_batch_size, check_config

MIB = 2**20
VARIANTS = ("revnet", "revnet_stored", "residual")
LABELS = {
    "revnet": "RevNet (recomputes activations)",
    "revnet_stored": "RevNet, plain autodiff (stores activations)",
    "residual": "residual net y = x + F(x) (stores activations)",
}


@dataclasses.dataclass(frozen=True)
class Config(SeededConfig):
    """Training-step memory and time of RevNet vs a residual net; both trained on digits."""

    batch_size: int = 256
    """images per step in the memory and timing measurements"""
    features: int = 32
    """maps after the stem (C); RevNet's halves have C / 2"""
    depth: int = 8
    """blocks at which the memory ratios and the step times are reported (one of depths)"""
    depths: tuple[int, ...] = (2, 4, 8, 16)
    """depths of the memory sweep"""
    timing_steps: int = 10
    """timed executions of each compiled step (after one warm-up), the variants taking turns"""
    train_features: int = 16
    """maps of the nets trained on digits"""
    train_depth: int = 4
    """blocks of the nets trained on digits"""
    epochs: int = 30
    """training epochs of each net on digits"""
    train_batch_size: int = 64
    """minibatch size of that training"""
    learning_rate: float = 3e-3
    """Adam's peak learning rate (cosine decay to zero)"""

    # the memory and timing measurements, then the training on digits
    SMOKE = dict(batch_size=8, features=4, depth=2, depths=(1, 2), timing_steps=1)
    SMOKE |= dict(train_features=4, train_depth=1, epochs=1, train_batch_size=128, seeds=2)

    def __post_init__(self):
        if self.depth not in self.depths:
            raise ValueError(f"depth must be one of depths {self.depths}; got {self.depth}")
        check_config(self, zero_ok=("seed",))
        for field in ("features", "train_features"):
            value = getattr(self, field)
            if value < 2 or value % 2:
                raise ValueError(f"{field} must be even and >= 2 (two halves); got {value}")
        if len(set(self.depths)) < 2:
            raise ValueError(
                f"depths must hold at least two different depths >= 1 (the memory per block is "
                f"a fitted slope); got {self.depths}"
            )


def _model(variant: str, features: int, depth: int):
    if variant == "residual":
        return residual_net(features=features, depth=depth)
    return create_model("revnet", features=features, depth=depth, recompute=variant == "revnet")


def _trainer(model, learning_rate: float, total_steps: int | None = None) -> Trainer:
    card = model_card("revnet")
    schedule = {"schedule": "cosine", "total_steps": total_steps} if total_steps else {}
    return Trainer(model, card.loss, make_optimizer("adam", learning_rate, **schedule))


def _compiled_step(cfg: Config, variant: str, depth: int):
    """(trainer, compiled step, memory row) for one variant at one depth."""
    trainer = _trainer(_model(variant, cfg.features, depth), cfg.learning_rate)
    x = jax.ShapeDtypeStruct((cfg.batch_size, 8, 8, 1), jnp.float32)
    y = jax.ShapeDtypeStruct((cfg.batch_size,), jnp.int32)
    state = jax.eval_shape(trainer.init, jax.random.PRNGKey(cfg.seed), x)
    start = time.perf_counter()
    compiled = jax.jit(trainer.step, donate_argnums=0).lower(state, (x, y)).compile()
    seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    row = {
        "temp_MiB": memory.temp_size_in_bytes / MIB,
        "arguments_MiB": memory.argument_size_in_bytes / MIB,
        # XLA's operation count of the compiled step: the recomputation shows up here
        "gflops": compiled.cost_analysis()["flops"] / 1e9,
        "parameters": sum(leaf.size for leaf in jax.tree.leaves(state.params)),
        "compile_s": seconds,
    }
    return trainer, compiled, row


def _time_steps(cfg: Config, steps: dict) -> dict[str, float]:
    """Median seconds of one execution of each compiled step, ``{variant: (trainer,
    compiled)}``, on random digits-sized data; the variants take turns, so a change in the
    machine's load affects them alike."""
    k_x, k_y, k_init = jax.random.split(jax.random.PRNGKey(cfg.seed), 3)
    x = jax.random.uniform(k_x, (cfg.batch_size, 8, 8, 1))
    y = jax.random.randint(k_y, (cfg.batch_size,), 0, 10)
    states = {}
    for variant, (trainer, compiled) in steps.items():  # the first call warms up
        states[variant], metrics = compiled(trainer.init(k_init, x), (x, y))
        jax.block_until_ready(metrics)
    times = {variant: [] for variant in steps}
    for _ in range(cfg.timing_steps):
        for variant, (_, compiled) in steps.items():
            start = time.perf_counter()
            states[variant], metrics = compiled(states[variant], (x, y))
            jax.block_until_ready(metrics)
            times[variant].append(time.perf_counter() - start)
    return {variant: float(np.median(t)) for variant, t in times.items()}


def _memory_sweep(cfg: Config) -> tuple[dict, dict]:
    """Memory rows per (variant, depth), and the step time of each variant at ``cfg.depth``."""
    rows, timed = {}, {}
    for depth in cfg.depths:
        for variant in VARIANTS:
            trainer, compiled, row = _compiled_step(cfg, variant, depth)
            rows[variant, depth] = row
            if depth == cfg.depth:
                timed[variant] = (trainer, compiled)
            print(
                f"  depth {depth:>3} {LABELS[variant]:<46} temporaries {row['temp_MiB']:7.1f} MiB"
                f"  (compiled in {row['compile_s']:.1f} s)"
            )
    return rows, _time_steps(cfg, timed)


def _slope(depths, values) -> float:
    """Least-squares MiB per block."""
    return float(np.polyfit(np.asarray(depths, float), np.asarray(values, float), 1)[0])


def _digits_splits(seed: int):
    digits = load_digits()
    images = ArrayDataset(
        x=digits.x.reshape(-1, 8, 8, 1),
        y=digits.y,
        name="digits",
        num_classes=10,
        image_shape=(8, 8, 1),
    )
    return images.split((0.7, 0.1, 0.2), seed=seed)


def _train_seed(cfg: Config, run: Run, trainers: dict[str, Trainer], seed: int):
    """Every variant on one seed's split: ({variant: test metrics}, {variant: validation
    accuracy per epoch})."""
    splits = _digits_splits(seed)
    rows, curves = {}, {}
    for variant, trainer in trainers.items():
        result, test = fit_and_test(
            trainer,
            seed,
            splits,
            run=run,
            label=variant,
            epochs=cfg.epochs,
            batch_size=cfg.train_batch_size,
        )
        rows[variant] = {"test_accuracy": test["accuracy"], "test_loss": test["loss"]}
        curves[variant] = [h["val_accuracy"] for h in result.history]
    return rows, curves


def _plot(run: Run, cfg: Config, rows: dict, curves: dict) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for variant in VARIANTS:
        axes[0].plot(
            cfg.depths,
            [rows[variant, d]["temp_MiB"] for d in cfg.depths],
            "o-",
            label=LABELS[variant],
        )
    axes[0].set(
        xlabel="blocks",
        ylabel="temporaries of one training step (MiB)",
        title=f"XLA memory analysis, batch {cfg.batch_size}, {cfg.features} maps",
        ylim=(0, None),
    )
    axes[0].legend(fontsize=8)
    for variant, curve in curves.items():
        axes[1].plot(np.arange(1, len(curve) + 1), curve, label=LABELS[variant])
    axes[1].set(
        xlabel="epoch",
        ylabel="validation accuracy",
        title=f"digits, {cfg.train_depth} blocks of {cfg.train_features} maps",
    )
    axes[1].legend(fontsize=8)
    run.savefig(fig, "memory_vs_depth")


def main(cfg: Config) -> dict:
    cfg = cfg.sized()
    splits = _digits_splits(cfg.seed)
    check_batch_size(cfg.train_batch_size, len(splits.train), field="train_batch_size")
    run = Run("revnet", cfg, root=cfg.out)
    print(
        f"memory of one training step, batch {cfg.batch_size} of 8x8 images, {cfg.features} maps "
        f"(device: {jax.devices()[0].device_kind}):"
    )
    rows, step_seconds = _memory_sweep(cfg)
    results = {}
    for variant in VARIANTS:
        results[variant] = {
            **{k: v for k, v in rows[variant, cfg.depth].items() if k != "compile_s"},
            "step_ms": 1000 * step_seconds[variant],
            "MiB_per_block": _slope(cfg.depths, [rows[variant, d]["temp_MiB"] for d in cfg.depths]),
        }
    revnet = results["revnet"]
    revnet["memory_ratio_vs_residual"] = revnet["temp_MiB"] / results["residual"]["temp_MiB"]
    revnet["memory_ratio_vs_stored"] = revnet["temp_MiB"] / results["revnet_stored"]["temp_MiB"]
    revnet["time_ratio_vs_stored"] = step_seconds["revnet"] / step_seconds["revnet_stored"]
    revnet["flops_ratio_vs_stored"] = revnet["gflops"] / results["revnet_stored"]["gflops"]
    revnet["time_ratio_vs_residual"] = step_seconds["revnet"] / step_seconds["residual"]

    print(
        f"digits 8x8: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test;"
        f" {cfg.train_depth} blocks of {cfg.train_features} maps, {cfg.seeds} seed(s)"
    )
    steps = cfg.epochs * (len(splits.train) // cfg.train_batch_size)
    # one trainer per variant for every seed: its compiled steps are reused
    trainers = {
        variant: _trainer(
            _model(variant, cfg.train_features, cfg.train_depth), cfg.learning_rate, steps
        )
        for variant in ("revnet", "residual")
    }
    sweep = sweep_seeds(cfg.seed_range, functools.partial(_train_seed, cfg, run, trainers), run)
    for variant in trainers:
        results[variant].update(sweep.results[variant])
    print(
        format_table(
            {LABELS[v]: results[v] for v in VARIANTS},
            ["temp_MiB", "MiB_per_block", "gflops", "step_ms", "parameters", "test_accuracy"],
        )
    )
    print(
        f"RevNet's step: {revnet['memory_ratio_vs_residual']:.2f}x the residual net's "
        f"temporaries and {revnet['memory_ratio_vs_stored']:.2f}x its own with stored "
        f"activations; the recomputation costs {revnet['flops_ratio_vs_stored']:.2f}x the "
        f"operations and {revnet['time_ratio_vs_stored']:.2f}x the time of the "
        "stored-activation step"
    )
    _plot(run, cfg, rows, sweep.first)
    # the memory ratios are of the compiled program (no seed changes it): one value each,
    # with a margin of 0.1 (about a quarter of what storing costs beyond recomputing)
    claims = [
        Claim(
            f"RevNet's training step (depth {cfg.depth}) needs less than 0.7x the temporary "
            "memory of an ordinary residual net of the same depth and width",
            "memory_ratio_vs_residual",
            revnet["memory_ratio_vs_residual"],
            0.7,
            "below",
            margin=0.1,
        ),
        Claim(
            "recomputing activations from outputs needs less than 0.7x the memory of storing "
            "them (same RevNet, plain autodiff)",
            "memory_ratio_vs_stored",
            revnet["memory_ratio_vs_stored"],
            0.7,
            "below",
            margin=0.1,
        ),
        Claim(
            "RevNet trained through its recomputing backward pass learns the digits",
            "test_accuracy",
            sweep.values("revnet", "test_accuracy"),
            0.9,
            "above",
            margin=0.02,
        ),
    ]
    for (variant, depth), row in rows.items():
        results[f"{variant} depth {depth}"] = {"temp_MiB": row["temp_MiB"]}
    return run.write_summary(results, claims)


if __name__ == "__main__":
    main(parse_config(Config))

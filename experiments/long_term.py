"""Learning long-term dependencies: the adding problem for a vanilla RNN, IRNN, LSTM and GRU.

Lecture: seed 004, Lecture 14 "Learning Long-Term Dependencies" (line 3022): §2 gradients
through time are products of per-step Jacobians, so they vanish or explode; §3 gradient
clipping and identity initialisation (IRNN) as remedies; §4 the LSTM's memory cell keeps
information (and gradients) for many steps.

The adding problem (Hochreiter and Schmidhuber 1997; Le, Jaitly and Hinton 2015): each time
step holds a random number in [0, 1) and a marker; the target is the sum of the two marked
numbers, one in each half of the sequence. Always predicting 1 gives MSE 1/6 ≈ 0.167, the
baseline; solving it needs memory across up to T steps. Each cell trains for the same number of
steps on fresh examples, with and without gradient clipping, at each length T, for ``seeds``
seeds at once (the engine's :func:`~jaxnets.train.train_ensemble`, one vmapped program; each
seed its own initialisation and its own stream of examples); the table reports each cell's best
test MSE and the steps it took to reach the threshold, as means over seeds, and each claim
holds only if it holds for every seed. The figures are the test-MSE curves and ``‖∂h_T/∂h_t‖``
at initialisation and after training (the gradient flow of Lecture 14 §2,
:func:`jaxnets.nn.recurrent.gradient_flow`). The default run trains the two cells the claims
are about (``--cells rnn irnn lstm gru`` adds the IRNN and the GRU; ``--lengths 50 100 200`` a
shorter length), to keep it short.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import create_model
from jaxnets.data import ADDING_BASELINE_MSE, make_adding_problem
from jaxnets.experiment import Claim, Run, format_table, mean_over_seeds, parse_config
from jaxnets.nn.recurrent import CELLS, Recurrent, gradient_flow, make_cell
from jaxnets.optim import make_optimizer
from jaxnets.sweep import SeededConfig, seed_keys
from jaxnets.train import Trainer, init_ensemble, train_ensemble
from jaxnets.validation import check_config


@dataclasses.dataclass(frozen=True)
class Config(SeededConfig):
    """The adding problem at several lengths: vanilla RNN vs IRNN vs LSTM vs GRU, ± clipping."""

    lengths: tuple[int, ...] = (100, 200)
    """sequence lengths T (the claims are at 100 and 200)"""
    cells: tuple[str, ...] = ("rnn", "lstm")
    """recurrent cells (see jaxnets.nn.recurrent.CELLS; also "irnn" and "gru")"""
    clip_norms: tuple[float, ...] = (0.0, 1.0)
    """global-norm gradient clipping thresholds; 0 trains without clipping"""
    hidden: int = 64
    """hidden units of every cell"""
    steps: int = 1000
    """training steps per run, each on a fresh minibatch"""
    eval_every: int = 100
    """steps between test-set evaluations"""
    batch_size: int = 32
    learning_rate: float = 1e-2
    """Adam's learning rate (the same for every run)"""
    test_examples: int = 1000
    threshold: float = 0.01
    """test MSE that counts as solving the task"""

    # the task and the cells, then their training
    SMOKE = dict(lengths=(6,), cells=("lstm",), clip_norms=(1.0,), hidden=4)
    SMOKE |= dict(steps=20, eval_every=10, test_examples=50)

    def __post_init__(self):
        check_config(self, zero_ok=("clip_norms", "seed"))
        unknown = [cell for cell in self.cells if cell not in CELLS]
        if unknown or not self.cells:
            raise ValueError(
                f"cells must be one or more of {', '.join(CELLS)}; got {', '.join(self.cells)}"
            )
        if not self.lengths or not self.clip_norms:
            raise ValueError(
                f"give at least one length and one clip norm; got lengths={self.lengths}, "
                f"clip_norms={self.clip_norms}"
            )
        if self.steps < self.eval_every or self.steps % self.eval_every:
            raise ValueError(
                f"steps must be a positive multiple of eval_every={self.eval_every}; "
                f"got {self.steps}"
            )
        if min(self.lengths) < 2:
            raise ValueError(f"every length must be >= 2; got {self.lengths}")


def _variant(cell: str, length: int, clip: float) -> str:
    return f"{cell}_T{length}" + (f"_clip{clip:g}" if clip else "")


def _train(cfg: Config, cell: str, length: int, clip: float, test) -> dict:
    """``cfg.seeds`` runs at once; returns per seed the test-MSE curve, the best MSE and the
    steps to the threshold (None: never reached), and the stacked initial and final states."""
    # one registered family; `cell` picks the recurrence (rnn, irnn, lstm, gru)
    model = create_model("rnn_regressor", cell=cell, hidden=cfg.hidden)
    optimizer = make_optimizer("adam", cfg.learning_rate, clip_norm=clip or None)
    trainer = Trainer(model, "squared_error", optimizer)
    seeds = cfg.seed_range
    chunk = cfg.eval_every * cfg.batch_size
    initial = init_ensemble(trainer, seed_keys(seeds), jnp.zeros((cfg.batch_size, length, 2)))
    states, curves = initial, [[] for _ in seeds]
    for i in range(cfg.steps // cfg.eval_every):
        # fresh examples for every chunk of steps and every seed: the task has unlimited data
        data = [make_adding_problem(chunk, length, seed=s * 100_003 + 1 + i) for s in seeds]
        # one epoch of eval_every steps per seed on its own examples, then every seed's test
        # MSE (the loss is ½(y − t)², so the MSE is twice it)
        states, history = train_ensemble(
            trainer,
            states,
            (np.stack([d.x for d in data]), np.stack([d.y for d in data])),
            epochs=1,
            batch_size=cfg.batch_size,
            val=test,
            member_data=True,
        )
        for curve, mse in zip(curves, (2.0 * history.val_loss[-1]).tolist(), strict=True):
            curve.append(((i + 1) * cfg.eval_every, mse if math.isfinite(mse) else float("nan")))
    best, reached = [], []
    for curve in curves:
        mses = [m for _, m in curve if math.isfinite(m)]
        best.append(min(mses) if mses else float("nan"))
        reached.append(next((steps for steps, m in curve if m < cfg.threshold), None))
    return {
        "initial_params": initial.params,
        "params": states.params,
        "curves": curves,
        "best_mse": best,
        "steps_to_threshold": reached,
    }


def _plot_curves(run: Run, cfg: Config, runs: dict) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(cfg.lengths), figsize=(4.2 * len(cfg.lengths), 3.6), layout="constrained"
    )
    for ax, length in zip(np.atleast_1d(axes), cfg.lengths, strict=True):
        for c, cell in enumerate(cfg.cells):
            for clip in cfg.clip_norms:
                for s, curve in enumerate(runs[_variant(cell, length, clip)]["curves"]):
                    steps, mses = zip(*curve, strict=True)
                    ax.plot(
                        steps,
                        mses,
                        color=f"C{c}",
                        lw=0.8,
                        linestyle="-" if clip else "--",
                        label=(f"{cell}" + (f", clip {clip:g}" if clip else ""))
                        if s == 0
                        else None,
                    )
        ax.axhline(ADDING_BASELINE_MSE, color="gray", lw=0.8, label="predict 1 (1/6)")
        ax.axhline(cfg.threshold, color="black", lw=0.8, ls=":", label="threshold")
        # diverged runs (MSE in the millions) would flatten the rest: they leave the top edge
        ax.set(title=f"adding problem, T={length}", xlabel="training step", yscale="log")
        ax.set_ylim(top=2.0)
    np.atleast_1d(axes)[0].set_ylabel("test MSE")
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    run.savefig(fig, "adding_problem_curves")


def _plot_gradient_flow(run: Run, cfg: Config, runs: dict, length: int, x: jax.Array) -> dict:
    """‖∂h_T/∂h_t‖ per cell at init and after training (clipped runs, the first seed); returns
    the ratios ‖∂h_T/∂h_1‖ / ‖∂h_T/∂h_T‖ printed in the table."""
    import matplotlib.pyplot as plt

    clip = max(cfg.clip_norms)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained", sharey=True)
    first_over_last = {}
    for c, cell in enumerate(cfg.cells):
        out = runs[_variant(cell, length, clip)]
        recurrent = Recurrent(make_cell(cell, cfg.hidden))  # the regressor's own layer
        for ax, params, when in (
            (axes[0], out["initial_params"], "init"),
            (axes[1], out["params"], "trained"),
        ):
            params = jax.tree.map(lambda leaf: leaf[0], params)
            norms = np.asarray(gradient_flow(recurrent, {"params": params["recurrent"]}, x))
            ax.semilogy(np.arange(1, length + 1), norms, color=f"C{c}", label=cell)
            first_over_last[f"{cell}_{when}"] = float(norms[0] / norms[-1])
    for ax, when in zip(axes, ("at initialisation", "after training"), strict=True):
        ax.set(title=f"‖∂h_T/∂h_t‖ {when}, T={length}", xlabel="t")
    axes[0].set_ylabel("Frobenius norm")
    axes[1].legend()
    run.savefig(fig, "gradient_flow")
    return first_over_last


def main(cfg: Config) -> dict:
    cfg = cfg.sized()
    run = Run("long_term", cfg, root=cfg.out)
    runs, results = {}, {}
    for length in cfg.lengths:
        data = make_adding_problem(cfg.test_examples, length, seed=cfg.seed + 999_983)
        test = (jnp.asarray(data.x), jnp.asarray(data.y))
        for cell in cfg.cells:
            for clip in cfg.clip_norms:
                name = _variant(cell, length, clip)
                out = runs[name] = _train(cfg, cell, length, clip, test)
                rows = []
                for best, curve, reached in zip(
                    out["best_mse"], out["curves"], out["steps_to_threshold"], strict=True
                ):
                    rows.append({"best_test_mse": best, "final_test_mse": curve[-1][1]})
                    if reached:  # left out ("-") unless every seed reached the threshold
                        rows[-1]["steps_to_threshold"] = reached
                results[name] = mean_over_seeds(rows)
                solved = sum(r is not None for r in out["steps_to_threshold"])
                results[name]["seeds_below_threshold"] = solved
                print(
                    f"{name:<22} best test MSE per seed "
                    f"{', '.join(f'{m:.3g}' for m in out['best_mse'])}; "
                    f"{solved} of {cfg.seeds} seeds below {cfg.threshold:g}",
                    flush=True,
                )
                run.log(variant=name, curves=out["curves"])
    _plot_curves(run, cfg, runs)
    probe_length = 100 if 100 in cfg.lengths else cfg.lengths[0]
    probe = make_adding_problem(1, probe_length, seed=cfg.seed).x[0]
    flow = _plot_gradient_flow(run, cfg, runs, probe_length, jnp.asarray(probe))
    print(f"adding-problem baseline (always predict 1): MSE {ADDING_BASELINE_MSE:.3f}")
    print(
        format_table(
            results,
            ["best_test_mse", "final_test_mse", "steps_to_threshold", "seeds_below_threshold"],
        )
    )
    print("‖∂h_T/∂h_1‖ / ‖∂h_T/∂h_T‖ at T=" + str(probe_length) + ":")
    print("  " + ", ".join(f"{k} {v:.3g}" for k, v in flow.items()))

    def best(cell, length):
        """Per seed, the best test MSE over the clipping settings."""
        per_clip = [runs[_variant(cell, length, c)]["best_mse"] for c in cfg.clip_norms]
        return np.min(per_clip, axis=0)

    claims = [
        Claim(
            f"LSTM solves the adding problem at T={length} in {cfg.steps} steps (best test MSE)",
            "test_mse",
            best("lstm", length),
            cfg.threshold,
            "below",
            margin=0.5 * cfg.threshold,
        )
        for length in cfg.lengths
        if length >= 100 and "lstm" in cfg.cells
    ]
    if 100 in cfg.lengths and "rnn" in cfg.cells:
        claims.append(
            Claim(
                f"a vanilla tanh RNN does not solve it at T=100 in the same {cfg.steps} steps",
                "test_mse",
                best("rnn", 100),
                cfg.threshold,
                "above",
                # it stays near the predict-1 baseline (1/6), far above the threshold
                margin=5 * cfg.threshold,
            )
        )
    return run.write_summary(results, claims)


if __name__ == "__main__":
    main(parse_config(Config))

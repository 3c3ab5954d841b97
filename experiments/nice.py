"""NICE on 2-D toy densities: maximum likelihood through the change-of-variables formula.

Lecture: seed 004, Lecture 15 "Autoregressive and Reversible Models" (line 3300), §1
"Reversible Models": p_X(x) = p_Z(f^{-1}(x)) |det ∂x/∂z|^{-1} (Eq. 1); reversible (additive
coupling) blocks are exactly invertible with determinant 1 (Eq. 3-8), so NICE trains by
maximising Σ log p_Z(f^{-1}(x)) (Eq. 9-10), plus the log-determinant of its diagonal scaling.

For each toy density (two moons, concentric rings; :mod:`jaxnets.data.toy2d`) a NICE flow
(:class:`jaxnets.models.nice.NICE`) is fitted by maximum likelihood with Adam, and compared on
the same test points with the full-covariance Gaussian fitted by maximum likelihood to the
training set (:func:`jaxnets.models.nice.fit_gaussian`), which cannot follow a curved or
hollow density. Log-likelihoods are in nats per example, in the standardised coordinates the
models are fitted in (statistics from the training split); going back to the raw coordinates
subtracts the same Σ_d log std_d from both models, so the comparison does not depend on it.
The script also checks that decode(encode(x)) returns the test points: the inverse is exact,
so the only error is rounding, which float64 shrinks by nine orders of magnitude (in float32 it
grows with the size of the trained coupling shifts, to ~1e-5). Figure: per density, the test
points, NICE's density exp log p(x) on a grid, the Gaussian's, samples x = f(z) from the flow,
and the test points mapped to z = f^{-1}(x) over prior draws.

Everything is repeated over ``seeds`` seeds, each drawing its own points, split, initialisation
and minibatch order; the table shows means over seeds, the figure the first seed. A claim holds
when NICE beats the Gaussian by at least ``margin_nats`` on every seed.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import create_model
from jaxnets.data import standardize
from jaxnets.data.toy2d import TOY2D, toy2d_dataset
from jaxnets.experiment import Claim, Run, format_table, parse_config
from jaxnets.models.nice import NICE, fit_gaussian, gaussian_log_likelihood, get_prior
from jaxnets.optim import make_optimizer
from jaxnets.sweep import TrainingConfig, fit_from_seed, sweep_seeds
from jaxnets.train import Trainer
from jaxnets.validation import check_batch_size, check_config


@dataclasses.dataclass(frozen=True)
class Config(TrainingConfig, epochs=200, batch_size=100, learning_rate=1e-3):
    """NICE against a maximum-likelihood Gaussian on two moons and rings (Adam, learning rate
    decayed to 0 by a cosine over the run)."""

    datasets: tuple[str, ...] = ("two_moons", "rings")
    """toy densities (keys of jaxnets.data.toy2d.TOY2D)"""
    noises: tuple[float, ...] = (0.1, 0.05)
    """noise standard deviation of each data set, in the order of `datasets`"""
    train_size: int = 2500
    val_size: int = 500
    test_size: int = 1000
    num_coupling: int = 6
    """additive coupling layers (alternating which coordinate they shift)"""
    hidden: int = 64
    """width of each coupling function's hidden layers"""
    layers: int = 3
    """hidden layers per coupling function"""
    activation: str = "elu"
    """hidden unit of the coupling functions (smooth: ReLU ones crease the density)"""
    prior: str = "logistic"
    """prior p_Z: logistic (the paper's) or gaussian"""
    round_trip_tolerance: float = 1e-9
    """largest |decode(encode(x)) − x| accepted on the test points, computed in float64"""
    grid: int = 200
    """points per side of the density heat map"""
    samples: int = 2000
    """samples drawn from each trained flow for the figure"""
    margin_nats: float = 0.1
    """how far above the Gaussian's test log-likelihood NICE's must lie on every seed"""

    # a small flow trained a few hundred steps already beats the Gaussian on two moons (the
    # claims' direction) in seconds; the hollow rings take the full-size flow and data. By
    # line: the data, the flow and its training, the figure
    SMOKE = dict(datasets=("two_moons",), noises=(0.1,), train_size=512, val_size=16, test_size=512)
    SMOKE |= dict(num_coupling=2, hidden=32, layers=2, epochs=60, batch_size=32, learning_rate=1e-2)
    SMOKE |= dict(grid=20, samples=50, seeds=2)

    def __post_init__(self):
        if len(self.noises) != len(self.datasets):
            raise ValueError(
                f"give one noise level per data set: {len(self.datasets)} data sets "
                f"{self.datasets} but {len(self.noises)} noises {self.noises}"
            )
        unknown = [name for name in self.datasets if name not in TOY2D]
        if unknown:
            raise ValueError(f"unknown data sets {unknown}; choose from {', '.join(TOY2D)}")
        get_prior(self.prior)
        check_config(self, zero_ok=("seed", "margin_nats"))
        check_batch_size(self.batch_size, self.train_size)


def _trainer(cfg: Config) -> Trainer:
    """One NICE trainer for every data set (same shapes: its compiled steps are reused)."""
    names = ("num_coupling", "hidden", "layers", "activation", "prior")
    model = create_model("nice", **cfg.pick(*names))
    steps = cfg.epochs * (cfg.train_size // cfg.batch_size)
    return Trainer(
        model,
        "negative_log_likelihood",
        make_optimizer("adam", cfg.learning_rate, schedule="cosine", total_steps=steps),
    )


# module-level jits with the (hashable) model static: compiled once for all data sets
@functools.partial(jax.jit, static_argnums=0)
def _encode(model: NICE, variables, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return model.apply(variables, x, method=NICE.encode)


@functools.partial(jax.jit, static_argnums=0)
def _decode(model: NICE, variables, z: jax.Array) -> jax.Array:
    return model.apply(variables, z, method=NICE.decode)


@functools.partial(jax.jit, static_argnums=0)
def _round_trip_error(model: NICE, variables, x: jax.Array) -> jax.Array:
    """max |decode(encode(x)) − x| over x: (n, D) -> ()."""
    z, _ = model.apply(variables, x, method=NICE.encode)
    return jnp.max(jnp.abs(model.apply(variables, z, method=NICE.decode) - x))


@functools.partial(jax.jit, static_argnums=(0, 3))
def _sample(model: NICE, variables, rng: jax.Array, n: int) -> jax.Array:
    return model.apply(variables, rng, n, method=NICE.sample)


def _mean_log_likelihood(trainer: Trainer, state, split) -> float:
    """Average log p(x) (nats per example) of the split's points under the trained flow."""
    return float(jnp.mean(trainer.predict(state, jnp.asarray(split.x))))


def _grid(points: np.ndarray, size: int) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A (size², 2) grid over the points' bounding box plus a margin, and its imshow extent."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    lo, hi = lo - 0.25 * (hi - lo), hi + 0.25 * (hi - lo)
    xs, ys = np.linspace(lo[0], hi[0], size), np.linspace(lo[1], hi[1], size)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2).astype(np.float32)
    return grid, (lo[0], hi[0], lo[1], hi[1])


def _study(
    cfg: Config, trainer: Trainer, name: str, noise: float, run: Run, seed: int
) -> tuple[dict, dict | None]:
    """Fit NICE and the Gaussian to one toy density with one seed; returns (result rows,
    figure panels, the first seed only)."""
    data = toy2d_dataset(
        name, cfg.train_size + cfg.val_size + cfg.test_size, noise=noise, seed=seed
    )
    splits, _ = standardize(data.split((cfg.train_size, cfg.val_size, cfg.test_size), seed=seed))
    state = fit_from_seed(
        trainer,
        seed,
        splits.train,
        jnp.asarray(splits.train.x[:2]),
        run=run,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        val=splits.val,
        desc=f"NICE {name} seed {seed}",
    ).state
    model, variables = trainer.model, {"params": state.params}

    mean, cov = fit_gaussian(jnp.asarray(splits.train.x))
    gaussian = {
        f"{split}_log_likelihood": float(
            jnp.mean(gaussian_log_likelihood(jnp.asarray(part.x), mean, cov))
        )
        for split, part in (("train", splits.train), ("test", splits.test))
    }

    x_test = jnp.asarray(splits.test.x)
    round_trip = {"float32": float(_round_trip_error(model, variables, x_test))}
    with jax.enable_x64(True):
        as64 = functools.partial(jnp.asarray, dtype=jnp.float64)
        round_trip["float64"] = float(
            _round_trip_error(model, jax.tree.map(as64, variables), as64(x_test))
        )
    print(
        f"{name}, seed {seed}: max |decode(encode(x)) - x| over {len(x_test)} test points: "
        f"{round_trip['float32']:.1e} in float32, {round_trip['float64']:.1e} in float64; "
        f"learned log-scales s = {np.round(np.asarray(state.params['scaling']['log_scale']), 3)}"
    )

    nice = {
        "train_log_likelihood": _mean_log_likelihood(trainer, state, splits.train),
        "test_log_likelihood": _mean_log_likelihood(trainer, state, splits.test),
    }
    nice["test_gain_over_gaussian"] = nice["test_log_likelihood"] - gaussian["test_log_likelihood"]
    nice["round_trip_error_float32"] = round_trip["float32"]
    nice["round_trip_error_float64"] = round_trip["float64"]
    rows = {f"NICE {name}": nice, f"Gaussian {name}": gaussian}
    if seed != cfg.seed:
        return rows, None

    z_test, _ = _encode(model, variables, x_test)
    sample_key, prior_key = jax.random.split(jax.random.PRNGKey(seed + 1))
    samples = _sample(model, variables, sample_key, cfg.samples)
    z_prior = get_prior(cfg.prior).sample(prior_key, (cfg.samples, 2))
    grid, extent = _grid(np.asarray(splits.train.x), cfg.grid)
    nice_density = np.exp(np.asarray(trainer.predict(state, jnp.asarray(grid))))
    gaussian_density = np.exp(np.asarray(gaussian_log_likelihood(jnp.asarray(grid), mean, cov)))
    panels = {
        "test points": ("scatter", np.asarray(x_test)),
        "NICE density": ("density", nice_density.reshape(cfg.grid, cfg.grid)),
        "ML Gaussian density": ("density", gaussian_density.reshape(cfg.grid, cfg.grid)),
        "NICE samples x = f(z)": ("scatter", np.asarray(samples)),
        "test points in z = f⁻¹(x)": ("latent", (np.asarray(z_test), np.asarray(z_prior))),
    }
    return rows, {"extent": extent, "panels": panels}


def _plot(run: Run, figures: dict[str, dict]) -> None:
    import matplotlib.pyplot as plt

    columns = len(next(iter(figures.values()))["panels"])
    fig, axes = plt.subplots(
        len(figures), columns, figsize=(3.2 * columns, 3.2 * len(figures)), squeeze=False
    )
    for row, (name, figure) in zip(axes, figures.items(), strict=True):
        extent = figure["extent"]
        for ax, (title, (kind, values)) in zip(row, figure["panels"].items(), strict=True):
            if kind == "density":
                ax.imshow(values, origin="lower", extent=extent, aspect="auto", cmap="magma")
            elif kind == "scatter":
                ax.scatter(values[:, 0], values[:, 1], s=2, alpha=0.5)
                ax.set(xlim=extent[:2], ylim=extent[2:])
            else:
                latent, prior = values
                ax.scatter(prior[:, 0], prior[:, 1], s=2, color="lightgray", label="prior draws")
                ax.scatter(latent[:, 0], latent[:, 1], s=2, alpha=0.5, label="f⁻¹(test points)")
                ax.set(xlim=(-8, 8), ylim=(-8, 8))
                ax.legend(fontsize=6, loc="upper right", markerscale=3)
            ax.set_title(f"{name}: {title}", fontsize=8)
    fig.tight_layout()
    run.savefig(fig, "nice_densities")


def _one_seed(cfg: Config, trainer: Trainer, run: Run, seed: int):
    """Every data set with one seed: (result rows, figure panels by data set)."""
    rows, figures = {}, {}
    for name, noise in zip(cfg.datasets, cfg.noises, strict=True):
        study, figures[name] = _study(cfg, trainer, name, noise, run, seed)
        rows.update(study)
    return rows, figures


def main(cfg: Config) -> dict:
    cfg = cfg.sized()
    run = Run("nice", cfg, root=cfg.out)
    trainer = _trainer(cfg)
    sweep = sweep_seeds(cfg.seed_range, functools.partial(_one_seed, cfg, trainer, run), run)
    results, figures = sweep.results, sweep.first
    print(
        f"average log-likelihood per example (nats, standardised coordinates), "
        f"mean over {cfg.seeds} seed(s):"
    )
    print(
        format_table(
            results,
            [
                "train_log_likelihood",
                "test_log_likelihood",
                "test_gain_over_gaussian",
                "round_trip_error_float32",
                "round_trip_error_float64",
            ],
        )
    )
    _plot(run, figures)
    claims = []
    for name in cfg.datasets:
        claims += [
            Claim(
                f"NICE's test log-likelihood on {name} is above the maximum-likelihood "
                "full-covariance Gaussian's (metric: NICE's minus the Gaussian's, per seed)",
                "test_gain_over_gaussian",
                sweep.values(f"NICE {name}", "test_gain_over_gaussian"),
                0.0,
                "above",
                margin=cfg.margin_nats,
            ),
            # rounding in float64 is ~1e-15; the margin asks for 10x below the tolerance
            Claim(
                f"decode(encode(x)) returns the {name} test points exactly up to rounding "
                "(max abs error, float64)",
                "round_trip_error_float64",
                sweep.values(f"NICE {name}", "round_trip_error_float64"),
                cfg.round_trip_tolerance,
                "below",
                margin=0.9 * cfg.round_trip_tolerance,
            ),
        ]
    return run.write_summary(results, claims)


if __name__ == "__main__":
    main(parse_config(Config))

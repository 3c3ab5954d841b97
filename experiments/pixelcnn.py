"""PixelCNN on binarised digits: test bits per pixel against independent Bernoulli pixels.

Lecture: seed 004, Lecture 15 "Autoregressive and Reversible Models" (line 3300), §2: an image
is a sequence of pixels in raster-scan order (Figure 2, line 3397), its likelihood the product
of the conditionals p(x_i | x_<i) (Eq. 11), all computed in one pass by a causal (masked)
convolutional net (line 3422, Figure 3 bottom); sampling has to loop over the pixels.

The 8x8 sklearn digits are thresholded to {0, 1} and split into train/validation/test. A
:class:`~jaxnets.models.pixelcnn.PixelCNN` is trained by maximum likelihood (Bernoulli NLL
summed over the pixels, Adam), keeping the epoch with the lowest validation loss. The baseline
models every pixel as an independent Bernoulli with its smoothed training frequency: the best
model with no context. Both are scored in bits per pixel (bits/dim) on the same test digits;
the figure shows training digits next to samples from each model.

The comparison is repeated over ``seeds`` seeds, each with its own split, initialisation and
minibatch order; the table shows means over seeds, and the claim holds when the PixelCNN beats
the baseline by at least ``margin_bits`` bits/dim on every seed.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from jaxnets import create_model
from jaxnets.data.binarized import load_binarized_digits
from jaxnets.experiment import Claim, Run, format_table, parse_config
from jaxnets.models.pixelcnn import bits_per_dim, pixel_frequency_logits, sample
from jaxnets.optim import make_optimizer
from jaxnets.sweep import TrainingConfig, fit_from_seed, sweep_seeds
from jaxnets.train import EarlyStopping, Trainer
from jaxnets.validation import check_batch_size, check_config


@dataclasses.dataclass(frozen=True)
class Config(TrainingConfig, batch_size=32, learning_rate=2e-3):
    """PixelCNN vs independent Bernoulli pixels on binarised 8x8 digits (Adam)."""

    threshold: float = 0.5
    """a pixel is 1 where its ink (0-16 scaled to [0, 1]) exceeds this"""
    splits: tuple[float, float, float] = (0.6, 0.2, 0.2)
    """train/validation/test fractions of the 1797 digits (stratified by digit)"""
    features: int = 64
    """channels of every PixelCNN layer"""
    layers: int = 4
    """residual blocks of type-B masked convolutions"""
    first_kernel: int = 5
    """size of the type-A masked convolution that sees the image"""
    kernel: int = 3
    """size of the type-B masked convolutions"""
    epochs: int = 60
    """most epochs; the one with the lowest validation loss is kept"""
    patience: int = 10
    """stop after this many epochs without a better validation loss"""
    smoothing: float = 1.0
    """add-``smoothing`` counts of the baseline's pixel frequencies (1 = Laplace's rule)"""
    num_samples: int = 64
    """images drawn from each model for the figure"""
    margin_bits: float = 0.05
    """how far below the baseline's test bits/dim the PixelCNN's must lie on every seed"""

    # a few epochs of a tiny net already beat the baseline (the claim's direction), in seconds
    SMOKE = dict(features=8, layers=1, epochs=15, learning_rate=1e-2, num_samples=4, seeds=2)

    def __post_init__(self):
        check_config(
            self, zero_ok=("seed", "layers", "margin_bits"), fractions=("threshold", "splits")
        )
        if self.threshold == 0 or abs(sum(self.splits) - 1) > 1e-6 or 0 in self.splits:
            raise ValueError(
                f"threshold must be in (0, 1) and splits three fractions > 0 summing to 1; got "
                f"threshold={self.threshold}, splits={self.splits}"
            )
        for field in ("first_kernel", "kernel"):
            if getattr(self, field) % 2 == 0:
                raise ValueError(
                    f"{field} must be odd (the output pixel sits at the kernel's centre); got "
                    f"{getattr(self, field)}"
                )


def _train(cfg: Config, trainer: Trainer, data, run: Run, seed: int):
    """Fit the PixelCNN on data.train (targets are the images themselves); best val epoch."""
    stopper = EarlyStopping("val_loss", patience=cfg.patience)
    result = fit_from_seed(
        trainer,
        seed,
        (data.train.x, data.train.x),
        data.train.x[: cfg.batch_size],
        run=run,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        val=(data.val.x, data.val.x),
        callbacks=[stopper],
        desc=f"pixelcnn seed {seed}",
    )
    print(
        f"  best validation loss {stopper.best_value:.2f} nats/image at epoch {stopper.best_epoch}"
    )
    return result.state, stopper.best_epoch


def _mosaic(images: np.ndarray, cols: int) -> np.ndarray:
    """(n, h, w, 1) images -> one (rows (h+1) - 1, cols (w+1) - 1) array, 1-pixel gaps at 0.5."""
    n, h, w, _ = images.shape
    rows = -(-n // cols)
    canvas = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), 0.5)
    for k, image in enumerate(images):
        r, c = divmod(k, cols)
        canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = image[..., 0]
    return canvas


def _plot(run: Run, panels: dict[str, np.ndarray]) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.9), layout="constrained")
    for ax, (title, images) in zip(axes, panels.items(), strict=True):
        ax.imshow(_mosaic(images, cols=int(np.ceil(np.sqrt(len(images))))), cmap="gray_r")
        ax.set(title=title, xticks=[], yticks=[])
    run.savefig(fig, "pixelcnn_samples")


def _one_seed(cfg: Config, trainer: Trainer, run: Run, seed: int):
    """Train and score on one seed's split: ({variant: {metric: value}}, (data, state))."""
    data = load_binarized_digits(cfg.threshold).split(cfg.splits, seed=seed)
    state, best_epoch = _train(cfg, trainer, data, run, seed)
    frequency_logits = pixel_frequency_logits(data.train.x, cfg.smoothing)
    # one forward pass over all three splits: one compiled shape instead of three
    all_logits = trainer.predict(state, np.concatenate([part.x for part in data]))
    ends = np.cumsum([len(part) for part in data])
    rows = {"pixelcnn": {"best_epoch": best_epoch}, "independent_bernoulli": {}}
    for name, part, end in zip(data._fields, data, ends, strict=True):
        logits = all_logits[end - len(part) : end]
        baseline = np.broadcast_to(frequency_logits, part.x.shape)
        rows["pixelcnn"][f"{name}_bits_per_dim"] = float(bits_per_dim(logits, part.x))
        rows["independent_bernoulli"][f"{name}_bits_per_dim"] = float(
            bits_per_dim(baseline, part.x)
        )
    rows["pixelcnn"]["bits_per_dim_gain"] = (
        rows["independent_bernoulli"]["test_bits_per_dim"] - rows["pixelcnn"]["test_bits_per_dim"]
    )
    return rows, (data, state)


def main(cfg: Config) -> dict:
    cfg = cfg.sized()
    train = load_binarized_digits(cfg.threshold).split(cfg.splits, seed=cfg.seed).train
    check_batch_size(cfg.batch_size, len(train))
    run = Run("pixelcnn", cfg, root=cfg.out)
    names = ("features", "layers", "first_kernel", "kernel")
    model = create_model("pixelcnn", **cfg.pick(*names))
    # one trainer for every seed: its compiled steps are reused
    trainer = Trainer(model, "bernoulli_nll", make_optimizer("adam", cfg.learning_rate))
    sweep = sweep_seeds(cfg.seed_range, functools.partial(_one_seed, cfg, trainer, run), run)
    first_data, first_state = sweep.first
    print(
        f"binarised digits: {len(first_data.train)} train / {len(first_data.val)} val / "
        f"{len(first_data.test)} test, {np.mean(first_data.train.x):.1%} of training pixels on"
    )
    results = sweep.results
    print(f"mean over {cfg.seeds} seed(s):")
    print(
        format_table(
            results, [f"{name}_bits_per_dim" for name in first_data._fields] + ["best_epoch"]
        )
    )

    # samples: the first seed's model
    variables = {"params": first_state.params, **first_state.model_state}
    frequency_logits = pixel_frequency_logits(first_data.train.x, cfg.smoothing)
    k_pixelcnn, k_baseline = jax.random.split(jax.random.PRNGKey(cfg.seed + 1))
    pixelcnn_samples = sample(model, variables, k_pixelcnn, cfg.num_samples, (8, 8, 1))
    baseline_samples = jax.random.bernoulli(
        k_baseline, jax.nn.sigmoid(frequency_logits), (cfg.num_samples, 8, 8, 1)
    )
    _plot(
        run,
        {
            "training digits": first_data.train.x[: cfg.num_samples],
            "PixelCNN samples": np.asarray(pixelcnn_samples),
            "independent Bernoulli samples": np.asarray(baseline_samples, np.float32),
        },
    )
    claims = [
        Claim(
            "PixelCNN's test bits/dim is below the independent-Bernoulli baseline's "
            "(metric: baseline's bits/dim minus PixelCNN's, per seed)",
            "bits_per_dim_gain",
            sweep.values("pixelcnn", "bits_per_dim_gain"),
            0.0,
            "above",
            margin=cfg.margin_bits,
        )
    ]
    return run.write_summary(results, claims)


if __name__ == "__main__":
    main(parse_config(Config))

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
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxnets import create_model
from jaxnets.data.binarized import load_binarized_digits
from jaxnets.experiment import Claim, Run, format_table, parse_config
from jaxnets.models.pixelcnn import bits_per_dim, pixel_frequency_logits, sample
from jaxnets.optim import make_optimizer
from jaxnets.train import EarlyStopping, Trainer, fit


@dataclasses.dataclass(frozen=True)
class Config:
    """PixelCNN vs independent Bernoulli pixels on binarised 8x8 digits."""

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
    batch_size: int = 32
    learning_rate: float = 2e-3
    """Adam's learning rate"""
    smoothing: float = 1.0
    """add-``smoothing`` counts of the baseline's pixel frequencies (1 = Laplace's rule)"""
    num_samples: int = 64
    """images drawn from each model for the figure"""
    seed: int = 0
    out: str = "runs"
    """root folder of run directories"""
    smoke: bool = False
    """tiny run for the tests"""

    def __post_init__(self):
        if self.epochs < 1 or self.patience < 1:
            raise ValueError(
                f"epochs and patience must be >= 1; got {self.epochs} and {self.patience}"
            )
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0; got {self.learning_rate}")


_SMOKE = {"features": 4, "layers": 1, "epochs": 1, "num_samples": 4}


def _train(cfg: Config, data, run: Run):
    """Fit the PixelCNN on data.train (targets are the images themselves); best val epoch."""
    model = create_model(
        "pixelcnn",
        features=cfg.features,
        layers=cfg.layers,
        first_kernel=cfg.first_kernel,
        kernel=cfg.kernel,
    )
    trainer = Trainer(model, "bernoulli_nll", make_optimizer("adam", cfg.learning_rate))
    state = trainer.init(jax.random.PRNGKey(cfg.seed), data.train.x[: cfg.batch_size])
    stopper = EarlyStopping("val_loss", patience=cfg.patience)
    result = fit(
        trainer,
        state,
        (data.train.x, data.train.x),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        val=(data.val.x, data.val.x),
        callbacks=[stopper],
        metrics_path=run.metrics_path,
        desc="pixelcnn",
    )
    print(
        f"  best validation loss {stopper.best_value:.2f} nats/image at epoch {stopper.best_epoch}"
    )
    return model, trainer, result.state, stopper.best_epoch


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


def main(cfg: Config) -> dict:
    if cfg.smoke:
        cfg = dataclasses.replace(cfg, **_SMOKE)
    run = Run("pixelcnn", cfg, root=cfg.out)
    data = load_binarized_digits(cfg.threshold).split(cfg.splits, seed=cfg.seed)
    print(
        f"binarised digits: {len(data.train)} train / {len(data.val)} val / {len(data.test)} "
        f"test, {np.mean(data.train.x):.1%} of training pixels on"
    )

    model, trainer, state, best_epoch = _train(cfg, data, run)
    variables = {"params": state.params, **state.model_state}
    frequency_logits = pixel_frequency_logits(data.train.x, cfg.smoothing)
    # one forward pass over all three splits: one compiled shape instead of three
    all_logits = trainer.predict(state, np.concatenate([part.x for part in data]))
    ends = np.cumsum([len(part) for part in data])
    results = {"pixelcnn": {"best_epoch": best_epoch}, "independent_bernoulli": {}}
    for name, part, end in zip(data._fields, data, ends, strict=True):
        logits = all_logits[end - len(part) : end]
        baseline = np.broadcast_to(frequency_logits, part.x.shape)
        results["pixelcnn"][f"{name}_bits_per_dim"] = float(bits_per_dim(logits, part.x))
        results["independent_bernoulli"][f"{name}_bits_per_dim"] = float(
            bits_per_dim(baseline, part.x)
        )
    print(format_table(results, [f"{name}_bits_per_dim" for name in data._fields]))

    k_pixelcnn, k_baseline = jax.random.split(jax.random.PRNGKey(cfg.seed + 1))
    pixelcnn_samples = sample(model, variables, k_pixelcnn, cfg.num_samples, (8, 8, 1))
    baseline_samples = jax.random.bernoulli(
        k_baseline, jax.nn.sigmoid(frequency_logits), (cfg.num_samples, 8, 8, 1)
    )
    _plot(
        run,
        {
            "training digits": data.train.x[: cfg.num_samples],
            "PixelCNN samples": np.asarray(pixelcnn_samples),
            "independent Bernoulli samples": np.asarray(baseline_samples, np.float32),
        },
    )
    claims = [
        Claim(
            "PixelCNN's test bits/dim is below the independent-Bernoulli baseline's",
            "test_bits_per_dim",
            results["pixelcnn"]["test_bits_per_dim"],
            results["independent_bernoulli"]["test_bits_per_dim"],
            "below",
        )
    ]
    return run.write_summary(results, claims)


if __name__ == "__main__":
    main(parse_config(Config))

"""WaveNet on synthetic mu-law audio, against an i.i.d. baseline.

Lecture: seed 004, Lecture 15 "Autoregressive and Reversible Models" (line 3300), §2: an
autoregressive model scores a waveform by the chain rule (Eq. 11), one softmax over the next
sample's 256 mu-law values at a time; causal convolutions (line 3422) train all time steps in
one pass, dilations (line 3433) widen the receptive field exponentially with depth, and
generation feeds each sample back in, one at a time.

Data: :func:`jaxnets.data.audio.synthetic_audio` (sums of gliding sine tones plus noise, mu-law
coded). WaveNet trains on next-sample prediction (inputs ``clip[:-1]``, targets ``clip[1:]``);
the baseline is the i.i.d. model of the same test targets under the training set's marginal
code distribution (add-one smoothed: :func:`jaxnets.models.language.fit_ngram` of order 1). Both
are scored in nats and bits per sample. The receptive field is printed from the formula and as
measured from the gradient's support, and a sampled continuation is plotted next to the real one.

The comparison is repeated over ``seeds`` independent seeds: each draws its own training,
validation and test clips, initialisation and minibatch order. The table shows means over seeds;
the claim holds when WaveNet beats the baseline by at least ``margin_nats`` on every seed.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import create_model
from jaxnets.data.audio import mu_law_decode, synthetic_audio
from jaxnets.experiment import Claim, Run, format_table, parse_config
from jaxnets.models.language import fit_ngram
from jaxnets.models.wavenet import generate, measured_receptive_field
from jaxnets.optim import make_optimizer
from jaxnets.sweep import TrainingConfig, fit_from_seed, sweep_seeds
from jaxnets.train import Trainer, evaluate
from jaxnets.validation import check_batch_size, check_config


@dataclasses.dataclass(frozen=True)
class Config(TrainingConfig, epochs=30, batch_size=16, learning_rate=1e-2):
    """WaveNet next-sample prediction on synthetic audio vs the i.i.d. marginal baseline
    (Adam, learning rate decayed to 0 by a cosine)."""

    train_clips: int = 256
    val_clips: int = 32
    """clips monitored during training (a separate seed: the test clips stay unseen)"""
    test_clips: int = 32
    clip_length: int = 513
    """samples per clip (the model sees clip_length - 1 inputs and as many targets)"""
    channels: int = 256
    """mu-law quantisation levels"""
    noise: float = 0.01
    """standard deviation of the Gaussian noise added to the tones"""
    residual_channels: int = 32
    skip_channels: int = 64
    kernel_size: int = 2
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    """one dilation per layer (receptive field 1 + (kernel_size - 1) * sum)"""
    generate_length: int = 384
    """samples generated after a real prompt of receptive-field length"""
    temperature: float = 1.0
    margin_nats: float = 0.5
    """how far below the baseline's NLL per sample WaveNet's must lie on every seed"""

    # 16 codes and a few hundred tiny steps: small enough for the tests, long enough for
    # WaveNet to beat the baseline (the claim's direction). By line: the clips, the net, its
    # training and the generated continuation
    SMOKE = dict(train_clips=64, val_clips=4, test_clips=4, clip_length=65, channels=16)
    SMOKE |= dict(residual_channels=8, skip_channels=8, dilations=(1, 2, 4))
    SMOKE |= dict(epochs=10, batch_size=8, generate_length=8, seeds=2)

    def __post_init__(self):
        check_config(self, zero_ok=("noise", "generate_length", "temperature", "seed"))
        check_batch_size(self.batch_size, self.train_clips)
        if self.clip_length < 2:
            raise ValueError(
                f"clip_length must be >= 2 (one input and one target); got {self.clip_length}"
            )


def _bits(nats: float) -> float:
    return nats / math.log(2.0)


def _plot(run: Run, cfg: Config, real: np.ndarray, generated: np.ndarray, prompt_length: int):
    """Real clip and generated continuation (both codes (T,)), decoded, after the same prompt."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(9, 4.8), sharex=True, sharey=True, layout="constrained")
    for ax, codes, title in (
        (axes[0], real, "real clip"),
        (axes[1], generated, f"WaveNet sample (temperature {cfg.temperature:g})"),
    ):
        wave = mu_law_decode(codes, cfg.channels)
        ax.plot(np.arange(len(wave)), wave, lw=0.8)
        ax.axvline(prompt_length - 0.5, color="gray", ls="--", lw=0.8)
        ax.set(title=title, ylabel="amplitude")
    axes[1].set_xlabel(
        f"sample (left of the dashed line: the shared {prompt_length}-sample prompt)"
    )
    run.savefig(fig, "generated_waveform")


def _clips(cfg: Config, seed: int) -> dict[str, np.ndarray]:
    """(inputs, targets) of each split for one seed: logits at t predict sample t + 1."""
    audio = dict(channels=cfg.channels, noise=cfg.noise)
    sizes = {"train": cfg.train_clips, "test": cfg.test_clips, "val": cfg.val_clips}
    clips = {
        split: synthetic_audio(n, cfg.clip_length, 3 * seed + k, **audio).codes
        for k, (split, n) in enumerate(sizes.items())
    }
    return {split: (codes[:, :-1], codes[:, 1:]) for split, codes in clips.items()}


def _one_seed(cfg: Config, trainer: Trainer, run: Run, seed: int):
    """Train WaveNet on one seed's clips (seed s draws them from seeds 3s, 3s + 1 and 3s + 2,
    and initialises with s); returns (per-seed result rows, (state, clips))."""
    clips = _clips(cfg, seed)
    x_train, y_train = clips["train"]
    state = fit_from_seed(
        trainer,
        seed,
        clips["train"],
        jnp.asarray(x_train[: cfg.batch_size]),
        run=run,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        val=clips["val"],
        desc=f"WaveNet seed {seed}",
    ).state
    # every clip has clip_length - 1 targets, so the mean of per-clip means is per sample
    nll = evaluate(trainer, state, clips["test"])["loss"]
    # the training clips' codes, first sample included
    train_codes = np.concatenate([x_train[:, :1], y_train], axis=1)
    marginal = fit_ngram(train_codes.ravel(), cfg.channels, order=1, add_k=1.0)
    baseline_nll = float(-np.mean(marginal.log_prob(clips["test"][1].ravel())))
    rows = {
        "wavenet": {
            "test_nll_nats": nll,
            "test_bits_per_sample": _bits(nll),
            "nll_gap_nats": baseline_nll - nll,
        },
        "iid_marginal (add-one)": {
            "test_nll_nats": baseline_nll,
            "test_bits_per_sample": _bits(baseline_nll),
        },
    }
    return rows, (state, clips)


def main(cfg: Config) -> dict:
    cfg = cfg.sized()
    run = Run("wavenet", cfg, root=cfg.out)
    names = ("channels", "residual_channels", "skip_channels", "kernel_size", "dilations")
    model = create_model("wavenet", **cfg.pick(*names))
    steps = cfg.epochs * (cfg.train_clips // cfg.batch_size)
    # one trainer for every seed: its compiled steps are reused
    trainer = Trainer(
        model,
        "sequence_cross_entropy",
        make_optimizer("adam", cfg.learning_rate, schedule="cosine", total_steps=steps),
    )
    sweep = sweep_seeds(cfg.seed_range, functools.partial(_one_seed, cfg, trainer, run), run)
    results, (first_state, first_clips) = sweep.results, sweep.first

    # receptive field and a sampled continuation: the first seed's model
    variables = {"params": first_state.params}
    x_test = first_clips["test"][0]
    test0 = np.concatenate([x_test[0], first_clips["test"][1][0, -1:]])
    field = model.receptive_field
    probe = test0[: min(cfg.clip_length, 2 * field)]
    measured = measured_receptive_field(model, variables, probe)
    print(
        f"receptive field: 1 + ({cfg.kernel_size} - 1) * sum{cfg.dilations} = {field} samples; "
        f"measured from the gradient's support: {measured}"
        + (f" (probe of {len(probe)} samples)" if measured >= len(probe) else "")
    )
    prompt_length = min(field, cfg.clip_length - 1)
    length = min(cfg.generate_length, cfg.clip_length - prompt_length)
    sampled = generate(
        model,
        variables,
        jax.random.PRNGKey(cfg.seed + 2),
        jnp.asarray(test0[None, :prompt_length]),
        length,
        cfg.temperature,
    )
    real = test0[: prompt_length + length]
    generated = np.concatenate([test0[:prompt_length], np.asarray(sampled[0])])
    _plot(run, cfg, real, generated, prompt_length)

    results["wavenet"].update(
        receptive_field=field,
        measured_receptive_field=measured,
        parameters=sum(p.size for p in jax.tree.leaves(first_state.params)),
    )
    print(f"mean over {cfg.seeds} seed(s):")
    print(format_table(results))
    claims = [
        Claim(
            "WaveNet's test NLL per sample is below the i.i.d. marginal baseline's "
            "(metric: baseline's NLL minus WaveNet's, per seed)",
            "nll_gap_nats",
            sweep.values("wavenet", "nll_gap_nats"),
            0.0,
            "above",
            margin=cfg.margin_nats,
        )
    ]
    return run.write_summary(results, claims)


if __name__ == "__main__":
    main(parse_config(Config))

"""Synthetic audio and mu-law quantisation, the data of WaveNet.

Lecture: seed 004, Lecture 15 "Autoregressive and Reversible Models" (line 3300): an audio
waveform is a long sequence of integer-valued samples (at least 16,000 per second), modelled
autoregressively with a softmax over the values of the next sample (Eq. 11); WaveNet (van den
Oord et al. 2016, "WaveNet: a generative model for raw audio", §2.2) first compands each sample
with the mu-law so that 256 values suffice::

    f(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu),   mu = channels - 1,   x in [-1, 1]

and rounds ``(f(x) + 1) / 2 * mu`` to an integer code in ``[0, mu]``: quiet samples, where the
ear is most sensitive, get finer steps than loud ones.

:func:`synthetic_audio` stands in for speech: each clip is a sum of a few sine tones whose
frequencies glide within the clip and differ between clips, with random phases and amplitudes,
plus Gaussian noise. Every call uses its own ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["AudioClips", "mu_law_decode", "mu_law_encode", "synthetic_audio"]


def _check_channels(channels: int) -> int:
    if int(channels) < 2:
        raise ValueError(
            f"channels (quantisation levels) must be >= 2, e.g. 256 for 8-bit mu-law; "
            f"got {channels}"
        )
    return int(channels)


def mu_law_encode(x, channels: int = 256) -> np.ndarray:
    """Mu-law companding then uniform quantisation (the module docstring's f).

    Args:
      x: waveform of any shape with values in [-1, 1].
      channels: number of codes (mu = channels - 1).
    Returns:
      int32 codes in ``[0, channels)`` of x's shape: -1 -> 0, 0 -> channels // 2 (128 for 256),
      1 -> channels - 1.
    """
    mu = _check_channels(channels) - 1
    x = np.asarray(x, np.float64)
    if x.size and not (np.all(np.isfinite(x)) and np.min(x) >= -1.0 and np.max(x) <= 1.0):
        raise ValueError(
            f"mu_law_encode expects finite samples in [-1, 1]; got values in "
            f"[{np.min(x):.4g}, {np.max(x):.4g}] (clip or rescale the waveform first)"
        )
    companded = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    return np.floor((companded + 1.0) / 2.0 * mu + 0.5).astype(np.int32)


def mu_law_decode(codes, channels: int = 256) -> np.ndarray:
    """Inverse of :func:`mu_law_encode` up to quantisation: the waveform value of each code.

    Args:
      codes: integer codes in ``[0, channels)``, any shape.
      channels: number of codes (mu = channels - 1).
    Returns:
      float32 samples in [-1, 1] of codes' shape. ``|decode(encode(x)) - x| <=
      (1 + mu)^(1/mu) ln(1 + mu) / mu * (1/mu + |x|)``: half a quantisation step in the
      companded domain, times the slope of the expansion there.
    """
    mu = _check_channels(channels) - 1
    codes = np.asarray(codes)
    if not np.issubdtype(codes.dtype, np.integer):
        raise TypeError(f"mu_law_decode expects integer codes; got dtype {codes.dtype}")
    if codes.size and (np.min(codes) < 0 or np.max(codes) > mu):
        raise ValueError(
            f"mu_law_decode expects codes in [0, {mu}] for channels={channels}; got values in "
            f"[{np.min(codes)}, {np.max(codes)}]"
        )
    companded = 2.0 * codes / mu - 1.0
    return (np.sign(companded) * np.expm1(np.abs(companded) * np.log1p(mu)) / mu).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class AudioClips:
    """Waveforms and their mu-law codes.

    Attributes:
      waveforms: float32 (num_clips, length) in [-1, 1].
      codes: int32 (num_clips, length) in [0, channels), ``mu_law_encode(waveforms)``.
      channels: the number of quantisation levels.
    """

    waveforms: np.ndarray
    codes: np.ndarray
    channels: int


def synthetic_audio(
    num_clips: int,
    length: int,
    seed: int = 0,
    *,
    max_tones: int = 3,
    min_period: float = 8.0,
    max_period: float = 64.0,
    glide: float = 1.5,
    noise: float = 0.01,
    channels: int = 256,
) -> AudioClips:
    """Clips of gliding sine tones plus Gaussian noise, clipped to [-1, 1] and mu-law coded.

    Each clip has between 1 and ``max_tones`` tones. A tone's frequency moves linearly over the
    clip from f0 to f1 (cycles per sample): 1/f0 is log-uniform in ``[min_period, max_period]``
    samples and f1 / f0 log-uniform in ``[1/glide, glide]``. Phases are uniform, amplitudes
    uniform in [0.2, 1] scaled so that a clip's tone amplitudes sum to a loudness uniform in
    [0.3, 0.9]; then noise with standard deviation ``noise`` is added.

    Args:
      num_clips: number of clips, >= 1; length: samples per clip, >= 1.
      seed: the random seed (same arguments, same clips).
      max_tones: >= 1. min_period, max_period: 2 * glide < min_period <= max_period (every
        frequency stays below the Nyquist rate of 1/2 cycle per sample).
      glide: >= 1 (1 = constant frequencies). noise: >= 0. channels: mu-law levels, >= 2.
    Returns:
      :class:`AudioClips` with waveforms float32 (num_clips, length) and codes int32.
    """
    for name, value in (("num_clips", num_clips), ("length", length), ("max_tones", max_tones)):
        if int(value) < 1:
            raise ValueError(f"synthetic_audio: {name} must be >= 1; got {value}")
    if glide < 1.0:
        raise ValueError(f"synthetic_audio: glide must be >= 1 (1 = steady tones); got {glide}")
    if not 2.0 * glide < min_period <= max_period:
        raise ValueError(
            "synthetic_audio: need 2 * glide < min_period <= max_period (frequencies below "
            f"1/2 cycle per sample); got glide={glide}, min_period={min_period}, "
            f"max_period={max_period}"
        )
    if noise < 0:
        raise ValueError(f"synthetic_audio: noise is a standard deviation, >= 0; got {noise}")
    channels = _check_channels(channels)
    rng = np.random.default_rng(seed)
    shape = (num_clips, max_tones)
    present = np.arange(max_tones) < rng.integers(1, max_tones + 1, size=(num_clips, 1))
    f0 = 1.0 / np.exp(rng.uniform(np.log(min_period), np.log(max_period), shape))
    f1 = f0 * np.exp(rng.uniform(-np.log(glide), np.log(glide), shape))
    phase0 = rng.uniform(0.0, 2.0 * np.pi, shape)
    amplitude = rng.uniform(0.2, 1.0, shape) * present
    amplitude *= rng.uniform(0.3, 0.9, (num_clips, 1)) / amplitude.sum(axis=1, keepdims=True)
    t = np.arange(length)[:, None, None]
    # the phase is the integral of the frequency f0 + (f1 - f0) t / length
    phase = 2.0 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2.0 * length)) + phase0
    waves = np.sum(amplitude * np.sin(phase), axis=-1).T
    waves = np.clip(waves + noise * rng.standard_normal(waves.shape), -1.0, 1.0).astype(np.float32)
    return AudioClips(waves, mu_law_encode(waves, channels), channels)

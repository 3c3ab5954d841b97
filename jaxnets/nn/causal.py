"""Causal, dilated 1-D convolution: the building block of WaveNet.

Lecture: seed 004, Lecture 15 "Autoregressive and Reversible Models" (line 3300): causal
convolution (line 3422: information must never leak backwards in time, so each prediction uses
only earlier observations, which makes the chain rule of Eq. 11 a valid likelihood) and dilated
convolution (line 3433: WaveNet's dilations 1, 2, ..., 512 give a receptive field of 1024 with a
linear number of connections).

A causal convolution with kernel size ``k`` and dilation ``d`` is an ordinary (filtering)
convolution whose input is zero-padded by ``(k - 1) d`` steps on the left only::

    y[t] = b + sum_{j=0}^{k-1} W[j]^T x[t - (k - 1 - j) d]        (x[s] = 0 for s < 0)

so output ``t`` sees inputs ``t - (k - 1) d, ..., t - d, t`` and nothing later; ``W[k - 1]`` is
the tap on the current step. Stacking layers with dilations ``d_1, ..., d_L`` gives the receptive
field ``1 + sum_l (k - 1) d_l`` (:func:`receptive_field`). :func:`causal_conv_reference` is a
numpy loop written from the equation above, for the tests.

The taps are gathered as ``k`` shifted views and contracted in one matrix product instead of
``lax.conv_general_dilated``: as fast for training on XLA:CPU (jax 0.10), about 100x faster
under ``vmap`` over the parameters (the float64 gradient check of the tiny WaveNet: XLA:CPU runs
a batched kernel as a slow grouped convolution), and no convolution inside the ``lax.scan`` of
sampling or of a training epoch (see :mod:`jaxnets.train.step`).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["CausalConv1D", "causal_conv_reference", "receptive_field"]


def _check_kernel_and_dilations(kernel_size: int, dilations: Sequence[int]) -> None:
    if int(kernel_size) < 1:
        raise ValueError(f"kernel_size must be >= 1 (taps per filter); got {kernel_size}")
    bad = [d for d in dilations if int(d) < 1]
    if bad:
        raise ValueError(f"every dilation must be >= 1 (1 = an undilated conv); got {bad}")


def receptive_field(kernel_size: int, dilations: Sequence[int]) -> int:
    """Input steps that one output of a stack of causal convolutions sees: ``1 + sum (k-1) d``.

    Args:
      kernel_size: taps per filter ``k``, the same in every layer.
      dilations: one dilation per layer, e.g. ``(1, 2, 4, 8)`` -> 16 for ``k = 2``.
    Returns:
      the number of input steps ``t - r + 1, ..., t`` that output ``t`` depends on.
    """
    _check_kernel_and_dilations(kernel_size, dilations)
    return 1 + sum((int(kernel_size) - 1) * int(d) for d in dilations)


class CausalConv1D(nn.Module):
    """Dilated causal 1-D convolution (left zero padding of ``(kernel_size - 1) * dilation``).

    Fields: ``features`` (output channels), ``kernel_size``, ``dilation``, ``use_bias``,
    ``kernel_init``, ``bias_init``. Parameters: ``kernel`` (kernel_size, in_channels, features),
    like ``flax.linen.Conv``'s, and ``bias`` (features,).

    Call: x (batch, time, channels) -> (batch, time, features); output ``t`` depends on inputs
    ``t - (kernel_size - 1) * dilation, ..., t`` only.
    """

    features: int
    kernel_size: int = 2
    dilation: int = 1
    use_bias: bool = True
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 3:
            raise ValueError(
                f"CausalConv1D expects x of shape (batch, time, channels); got shape {x.shape}"
            )
        _check_kernel_and_dilations(self.kernel_size, (self.dilation,))
        kernel = self.param(
            "kernel", self.kernel_init, (self.kernel_size, x.shape[-1], self.features)
        )
        x, kernel = jnp.asarray(x), jnp.asarray(kernel)
        dtype = jnp.result_type(x, kernel)
        left, time = (self.kernel_size - 1) * self.dilation, x.shape[1]
        padded = jnp.pad(x.astype(dtype), ((0, 0), (left, 0), (0, 0)))
        taps_BTKC = jnp.stack(
            [
                padded[:, j * self.dilation : j * self.dilation + time]
                for j in range(self.kernel_size)
            ],
            axis=2,
        )
        y = jnp.einsum("btkc,kcf->btf", taps_BTKC, kernel.astype(dtype))
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,)).astype(dtype)
        return y


def causal_conv_reference(
    x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None = None, dilation: int = 1
) -> np.ndarray:
    """The module docstring's equation as a numpy loop (slow; for tests).

    x: (batch, time, channels); kernel: (kernel_size, channels, features); bias: (features,)
    or None -> (batch, time, features) float64.
    """
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    batch, time, _ = x.shape
    size, _, features = kernel.shape
    y = np.zeros((batch, time, features)) + (0.0 if bias is None else np.asarray(bias))
    for t in range(time):
        for j in range(size):
            source = t - (size - 1 - j) * dilation
            if source >= 0:
                y[:, t] += x[:, source] @ kernel[j]
    return y

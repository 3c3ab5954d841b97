"""oneDNN kernels for the CPU, called from jitted programs through ``jax.ffi`` (issue 20).

* :mod:`jaxnets.native.library`: build (``python -m jaxnets.native build``), load, switch off
  (``JAXNETS_NATIVE=0``, :func:`pure_jax`);
* :mod:`jaxnets.native.conv`: :func:`conv_general_dilated`, a drop-in for
  ``jax.lax.conv_general_dilated`` that flax's ``nn.Conv`` takes as its ``conv_general_dilated``
  field; 2-D float32 channels-last convolutions run on oneDNN, the rest on XLA;
* :mod:`jaxnets.native.lstm`: :func:`lstm_layer`, one LSTM layer over a whole sequence on
  oneDNN's LSTM primitive, which :class:`jaxnets.nn.recurrent.Recurrent` takes for a float32
  ``LSTMCell`` without per-sequence lengths.

The kernels are an accelerator, never a requirement: where the library is not built, or on a
GPU, or in float64 (gradcheck), the pure JAX path runs, and the tests check that both paths agree
to float32 rounding.
"""

from jaxnets.native.conv import conv_general_dilated
from jaxnets.native.library import BuildError, build, enabled, pure_jax, status
from jaxnets.native.lstm import lstm_layer

__all__ = [
    "BuildError",
    "build",
    "conv_general_dilated",
    "enabled",
    "lstm_layer",
    "pure_jax",
    "status",
]

"""WaveNet: an autoregressive model of mu-law audio built from dilated causal convolutions.

Lecture: seed 004, Lecture 15 "Autoregressive and Reversible Models" (line 3300), §2:
the likelihood of a sequence factorises into next-sample predictions (Eq. 11), each a softmax
over the sample's discrete values; causal convolution (line 3422) makes every prediction depend
on earlier samples only while all time steps train in one parallel pass; dilation (line 3433,
Figure 4) doubles the spacing of the taps layer by layer, so the receptive field grows
exponentially with depth; generation is slow, one sample at a time fed back in.

Architecture (van den Oord et al. 2016, "WaveNet: a generative model for raw audio", §2):
one-hot codes -> 1x1 embedding -> per layer l with dilation d_l a gated unit
``z = tanh(W_f * x) ⊙ σ(W_g * x)`` (``*`` a causal convolution), a 1x1 residual connection
``x <- x + V_r z`` and a 1x1 skip connection ``s <- s + V_s z`` -> ReLU -> 1x1 -> ReLU -> 1x1
-> logits over the ``channels`` codes.

Time convention: ``logits[:, t]`` is the prediction of ``codes[:, t + 1]`` from ``codes[:, :t+1]``
(samples 0..t, the current one included; every causal convolution zero-pads before step 0). So
a clip ``c`` trains on inputs ``c[:, :-1]`` and targets ``c[:, 1:]`` with
``sequence_cross_entropy``, and the first layer being causal is what keeps step t + 1 out.
Output ``t`` depends on exactly the inputs ``t - r + 1, ..., t`` with
``r = 1 + sum_l (kernel_size - 1) d_l`` (:attr:`WaveNet.receptive_field`).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.models.cards import token_inputs
from jaxnets.nn.causal import CausalConv1D, receptive_field
from jaxnets.registry import register_model
from jaxnets.validation import check_sampling

__all__ = ["WaveNet", "generate", "measured_receptive_field"]


class WaveNet(nn.Module):
    """Stacked dilated causal convolutions with gated units, residual and skip connections.

    Fields: ``channels`` (quantisation levels: input codes and output classes),
    ``residual_channels`` (width of the residual stream and of the gated units),
    ``skip_channels`` (width of the skip sum and of the output head), ``kernel_size`` (taps per
    dilated convolution), ``dilations`` (one per layer, e.g. ``(1, 2, 4, 8) * 2``: two blocks).

    Call: codes (batch, time) int in [0, channels) -> logits (batch, time, channels) float,
    where ``logits[:, t]`` predicts ``codes[:, t + 1]`` from ``codes[:, :t+1]`` (module
    docstring). :meth:`logits_from_one_hot` is the same map on a float one-hot (or any real)
    input (batch, time, channels), for Jacobians.
    """

    channels: int = 256
    residual_channels: int = 32
    skip_channels: int = 64
    kernel_size: int = 2
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128) * 2

    @property
    def receptive_field(self) -> int:
        """Input samples each prediction sees: ``1 + sum (kernel_size - 1) d`` over dilations."""
        return receptive_field(self.kernel_size, self.dilations)

    def setup(self):
        if not self.dilations:
            raise ValueError("WaveNet needs at least one dilated layer; got dilations=()")
        self.embed = nn.Dense(self.residual_channels)
        # filter and gate convolutions of a layer as one conv with 2R outputs, split in two
        self.dilated = [
            CausalConv1D(2 * self.residual_channels, self.kernel_size, d) for d in self.dilations
        ]
        # the last layer's residual output would feed nothing: it has only a skip connection
        self.residual = [nn.Dense(self.residual_channels) for _ in self.dilations[:-1]]
        self.skip = [nn.Dense(self.skip_channels) for _ in self.dilations]
        # Where every skip unit is negative, relu(skips) is the zero vector; a zero bias would
        # then leave every unit below exactly on ReLU's kink (no derivative), so it is random.
        self.head_hidden = nn.Dense(self.skip_channels, bias_init=nn.initializers.normal(0.01))
        self.head_output = nn.Dense(self.channels)

    def logits_from_one_hot(self, one_hot: jax.Array) -> jax.Array:
        """one_hot: (batch, time, channels) float -> logits (batch, time, channels).

        ``logits[:, t]`` depends on ``one_hot[:, t - receptive_field + 1 : t + 1]`` only.
        """
        if one_hot.ndim != 3 or one_hot.shape[-1] != self.channels:
            raise ValueError(
                f"WaveNet expects a one-hot input of shape (batch, time, {self.channels}); "
                f"got shape {one_hot.shape}"
            )
        x = self.embed(one_hot)
        skips = 0.0
        for i, conv in enumerate(self.dilated):
            filters, gates = jnp.split(conv(x), 2, axis=-1)
            z = jnp.tanh(filters) * nn.sigmoid(gates)
            skips = skips + self.skip[i](z)
            if i < len(self.residual):
                x = x + self.residual[i](z)
        return self.head_output(nn.relu(self.head_hidden(nn.relu(skips))))

    def __call__(self, codes: jax.Array, *, train: bool = False) -> jax.Array:
        """codes: (batch, time) int in [0, channels) -> logits (batch, time, channels).

        ``train`` is accepted for the common interface (no dropout or batch norm). Codes outside
        ``[0, channels)`` cannot be checked under ``jit``: they would read as all-zero inputs.
        """
        del train
        if codes.ndim != 2 or not jnp.issubdtype(codes.dtype, jnp.integer):
            raise ValueError(
                "WaveNet expects integer codes of shape (batch, time); got shape "
                f"{codes.shape} and dtype {codes.dtype}"
            )
        return self.logits_from_one_hot(jax.nn.one_hot(codes, self.channels))


@functools.partial(jax.jit, static_argnames=("model", "window", "length"))
def _generate(model, variables, rng, prompt, temperature, *, window, length):
    batch, prompt_length = prompt.shape
    total = prompt_length + length
    codes = jnp.concatenate([prompt, jnp.zeros((batch, length), jnp.int32)], axis=1)

    def step(codes, i):
        t = prompt_length - 1 + i  # logits at t predict the code at t + 1
        # The window ending at t holds everything output t sees; near the start it is the
        # first `window` codes (later, not yet generated ones are never seen by output t).
        start = jnp.clip(t - window + 1, 0, total - window)
        seen = jax.lax.dynamic_slice_in_dim(codes, start, window, axis=1)
        logits = model.apply(variables, seen)[:, t - start]
        key = jax.random.fold_in(rng, i)
        drawn = jax.random.categorical(key, logits / jnp.maximum(temperature, 1e-30))
        code = jnp.where(temperature > 0, drawn, jnp.argmax(logits, axis=-1)).astype(jnp.int32)
        return jax.lax.dynamic_update_slice_in_dim(codes, code[:, None], t + 1, axis=1), None

    codes, _ = jax.lax.scan(step, codes, jnp.arange(length))
    return codes[:, prompt_length:]


def generate(
    model: WaveNet,
    variables,
    rng: jax.Array,
    prompt: jax.Array,
    length: int,
    temperature: float = 1.0,
) -> jax.Array:
    """Sample ``length`` codes after ``prompt``, one at a time, each fed back in.

    Each new code is drawn from ``softmax(logits / temperature)`` at the previous position;
    ``temperature == 0`` takes the argmax (greedy). Every step recomputes the causal stack over
    the last ``receptive_field`` codes (a ``lax.scan`` over time, one compile per shape): exact,
    since output t sees nothing older, but no activations are cached between steps.

    Args:
      model: a :class:`WaveNet`; variables: its variables (``{"params": ...}``).
      rng: PRNG key (the same key gives the same codes).
      prompt: (batch, P) int codes, P >= 1, that the samples continue (e.g. ``channels // 2``,
        silence, for an unconditional start).
      length: number of codes to generate, >= 0; temperature: >= 0.
    Returns:
      (batch, length) int32 codes in [0, channels).
    """
    check_sampling(prompt, model.channels, length, temperature, what="codes")
    prompt = jnp.asarray(prompt)
    if prompt.ndim != 2 or prompt.shape[1] < 1 or not jnp.issubdtype(prompt.dtype, jnp.integer):
        raise ValueError(
            f"prompt must be integer codes of shape (batch, P) with P >= 1; got shape "
            f"{prompt.shape} and dtype {prompt.dtype}"
        )
    if length == 0:  # XLA:CPU (jax 0.10) aborts compiling the scan below with zero steps
        return jnp.zeros((prompt.shape[0], 0), jnp.int32)
    window = min(model.receptive_field, prompt.shape[1] + length)
    return _generate(
        model,
        variables,
        rng,
        prompt.astype(jnp.int32),
        jnp.asarray(temperature, jnp.float32),
        window=window,
        length=length,
    )


def measured_receptive_field(model: WaveNet, variables, codes: jax.Array) -> int:
    """The receptive field read off the gradient's support, to compare with the formula.

    Takes the last position ``t = time - 1`` of ``codes`` (time,) int and the gradient of
    ``v · logits[t]`` (v a fixed random vector, so no logit is left out) with respect to the
    one-hot input; returns ``t - s + 1`` for the earliest step ``s`` with a nonzero gradient.
    It cannot exceed ``time``: give ``time > model.receptive_field`` to measure the whole field.
    """
    codes = np.asarray(codes)
    if codes.ndim != 1:
        raise ValueError(f"codes must be one sequence of shape (time,); got shape {codes.shape}")
    direction = np.random.default_rng(0).standard_normal(model.channels).astype(np.float32)

    @jax.jit
    def gradient(variables, codes):
        def last_projected(one_hot):
            logits = model.apply(variables, one_hot, method=WaveNet.logits_from_one_hot)
            return logits[0, -1] @ direction

        return jax.grad(last_projected)(jax.nn.one_hot(codes[None], model.channels))[0]

    (seen,) = np.nonzero(np.any(np.asarray(gradient(variables, codes)) != 0, axis=-1))
    return int(len(codes) - seen[0]) if seen.size else 0


register_model(
    "wavenet",
    WaveNet,
    family="autoregressive",
    lecture="004 Lecture 15 §2 causal (line 3422) and dilated convolution, WaveNet (line 3433)",
    reference="van den Oord et al. 2016, WaveNet: a generative model for raw audio",
    task="classification",
    # vocab: the tiny config's channels, so that example inputs are valid codes
    **token_inputs(1024, vocab=8),
    loss="sequence_cross_entropy",
    test_config={"channels": 8, "residual_channels": 4, "skip_channels": 4, "dilations": (1, 2)},
    test_input_shape=(8,),
    description="dilated causal conv stack, gated units, residual + skip, 256-way mu-law softmax",
)

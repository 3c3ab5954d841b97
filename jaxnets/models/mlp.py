"""Multilayer perceptrons: the MLP with every hidden unit of the zoo, XOR (the hand-set nets
and the ``xor_mlp`` preset that ``experiments/xor.py`` trains from many seeds), residual /
highway / densely connected MLPs, and the NeRF-style coordinate MLP.

Lectures:
  * seed 004 §3 "Multilayer perceptrons" (line 971): h^(l) = phi^(l)(W^(l) h^(l-1) + b^(l)),
    layers may use different activations; XOR with binary-threshold units.
  * seed 002 "Back to XOR" (line 347, weights at line 525): W = [[1,1],[1,1]], c = [0,-1],
    w = [1,-2], b = 0 with ReLU hidden units; "Output Units" (line 688: linear, sigmoid,
    softmax); "Hidden Units" (line 848-1160, see :mod:`jaxnets.nn.activations`).
  * seed 000 "Multilayer Perceptrons" (line 220): XOR from hard thresholds, h1 = OR, h2 = AND.
  * seed 001 "Other network connectivity" (line 557): residual, highway and dense connections;
    "Modern MLP in NeRF" (line 612): positional encoding + MLP.

Flax ``Dense`` kernels are ``(in, out)``, so a layer computes ``x @ W + b = W^T x + b``: the
convention of seed 002, whose hand-set W is used as the kernel unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnets.checks import check_choice
from jaxnets.nn.activations import ACTIVATIONS, get_activation, make_activation, make_layer
from jaxnets.registry import register_model

__all__ = [
    "CONNECTIVITIES",
    "HEADS",
    "MLP",
    "DeepMLP",
    "NeRFMLP",
    "positional_encoding",
    "predict",
    "xor_data",
    "xor_handset",
]

HEADS = ("softmax", "sigmoid", "linear")
CONNECTIVITIES = ("plain", "residual", "highway", "dense")


def predict(outputs: jax.Array, head: str) -> jax.Array:
    """Turn raw model outputs (logits) into predictions for the output unit ``head``.

    ``"softmax"``: class probabilities over the last axis; ``"sigmoid"``: probability of
    class 1 for a binary logit; ``"linear"``: the outputs themselves (regression).
    outputs: (..., num_outputs) -> same shape.
    """
    if head == "softmax":
        return jax.nn.softmax(outputs, axis=-1)
    if head == "sigmoid":
        return jax.nn.sigmoid(outputs)
    if head == "linear":
        return outputs
    raise ValueError(f"unknown output head {head!r}; choose one of {', '.join(HEADS)}")


class MLP(nn.Module):
    """A multilayer perceptron: ``len(hidden)`` hidden layers, then an affine output layer.

    ``x: (batch, in) -> (batch, num_outputs)`` raw outputs (logits for classifiers): the
    output nonlinearity of ``output`` is applied by the loss (from logits, stably) or by
    :func:`predict`, never here.

    Attributes:
      hidden: widths of the hidden layers.
      num_outputs: output units (classes, 1 for a binary logit or a scalar regression).
      activation: hidden-unit name from :data:`jaxnets.nn.activations.ACTIVATIONS`.
        ``"maxout"`` and ``"rbf"`` make each hidden layer a maxout / RBF layer.
      activation_options: ``(("negative_slope", 0.2),)``-style pairs passed to the
        activation (a tuple, so the module stays hashable).
      maxout_pieces: linear pieces per maxout unit.
      dropout_rate: dropout after every hidden layer while training (rng stream 'dropout').
      output: how outputs are read: ``"softmax"``, ``"sigmoid"`` or ``"linear"``.
      output_activation: phi of the output layer (seed 004 eq. 1). Keep ``"identity"`` for
        training; the hand-set hard-threshold XOR net uses ``"hard_threshold"``.
    """

    hidden: Sequence[int] = (128,)
    num_outputs: int = 10
    activation: str = "relu"
    activation_options: tuple[tuple[str, Any], ...] = ()
    maxout_pieces: int = 2
    dropout_rate: float = 0.0
    output: str = "softmax"
    output_activation: str = "identity"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_choice("output", self.output, HEADS)
        kind = get_activation(self.activation).kind
        options = dict(self.activation_options)
        if self.activation == "maxout":
            options.setdefault("pieces", self.maxout_pieces)
        h = x
        for i, width in enumerate(self.hidden):
            if kind == "layer":
                h = make_layer(self.activation, width, module_name=f"hidden_{i}", **options)(h)
            else:
                h = nn.Dense(width, name=f"hidden_{i}")(h)
                h = make_activation(self.activation, module_name=f"act_{i}", **options)(h, train)
            h = nn.Dropout(self.dropout_rate)(h, deterministic=not train)
        z = nn.Dense(self.num_outputs, name="out")(h)
        return make_activation(self.output_activation, module_name="out_act")(z, train)


class DeepMLP(nn.Module):
    """A deep MLP of equal-width layers with plain, residual, highway or dense connectivity.

    An input projection ``h_0 = g(W_in x)`` is followed by ``depth`` layers ``f_l(h) =
    g(W_l h + b_l)`` combined according to ``connectivity`` (seed 001 line 557):

    * ``"plain"``: h_l = f_l(h_{l-1}) (information must pass through every layer);
    * ``"residual"`` (He et al., 2016): h_l = h_{l-1} + f_l(h_{l-1});
    * ``"highway"`` (Srivastava et al., 2015): T = sigmoid(W_T h + b_T), h_l = f_l(h) T + h (1 - T),
      with b_T = ``gate_bias`` < 0 so the gates start mostly carrying h through;
    * ``"dense"`` (Huang et al., 2017): layer l sees the concatenation [h_0, ..., h_{l-1}],
      input width l*width for layer index l-1; the output layer sees all of them.

    ``x: (batch, in) -> (batch, num_outputs)`` raw outputs.

    Attributes:
      width: units per layer (the growth rate for dense connectivity).
      depth: number of layers after the input projection.
      connectivity: one of ``CONNECTIVITIES``.
      activation: elementwise or module activation name (maxout/rbf are not supported here).
      gate_bias: initial highway gate bias.
      output: how outputs are read (see :class:`MLP`).
    """

    width: int = 64
    depth: int = 8
    num_outputs: int = 10
    connectivity: str = "residual"
    activation: str = "relu"
    gate_bias: float = -2.0
    output: str = "softmax"
    ZERO_OK = ("depth",)  # the input projection alone is a one-hidden-layer MLP

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_choice("connectivity", self.connectivity, CONNECTIVITIES)
        check_choice("output", self.output, HEADS)

        def layer(h: jax.Array, name: str) -> jax.Array:
            z = nn.Dense(self.width, name=name)(h)
            return make_activation(self.activation, module_name=f"{name}_act")(z, train)

        h = layer(x, "in_proj")
        features = [h]
        for i in range(self.depth):
            if self.connectivity == "dense":
                features.append(layer(jnp.concatenate(features, axis=-1), f"layer_{i}"))
                continue
            f = layer(h, f"layer_{i}")
            if self.connectivity == "plain":
                h = f
            elif self.connectivity == "residual":
                h = h + f
            else:
                gate = nn.Dense(
                    self.width, bias_init=nn.initializers.constant(self.gate_bias), name=f"gate_{i}"
                )
                t = jax.nn.sigmoid(gate(h))
                h = f * t + h * (1.0 - t)
        if self.connectivity == "dense":
            h = jnp.concatenate(features, axis=-1)
        return nn.Dense(self.num_outputs, name="out")(h)


def positional_encoding(x: jax.Array, num_freqs: int) -> jax.Array:
    """NeRF positional encoding gamma(p) = (sin(2^k pi p), cos(2^k pi p)), k = 0..L-1.

    Applied to every coordinate: ``x: (..., d) -> (..., 2 L d)``, laid out frequency-major
    as ``[sin(2^0 pi x), cos(2^0 pi x), sin(2^1 pi x), cos(2^1 pi x), ...]``, each block
    ``(..., d)``. High frequencies let a smooth MLP fit fine detail (Mildenhall et al., 2020).
    """
    if num_freqs < 1:
        raise ValueError(f"num_freqs must be >= 1; got {num_freqs}")
    freqs = jnp.pi * 2.0 ** jnp.arange(num_freqs, dtype=x.dtype)
    angles = x[..., None, :] * freqs[:, None]  # (..., L, d)
    encoded = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-2)  # (..., L, 2, d)
    return encoded.reshape(*x.shape[:-1], 2 * num_freqs * x.shape[-1])


class NeRFMLP(nn.Module):
    """NeRF-style coordinate MLP: positional encoding, ``depth`` layers, one input skip.

    ``x: (batch, d)`` coordinates -> ``(batch, num_outputs)`` (e.g. RGB of a 2-D image at
    pixel coordinates). Layer ``skip_at`` receives ``[h, gamma(x)]``: the encoded input is
    concatenated back in the middle, as NeRF does at its fifth layer's activation.

    Attributes:
      num_freqs: L, frequencies of the positional encoding.
      width, depth: units per layer, number of layers.
      skip_at: index (1..depth-1) of the layer whose input also gets gamma(x).
      num_outputs: output channels.
      activation: elementwise hidden activation.
      output: how outputs are read (``"linear"``: raw values fit with squared error).
    """

    num_freqs: int = 10
    width: int = 256
    depth: int = 8
    skip_at: int = 5
    num_outputs: int = 3
    activation: str = "relu"
    output: str = "linear"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if not 1 <= self.skip_at < self.depth:
            raise ValueError(f"skip_at must be in [1, depth={self.depth}); got {self.skip_at}")
        check_choice("output", self.output, HEADS)
        encoded = positional_encoding(x, self.num_freqs)
        h = encoded
        for i in range(self.depth):
            if i == self.skip_at:
                h = jnp.concatenate([h, encoded], axis=-1)
            z = nn.Dense(self.width, name=f"layer_{i}")(h)
            h = make_activation(self.activation, module_name=f"act_{i}")(z, train)
        return nn.Dense(self.num_outputs, name="out")(h)


# --- XOR ------------------------------------------------------------------------------


def xor_data(dtype=None) -> tuple[jax.Array, jax.Array]:
    """The design matrix X (4, 2) of seed 002 line 540 and the XOR targets t (4,).

    ``dtype`` defaults to JAX's default float (float64 under ``jax.enable_x64``).
    """
    dtype = dtype or jnp.result_type(float)
    x = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype)
    return x, jnp.array([0.0, 1.0, 1.0, 0.0], dtype)


def _dense(kernel, bias) -> dict[str, jax.Array]:
    dtype = jnp.result_type(float)  # the default float: float64 under jax.enable_x64
    return {"kernel": jnp.asarray(kernel, dtype), "bias": jnp.asarray(bias, dtype)}


def xor_handset(kind: str = "relu") -> tuple[MLP, dict[str, Any]]:
    """The lectures' hand-set XOR nets as ``(model, variables)``; on :func:`xor_data`'s X
    ``model.apply(variables, X)`` is exactly ``[[0], [1], [1], [0]]``.

    * ``"relu"`` (seed 002 line 525): y = w^T max(0, W^T x + c) + b with W = [[1,1],[1,1]],
      c = [0,-1], w = [1,-2], b = 0; a linear output unit.
    * ``"hard_threshold"`` (seed 000 line 220): h1 = 1[x1 + x2 - 0.5 > 0] (OR),
      h2 = 1[x1 + x2 - 1.5 > 0] (AND), y = 1[h1 - h2 - 0.5 > 0] (OR and not AND).
    """
    if kind == "relu":
        model = MLP(hidden=(2,), num_outputs=1, activation="relu", output="linear")
        params = {"hidden_0": _dense([[1, 1], [1, 1]], [0, -1]), "out": _dense([[1], [-2]], [0])}
    elif kind == "hard_threshold":
        model = MLP(
            hidden=(2,),
            num_outputs=1,
            activation="hard_threshold",
            output="linear",
            output_activation="hard_threshold",
        )
        params = {
            "hidden_0": _dense([[1, 1], [1, 1]], [-0.5, -1.5]),
            "out": _dense([[1], [-1]], [-0.5]),
        }
    else:
        raise ValueError(f"unknown hand-set XOR net {kind!r}; choose 'relu' or 'hard_threshold'")
    return model, {"params": params}


# --- registry -------------------------------------------------------------------------

_TINY_MLP = {"hidden": (5,), "num_outputs": 3}
_DIGITS = {"hidden": (128,), "num_outputs": 10, "output": "softmax"}
# the card fields every 8x8-digits classifier of the family shares (tiny config: 4 features)
_DIGITS_CARD = {
    "family": "mlp",
    "task": "classification",
    "input_shape": (64,),
    "loss": "softmax_cross_entropy",
    "test_input_shape": (4,),
}
_XOR_DEFAULTS = {"hidden": (2,), "num_outputs": 1, "activation": "tanh", "output": "sigmoid"}
_ACT_REFERENCES = {
    "identity": "Goodfellow, Bengio & Courville, Deep Learning (2016) §6.3",
    "relu": "Nair & Hinton (2010); Glorot, Bordes & Bengio (2011)",
    "leaky_relu": "Maas, Hannun & Ng (2013)",
    "prelu": "He, Zhang, Ren & Sun (2015), Delving deep into rectifiers",
    "rrelu": "Xu, Wang, Chen & Li (2015), Empirical evaluation of rectified activations",
    "abs": "Jarrett, Kavukcuoglu, Ranzato & LeCun (2009)",
    "elu": "Clevert, Unterthiner & Hochreiter (2016)",
    "softplus": "Dugas, Bengio, Belisle, Nadeau & Garcia (2001)",
    "sigmoid": "Goodfellow, Bengio & Courville, Deep Learning (2016) §6.3.2",
    "tanh": "LeCun, Bottou, Orr & Mueller (1998), Efficient BackProp",
    "hard_tanh": "Collobert (2004)",
    "maxout": "Goodfellow, Warde-Farley, Mirza, Courville & Bengio (2013), Maxout networks",
    "rbf": "Broomhead & Lowe (1988), Radial basis functions",
}

register_model(
    "mlp",
    MLP,
    **_DIGITS_CARD,
    lecture="004 §3 Multilayer perceptrons (line 971); 002 output units (line 688)",
    reference="Rumelhart, Hinton & Williams (1986)",
    defaults={**_DIGITS, "activation": "relu"},
    test_config=_TINY_MLP,
    description="MLP for 8x8 digits: 64 -> 128 ReLU -> 10 softmax logits",
)

for _name, _spec in ACTIVATIONS.items():
    if not _spec.trainable:  # hard_threshold has zero gradient: nothing to train
        continue
    register_model(
        f"mlp_{_name}",
        functools.partial(MLP, activation=_name),
        **_DIGITS_CARD,
        lecture=_spec.lecture,
        reference=_ACT_REFERENCES[_name],
        defaults=_DIGITS,
        test_config=_TINY_MLP,
        description=f"digits MLP with {_name} hidden units: 64 -> 128 -> 10 softmax logits",
    )

register_model(
    "mlp_sigmoid_head",
    functools.partial(MLP, output="sigmoid"),
    family="mlp",
    lecture="002 output units: sigmoid (line 688); 004 §2.3 logistic regression (line 668)",
    reference="Goodfellow, Bengio & Courville, Deep Learning (2016) §6.2.2.2",
    task="binary",
    input_shape=(2,),
    loss="binary_cross_entropy",
    defaults={"hidden": (16,), "num_outputs": 1, "activation": "relu"},
    test_config={"hidden": (5,)},
    description="binary classifier on 2-D points: 2 -> 16 ReLU -> 1 logit (sigmoid head)",
)

register_model(
    "mlp_regression",
    functools.partial(MLP, output="linear"),
    family="mlp",
    lecture="002 output units: linear (line 690), universal approximation (line 1186)",
    reference="Cybenko (1989); Hornik, Stinchcombe & White (1989)",
    task="regression",
    input_shape=(1,),
    loss="squared_error",
    defaults={"hidden": (64,), "num_outputs": 1, "activation": "tanh"},
    test_config={"hidden": (5,), "num_outputs": 2},
    test_input_shape=(3,),
    description="1-D function fitting: 1 -> 64 tanh -> 1 linear output, squared error",
)

register_model(
    "xor_mlp",
    MLP,
    family="mlp",
    lecture="002 Back to XOR (line 347); 004 §3 XOR (line 971)",
    reference="Minsky & Papert (1969); Goodfellow, Bengio & Courville (2016) §6.1",
    task="binary",
    input_shape=(2,),
    loss="binary_cross_entropy",
    defaults=_XOR_DEFAULTS,
    description="learned XOR: 2 -> 2 tanh -> 1 logit; see train_xor_seeds",
)

_DEEP_REFERENCES = {
    "residual": "He, Zhang, Ren & Sun (2016), Deep residual learning",
    "highway": "Srivastava, Greff & Schmidhuber (2015), Highway networks",
    "dense": "Huang, Liu, van der Maaten & Weinberger (2017), Densely connected networks",
}
for _conn, _ref in _DEEP_REFERENCES.items():
    register_model(
        f"{_conn}_mlp",
        functools.partial(DeepMLP, connectivity=_conn),
        **_DIGITS_CARD,
        lecture="001 Other network connectivity (line 557)",
        reference=_ref,
        defaults={"width": 64, "depth": 8, "num_outputs": 10, "activation": "relu"},
        test_config={"width": 4, "depth": 2, "num_outputs": 3},
        description=f"digits MLP, 8 layers of 64 with {_conn} connections",
    )

register_model(
    "nerf_mlp",
    NeRFMLP,
    family="mlp",
    lecture="001 Modern MLP in NeRF (line 612): positional encoding + MLP",
    reference="Mildenhall et al. (2020), NeRF; Tancik et al. (2020), Fourier features",
    task="regression",
    input_shape=(2,),
    loss="squared_error",
    defaults={"num_freqs": 10, "width": 256, "depth": 8, "skip_at": 5, "num_outputs": 3},
    test_config={"num_freqs": 2, "width": 8, "depth": 3, "skip_at": 2},
    description="coordinate MLP: (x, y) -> gamma -> 8 x 256 ReLU (skip at 5) -> RGB",
)

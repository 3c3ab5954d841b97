"""Outputs of Lecture 15's generative and reversible family pinned to independent references.

Seed 004, Lecture 15 "Autoregressive and Reversible Models" (line 3300): causal and dilated
convolution (line 3422-3433, WaveNet), masked convolution (Figure 3 bottom, PixelCNN), the
reversible block (eq. 5-6, RevNet) and the change-of-variables likelihood of a flow (eq. 1,
NICE: Dinh, Krueger & Bengio 2014, §3.2-3.3).

Every expected value here is computed by a plain NumPy loop written from those equations, or by
scipy, from the module's own parameters read out of its variables; nothing calls jaxnets to
produce an expected value. All parameters are redrawn at random (nonzero biases and log-scales,
unmasked weights in the masked positions), so a term the code drops, a tap it shifts, a mask
entry it flips or a layer it skips changes the output. Float64 throughout, so the tolerance is
rounding (1e-10) and not a float32 allowance that could hide a small error.

Each model is compiled once (one jitted function per model returning every output checked).
"""

import functools

import jax
import numpy as np
import pytest
import scipy.stats

from jaxnets import create_model, model_card
from jaxnets.models.revnet import ConvResidual
from jaxnets.nn.causal import CausalConv1D
from jaxnets.nn.coupling import AdditiveCoupling, DiagonalScaling
from jaxnets.nn.masked import MaskedConv2D, causal_mask
from jaxnets.nn.reversible import ReversibleStack, reversible_stack_inverse

TOL = dict(rtol=1e-10, atol=1e-10)

# The elementwise units the tiny configs use, written out in NumPy.
NP_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "softplus": lambda z: np.logaddexp(0.0, z),
}


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ---------------------------------------------------------------------------------------------
# Setup shared by every test: random float64 parameters and one compile per module.


def _init_random(module, example, seed, scale=0.5):
    """Float64 variables shaped as ``module.init`` makes them, every leaf redrawn N(0, scale^2)
    (the initialisers leave biases and log-scales at 0, which would hide a missing term)."""
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), example)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: scale * rng.standard_normal(s.shape), shapes)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _apply(module, variables, x, method=None):
    """``module.apply`` jitted (eager flax would compile every primitive separately)."""
    return module.apply(variables, x, method=method)


def _np_params(variables):
    return jax.tree.map(np.asarray, variables["params"])


def _dense(p, h):
    """A Dense layer (flax: kernel (in, out), y = h W + b) over the last axis."""
    return h @ p["kernel"] + p["bias"]


# ---------------------------------------------------------------------------------------------
# NumPy references, each written once from the lecture's equations.


def np_causal_conv(x, kernel, bias, dilation):
    """Dilated causal convolution (lecture line 3422-3433): y[t] = b + sum_k w[k] x[t - d k].

    w[k] is the tap at lag d*k. The module stores its taps like ``flax.linen.Conv`` does, oldest
    first (``kernel[K - 1]`` multiplies the current step), so w[k] = kernel[K - 1 - k]. Inputs
    before t = 0 are zero (no history). x (B, T, C), kernel (K, C, F), bias (F,) or None.
    """
    batch, time, _ = x.shape
    size, _, features = kernel.shape
    y = np.zeros((batch, time, features))
    for t in range(time):
        for k in range(size):
            source = t - dilation * k
            if source < 0:
                continue  # zero history
            w = kernel[size - 1 - k]
            for b in range(batch):
                for f in range(features):
                    y[b, t, f] += sum(w[c, f] * x[b, source, c] for c in range(x.shape[2]))
    return y if bias is None else y + bias


def raster_before(di, dj, mask_type):
    """Whether input offset (di, dj) from the output pixel may feed it (PixelCNN, §3.5): any row
    above, or the same row to the left; the pixel itself only for type B."""
    if di != 0:
        return di < 0
    return dj < 0 or (dj == 0 and mask_type == "B")


def np_conv2d_same(x, kernel, bias, allowed=lambda di, dj: True):
    """A stride-1 'same' cross-correlation (flax.linen.Conv, odd kernels) as an explicit loop
    over output pixels, summing only the kernel taps whose offset ``allowed(di, dj)`` admits
    and reading zeros outside the image. x (B, H, W, C), kernel (kh, kw, C, M), bias (M,)."""
    batch, height, width, _ = x.shape
    kh, kw, _, out = kernel.shape
    y = np.zeros((batch, height, width, out))
    for r in range(height):
        for c in range(width):
            for i in range(kh):
                for j in range(kw):
                    di, dj = i - kh // 2, j - kw // 2
                    rr, cc = r + di, c + dj
                    if allowed(di, dj) and 0 <= rr < height and 0 <= cc < width:
                        y[:, r, c] += x[:, rr, cc] @ kernel[i, j]
    return y + bias


def np_masked_conv(x, p, mask_type):
    """Masked convolution: the 'same' loop restricted to the raster-order predecessors."""
    allowed = functools.partial(raster_before, mask_type=mask_type)
    return np_conv2d_same(x, p["kernel"], p["bias"], allowed)


def np_coupling_shift(p, x_kept, layers, activation):
    """NICE's coupling function m: ``layers`` hidden Dense layers with ``activation``, then an
    affine output layer."""
    h = x_kept
    for i in range(layers):
        h = NP_ACTIVATIONS[activation](_dense(p[f"hidden_layers_{i}"], h))
    return _dense(p["output_layer"], h)


def np_coupling(p, x, parity, layers, activation, inverse=False):
    """Additive coupling (NICE §3.2): y_I1 = x_I1, y_I2 = x_I2 + m(x_I1), with I1 the
    coordinates i of x with i % 2 == parity; the inverse subtracts m(y_I1). log|det| = 0."""
    kept = [i for i in range(x.shape[-1]) if i % 2 == parity]
    changed = [i for i in range(x.shape[-1]) if i % 2 != parity]
    shift = np_coupling_shift(p, x[:, kept], layers, activation)
    y = x.copy()
    y[:, changed] += -shift if inverse else shift
    return y


def np_nice_encode(p, x, num_coupling, layers, activation):
    """NICE's data-to-latent map: couplings of parity 0, 1, 0, ... then z = h * exp(s);
    log|det dz/dx| = sum(s) (the couplings add 0)."""
    h = x
    for i in range(num_coupling):
        h = np_coupling(p[f"couplings_{i}"], h, i % 2, layers, activation)
    s = p["scaling"]["log_scale"]
    return h * np.exp(s), np.full(len(x), np.sum(s))


def np_nice_decode(p, z, num_coupling, layers, activation):
    """The generator, eq. 7: undo the scaling, then each coupling, last to first."""
    h = z * np.exp(-p["scaling"]["log_scale"])
    for i in reversed(range(num_coupling)):
        h = np_coupling(p[f"couplings_{i}"], h, i % 2, layers, activation, inverse=True)
    return h


def np_conv_residual(p, x):
    """RevNet's residual function F or G: conv2(relu(conv1(x))), 3x3 'same'."""
    h = np.maximum(np_conv2d_same(x, p["conv1"]["kernel"], p["conv1"]["bias"]), 0.0)
    return np_conv2d_same(h, p["conv2"]["kernel"], p["conv2"]["bias"])


def np_reversible_stack(p_f, p_g, x1, x2, inverse=False):
    """Reversible blocks (eq. 5): y1 = x1 + F(x2), y2 = x2 + G(y1), block i using the i-th
    slice of the stacked parameters; inverse (eq. 6-7): x2 = y2 - G(y1), x1 = y1 - F(x2), last
    block first."""
    depth = len(jax.tree.leaves(p_f)[0])
    for i in reversed(range(depth)) if inverse else range(depth):
        f_i, g_i = (jax.tree.map(lambda a, i=i: a[i], p) for p in (p_f, p_g))
        if inverse:
            x2 = x2 - np_conv_residual(g_i, x1)
            x1 = x1 - np_conv_residual(f_i, x2)
        else:
            x1 = x1 + np_conv_residual(f_i, x2)
            x2 = x2 + np_conv_residual(g_i, x1)
    return x1, x2


def np_wavenet(p, one_hot, dilations):
    """WaveNet (van den Oord et al. 2016, §2.3-2.4): 1x1 embedding; per layer l a gated unit
    z = tanh(W_f * x) ⊙ σ(W_g * x) (* the dilated causal convolution; filter and gate are the
    two halves of one conv's outputs), skip s += V_s z, residual x += V_r z (the last layer has
    no residual output); logits = 1x1(relu(1x1(relu(s))))."""
    x = _dense(p["embed"], one_hot)
    skips = 0.0
    for i, d in enumerate(dilations):
        conv = np_causal_conv(x, p[f"dilated_{i}"]["kernel"], p[f"dilated_{i}"]["bias"], d)
        filters, gates = np.split(conv, 2, axis=-1)
        z = np.tanh(filters) * _sigmoid(gates)
        skips = skips + _dense(p[f"skip_{i}"], z)
        if i < len(dilations) - 1:
            x = x + _dense(p[f"residual_{i}"], z)
    hidden = np.maximum(_dense(p["head_hidden"], np.maximum(skips, 0.0)), 0.0)
    return _dense(p["head_output"], hidden)


def np_pixelcnn(p, x, layers, activation):
    """PixelCNN (van den Oord et al. 2016, §3.5, Figure 5): type-A masked conv; per block
    h += 1x1(phi(MaskedConv_B(phi(h)))); logits = 1x1(phi(1x1(phi(h))))."""
    phi = NP_ACTIVATIONS[activation]
    h = np_masked_conv(x, p["input_A"], "A")
    for i in range(layers):
        r = np_masked_conv(phi(h), p[f"block{i}_B"], "B")
        h = h + _dense(p[f"block{i}_1x1"], phi(r))
    return _dense(p["output"], phi(_dense(p["head_1x1"], phi(h))))


# ---------------------------------------------------------------------------------------------
# Building blocks.


@pytest.mark.parametrize(
    "kernel_size, dilation, use_bias",
    [(1, 1, True), (2, 1, True), (2, 4, False), (3, 2, True), (3, 5, True)],
)
def test_causal_conv_is_the_sum_of_dilated_past_taps(kernel_size, dilation, use_bias):
    """y[t] = b + sum_k w[k] x[t - d k], zero before t = 0, for 3 input and 2 output channels;
    (3, 5) reaches past the 7-step input at every step t < 10 (the zero history)."""
    with jax.enable_x64(True):
        layer = CausalConv1D(2, kernel_size, dilation, use_bias=use_bias)
        x = np.random.default_rng(1).standard_normal((2, 7, 3))
        variables = _init_random(layer, x, seed=kernel_size * 10 + dilation)
        p = _np_params(variables)
        expected = np_causal_conv(x, p["kernel"], p.get("bias"), dilation)
        np.testing.assert_allclose(_apply(layer, variables, x), expected, **TOL)


@pytest.mark.parametrize("size", [(3, 3), (5, 5), (3, 5)])
@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_causal_mask_keeps_exactly_the_raster_order_predecessors(size, mask_type):
    """The mask is 1 at offset (di, dj) from the centre iff that input pixel comes before the
    output pixel in raster order (type B: or is it), for every channel pair."""
    kh, kw = size
    expected = np.array(
        [[raster_before(i - kh // 2, j - kw // 2, mask_type) for j in range(kw)] for i in range(kh)]
    )
    mask = causal_mask(size, 2, 3, mask_type)
    assert mask.shape == (kh, kw, 2, 3)
    np.testing.assert_array_equal(mask, np.broadcast_to(expected[..., None, None], mask.shape))
    # the centre is the one entry that tells the types apart, and the count is what raster
    # order gives: every row above plus the left half of the centre row (plus the centre for B)
    assert mask[kh // 2, kw // 2, 0, 0] == (mask_type == "B")
    assert mask[..., 0, 0].sum() == kh // 2 * kw + kw // 2 + (mask_type == "B")


@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_conv_sums_only_raster_order_predecessors(mask_type, kernel_size):
    """Each output pixel is a loop over the allowed taps only, with the layer's unmasked kernel
    (random, so a masked weight that leaked in would change the value), on a 5x6 image, 2 -> 3
    channels, zeros outside the image."""
    with jax.enable_x64(True):
        layer = MaskedConv2D(3, kernel_size, mask_type)
        x = np.random.default_rng(2).standard_normal((2, 5, 6, 2))
        variables = _init_random(layer, x, seed=kernel_size)
        expected = np_masked_conv(x, _np_params(variables), mask_type)
        np.testing.assert_allclose(_apply(layer, variables, x), expected, **TOL)


@pytest.mark.parametrize("parity", [0, 1])
def test_additive_coupling_forward_inverse_and_zero_log_det(parity):
    """NICE §3.2 on 5 coordinates (kept 3 and changed 2, or 2 and 3): y_I2 = x_I2 + m(x_I1)
    with a 2-hidden-layer tanh MLP m; the inverse subtracts m(y_I1); log|det| = 0."""
    with jax.enable_x64(True):
        layer = AdditiveCoupling(5, hidden=3, layers=2, parity=parity, activation="tanh")
        x = np.random.default_rng(3).standard_normal((4, 5))
        variables = _init_random(layer, x, seed=3 + parity)
        p = _np_params(variables)
        y, log_det = _apply(layer, variables, x)
        expected_y = np_coupling(p, x, parity, 2, "tanh")
        np.testing.assert_allclose(y, expected_y, **TOL)
        np.testing.assert_array_equal(log_det, np.zeros(4))
        x_back = _apply(layer, variables, expected_y, "inverse")
        np.testing.assert_allclose(x_back, np_coupling(p, expected_y, parity, 2, "tanh", True))
        np.testing.assert_allclose(x_back, x, **TOL)


def test_diagonal_scaling_forward_inverse_and_log_det_is_sum_of_log_scales():
    """NICE §3.3: z = x ⊙ exp(s), log|det| = Σ s_i (also = log|det diag(exp(s))|), x = z ⊙
    exp(-s)."""
    with jax.enable_x64(True):
        layer = DiagonalScaling(4)
        x = np.random.default_rng(4).standard_normal((3, 4))
        variables = _init_random(layer, x, seed=4)
        s = _np_params(variables)["log_scale"]
        z, log_det = _apply(layer, variables, x)
        np.testing.assert_allclose(z, x * np.exp(s), **TOL)
        _, logabsdet = np.linalg.slogdet(np.diag(np.exp(s)))
        np.testing.assert_allclose(log_det, np.full(3, logabsdet), **TOL)
        np.testing.assert_allclose(_apply(layer, variables, z, "inverse"), x, **TOL)


# ---------------------------------------------------------------------------------------------
# Models (the registered tiny configs).


def _tiny(name, **overrides):
    card = model_card(name)
    return create_model(name, **{**card.test_config, **overrides}), card


@pytest.mark.parametrize("prior", ["logistic", "gaussian"])
def test_nice_log_likelihood_is_prior_of_encoding_plus_log_det(prior):
    """Eq. 1 with the paper's scaling layer: log p(x) = Σ_d log p_Z(z_d) + Σ_i s_i, z the NumPy
    encoding; the prior's density from scipy (standard logistic or normal). decode inverts the
    NumPy encoding (eq. 7)."""
    with jax.enable_x64(True):
        model, card = _tiny("nice", prior=prior)
        x = 1.5 * np.random.default_rng(5).standard_normal((6, *card.tiny_input_shape))
        variables = _init_random(model, x, seed=5)
        p = _np_params(variables)
        config = (model.num_coupling, model.layers, model.activation)
        z, log_det = np_nice_encode(p, x, *config)
        density = scipy.stats.logistic if prior == "logistic" else scipy.stats.norm
        expected = density.logpdf(z).sum(axis=-1) + log_det

        @jax.jit
        def outputs(variables, x, z):
            encoded = model.apply(variables, x, method="encode")
            return model.apply(variables, x), encoded, model.apply(variables, z, method="decode")

        log_p, (z_model, log_det_model), x_back = outputs(variables, x, z)
        np.testing.assert_allclose(z_model, z, **TOL)
        np.testing.assert_allclose(log_det_model, log_det, **TOL)
        np.testing.assert_allclose(log_p, expected, **TOL)
        np.testing.assert_allclose(x_back, np_nice_decode(p, z, *config), **TOL)
        np.testing.assert_allclose(x_back, x, **TOL)


def test_reversible_stack_forward_and_inverse_follow_eq_5_and_6():
    """Two blocks of ConvResidual F and G on 2-map halves: the module's output equals the NumPy
    eq. 5 chain, and ``reversible_stack_inverse`` equals the NumPy eq. 6 chain (and returns the
    input)."""
    with jax.enable_x64(True):
        residual = functools.partial(ConvResidual, features=2)
        stack = ReversibleStack(residual, depth=2)
        x1, x2 = np.random.default_rng(6).standard_normal((2, 2, 4, 5, 2))
        shapes = jax.eval_shape(stack.init, jax.random.PRNGKey(0), x1, x2)
        rng = np.random.default_rng(6)
        variables = jax.tree.map(lambda s: 0.5 * rng.standard_normal(s.shape), shapes)
        p = _np_params(variables)
        template = residual(parent=None)

        def f(params, h):
            return template.apply({"params": params}, h)

        @jax.jit
        def outputs(variables, x1, x2):
            y1, y2 = stack.apply(variables, x1, x2)
            params = variables["params"]
            return (y1, y2), reversible_stack_inverse(f, f, params["F"], params["G"], y1, y2)

        (y1, y2), (back1, back2) = outputs(variables, x1, x2)
        expected_y = np_reversible_stack(p["F"], p["G"], x1, x2)
        np.testing.assert_allclose(y1, expected_y[0], **TOL)
        np.testing.assert_allclose(y2, expected_y[1], **TOL)
        expected_x = np_reversible_stack(p["F"], p["G"], *map(np.asarray, (y1, y2)), inverse=True)
        for got, reference, original in zip((back1, back2), expected_x, (x1, x2), strict=True):
            np.testing.assert_allclose(got, reference, **TOL)
            np.testing.assert_allclose(got, original, **TOL)


def test_revnet_logits_equal_numpy_stem_blocks_pool_and_dense():
    """RevNet: 3x3 stem, split in halves, the eq. 5 blocks, concatenate, ReLU, global mean,
    Dense; the whole forward pass in NumPy from the model's parameters."""
    with jax.enable_x64(True):
        model, card = _tiny("revnet")
        x = np.random.default_rng(7).standard_normal((2, 5, 6, *card.tiny_input_shape[2:]))
        variables = _init_random(model, x, seed=7)
        p = _np_params(variables)
        h = np_conv2d_same(x, p["stem"]["kernel"], p["stem"]["bias"])
        h1, h2 = np_reversible_stack(p["blocks"]["F"], p["blocks"]["G"], *np.split(h, 2, -1))
        pooled = np.maximum(np.concatenate([h1, h2], axis=-1), 0.0).mean(axis=(1, 2))
        np.testing.assert_allclose(_apply(model, variables, x), _dense(p["output"], pooled), **TOL)


@pytest.mark.parametrize("overrides", [{}, {"kernel_size": 3, "dilations": (2, 1, 3)}])
def test_wavenet_logits_equal_numpy_gated_residual_stack(overrides):
    """The whole WaveNet forward pass in NumPy: embedding, gated dilated causal units, skip and
    residual 1x1s, ReLU head. The registered tiny config (k = 2, dilations 1, 2) and a k = 3
    stack of three layers; 13 steps exceed both receptive fields (4 and 13)."""
    with jax.enable_x64(True):
        model, _ = _tiny("wavenet", **overrides)
        codes = np.random.default_rng(8).integers(0, model.channels, (2, 13)).astype(np.int32)
        variables = _init_random(model, codes, seed=8)
        one_hot = np.eye(model.channels)[codes]
        expected = np_wavenet(_np_params(variables), one_hot, model.dilations)
        np.testing.assert_allclose(_apply(model, variables, codes), expected, **TOL)


def test_pixelcnn_logits_equal_numpy_masked_stack():
    """The tiny PixelCNN (3x3 type A, one residual block of a 3x3 type-B conv, softplus, 1x1
    head) in NumPy from the masked-convolution loop, on binary 5x6 images."""
    with jax.enable_x64(True):
        model, _ = _tiny("pixelcnn")
        x = (np.random.default_rng(9).random((2, 5, 6, 1)) < 0.5).astype(np.float64)
        variables = _init_random(model, x, seed=9)
        expected = np_pixelcnn(_np_params(variables), x, model.layers, model.activation)
        np.testing.assert_allclose(_apply(model, variables, x), expected, **TOL)

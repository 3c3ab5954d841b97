"""WaveNet (issue 7): causal dilated convolution, mu-law audio, the model, sampling, experiment.

Causality is asserted through the Jacobian of the logits with respect to the one-hot input:
``logits[t]`` has an exactly zero derivative with respect to every input at a time ``s > t``
(and ``s < t - r + 1``), and a nonzero one for every ``s`` in ``t - r + 1 .. t``, where ``r`` is
the receptive field formula ``1 + sum (k - 1) d`` (so the earliest input in the field counts).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import model_card
from jaxnets.data.audio import mu_law_decode, mu_law_encode, synthetic_audio
from jaxnets.models.wavenet import WaveNet, generate, measured_receptive_field
from jaxnets.nn.causal import CausalConv1D, causal_conv_reference, receptive_field

CHANNELS = 8


@functools.cache
def _tiny(kernel_size=2, dilations=(1, 2, 4)):
    """A tiny WaveNet and its variables (cached: each layout is initialised once).

    16 skip channels: with 4, all head units of a position are off (ReLU) with probability
    1/16, and that position's logits then depend on no input at all."""
    model = WaveNet(
        channels=CHANNELS,
        residual_channels=4,
        skip_channels=16,
        kernel_size=kernel_size,
        dilations=dilations,
    )
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))
    return model, variables


# -- CausalConv1D ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kernel_size, dilation", [(1, 1), (2, 1), (3, 2), (2, 5), (2, 12)]
)  # (2, 12): the older tap falls before the start of an 11-step signal everywhere
def test_causal_conv_equals_reference_loop(kernel_size, dilation):
    conv = CausalConv1D(features=4, kernel_size=kernel_size, dilation=dilation)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 11, 3))
    variables = jax.jit(conv.init)(jax.random.PRNGKey(2), x)
    params = variables["params"]
    params = {**params, "bias": jax.random.normal(jax.random.PRNGKey(3), (4,))}
    y = jax.jit(conv.apply)({"params": params}, x)
    assert y.shape == (2, 11, 4)
    expected = causal_conv_reference(x, params["kernel"], params["bias"], dilation)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_causal_conv_hand_computed():
    # kernel size 2, dilation 2: y[t] = 10 x[t] + 2 x[t - 2], with x[s] = 0 before the start
    conv = CausalConv1D(features=1, kernel_size=2, dilation=2, use_bias=False)
    x = jnp.arange(1.0, 7.0).reshape(1, 6, 1)
    kernel = jnp.array([2.0, 10.0]).reshape(2, 1, 1)
    y = conv.apply({"params": {"kernel": kernel}}, x)
    np.testing.assert_allclose(y[0, :, 0], [10, 20, 32, 44, 56, 68])


def test_receptive_field_formula_and_errors():
    assert receptive_field(2, (1, 2, 4, 8)) == 16
    assert receptive_field(3, (1, 2)) == 7
    assert receptive_field(2, (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)) == 1024  # lecture, line 3433
    assert receptive_field(1, (1, 4)) == 1
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        receptive_field(0, (1,))
    with pytest.raises(ValueError, match=r"every dilation must be >= 1 .* got \[0\]"):
        receptive_field(2, (1, 0))
    with pytest.raises(ValueError, match=r"\(batch, time, channels\); got shape \(5, 3\)"):
        CausalConv1D(2).init(jax.random.PRNGKey(0), jnp.zeros((5, 3)))


# -- causality and the receptive field, from the Jacobian ------------------------------------


@pytest.mark.parametrize("kernel_size, dilations", [(2, (1, 2, 4)), (3, (1, 2, 1))])
def test_logits_depend_on_exactly_the_receptive_field(kernel_size, dilations):
    model, variables = _tiny(kernel_size, dilations)
    time = 12
    codes = np.random.default_rng(4).integers(0, CHANNELS, time)

    def logits(one_hot_TC):
        return model.apply(variables, one_hot_TC[None], method=WaveNet.logits_from_one_hot)[0]

    jacobian = jax.jit(jax.jacrev(logits))(jax.nn.one_hot(codes, CHANNELS))  # (T, C, T, C)
    depends_TS = np.any(np.asarray(jacobian) != 0, axis=(1, 3))
    r = receptive_field(kernel_size, dilations)
    assert r == model.receptive_field
    t, s = np.indices((time, time))
    # logits[t] (the prediction of code t + 1) sees codes t - r + 1 .. t: never t + 1 or later,
    # and the earliest code of the field counts (a nonzero derivative)
    np.testing.assert_array_equal(depends_TS, (s <= t) & (s >= t - r + 1))
    measured = max(int(ti - np.flatnonzero(row)[0] + 1) for ti, row in enumerate(depends_TS))
    assert measured == r


def test_measured_receptive_field_helper():
    model, variables = _tiny()  # receptive field 1 + 1 + 2 + 4 = 8
    codes = np.random.default_rng(4).integers(0, CHANNELS, 12)
    assert measured_receptive_field(model, variables, codes) == 8


def test_model_rejects_float_or_flat_input():
    model, variables = _tiny()
    with pytest.raises(ValueError, match=r"integer codes of shape \(batch, time\)"):
        model.apply(variables, jnp.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"one-hot input of shape \(batch, time, 8\)"):
        model.apply(variables, jnp.zeros((2, 5, 3)), method=WaveNet.logits_from_one_hot)


def test_card():
    card = model_card("wavenet")
    assert card.input_dtype == "int32" and card.loss == "sequence_cross_entropy"
    assert card.input_range == card.test_config["channels"]


# -- mu-law ------------------------------------------------------------------------------------


def test_mu_law_known_values():
    # by hand: code = floor((ln(1 + 255|x|) / ln 256 * sign(x) + 1) / 2 * 255 + 0.5)
    np.testing.assert_array_equal(
        mu_law_encode([-1.0, -0.5, 0.0, 0.01, 0.5, 1.0]), [0, 16, 128, 157, 239, 255]
    )
    np.testing.assert_array_equal(mu_law_encode([-1.0, 0.0, 0.5, 1.0], channels=4), [0, 2, 2, 3])
    np.testing.assert_allclose(mu_law_decode(np.array([0, 255])), [-1.0, 1.0])
    # code 128 sits half a step above 0: (256^(1/255) - 1) / 255
    np.testing.assert_allclose(mu_law_decode(np.array([128])), [(256 ** (1 / 255) - 1) / 255])


def test_mu_law_round_trip_bound_and_range():
    mu = 255
    x = np.linspace(-1.0, 1.0, 20_001)
    codes = mu_law_encode(x)
    assert codes.dtype == np.int32 and set(np.unique(codes)) == set(range(256))
    assert np.all(np.diff(codes) >= 0)  # monotone
    error = np.abs(mu_law_decode(codes) - x)
    bound = (1 + mu) ** (1 / mu) * np.log1p(mu) / mu * (1 / mu + np.abs(x))
    assert np.all(error <= bound + 1e-6)
    assert np.max(error / bound) > 0.9  # the bound is nearly attained: it is the right one
    assert np.max(error[np.abs(x) < 1e-3]) < 1e-4  # quiet samples get fine steps
    # decoding then encoding gives every code back
    all_codes = np.arange(256)
    np.testing.assert_array_equal(mu_law_encode(mu_law_decode(all_codes)), all_codes)


def test_mu_law_errors_say_what_is_expected():
    with pytest.raises(ValueError, match="channels .* must be >= 2"):
        mu_law_encode([0.0], channels=1)
    with pytest.raises(ValueError, match=r"samples in \[-1, 1\]; got values in \[0, 1.5\]"):
        mu_law_encode([0.0, 1.5])
    with pytest.raises(ValueError, match=r"codes in \[0, 255\] .* got values in \[3, 256\]"):
        mu_law_decode(np.array([3, 256]))
    with pytest.raises(TypeError, match="integer codes"):
        mu_law_decode(np.array([0.5]))


# -- synthetic audio ---------------------------------------------------------------------------


def test_synthetic_audio_shapes_range_and_seed():
    clips = synthetic_audio(5, 300, seed=3)
    assert clips.waveforms.shape == clips.codes.shape == (5, 300)
    assert clips.waveforms.dtype == np.float32 and clips.codes.dtype == np.int32
    assert np.max(np.abs(clips.waveforms)) <= 1.0
    np.testing.assert_array_equal(clips.codes, mu_law_encode(clips.waveforms))
    np.testing.assert_array_equal(synthetic_audio(5, 300, seed=3).codes, clips.codes)
    assert not np.array_equal(synthetic_audio(5, 300, seed=4).codes, clips.codes)
    # clips differ from each other (random frequencies and phases per clip)
    assert np.min(np.std(clips.waveforms, axis=1)) > 0.05
    assert np.max(np.abs(np.corrcoef(clips.waveforms)[np.triu_indices(5, 1)])) < 0.9


def test_synthetic_audio_steady_tone_has_its_period():
    # one noiseless steady tone per clip: the spectrum peaks inside [1/max_period, 1/min_period]
    length = 4096
    clips = synthetic_audio(6, length, seed=0, max_tones=1, glide=1.0, noise=0.0)
    frequency = np.argmax(np.abs(np.fft.rfft(clips.waveforms, axis=1)), axis=1) / length
    assert np.all(frequency >= 1 / 64 - 1 / length) and np.all(frequency <= 1 / 8 + 1 / length)
    assert len(np.unique(frequency)) == 6
    np.testing.assert_allclose(
        np.sum(clips.waveforms**2, axis=1) / length * 2,
        np.max(np.abs(clips.waveforms), axis=1) ** 2,
        rtol=0.02,
    )  # a pure sine: mean square = amplitude² / 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"length": 0}, "length must be >= 1"),
        ({"num_clips": 0}, "num_clips must be >= 1"),
        ({"glide": 0.5}, "glide must be >= 1"),
        ({"min_period": 3.0}, r"need 2 \* glide < min_period <= max_period"),
        ({"noise": -0.1}, "noise is a standard deviation"),
        ({"channels": 1}, "channels .* must be >= 2"),
    ],
)
def test_synthetic_audio_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic_audio(**{"num_clips": 2, "length": 10, **kwargs})


# -- sampling ----------------------------------------------------------------------------------


def test_sampling_shapes_range_and_determinism():
    model, variables = _tiny()
    prompt = jnp.full((3, 2), CHANNELS // 2, jnp.int32)
    codes = generate(model, variables, jax.random.PRNGKey(5), prompt, 20)
    assert codes.shape == (3, 20) and codes.dtype == jnp.int32
    assert int(codes.min()) >= 0 and int(codes.max()) < CHANNELS
    np.testing.assert_array_equal(
        generate(model, variables, jax.random.PRNGKey(5), prompt, 20), codes
    )
    assert not np.array_equal(generate(model, variables, jax.random.PRNGKey(6), prompt, 20), codes)
    assert generate(model, variables, jax.random.PRNGKey(5), prompt, 0).shape == (3, 0)


@pytest.mark.parametrize("prompt_length", [1, 11])  # shorter and longer than the field (8)
def test_greedy_sampling_matches_the_full_forward_pass(prompt_length):
    model, variables = _tiny()
    prompt = jnp.asarray(np.random.default_rng(7).integers(0, CHANNELS, (2, prompt_length)))
    greedy = generate(model, variables, jax.random.PRNGKey(0), prompt, 17, temperature=0.0)
    # each generated code is the argmax of the whole sequence's logits one step earlier: the
    # sliding window of `receptive_field` codes changes nothing
    logits = jax.jit(model.apply)(variables, jnp.concatenate([prompt, greedy], axis=1))
    np.testing.assert_array_equal(jnp.argmax(logits[:, prompt_length - 1 : -1], -1), greedy)
    cold = generate(model, variables, jax.random.PRNGKey(9), prompt, 17, temperature=1e-6)
    np.testing.assert_array_equal(cold, greedy)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_first_sample_follows_the_tempered_softmax(temperature):
    model, variables = _tiny()
    prompt = jnp.tile(jnp.array([[1, 6, 3]], jnp.int32), (4000, 1))
    first = generate(model, variables, jax.random.PRNGKey(8), prompt, 1, temperature)[:, 0]
    expected = jax.nn.softmax(jax.jit(model.apply)(variables, prompt[:1])[0, -1] / temperature)
    frequency = np.bincount(np.asarray(first), minlength=CHANNELS) / len(first)
    np.testing.assert_allclose(frequency, expected, atol=0.025)  # ~3.4 standard errors


def test_sampling_errors():
    model, variables = _tiny()
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match=r"\(batch, P\) with P >= 1; got shape \(2, 0\)"):
        generate(model, variables, key, jnp.zeros((2, 0), jnp.int32), 3)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        generate(model, variables, key, jnp.zeros((2, 1), jnp.int32), 3, temperature=-1.0)
    with pytest.raises(ValueError, match="length must be an int >= 0"):
        generate(model, variables, key, jnp.zeros((2, 1), jnp.int32), -1)

"""Bad inputs at the doors of the models, samplers, inspection and data files (issue 17).

Every case asserts the error type and the words a user needs: what was wrong, and what
would be right. Nothing trains or compiles: model checks fire in ``create_model`` or while
``init`` is traced (``jax.eval_shape``), sampler checks before the sampling loop.
"""

import pickle

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import create_model
from jaxnets.cli import main
from jaxnets.data import load_cifar10
from jaxnets.data.files import CorruptFileError
from jaxnets.inspect import layer_table
from jaxnets.models.cnn import LeNet5
from jaxnets.models.nplm import NPLM
from jaxnets.models.rnn import CharLM
from jaxnets.models.wavenet import generate
from jaxnets.nn.recurrent import reverse_valid
from jaxnets.registry import InputSpecError

KEY = jax.random.PRNGKey(0)


def _init_shapes(model, *args):
    """Trace ``model.init`` (no compile, no arrays) so that shape checks run."""
    return jax.eval_shape(lambda: model.init(KEY, *args))


# -- hyperparameters: widths >= 1 at create_model ------------------------------------------

BAD_HYPERPARAMETERS = [
    ("lenet5", {"c1": 0}, ValueError, r"model 'lenet5': c1 must be >= 1; got 0"),
    ("lenet5", {"kernel": 2.5}, TypeError, r"kernel must be an integer >= 1; got 2\.5"),
    ("lenet5", {"num_classes": -3}, ValueError, r"num_classes must be >= 1; got -3"),
    (
        "alexnet_small",
        {"widths": (4, 0, 4, 4, 4)},
        ValueError,
        "every entry of widths must be >= 1",
    ),
    ("alexnet_small", {"strides": (1, 0, 1, 1, 1)}, ValueError, "every entry of strides must be"),
    ("vgg_small", {"depths": (1, 0)}, ValueError, "every entry of depths must be >= 1"),
    ("vgg_small", {"hidden": (0,)}, ValueError, "every entry of hidden must be >= 1"),
    ("googlenet_small", {"stages": (((2, 2, 0, 2, 2, 2),),)}, ValueError, "entry of stages"),
    ("googlenet_small", {"stem_widths": (3, 0, 4)}, ValueError, "stem_widths must be >= 1"),
    ("linear_regression", {"num_outputs": 0}, ValueError, "num_outputs must be >= 1; got 0"),
    ("mlp", {"hidden": (5, 0)}, ValueError, "every entry of hidden must be >= 1; got 0"),
    ("mlp", {"num_outputs": 0}, ValueError, "num_outputs must be >= 1"),
    ("residual_mlp", {"width": 0}, ValueError, "width must be >= 1"),
    ("nerf_mlp", {"width": 0}, ValueError, "width must be >= 1"),
    ("nice", {"hidden": 0}, ValueError, "coupling function m needs hidden >= 1 units"),
    ("nplm", {"vocab_size": 0}, ValueError, "vocab_size must be >= 1"),
    ("nplm", {"embed": 0}, ValueError, "embed must be >= 1"),
    ("pixelcnn", {"features": 0}, ValueError, "features must be >= 1"),
    ("resnet20", {"widths": (2, 0)}, ValueError, "every entry of widths must be >= 1"),
    ("resnet20", {"stage_sizes": (0, 1)}, ValueError, "stage_sizes must be >= 1"),
    ("revnet", {"kernel_size": 0}, ValueError, "kernel_size must be >= 1"),
    ("rnn_classifier", {"outputs": 0}, ValueError, "outputs must be >= 1"),
    ("rnn_classifier", {"unroll": 0}, ValueError, "unroll must be >= 1"),
    ("char_lm", {"vocab_size": 0}, ValueError, "vocab_size must be >= 1"),
    ("char_lm", {"layers": 0}, ValueError, "layers must be >= 1"),
    ("seq2seq", {"source_length": 0}, ValueError, "source_length must be >= 1"),
    ("seq2seq", {"source_vocab": 0}, ValueError, "source_vocab must be >= 1"),
    ("wavenet", {"channels": 0}, ValueError, "channels must be >= 1"),
    ("wavenet", {"residual_channels": 0}, ValueError, "residual_channels must be >= 1"),
]


@pytest.mark.parametrize(
    "name, overrides, error, match",
    BAD_HYPERPARAMETERS,
    ids=[f"{n}-{'-'.join(o)}-{m[-12:]}" for n, o, _, m in BAD_HYPERPARAMETERS],
)
def test_create_model_refuses_widths_below_one(name, overrides, error, match):
    with pytest.raises(error, match=match):
        create_model(name, **overrides)


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("alexnet_small", {"paddings": (0, 0, 0, 0, 0)}),  # valid convolutions
        ("pixelcnn", {"layers": 0}),  # the type-A conv and the head alone
        ("residual_mlp", {"depth": 0}),  # the input projection alone
        ("rnn_classifier", {"unroll": True}),  # a bool is a valid unroll
    ],
)
def test_create_model_accepts_zero_where_zero_is_meaningful(name, overrides):
    model = create_model(name, **overrides)
    assert all(getattr(model, k) == v for k, v in overrides.items())


# -- kernels and pools must fit the input ------------------------------------------------


@pytest.mark.parametrize(
    "name, overrides, side, match",
    [
        ("lenet5", {}, 8, r"LeNet-5 needs images of at least 16x16: .*C1 5x5.*S4 2x2.* 8x8"),
        ("lenet5", {"kernel": 3}, 9, r"LeNet-5 needs images of at least 10x10"),
        ("alexnet_small", {}, 8, r"AlexNet needs images of at least 15x15: .*pool5 3x3/2"),
        ("alexnet", {}, 32, r"AlexNet needs images of at least 63x63: .*conv1 11x11/4 pad 2"),
    ],
)
def test_kernels_and_pools_must_fit_the_image(name, overrides, side, match):
    model = create_model(name, **overrides)
    with pytest.raises(ValueError, match=match):
        _init_shapes(model, jnp.zeros((1, side, side, 1)))


def test_the_smallest_image_that_fits_is_accepted():
    shapes = _init_shapes(create_model("lenet5"), jnp.zeros((1, 16, 16, 1)))
    assert shapes["params"]["F5"]["kernel"].shape == (16, 120)  # 1x1x16 maps left


# -- recurrent lengths -------------------------------------------------------------------


@pytest.mark.parametrize(
    "lengths, match",
    [
        (np.array([5, 2]), r"lengths must lie in \[0, 4\] .*got values in \[2, 5\]"),
        (np.array([-1, 2]), r"lengths must lie in \[0, 4\] .*got values in \[-1, 2\]"),
        (np.array([2.5, 2.0]), r"lengths must be integer step counts in \[0, 4\].*float"),
        (np.array([True, False]), r"lengths must be integer step counts.*bool"),
        (np.array([4, 2, 1]), r"lengths must have shape \(batch,\) = \(2,\); got \(3,\)"),
    ],
)
def test_recurrent_lengths_must_be_integers_within_the_time_axis(lengths, match):
    model = create_model("rnn_classifier", hidden=3, bidirectional=True)
    with pytest.raises(ValueError, match=match):
        _init_shapes(model, jnp.zeros((2, 4, 2)), lengths)


def test_reverse_valid_checks_lengths_too():
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 3\]"):
        reverse_valid(jnp.zeros((1, 3, 2)), np.array([4]))


def test_lengths_up_to_the_time_axis_are_accepted():
    model = create_model("rnn_classifier", hidden=3, bidirectional=True)
    shapes = _init_shapes(model, jnp.zeros((2, 4, 2)), np.array([4, 0]))
    assert "params" in shapes


# -- sampling ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samplers():
    """name -> sample(prompt, length, temperature) for each autoregressive sampler, traced
    with ``jax.eval_shape`` (the arguments stay concrete, so every check runs; nothing
    compiles or samples)."""
    prompt = jnp.zeros((1, 2), jnp.int32)
    char_lm = create_model("char_lm", vocab_size=5, embed=3, hidden=3)
    nplm = create_model("nplm", vocab_size=5, context=2, embed=3, hidden=4)
    wavenet = create_model("wavenet", channels=5, residual_channels=2, skip_channels=2)
    shapes = {m: _init_shapes(m, prompt) for m in (char_lm, nplm, wavenet)}

    def traced(model, sample):
        return lambda *args: jax.eval_shape(lambda v: sample(model, v, *args), shapes[model])

    return {
        "char_lm": traced(char_lm, lambda m, v, *a: m.apply(v, KEY, *a, method=CharLM.sample)),
        "nplm": traced(nplm, lambda m, v, *a: m.apply(v, KEY, *a, method=NPLM.sample)),
        "wavenet": traced(wavenet, lambda m, v, *a: generate(m, v, KEY, *a)),
    }


GOOD_PROMPT = np.array([[1, 2]], np.int32)
BAD_SAMPLING = [
    (GOOD_PROMPT, 3, float("nan"), ValueError, "temperature must be a finite number >= 0"),
    (GOOD_PROMPT, 3, float("inf"), ValueError, "temperature must be a finite number >= 0"),
    (GOOD_PROMPT, 3, -0.5, ValueError, r"temperature must be >= 0; got -0\.5"),
    (GOOD_PROMPT, -1, 1.0, ValueError, r"length must be an int >= 0 .*; got -1"),
    (GOOD_PROMPT, 2.5, 1.0, ValueError, r"length must be an int >= 0 .*; got 2\.5"),
    (np.array([[1, 5]]), 3, 1.0, ValueError, r"must lie in \[0, 5\) .*got values in \[1, 5\]"),
    (np.array([[-1, 2]]), 3, 1.0, ValueError, r"must lie in \[0, 5\) .*got values in \[-1, 2\]"),
    (np.array([[1.0, 2.0]]), 3, 1.0, ValueError, "prompt must (hold|be) integer .*dtype float"),
]


@pytest.mark.parametrize("sampler", ["char_lm", "nplm", "wavenet"])
@pytest.mark.parametrize(
    "prompt, length, temperature, error, match",
    BAD_SAMPLING,
    ids=[
        "nan-T",
        "inf-T",
        "negative-T",
        "negative-length",
        "float-length",
        "id-too-big",
        "negative-id",
        "float-ids",
    ],  # fmt: skip
)
def test_sampling_arguments_are_checked(
    samplers, sampler, prompt, length, temperature, error, match
):
    with pytest.raises(error, match=match):
        samplers[sampler](prompt, length, temperature)


def test_nice_sample_count_must_be_an_integer():
    model = create_model("nice", num_coupling=2, hidden=4, layers=1)
    shapes = _init_shapes(model, jnp.zeros((1, 2)))
    with pytest.raises(ValueError, match="NICE.sample: n must be >= 0; got -1"):
        jax.eval_shape(lambda v: model.apply(v, KEY, -1, method=model.sample), shapes)


# -- inspect.layer_table: one example's shape, not a batch's ------------------------------


class _UnregisteredConvNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Conv(2, (3, 3))(x)


@pytest.mark.parametrize(
    "model, shape, example",
    [
        (LeNet5(), (8, 32, 32, 1), r"\(32, 32, 1\)"),  # a registered family: its card's rank
        (create_model("mlp"), (8, 64), r"\(64,\)"),  # silently wrong before: Dense on axis -1
        (_UnregisteredConvNet(), (8, 16, 16, 1), r"\(16, 16, 1\)"),  # the kernel's rank
    ],
)
def test_layer_table_says_the_shape_includes_a_batch_axis(model, shape, example):
    with pytest.raises(InputSpecError, match=rf"looks like it includes a batch axis.*{example}"):
        layer_table(model, shape)


# -- jaxnets gradcheck --tol ----------------------------------------------------------------


@pytest.mark.parametrize("tol, effect", [("0", "fail"), ("inf", "accept"), ("nan", "accept")])
def test_gradcheck_tolerance_error_says_what_it_would_do(tol, effect, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["gradcheck", "linear_regression", "--tol", tol])
    assert exit_info.value.code == 2
    assert f"would {effect} every gradient" in capsys.readouterr().err


# -- CIFAR-10 batches pickled by Python 3 -------------------------------------------------


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_cifar10_batches_pickled_by_python3_load(tmp_path, protocol):
    data = np.random.default_rng(protocol).integers(0, 256, (3, 3072), dtype=np.uint8)
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batch = {b"data": data, b"labels": [0, 4, 9]}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=protocol))
    test = load_cifar10(tmp_path, split="test")
    np.testing.assert_array_equal(test.y, [0, 4, 9])
    np.testing.assert_array_equal(np.rint(test.x[1, 0, 0] * 255), data[1, [0, 1024, 2048]])


class _Rot13:
    """Pickles as a call of _codecs.encode with another encoding than latin-1."""

    def __reduce__(self):
        import codecs

        return codecs.encode, ("data", "rot13")


def test_cifar10_unpickler_allows_only_latin1_bytes(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    payload = {b"data": _Rot13(), b"labels": []}
    (folder / "test_batch").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CorruptFileError, match=r"forbidden call _codecs\.encode\(str, 'rot13'\)"):
        load_cifar10(tmp_path, split="test")

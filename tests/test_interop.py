"""jaxnets.interop: weights from and to PyTorch, checked against PyTorch's own definitions.

The references are PyTorch's code, not rewritten copies: ``torch.nn`` layers (LeNet-5 and the
MLPs as ``nn.Sequential``, ``nn.RNN``/``nn.LSTM``/``nn.GRU`` + ``nn.Linear``, ``nn.Embedding``)
and torchvision 0.28.0's ``models/resnet.py`` (``resnet18()`` and ``ResNet`` with
``BasicBlock``/``Bottleneck``), ``models/vgg.py`` (``vgg11()``, ``vgg11_bn()``) and
``models/alexnet.py`` (``alexnet()``). torchvision's compiled operators do not load beside the
pinned CPU torch, so these three pure-Python files are read from the torchvision wheel and run
with inert stubs for their few torchvision imports (weights enums, API-usage logging); see
``tests/torch_references.py``, which records torch's outputs in ``tests/torch_references/``
(``make torch-references``). Weights and inputs are regenerated here from numpy seeds, so the
equality test runs without torch (CI has none); where torch imports, the recordings are also
checked to be what torch computes now.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from torch_references import (
    CASES,
    DIR,
    random_inputs,
    random_state_dict,
    torch_outputs,
    torchvision_models,
)

from jaxnets import create_model, list_models, model_card
from jaxnets.interop import from_torch, to_torch
from jaxnets.models.cnn import adaptive_avg_pool

TOLERANCE = {"float32": 1e-5, "float64": 1e-10}  # of the largest |output|

# Registered models without a PyTorch counterpart (or, GoogLeNet, with a different one).
REFUSED = {
    "dense_mlp",
    "googlenet",
    "googlenet_small",
    "highway_mlp",
    "linear_regression",
    "linear_svm",
    "logistic_regression",
    "mlp_maxout",
    "mlp_rbf",
    "multiclass_svm",
    "nerf_mlp",
    "nice",
    "nplm",
    "perceptron",
    "pixelcnn",
    "residual_mlp",
    "resnet20",
    "revnet",
    "seq2seq",
    "softmax_regression",
    "wavenet",
}


def _random_variables(name: str, seed: int) -> dict:
    """Seeded random values for every variable of ``name``'s tiny config (no jax compute)."""
    card = model_card(name)
    model = create_model(name, **card.test_config)
    x = jax.ShapeDtypeStruct((1, *card.tiny_input_shape), jnp.dtype(card.input_dtype))
    shapes = jax.eval_shape(model.init, {"params": jax.random.key(0)}, x)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)


def _converts(name: str) -> bool:
    card = model_card(name)
    try:
        to_torch(name, _random_variables(name, 0), **card.test_config)  # refused before shapes
    except ValueError as err:
        assert "counterpart" in str(err), err
        return False
    return True


def test_refused_models_are_exactly_those_without_a_counterpart():
    refused = {name for name in list_models() if not _converts(name)}
    assert refused == REFUSED


@pytest.mark.parametrize("name", sorted(set(list_models()) - REFUSED))
def test_round_trip_is_bitwise(name):
    card = model_card(name)
    variables = _random_variables(name, seed=len(name))
    state = to_torch(name, variables, **card.test_config)
    assert all(isinstance(v, np.ndarray) for v in state.values())
    back = from_torch(name, state, input_shape=card.tiny_input_shape, **card.test_config)
    flat, tree = jax.tree.flatten(variables)
    flat_back, tree_back = jax.tree.flatten(back)
    assert tree == tree_back
    for a, b in zip(flat, flat_back, strict=True):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _jaxnets_outputs(case) -> np.ndarray:
    state = random_state_dict(case)
    model = create_model(case.model, **case.hyperparameters)
    variables = from_torch(case.model, state, input_shape=case.input_shape, **case.hyperparameters)
    with jax.enable_x64(case.dtype == "float64"):
        return np.asarray(jax.jit(model.apply)(variables, jnp.asarray(random_inputs(case))))


def _relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


@pytest.mark.parametrize("case_name", list(CASES))
def test_outputs_equal_torch(case_name):
    case = CASES[case_name]
    recorded = np.load(DIR / f"{case_name}.npz")["output"]
    got = _jaxnets_outputs(case)
    assert got.shape == recorded.shape and got.dtype == recorded.dtype
    assert _relative_error(got, recorded) <= TOLERANCE[case.dtype]


def _check_recordings(torchvision: bool) -> None:
    """torch computes now what tests/torch_references/ holds, for the torch.nn cases or the
    torchvision ones (whose model files come from its wheel or package)."""
    torch_models = torchvision_models() if torchvision else None
    checked = 0
    for name, case in CASES.items():
        if case.torchvision != torchvision:
            continue
        recorded = np.load(DIR / f"{name}.npz")["output"]
        assert _relative_error(torch_outputs(case, torch_models), recorded) <= TOLERANCE[case.dtype]
        checked += 1
    assert checked > 0


def test_recordings_of_the_torch_nn_cases_are_current():
    """Where torch is installed (never by make test: CI compares with the recordings only)."""
    pytest.importorskip("torch")
    _check_recordings(torchvision=False)


def test_recordings_of_the_torchvision_cases_are_current():
    """Where torch is installed and torchvision's model files are found (its package, or the
    wheel named in tests/torch_references.py)."""
    pytest.importorskip("torch")
    try:
        torchvision_models()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    _check_recordings(torchvision=True)


def test_adaptive_avg_pool_averages_torch_bins():
    """5 -> 3 bins [0, 2), [1, 4), [3, 5) (they overlap), and 1 -> 2 copies the pixel."""
    x = np.arange(2 * 5 * 5 * 3, dtype=np.float32).reshape(2, 5, 5, 3)
    bins = [(0, 2), (1, 4), (3, 5)]
    want = np.stack(
        [np.stack([x[:, a:b, c:d].mean(axis=(1, 2)) for c, d in bins], 1) for a, b in bins], 1
    )
    np.testing.assert_allclose(np.asarray(adaptive_avg_pool(jnp.asarray(x), 3)), want, rtol=1e-6)
    one = np.asarray(adaptive_avg_pool(jnp.asarray(x[:, :1, :1]), 2))
    assert np.array_equal(one, np.broadcast_to(x[:, :1, :1], (2, 2, 2, 3)))


def _lenet_state() -> dict:
    return random_state_dict(CASES["lenet5"])


def test_missing_key_is_named():
    state = _lenet_state()
    del state["3.bias"]
    with pytest.raises(ValueError, match=r"'lenet5': state_dict lacks '3.bias' \(shape \(16,\)\)"):
        from_torch("lenet5", state)


def test_unexpected_key_is_named():
    state = {**_lenet_state(), "12.weight": np.zeros((3, 10), np.float32)}
    with pytest.raises(ValueError, match=r"unexpected key '12.weight' in the state_dict"):
        from_torch("lenet5", state)


def test_wrong_shape_names_expected_and_got():
    state = _lenet_state()
    state["7.weight"] = state["7.weight"][:, :-1]
    with pytest.raises(
        ValueError, match=r"'7.weight' has shape \(120, 399\); expected \(120, 400\)"
    ):
        from_torch("lenet5", state)


def test_batch_norm_counter_is_optional_and_written_as_zero():
    case = CASES["resnet50_1111"]
    state = random_state_dict(case)
    assert state["layer1.0.downsample.1.num_batches_tracked"].dtype == np.int64
    kept = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    variables = from_torch(case.model, kept, **case.hyperparameters)
    mean = variables["batch_stats"]["stage1_block1"]["shortcut_bn"]["mean"]
    assert np.array_equal(mean, state["layer1.0.downsample.1.running_mean"])


@pytest.mark.parametrize(
    ("name", "overrides", "reason"),
    [
        ("googlenet", {}, "auxiliary classifiers"),
        ("resnet20", {}, r"stem='cifar', shortcut='zero_pad'"),
        ("mlp_maxout", {}, "maxout units has no torch.nn counterpart"),
        ("nice", {}, r"NICE has no PyTorch counterpart in jaxnets.interop"),
    ],
)
def test_refusals_say_why(name, overrides, reason):
    with pytest.raises(ValueError, match=reason):
        to_torch(name, _random_variables(name, 0), **model_card(name).test_config, **overrides)


def test_to_torch_names_a_missing_variable():
    variables = _random_variables("lenet5", 0)
    del variables["params"]["F6"]["bias"]
    with pytest.raises(ValueError, match="variables lack params/F6/bias"):
        to_torch("lenet5", variables, **model_card("lenet5").test_config)

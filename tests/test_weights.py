"""Weights files (jaxnets.weights): a bitwise round trip, and each refusal names its fault."""

import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnets
from jaxnets import registry
from jaxnets.train import Trainer
from jaxnets.weights import MAGIC, WeightsError, load_weights, save_weights

TINY_RESNET = dict(registry.model_card("resnet18").test_config)  # widths (2, 4), 3 classes


@pytest.fixture(scope="module")
def resnet_variables():
    """Tiny ResNet-18 variables with batch statistics far from their (0, 1) start."""
    model = registry.create_model("resnet18", **TINY_RESNET)
    x = jnp.ones((1, 16, 16, 1))
    variables = model.init({"params": jax.random.PRNGKey(0)}, x, train=False)
    leaves, tree = jax.tree.flatten(variables["batch_stats"])
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    stats = [
        jax.random.uniform(k, v.shape, minval=0.5, maxval=2.0)
        for k, v in zip(keys, leaves, strict=True)
    ]
    return {"params": variables["params"], "batch_stats": jax.tree.unflatten(tree, stats)}


@pytest.fixture
def resnet_file(tmp_path, resnet_variables):
    return save_weights(tmp_path / "r.weights", "resnet18", resnet_variables, **TINY_RESNET)


def read_header(path):
    header, payload = path.read_bytes()[len(MAGIC) :].split(b"\n", 1)
    return json.loads(header), payload


def rewrite_header(path, **changes):
    """Change header fields and leave the payload (and so its digest) as it was."""
    header, payload = read_header(path)
    header = {**header, **changes}
    path.write_bytes(MAGIC + json.dumps(header).encode() + b"\n" + payload)


def test_round_trip_is_bitwise_and_rebuilds_the_model(resnet_file, resnet_variables):
    weights = load_weights(resnet_file)
    assert weights.name == "resnet18" and weights.input_shape == (16, 16, 1)
    assert weights.hyperparameters == TINY_RESNET  # tuples come back as tuples
    assert isinstance(weights.hyperparameters["widths"], tuple)
    header, payload = read_header(resnet_file)
    assert header["jaxnets_version"] == jaxnets.__version__
    assert header["sha256"] == hashlib.sha256(payload).hexdigest()
    saved, loaded = jax.tree.leaves(resnet_variables), jax.tree.leaves(weights.variables)
    assert jax.tree.structure(resnet_variables) == jax.tree.structure(weights.variables)
    assert len(loaded) == 32  # 6 convolutions, 6 batch norms (scale, bias, mean, var), a head
    for a, b in zip(saved, loaded, strict=True):
        assert b.dtype == a.dtype and np.array_equal(np.asarray(a), b)
    x = jax.random.normal(jax.random.PRNGKey(2), (3, 16, 16, 1))
    model = registry.create_model("resnet18", **TINY_RESNET)
    expected = model.apply(resnet_variables, x, train=False)
    np.testing.assert_array_equal(
        weights.model().apply(weights.variables, x, train=False), expected
    )


def test_weights_of_a_training_state_load_into_the_model(tmp_path):
    # fit returns FitResult.state, a TrainState: its params and model_state are the variables
    config = dict(registry.model_card("mlp").test_config)
    model = registry.create_model("mlp", **config)
    trainer = Trainer(model, "softmax_cross_entropy", optax.sgd(0.1))
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 4))
    state, _ = trainer.train_epoch(
        trainer.init(jax.random.PRNGKey(1), x), x, jnp.arange(8) % 3, batch_size=4
    )
    path = tmp_path / "mlp.weights"
    save_weights(path, "mlp", {"params": state.params, **state.model_state}, **config)
    weights = load_weights(path)
    np.testing.assert_array_equal(
        weights.model().apply(weights.variables, x, train=False),
        model.apply({"params": state.params}, x, train=False),
    )


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match=r"no weights file at '.*nothing\.weights'"):
        load_weights(tmp_path / "nothing.weights")


def test_a_file_of_another_kind(tmp_path):
    path = tmp_path / "arrays.npz"
    np.savez(path, w=np.ones(3))
    with pytest.raises(WeightsError, match=r"is not a jaxnets weights file: it starts with b'PK"):
        load_weights(path)


def test_a_changed_payload_byte_is_corruption(resnet_file):
    data = bytearray(resnet_file.read_bytes())
    data[-5] ^= 1  # one bit of the last array
    resnet_file.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"is corrupt: its payload \(\d+ bytes\) has SHA-256"):
        load_weights(resnet_file)


def test_a_truncated_file_is_corruption(resnet_file):
    data = resnet_file.read_bytes()
    resnet_file.write_bytes(data[:-100])
    n = len(data) - data.index(b"\n", len(MAGIC)) - 1
    with pytest.raises(WeightsError, match=rf"\({n - 100} bytes\).*\({n} bytes\)"):
        load_weights(resnet_file)
    resnet_file.write_bytes(data[: len(MAGIC) + 20])
    with pytest.raises(WeightsError, match="is corrupt: its JSON header is unreadable"):
        load_weights(resnet_file)


def test_an_unknown_model_gets_the_registrys_suggestion(resnet_file):
    rewrite_header(resnet_file, model="resnet81")
    with pytest.raises(WeightsError, match=r"unknown model 'resnet81' — did you mean 'resnet18'"):
        load_weights(resnet_file)


def test_shapes_that_do_not_fit_name_the_key_and_both_shapes(resnet_file):
    rewrite_header(resnet_file, hyperparameters={**TINY_RESNET, "num_classes": 5})
    with pytest.raises(
        WeightsError,
        match=r"num_classes=5.*'params/output/bias' has shape \(3,\) in the weights, "
        r"the model expects \(5,\)",
    ):
        load_weights(resnet_file)


def test_save_refuses_variables_that_do_not_fit(tmp_path, resnet_variables):
    path = tmp_path / "r.weights"
    params_only = {"params": resnet_variables["params"]}
    with pytest.raises(
        WeightsError,
        match=r"'batch_stats/bn1/mean' is missing \(the model has 32 arrays, the weights 20\)",
    ):
        save_weights(path, "resnet18", params_only, **TINY_RESNET)
    extra = {**resnet_variables, "cache": {"h": np.zeros(3)}}
    with pytest.raises(WeightsError, match=r"'cache/h' is not one of the model's"):
        save_weights(path, "resnet18", extra, **TINY_RESNET)
    assert not path.exists()


def test_hyperparameters_must_be_json_values(tmp_path):
    variables = {"params": {}}
    with pytest.raises(
        WeightsError, match=r"hyperparameter 'activation' = <ufunc 'tanh'> cannot be"
    ):
        save_weights(tmp_path / "m.weights", "mlp", variables, activation=np.tanh)

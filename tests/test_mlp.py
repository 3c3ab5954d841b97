"""MLPs: hand-set XOR nets, heads, connectivity, NeRF encoding (learned XOR: test_xor.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import create_model, list_models, model_card
from jaxnets.models import mlp
from jaxnets.nn.activations import ACTIVATIONS

KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize("kind", ["relu", "hard_threshold"])
def test_xor_handset_outputs_exactly_xor(kind):
    model, variables = mlp.xor_handset(kind)
    x, t = mlp.xor_data()
    outputs = model.apply(variables, x)
    assert outputs.shape == (4, 1)
    np.testing.assert_array_equal(outputs[:, 0], [0.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(outputs[:, 0], t)


def test_xor_relu_handset_is_the_lecture_weights():
    _, variables = mlp.xor_handset("relu")
    params = variables["params"]
    x, _ = mlp.xor_data()
    # seed 002 line 540: XW + c = [[0,-1],[1,0],[1,0],[2,1]].
    pre = x @ params["hidden_0"]["kernel"] + params["hidden_0"]["bias"]
    np.testing.assert_array_equal(pre, [[0, -1], [1, 0], [1, 0], [2, 1]])
    np.testing.assert_array_equal(params["out"]["kernel"][:, 0], [1, -2])


def test_xor_handset_unknown_kind():
    with pytest.raises(ValueError, match="'relu' or 'hard_threshold'"):
        mlp.xor_handset("sigmoid")


def test_predict_heads():
    z = jnp.array([[0.0, jnp.log(3.0)]])
    np.testing.assert_allclose(mlp.predict(z, "softmax"), [[0.25, 0.75]], rtol=1e-6)
    np.testing.assert_allclose(mlp.predict(z, "sigmoid"), [[0.5, 0.75]], rtol=1e-6)
    np.testing.assert_array_equal(mlp.predict(z, "linear"), z)
    with pytest.raises(ValueError, match="softmax, sigmoid, linear"):
        mlp.predict(z, "logits")


def test_every_trainable_activation_has_a_preset():
    expected = {f"mlp_{name}" for name, spec in ACTIVATIONS.items() if spec.trainable}
    assert len(expected) == 13
    assert expected <= set(list_models("mlp_*"))
    assert "mlp_hard_threshold" not in list_models()
    for name in expected | {"mlp", "xor_mlp", "residual_mlp", "highway_mlp", "dense_mlp"}:
        assert model_card(name).family == "mlp"
    assert model_card("mlp").input_shape == (64,)
    assert model_card("mlp_sigmoid_head").loss == "binary_cross_entropy"
    assert model_card("mlp_regression").loss == "squared_error"
    assert model_card("nerf_mlp").task == "regression"


def test_maxout_and_rbf_presets_replace_the_hidden_layer():
    x = jnp.ones((2, 4))
    params = create_model("mlp_maxout", hidden=(5,), num_outputs=3, maxout_pieces=3).init(KEY, x)
    assert params["params"]["hidden_0"]["pieces"]["kernel"].shape == (4, 5, 3)
    params = create_model("mlp_rbf", hidden=(5,), num_outputs=3).init(KEY, x)
    assert params["params"]["hidden_0"]["centers"].shape == (5, 4)


def test_activation_options_reach_the_activation():
    model = mlp.MLP(
        hidden=(3,),
        num_outputs=2,
        activation="leaky_relu",
        activation_options=(("negative_slope", 0.5),),
    )
    x = jax.random.normal(KEY, (4, 3))
    variables = model.init(KEY, x)
    p = variables["params"]
    z = x @ p["hidden_0"]["kernel"] + p["hidden_0"]["bias"]
    expected = jnp.where(z > 0, z, 0.5 * z) @ p["out"]["kernel"] + p["out"]["bias"]
    np.testing.assert_allclose(model.apply(variables, x), expected, rtol=1e-5)


def test_dropout_only_in_training():
    model = mlp.MLP(hidden=(64,), num_outputs=2, dropout_rate=0.5)
    x = jax.random.normal(KEY, (8, 4))
    variables = model.init(KEY, x)
    eval_out = model.apply(variables, x)
    np.testing.assert_array_equal(model.apply(variables, x), eval_out)
    train_a = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
    train_b = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
    assert float(jnp.max(jnp.abs(train_a - train_b))) > 1e-3
    assert float(jnp.max(jnp.abs(train_a - eval_out))) > 1e-3


def test_bad_output_head_is_reported():
    with pytest.raises(ValueError, match="output must be one of softmax"):
        mlp.MLP(output="logits").init(KEY, jnp.ones((1, 2)))


def _zero_layers(params, prefix="layer_"):
    return {
        k: jax.tree.map(jnp.zeros_like, v) if k.startswith(prefix) else v for k, v in params.items()
    }


def _deep(connectivity, **kw):
    model = mlp.DeepMLP(width=4, depth=3, num_outputs=2, connectivity=connectivity, **kw)
    x = jax.random.normal(KEY, (5, 6))
    return model, x, model.init(jax.random.PRNGKey(1), x)["params"]


def _out_of(params, h):
    return h @ params["out"]["kernel"] + params["out"]["bias"]


@pytest.mark.parametrize("connectivity", mlp.CONNECTIVITIES)
def test_deep_mlp_shapes(connectivity):
    model, x, params = _deep(connectivity)
    assert model.apply({"params": params}, x).shape == (5, 2)
    assert params["in_proj"]["kernel"].shape == (6, 4)
    assert ("gate_0" in params) == (connectivity == "highway")


def test_dense_layer_input_is_all_previous_layers():
    _, _, params = _deep("dense")
    # Layer i sees [h_0, ..., h_i], i + 1 blocks of width 4; the output sees all 4 blocks.
    for i in range(3):
        assert params[f"layer_{i}"]["kernel"].shape == (4 * (i + 1), 4)
    assert params["out"]["kernel"].shape == (16, 2)


def _gate(params, bias, i):
    """Highway gate i with zero weights and the given bias: T = sigmoid(bias) everywhere."""
    gate = params[f"gate_{i}"]
    return {"kernel": jnp.zeros_like(gate["kernel"]), "bias": jnp.full_like(gate["bias"], bias)}


@pytest.mark.parametrize("connectivity", mlp.CONNECTIVITIES)
def test_connectivity_with_silent_layers(connectivity):
    # With every layer's weights zero, f(h) = relu(0) = 0: a residual net or a highway net
    # whose gates carry (T ~ 0) passes h_0 straight to the output, a plain net passes nothing,
    # a dense net passes h_0 next to the zero blocks.
    model, x, params = _deep(connectivity)
    params = _zero_layers(params)
    if connectivity == "highway":
        params = {**params, **{f"gate_{i}": _gate(params, -50.0, i) for i in range(3)}}
    h0 = jax.nn.relu(x @ params["in_proj"]["kernel"] + params["in_proj"]["bias"])
    zeros = jnp.zeros_like(h0)
    expected = {
        "plain": zeros,
        "residual": h0,
        "highway": h0,
        "dense": jnp.concatenate([h0, zeros, zeros, zeros], axis=-1),
    }[connectivity]
    out = model.apply({"params": params}, x)
    np.testing.assert_allclose(out, _out_of(params, expected), rtol=1e-5, atol=1e-6)
    assert float(jnp.max(jnp.abs(h0))) > 0.1  # h_0 is not itself zero


def test_highway_gate_open_to_transform_equals_plain():
    model, x, params = _deep("highway")
    plain, _, _ = _deep("plain")
    opened = {**params, **{f"gate_{i}": _gate(params, 50.0, i) for i in range(3)}}
    plain_params = {k: v for k, v in params.items() if not k.startswith("gate_")}
    np.testing.assert_allclose(
        model.apply({"params": opened}, x), plain.apply({"params": plain_params}, x), rtol=1e-5
    )


def test_positional_encoding_values():
    x = jnp.array([[0.0, 0.5]])
    enc = mlp.positional_encoding(x, 3)
    assert enc.shape == (1, 12)
    # blocks [sin, cos] per frequency 2^k pi, k = 0, 1, 2; each block (x1, x2).
    expected = [0, 1, 1, 0, 0, 0, 1, -1, 0, 0, 1, 1]
    np.testing.assert_allclose(enc[0], expected, atol=1e-6)
    batch = mlp.positional_encoding(jnp.zeros((2, 5, 3)), 4)
    assert batch.shape == (2, 5, 24)
    with pytest.raises(ValueError, match="num_freqs"):
        mlp.positional_encoding(x, 0)


def test_nerf_mlp_skip_concatenates_the_encoding():
    model = create_model("nerf_mlp", num_freqs=2, width=8, depth=4, skip_at=2)
    x = jax.random.uniform(KEY, (3, 2))
    params = model.init(KEY, x)["params"]
    assert params["layer_0"]["kernel"].shape == (8, 8)  # 2 L d = 8 encoded inputs
    assert params["layer_2"]["kernel"].shape == (16, 8)  # width + encoding
    assert params["layer_3"]["kernel"].shape == (8, 8)
    assert model.apply({"params": params}, x).shape == (3, 3)
    with pytest.raises(ValueError, match="skip_at"):
        create_model("nerf_mlp", depth=3, skip_at=3).init(KEY, x)

"""Tests of the modern conv nets (AlexNet and VGG in jaxnets.models.cnn, jaxnets.models.googlenet,
jaxnets.models.resnet): parameter counts against torchvision and the papers, output shapes at
the full input sizes, batch norm and dropout in train vs eval mode, the parameter-free
shortcut, and training on digits.

Full-size models are only traced (``jax.eval_shape``): no memory, no compile.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnets
from jaxnets.data import load_digits_32
from jaxnets.models import cnn, googlenet, resnet
from jaxnets.nn.conv import filtering
from jaxnets.optim import make_optimizer
from jaxnets.train import Trainer, evaluate, fit

IMAGENET = (224, 224, 3)


def _shapes(model, input_shape, batch=1):
    """Variables of ``model`` as ShapeDtypeStructs (traced, not computed)."""
    x = jax.ShapeDtypeStruct((batch, *input_shape), jnp.float32)
    return jax.eval_shape(lambda x: model.init({"params": jax.random.PRNGKey(0)}, x), x)


def _count(tree) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def _weights(tree) -> int:
    """Number of kernel entries (biases and batch-norm parameters left out)."""
    return sum(
        math.prod(leaf.shape)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
        if path[-1].key == "kernel"
    )


# -- parameter counts -------------------------------------------------------------------------

TORCHVISION_PARAMS = {  # torchvision.models.<name>(num_classes=1000), sum of p.numel()
    "alexnet": (cnn.AlexNet, 61_100_840),
    "vgg11": (cnn.vgg11, 132_863_336),
    "vgg13": (cnn.vgg13, 133_047_848),
    "vgg16": (cnn.vgg16, 138_357_544),
    "vgg19": (cnn.vgg19, 143_667_240),
    "resnet18": (resnet.resnet18, 11_689_512),
    "resnet34": (resnet.resnet34, 21_797_672),
    "resnet50": (resnet.resnet50, 25_557_032),
}


@pytest.mark.parametrize("name", TORCHVISION_PARAMS)
def test_parameter_count_equals_torchvision(name):
    builder, expected = TORCHVISION_PARAMS[name]
    assert _count(_shapes(builder(), IMAGENET)["params"]) == expected


def test_alexnet_last_map_is_6x6x256_at_224():
    # fc1's fan-in is the flattened last map: 224 -> 55 -> 27 -> 13 -> 6 (torchvision's
    # adaptive 6x6 pool is the identity there).
    params = _shapes(cnn.AlexNet(), IMAGENET)["params"]
    assert params["fc1"]["kernel"].shape == (6 * 6 * 256, 4096)
    assert params["conv1"]["kernel"].shape == (11, 11, 3, 64)


def test_vgg16_last_map_is_7x7x512_and_layers_follow_configuration_d():
    params = _shapes(cnn.vgg16(), IMAGENET)["params"]
    assert params["fc1"]["kernel"].shape == (7 * 7 * 512, 4096)
    convs = sorted(k for k in params if k.startswith("conv"))
    assert len(convs) == 13 and {"conv3_3", "conv5_3"} <= set(convs)


def _cifar_resnet_params(n: int, in_channels: int = 3, classes: int = 10) -> int:
    """6n+2 layers (§4.2) by hand: 3x3 convs without bias, 2 parameters per batch-norm map."""
    stem = 9 * in_channels * 16 + 2 * 16
    total = stem
    for c_in, c in ((16, 16), (16, 32), (32, 64)):
        first = 9 * c_in * c + 9 * c * c  # the stage's first block may widen
        rest = (n - 1) * 2 * 9 * c * c
        total += first + rest + 2 * n * 2 * c
    return total + 64 * classes + classes


def test_resnet20_and_56_parameter_counts_by_hand():
    assert _cifar_resnet_params(3) == 269_722  # the paper's "0.27M"
    assert _count(_shapes(resnet.resnet20(), (32, 32, 3))["params"]) == 269_722
    assert _count(_shapes(resnet.resnet56(), (32, 32, 3))["params"]) == _cifar_resnet_params(9)
    assert _count(_shapes(resnet.resnet20(), (32, 32, 1))["params"]) == _cifar_resnet_params(3, 1)


def test_option_a_shortcut_has_no_parameters_and_option_b_adds_two_projections():
    option_a = _shapes(resnet.resnet20(), (32, 32, 3))["params"]
    assert not any(
        "shortcut" in str(path) for path, _ in jax.tree_util.tree_leaves_with_path(option_a)
    )
    option_b = _shapes(resnet.resnet20(shortcut="projection"), (32, 32, 3))["params"]
    # 1x1 convs 16->32 and 32->64, each with a batch norm (scale and bias per map).
    assert _count(option_b) - _count(option_a) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def _inception_weights(c_in, c1, c3r, c3, c5r, c5, proj):
    return c_in * c1 + c_in * c3r + 9 * c3r * c3 + c_in * c5r + 25 * c5r * c5 + c_in * proj


def test_googlenet_reproduces_table_1():
    params = _shapes(googlenet.GoogLeNet(), IMAGENET)["params"]
    # The "output size" column (maps after each inception module) and the params column.
    expected_maps = [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    names = [f"inception_{s}{c}" for s, c in ["3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"]]
    widths = [w for stage in googlenet.GOOGLENET_STAGES for w in stage]
    c_in = 192
    for name, maps, w in zip(names, expected_maps, widths, strict=True):
        assert sum(w[i] for i in (0, 2, 4, 5)) == maps
        assert _weights(params[name]) == _inception_weights(c_in, *w), name
        c_in = maps
    # Rows of Table 1's params column (units of 1024 weights) that agree with its widths.
    assert _weights(params["inception_3a"]) == 163_328  # 159.5K, printed as 159K
    assert _weights(params["conv2_reduce"]) + _weights(params["conv2"]) == 112 * 1024
    assert _weights(params["output"]) == 1000 * 1024  # the linear layer's 1000K
    assert sorted(params) == sorted(["conv1", "conv2_reduce", "conv2", "output", *names])


def _map_shapes(model, input_shape, names):
    """Output shapes of the named submodules for a batch of 2 (traced, not computed)."""
    variables = _shapes(model, input_shape, batch=2)
    x = jax.ShapeDtypeStruct((2, *input_shape), jnp.float32)
    _, state = jax.eval_shape(
        lambda v, x: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"]),
        variables,
        x,
    )
    return {n: state["intermediates"][n]["__call__"][0].shape[1:] for n in names}


def test_googlenet_map_sizes_follow_table_1_and_the_cifar_stem_halves_32x32():
    names = ["pool2", "inception_3b", "inception_4e", "inception_5b"]
    assert _map_shapes(googlenet.GoogLeNet(), IMAGENET, names) == {
        "pool2": (28, 28, 192),
        "inception_3b": (28, 28, 480),
        "inception_4e": (14, 14, 832),
        "inception_5b": (7, 7, 1024),
    }
    small = googlenet.googlenet_small()
    assert _map_shapes(small, (32, 32, 1), ["inception_3b", "inception_4a"]) == {
        "inception_3b": (16, 16, 80),
        "inception_4a": (8, 8, 112),
    }
    # With batch norm every conv has a norm and no bias.
    params = _shapes(small, (32, 32, 1))["params"]["inception_3a"]
    assert set(params["branch5x5"]) == {"kernel"} and set(params["branch5x5_bn"]) == {
        "scale",
        "bias",
    }


def test_inception_module_concatenates_its_four_branches():
    module = googlenet.Inception(2, 3, 4, 1, 5, 6)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 5, 3))
    variables = jax.jit(module.init)(jax.random.PRNGKey(1), x)
    out = jax.jit(module.apply)(variables, x)
    assert out.shape == (2, 5, 5, 2 + 4 + 5 + 6)
    p = variables["params"]
    # Branch 1 is a 1x1 conv + ReLU of x, the first 2 output maps.
    branch1 = jax.nn.relu(x @ p["branch1x1"]["kernel"][0, 0] + p["branch1x1"]["bias"])
    np.testing.assert_allclose(out[..., :2], branch1, rtol=1e-5, atol=1e-6)
    # The pool branch projects the 3x3 stride-1 max over each neighbourhood (last 6 maps).
    pooled = nn.max_pool(x, (3, 3), (1, 1), "SAME")
    proj = p["branch_pool_proj"]
    branch4 = jax.nn.relu(pooled @ proj["kernel"][0, 0] + proj["bias"])
    np.testing.assert_allclose(out[..., -6:], branch4, rtol=1e-5, atol=1e-6)


# -- shapes at the full input sizes -----------------------------------------------------------

CNN_MODELS = [n for n in jaxnets.list_models() if jaxnets.model_card(n).family == "cnn"]


@pytest.mark.parametrize("name", CNN_MODELS)
def test_full_size_model_gives_logits_per_example(name):
    card = jaxnets.model_card(name)
    model = jaxnets.create_model(name)
    variables = _shapes(model, card.input_shape, batch=2)
    x = jax.ShapeDtypeStruct((2, *card.input_shape), jnp.float32)
    out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    assert out.shape == (2, model.num_classes) and out.dtype == jnp.float32
    assert card.per_example_grads == ("batch_stats" not in variables)


def test_small_variants_take_32x32x1_digits():
    for name in ("alexnet_small", "vgg_small", "googlenet_small", "resnet20"):
        model = jaxnets.create_model(name)
        variables = _shapes(model, (32, 32, 1), batch=2)
        x = jax.ShapeDtypeStruct((2, 32, 32, 1), jnp.float32)
        assert jax.eval_shape(model.apply, variables, x).shape == (2, 10)


def test_bfloat16_computes_in_bfloat16_with_float32_parameters_and_logits():
    model = jaxnets.create_model("resnet18", num_classes=10, dtype=jnp.bfloat16)
    variables = _shapes(model, (32, 32, 3), batch=2)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
        variables, x
    )
    convs = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
    assert len(convs) == 1 + 16 + 3  # stem, block convs, projection shortcuts
    assert {v.aval.dtype for e in convs for v in e.invars} == {jnp.dtype(jnp.bfloat16)}
    assert {a.dtype for a in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    assert jaxpr.out_avals[0].dtype == jnp.float32


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="height and width >= 32; got an input of shape"):
        _shapes(cnn.vgg16(), (16, 16, 3))
    with pytest.raises(ValueError, match="5 entries each"):
        _shapes(cnn.AlexNet(widths=(4, 4, 4)), (32, 32, 3))
    with pytest.raises(ValueError, match="block must be one of basic, bottleneck; got 'plain'"):
        _shapes(resnet.ResNet(block="plain"), (32, 32, 3))
    with pytest.raises(ValueError, match="can only add channels: 8 -> 4"):
        resnet.zero_pad_shortcut(jnp.zeros((1, 4, 4, 8)), 4, 2)


# -- batch norm, dropout, shortcut ------------------------------------------------------------


def _tiny(name, **overrides):
    card = jaxnets.model_card(name)
    model = jaxnets.create_model(name, **{**card.test_config, **overrides})
    x = jax.random.normal(jax.random.PRNGKey(0), (4, *card.tiny_input_shape))
    variables = jax.jit(functools.partial(model.init, train=False))(
        {"params": jax.random.PRNGKey(1), "dropout": jax.random.PRNGKey(2)}, x
    )
    return model, variables, x


def test_batch_norm_train_mode_updates_running_statistics_with_momentum_0_9():
    model, variables, x = _tiny("resnet20")
    train = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
    _, updated = train(variables, x)
    # The stem's batch norm sees conv1(x) (3x3, pad 1, no bias); its running mean and variance
    # start at 0 and 1 and move 10% of the way to the batch's mean and (biased) variance.
    z = filtering(x, variables["params"]["conv1"]["kernel"], padding="same")
    stats = updated["batch_stats"]["bn1"]
    np.testing.assert_allclose(stats["mean"], 0.1 * z.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        stats["var"], 0.9 + 0.1 * z.var(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6
    )
    assert not np.allclose(stats["mean"], 0.0)


def test_batch_norm_eval_mode_uses_running_statistics():
    model, variables, x = _tiny("resnet20")
    train_out, updated = jax.jit(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])
    )(variables, x)
    # Running statistics equal to this batch's own (undo the 0.9 / 0.1 update): evaluation
    # then normalizes exactly as training did on this batch.
    batch_stats = jax.tree.map(
        lambda new, old: (new - 0.9 * old) / 0.1, updated["batch_stats"], variables["batch_stats"]
    )
    evaluate_ = jax.jit(lambda v, x: model.apply(v, x, train=False))
    eval_out = evaluate_({**variables, "batch_stats": batch_stats}, x)
    np.testing.assert_allclose(eval_out, train_out, rtol=1e-3, atol=1e-4)
    # In eval mode an example's logits do not depend on the rest of the batch; in train mode
    # they do (batch statistics).
    np.testing.assert_allclose(evaluate_(variables, x[:1]), evaluate_(variables, x)[:1], atol=1e-5)
    alone, _ = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
        variables, x[:2]
    )
    assert not np.allclose(alone[:1], train_out[:1], atol=1e-3)


def test_dropout_acts_only_in_train_mode():
    model, variables, x = _tiny("alexnet_small")

    @functools.partial(jax.jit, static_argnums=1)
    def apply(key, train):
        return model.apply(variables, x, train=train, rngs={"dropout": key})

    k1, k2 = jax.random.PRNGKey(5), jax.random.PRNGKey(6)
    np.testing.assert_array_equal(apply(k1, False), apply(k2, False))
    assert not np.allclose(apply(k1, True), apply(k2, True))
    np.testing.assert_array_equal(apply(k1, True), apply(k1, True))
    # Without dropout, train and eval mode compute the same function (no batch norm here).
    no_dropout = jax.jit(
        lambda train: model.clone(dropout_rate=0.0).apply(
            variables, x, train=train, rngs={"dropout": k1}
        ),
        static_argnums=0,
    )
    np.testing.assert_allclose(no_dropout(True), no_dropout(False), rtol=1e-6)


def test_zero_pad_shortcut_subsamples_and_pads_with_zeros():
    x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
    out = resnet.zero_pad_shortcut(x, 5, 2)
    assert out.shape == (2, 2, 2, 5)
    np.testing.assert_array_equal(out[..., :3], x[:, ::2, ::2, :])
    np.testing.assert_array_equal(out[..., 3:], 0.0)
    # It keeps the pixels a stride-2 3x3 conv with one pixel of padding is centred on, so the
    # shortcut and the residual branch line up.
    centre = jnp.zeros((3, 3, 3, 3)).at[1, 1].set(jnp.eye(3))
    strided = jax.lax.conv_general_dilated(
        x, centre, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    np.testing.assert_array_equal(resnet.zero_pad_shortcut(x, 3, 2), strided)
    np.testing.assert_array_equal(resnet.zero_pad_shortcut(x, 3, 1), x)


# -- training on digits ------------------------------------------------------------------------


def _digits(n=None):
    data = load_digits_32()
    return (data.x, data.y) if n is None else (data.x[:n], data.y[:n])


def test_vgg_small_fits_a_fixed_batch_of_digits():
    x, y = _digits(64)
    # Narrow, and without dropout so that the training loss is a smooth function of the step.
    model = jaxnets.create_model("vgg_small", widths=(8, 16, 16), hidden=(32,), dropout_rate=0.0)
    trainer = Trainer(
        model, "softmax_cross_entropy", make_optimizer("adam", 3e-3), per_example=False
    )
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0), x[:2])  # eager flax init is slow
    losses = []
    for _ in range(30):
        state, metrics = trainer.train_step(state, (x, y))
        losses.append(float(metrics["loss"]))
    assert losses[0] > 2.0  # about log(10) at initialization
    assert losses[-1] < losses[0] / 10, losses


@pytest.mark.slow
@pytest.mark.parametrize(
    # AlexNet (no batch norm, dropout 0.5 in two layers) needs more epochs than the others.
    ("name", "epochs"),
    [("alexnet_small", 5), ("vgg_small", 3), ("googlenet_small", 3), ("resnet20", 3)],
)
def test_small_variant_learns_digits(name, epochs):
    """Held-out accuracy above 90% on the 32x32 digits after a few epochs of Adam."""
    x, y = _digits()
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1500], order[1500:]
    card = jaxnets.model_card(name)
    trainer = Trainer(
        jaxnets.create_model(name, num_classes=10),
        card.loss,
        make_optimizer("adam", 1e-3),
        per_example=card.per_example_grads,
    )
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0), x[:2])
    result = fit(trainer, state, (x[train], y[train]), epochs=epochs, batch_size=50, progress=False)
    metrics = evaluate(trainer, result.state, (x[test], y[test]))
    assert metrics["accuracy"] > 0.9, metrics

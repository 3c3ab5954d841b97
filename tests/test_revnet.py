"""Reversible blocks and RevNet: exact inverse, unit Jacobian determinant, custom-VJP gradients
equal to autodiff's, and a training step that stores less (compiled memory analysis)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_experiments import load_experiment

from jaxnets import create_model
from jaxnets.experiment import parse_config
from jaxnets.models.revnet import ConvResidual, residual_net
from jaxnets.nn.reversible import (
    ReversibleStack,
    reversible_forward,
    reversible_inverse,
    reversible_stack,
    reversible_stack_inverse,
)
from jaxnets.optim import make_optimizer
from jaxnets.train import Trainer


def _mlp_residual(params, x):
    """A pure residual function of one half: x (batch, d) -> (batch, d)."""
    return jnp.tanh(x @ params["w"] + params["b"])


def _stacked_params(seed, depth, d, dtype):
    """Parameters of ``depth`` residual functions: w (depth, d, d), b (depth, d)."""
    rng = np.random.default_rng(seed)
    return {
        "w": jnp.asarray(rng.standard_normal((depth, d, d)), dtype),
        "b": jnp.asarray(rng.standard_normal((depth, d)), dtype),
    }


def _halves(seed, shape, dtype):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.standard_normal(shape), dtype) for _ in range(2))


@functools.partial(jax.jit, static_argnames="inverse")
def _block(p_f, p_g, a, b, inverse=False):
    """One block with F = _mlp_residual(p_f, .), G = _mlp_residual(p_g, .); or its inverse."""
    f, g = functools.partial(_mlp_residual, p_f), functools.partial(_mlp_residual, p_g)
    return (reversible_inverse if inverse else reversible_forward)(f, g, a, b)


def _first(params):
    return jax.tree.map(lambda a: a[0], params)


@pytest.mark.parametrize("dtype, tol", [(jnp.float32, 1e-6), (jnp.float64, 1e-12)])
def test_block_inverse_returns_the_input(dtype, tol):
    with jax.enable_x64(dtype == jnp.float64):
        p_f, p_g = (_first(_stacked_params(seed, 1, 5, dtype)) for seed in (0, 1))
        x1, x2 = _halves(2, (7, 5), dtype)
        y1, y2 = _block(p_f, p_g, x1, x2)
        r1, r2 = _block(p_f, p_g, y1, y2, inverse=True)
        assert r1.dtype == r2.dtype == dtype
        x1, x2, y1, y2, r1, r2 = map(np.asarray, (x1, x2, y1, y2, r1, r2))
    # eq. 5 by hand (numpy), and the block really changes its input
    f_x2 = np.tanh(x2 @ np.asarray(p_f["w"]) + np.asarray(p_f["b"]))
    g_y1 = np.tanh((x1 + f_x2) @ np.asarray(p_g["w"]) + np.asarray(p_g["b"]))
    np.testing.assert_allclose(y1, x1 + f_x2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y2, x2 + g_y1, rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(y2 - x2)) > 0.1 and np.max(np.abs(y1 - x1)) > 0.1
    assert np.max(np.abs(r1 - x1)) < tol and np.max(np.abs(r2 - x2)) < tol


def test_block_jacobian_has_unit_determinant():
    with jax.enable_x64(True):
        p_f, p_g = (_first(_stacked_params(seed, 1, 3, jnp.float64)) for seed in (3, 4))

        def block(x_6):
            y1, y2 = _block(p_f, p_g, x_6[None, :3], x_6[None, 3:])
            return jnp.concatenate([y1[0], y2[0]])

        x = jnp.asarray(np.random.default_rng(5).standard_normal(6))
        jacobian = np.asarray(jax.jit(jax.jacfwd(block))(x))
    sign, logdet = np.linalg.slogdet(jacobian)
    assert sign == 1.0 and abs(logdet) < 1e-6
    # not the identity: y1 depends on x2 through F, y2 on x1 and x2 through G
    assert np.max(np.abs(jacobian - np.eye(6))) > 0.1


def test_stack_matches_a_loop_of_blocks_and_inverts_in_float64():
    depth, d = 4, 3
    with jax.enable_x64(True):
        p_f, p_g = (_stacked_params(seed, depth, d, jnp.float64) for seed in (6, 7))
        x1, x2 = _halves(8, (5, d), jnp.float64)
        stack = jax.jit(functools.partial(reversible_stack, _mlp_residual, _mlp_residual))
        inverse = jax.jit(functools.partial(reversible_stack_inverse, _mlp_residual, _mlp_residual))
        y1, y2 = stack(p_f, p_g, x1, x2)
        h1, h2 = x1, x2
        for i in range(depth):
            h1, h2 = _block(*(jax.tree.map(lambda a, i=i: a[i], p) for p in (p_f, p_g)), h1, h2)
        r1, r2 = inverse(p_f, p_g, y1, y2)
    np.testing.assert_allclose(y1, h1, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(y2, h2, rtol=1e-13, atol=1e-13)
    assert np.max(np.abs(np.asarray(r1 - x1))) < 1e-12
    assert np.max(np.abs(np.asarray(r2 - x2))) < 1e-12


def test_custom_vjp_gradients_equal_autodiff_in_float64():
    depth, d = 5, 4
    with jax.enable_x64(True):
        p_f, p_g = (_stacked_params(seed, depth, d, jnp.float64) for seed in (9, 10))
        x1, x2 = _halves(11, (6, d), jnp.float64)
        weights = jnp.asarray(np.random.default_rng(12).standard_normal((6, 2 * d)))

        def loss(recompute, p_f, p_g, x1, x2):
            y1, y2 = reversible_stack(
                _mlp_residual, _mlp_residual, p_f, p_g, x1, x2, recompute=recompute
            )
            return jnp.sum(weights * jnp.sin(jnp.concatenate([y1, y2], axis=-1)))

        grads = {
            recompute: jax.device_get(
                jax.jit(jax.grad(functools.partial(loss, recompute), argnums=(0, 1, 2, 3)))(
                    p_f, p_g, x1, x2
                )
            )
            for recompute in (True, False)
        }
    paths = [path for path, _ in jax.tree_util.tree_leaves_with_path(grads[False])]
    for path, recomputed, plain in zip(
        paths, jax.tree.leaves(grads[True]), jax.tree.leaves(grads[False]), strict=True
    ):
        assert recomputed.dtype == np.float64 and np.max(np.abs(plain)) > 1e-3, path
        np.testing.assert_allclose(recomputed, plain, rtol=1e-10, atol=1e-10, err_msg=str(path))


@functools.cache
def _tiny_revnet64():
    """RevNet in float64 with 2 maps per half, 2 blocks, on 4x4 images; its params and input."""
    model = create_model("revnet", features=4, depth=2, num_classes=3)
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(13).standard_normal((5, 4, 4, 1)))
        variables = jax.jit(model.init)(jax.random.PRNGKey(14), x)
        params = jax.tree.map(lambda a: a.astype(jnp.float64), variables["params"])
    return model, params, x


def test_revnet_recompute_gradients_equal_stored_activation_gradients():
    model, params, x = _tiny_revnet64()
    labels = jnp.array([0, 1, 2, 1, 0])

    def loss(model, params, x):
        logits = model.apply({"params": params}, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

    def both_gradients(params, x):
        return [
            jax.grad(functools.partial(loss, m), argnums=(0, 1))(params, x)
            for m in (model, model.clone(recompute=False))
        ]

    with jax.enable_x64(True):
        recomputed, stored = jax.device_get(jax.jit(both_gradients)(params, x))
    for a, b in zip(jax.tree.leaves(recomputed), jax.tree.leaves(stored), strict=True):
        assert a.dtype == np.float64
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert np.max(np.abs(stored[0]["blocks"]["F"]["conv1"]["kernel"][0])) > 1e-4
    assert np.max(np.abs(stored[1])) > 1e-4  # the input gradient


@pytest.mark.parametrize("dtype, tol", [(jnp.float32, 1e-6), (jnp.float64, 1e-12)])
def test_revnet_conv_blocks_invert(dtype, tol):
    _, params, _ = _tiny_revnet64()
    template = ConvResidual(2)

    def residual(block_params, x):
        return template.apply({"params": block_params}, x)

    @jax.jit
    def forward_and_back(blocks, x1, x2):
        y = reversible_stack(residual, residual, blocks["F"], blocks["G"], x1, x2)
        return y, reversible_stack_inverse(residual, residual, blocks["F"], blocks["G"], *y)

    with jax.enable_x64(dtype == jnp.float64):
        blocks = jax.tree.map(lambda a: a.astype(dtype), params["blocks"])
        x1, x2 = _halves(15, (5, 4, 4, 2), dtype)
        (y1, _), (r1, r2) = forward_and_back(blocks, x1, x2)
        assert r1.dtype == r2.dtype == dtype
        x1, x2, y1, r1, r2 = map(np.asarray, (x1, x2, y1, r1, r2))
    assert np.max(np.abs(y1 - x1)) > 1e-2
    assert np.max(np.abs(r1 - x1)) < tol and np.max(np.abs(r2 - x2)) < tol


def _step_temp_bytes(model, batch_size=64):
    """Temporaries of the compiled training step (loss, grad, Adam update); compiled, not run."""
    trainer = Trainer(model, "softmax_cross_entropy", make_optimizer("adam", 1e-3))
    x = jax.ShapeDtypeStruct((batch_size, 8, 8, 1), jnp.float32)
    y = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
    state = jax.eval_shape(trainer.init, jax.random.PRNGKey(0), x)
    compiled = jax.jit(trainer.step, donate_argnums=0).lower(state, (x, y)).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def test_recomputing_step_needs_less_memory_than_storing_activations():
    # 8 blocks of 8 maps, batch 64: one half of one block's activations is 64 KiB; storing
    # them (plain autodiff, or the residual net) costs about 2 MiB more than recomputing.
    recomputing = _step_temp_bytes(create_model("revnet", features=8, depth=8))
    storing = _step_temp_bytes(create_model("revnet", features=8, depth=8, recompute=False))
    residual = _step_temp_bytes(residual_net(features=8, depth=8))
    assert recomputing < 0.6 * storing
    assert recomputing < 0.6 * residual


def test_invalid_configurations_are_named():
    x = jnp.zeros((2, 4, 4, 1))
    with pytest.raises(ValueError, match="features must be even; got 5"):
        jax.eval_shape(create_model("revnet", features=5, depth=1).init, jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="block must be one of reversible, residual"):
        jax.eval_shape(create_model("revnet", block="dense").init, jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="expects images"):
        jax.eval_shape(create_model("revnet").init, jax.random.PRNGKey(0), x[..., 0])
    batch_norm = functools.partial(nn.BatchNorm, use_running_average=False)
    stack = ReversibleStack(batch_norm, depth=2)
    with pytest.raises(ValueError, match=r"pure functions .* \['batch_stats', 'params'\]"):
        jax.eval_shape(stack.init, jax.random.PRNGKey(0), x, x)
    p_f = _stacked_params(16, 3, 2, jnp.float32)
    p_g = _stacked_params(17, 2, 2, jnp.float32)
    halves = _halves(18, (4, 2), jnp.float32)
    with pytest.raises(ValueError, match=r"one leading depth axis .* got leading sizes \[2, 3\]"):
        reversible_stack(_mlp_residual, _mlp_residual, p_f, p_g, *halves)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--depth", "3"], "depth must be one of depths (2, 4, 8, 16); got 3"),
        (["--features", "7"], "features must be even and >= 2"),
        (["--depths", "8", "--depth", "8"], "depths must hold at least two different depths"),
    ],
)
def test_invalid_experiment_config_is_a_usage_error(args, message, capsys):
    experiment = load_experiment("revnet")
    with pytest.raises(SystemExit) as exit_info:
        parse_config(experiment.Config, args)
    assert exit_info.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())


# About 25 s (ten small compiles): the parts are tested above (memory ratio, gradients) and in
# tests/test_models.py (the registered revnet trains).
@pytest.mark.slow
def test_experiment_smoke(tmp_path):
    experiment = load_experiment("revnet")
    summary = experiment.main(experiment.Config(smoke=True, out=str(tmp_path)))
    (run,) = (tmp_path / "revnet").iterdir()
    assert {"summary.json", "config.json", "metrics.jsonl", "memory_vs_depth.png"} <= {
        p.name for p in run.iterdir()
    }
    results = summary["results"]
    assert set(experiment.VARIANTS) <= set(results)
    revnet = results["revnet"]
    assert revnet["memory_ratio_vs_stored"] == pytest.approx(
        revnet["temp_MiB"] / results["revnet_stored"]["temp_MiB"]
    )
    assert results["residual"]["parameters"] > revnet["parameters"]
    assert 0.0 <= revnet["test_accuracy"] <= 1.0 and revnet["step_ms"] > 0
    claims = {c["metric"]: c for c in summary["claims"]}
    assert list(claims) == ["memory_ratio_vs_residual", "memory_ratio_vs_stored", "test_accuracy"]
    # the memory of the compiled step is one measurement; the training is repeated per seed
    assert claims["memory_ratio_vs_stored"]["values"] == [revnet["memory_ratio_vs_stored"]]
    accuracies = claims["test_accuracy"]["values"]
    assert len(accuracies) == summary["config"]["seeds"] == 2
    assert revnet["test_accuracy"] == pytest.approx(np.mean(accuracies))

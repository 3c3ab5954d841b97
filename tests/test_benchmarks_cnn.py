"""The conv-net benchmark's models (benchmarks/cnn_models.py): the Flax and PyTorch LeNet-5
and ResNet-18 have jaxnets' parameter trees and counts, the bfloat16 ResNet convolves in
bfloat16, and the three frameworks compute the same loss, gradient and step on the same
variables. One ResNet-18 step runs here on 16x16 images (jaxnets and Flax agree); the
bfloat16 training case is marked slow.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from benchmark_counts import (
    LENET5_BIASES,
    LENET5_STEP_MULTIPLY_ADDS,
    LENET5_WEIGHTS,
    RESNET18_PARAMS,
)
from flax import traverse_util

import jaxnets
import jaxnets.models  # noqa: F401  (registers the models)
from benchmarks import cnn, cnn_models, steps
from jaxnets import native
from jaxnets.optim import make_optimizer
from jaxnets.train import Trainer, TrainState


def _param_count(model, input_shape):
    x = jnp.zeros((1, *input_shape))
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    return variables, sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize("model", cnn_models.MODELS)
def test_flax_models_have_jaxnets_parameter_tree(model):
    shape = cnn_models.INPUT_SHAPES[model]
    ours, ours_count = _param_count(cnn_models.flax_model(model), shape)
    theirs, theirs_count = _param_count(jaxnets.create_model(model, num_classes=10), shape)
    # Same names and shapes: the two steps can be run on the same variables.
    assert jax.tree.map(lambda a: a.shape, ours) == jax.tree.map(lambda a: a.shape, theirs)
    expected = {"lenet5": LENET5_WEIGHTS + LENET5_BIASES, "resnet18": RESNET18_PARAMS}
    assert ours_count == theirs_count == expected[model]


def test_bfloat16_resnet18_convolves_in_bfloat16_with_float32_parameters():
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    for model in (
        cnn_models.flax_model("resnet18", dtype="bfloat16"),
        jaxnets.create_model("resnet18", num_classes=10, dtype=jnp.bfloat16),
    ):
        variables, _ = _param_count(model, (32, 32, 3))
        apply = lambda v, x, m=model: m.apply(v, x, train=True, mutable=["batch_stats"])  # noqa: E731
        jaxpr = jax.make_jaxpr(apply)(variables, x)
        convs = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
        # conv1, 16 block convs and 3 projection shortcuts, all with bf16 operands.
        assert len(convs) == 20
        assert {v.aval.dtype for e in convs for v in e.invars} == {jnp.dtype(jnp.bfloat16)}
        assert {a.dtype for a in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
        assert jaxpr.out_avals[0].shape == (2, 10) and jaxpr.out_avals[0].dtype == jnp.float32


def _lenet5_batch(batch=8):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, 32, 32, 1), dtype=np.float32)
    return x, rng.integers(0, 10, batch).astype(np.int32)


def _random_variables(model, input_shape, seed=0):
    """Variables of ``model`` drawn with NumPy (compiling a jitted init costs seconds)."""
    rng = np.random.default_rng(seed)
    shapes, _ = _param_count(model, input_shape)
    params = jax.tree.map(
        lambda s: (0.2 * rng.standard_normal(s.shape)).astype(s.dtype), shapes["params"]
    )
    # Running statistics only matter in evaluation mode; any valid ones will do.
    model_state = jax.tree.map(lambda s: np.ones(s.shape, s.dtype), shapes.get("batch_stats", {}))
    return {"params": params, **({"batch_stats": model_state} if model_state else {})}


def _same_step(model_name, x, y):
    """One jaxnets step and one hand-written Flax step from the same variables."""
    trainer = Trainer(
        jaxnets.create_model(model_name, num_classes=10),
        "softmax_cross_entropy",
        make_optimizer("momentum", 0.01, momentum=0.9),
        per_example=jaxnets.model_card(model_name).per_example_grads,
    )
    variables = _random_variables(
        cnn_models.flax_model(model_name), cnn_models.INPUT_SHAPES[model_name]
    )
    model_state = {k: v for k, v in variables.items() if k != "params"}
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=jax.tree.map(jnp.asarray, variables["params"]),
        opt_state=trainer.optimizer.init(variables["params"]),
        model_state=jax.tree.map(jnp.asarray, model_state),
        rng=jax.random.PRNGKey(0),
    )
    step, create_state = cnn_models.flax_train_step(
        cnn_models.flax_model(model_name), optax.sgd(0.01, momentum=0.9)
    )
    # Both steps donate their state: each gets its own copy of the variables.
    flax_state = create_state(jax.tree.map(jnp.asarray, variables))
    # the same convolutions on both sides (XLA's): test_native_conv compares oneDNN's with them
    with native.pure_jax():
        new, metrics = trainer.train_step(state, (x, y))
    flax_new, flax_metrics = step(flax_state, (x, y))
    assert float(metrics["loss"]) == pytest.approx(float(flax_metrics["loss"]), rel=1e-6)
    # NumPy, not jnp: eager jnp ops compile one program per leaf shape (~1.5 s for ResNet-18)
    new_params, flax_params = jax.device_get((new.params, flax_new.params))
    diffs = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), new_params, flax_params)
    assert max(jax.tree.leaves(diffs)) < 1e-6
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), new.params, variables["params"])
    assert min(jax.tree.leaves(moved)) > 0  # every parameter was updated


def test_lenet5_jaxnets_and_flax_steps_agree_on_the_same_variables():
    _same_step("lenet5", *map(jnp.asarray, _lenet5_batch()))


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["jaxnets", "flax"])
def test_resnet18_case_trains_in_bfloat16(framework):
    record = cnn.run_case(
        cnn.CaseConfig(
            framework,
            "resnet18",
            4,
            steps=2,
            data_batches=1,
            warmup_steps=1,
            dtype="bfloat16",
            peak_size=64,
        )
    )
    assert record["dtype"] == "bfloat16" and record["final_loss"] < record["first_loss"]
    assert record["step_flops"] > 4 * 100e6  # ~128 MFLOPs an image at 32x32 (XLA's count)


def test_resnet18_jaxnets_and_flax_steps_agree_on_the_same_variables():
    """The full ResNet-18 (every block, projection and batch norm) on 16x16 images, batch 3.

    The cost is the two compiles, not the images: 16x16 still leaves a 2x2 map for stage 3's
    stride-2 block and three values per channel for stage 4's batch statistics, so a block
    computing e.g. relu(F(x)) + x instead of relu(F(x) + x) changes the loss.
    """
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((3, 16, 16, 3), dtype=np.float32))
    _same_step("resnet18", x, jnp.asarray([1, 2, 3], jnp.int32))


def test_step_flops_are_three_forward_passes_of_lenet5_connections():
    model = cnn_models.flax_model("lenet5")
    step, create_state = cnn_models.flax_train_step(model, optax.sgd(0.01))
    state = create_state(_random_variables(model, (32, 32, 1)))
    flops = {
        b: steps.step_flops(step, state, (jnp.zeros((b, 32, 32, 1)), jnp.zeros(b, jnp.int32)))
        for b in (8, 16)
    }
    per_image = (flops[16] - flops[8]) / 8
    # + tanh, pooling and softmax
    assert 2 * LENET5_STEP_MULTIPLY_ADDS <= per_image <= 1.05 * 2 * LENET5_STEP_MULTIPLY_ADDS


def _torch_weights(params):
    """Flax LeNet-5/ResNet parameters as a PyTorch state dict (same layer names)."""
    import torch

    state = {}
    for (*module, name), leaf in traverse_util.flatten_dict(params).items():
        a = np.asarray(leaf)
        if name == "kernel" and a.ndim == 4:
            a = a.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        elif name == "kernel" and module == ["F5"]:
            # Flax flattens S4's maps as (h, w, c), PyTorch as (c, h, w).
            a = a.reshape(5, 5, 16, -1).transpose(2, 0, 1, 3).reshape(400, -1).T
        elif name == "kernel":
            a = a.T
        key = ".".join(module) + "." + {"kernel": "weight", "scale": "weight"}.get(name, name)
        state[key] = torch.from_numpy(np.array(a))  # a writable copy
    return state


def test_torch_lenet5_matches_flax_loss_and_gradient_norm():
    torch = pytest.importorskip("torch", reason="torch is not installed: pip install torch==2.13.0")
    x, y = _lenet5_batch()
    model = cnn_models.flax_model("lenet5")
    params = _random_variables(model, (32, 32, 1))["params"]

    @jax.jit
    def loss_and_grads(p):
        def loss_fn(p):
            logits = model.apply({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(p)
        return loss, optax.tree.norm(grads)

    loss, grad_norm_jax = loss_and_grads(params)
    net = cnn_models.torch_model("lenet5")
    net.load_state_dict(_torch_weights(params))
    torch_loss = torch.nn.functional.cross_entropy(
        net(torch.from_numpy(x).permute(0, 3, 1, 2)), torch.from_numpy(y).long()
    )
    torch_loss.backward()
    assert torch_loss.item() == pytest.approx(float(loss), rel=1e-5)
    grad_norm = math.sqrt(sum(float((p.grad**2).sum()) for p in net.parameters()))
    assert grad_norm == pytest.approx(float(grad_norm_jax), rel=1e-4)


def test_torch_resnet18_has_torchvision_parameter_count_and_flax_names():
    torch = pytest.importorskip("torch", reason="torch is not installed: pip install torch==2.13.0")
    net = cnn_models.torch_model("resnet18")
    assert sum(p.numel() for p in net.parameters()) == RESNET18_PARAMS
    # Every Flax parameter (kernels transposed) loads by name with its shape; what is left is
    # the running statistics, which Flax keeps in batch_stats.
    variables, _ = _param_count(cnn_models.flax_model("resnet18"), (32, 32, 3))
    zeros = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), variables["params"])
    missing, unexpected = net.load_state_dict(_torch_weights(zeros), strict=False)
    assert unexpected == [] and all(
        k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in missing
    )
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)

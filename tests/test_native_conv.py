"""jaxnets.native's oneDNN convolutions against XLA's (the pure JAX path), issue 20.

The fast path must give the pure path's outputs and gradients to float32 rounding, fall back to
XLA for what it does not compute (float64, other layouts, groups), and be used by the models.
"""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnets
from jaxnets import native
from jaxnets.gradcheck import gradcheck_model
from jaxnets.native import library
from jaxnets.native.conv import conv_general_dilated, supports

pytestmark = pytest.mark.usefixtures("native_kernels")  # tests/conftest.py


def test_the_status_line_says_the_kernels_are_on():
    assert library.status().startswith("oneDNN kernels: on")


NHWC = ("NHWC", "HWIO", "NHWC")


def _conv(x, kernel, strides=(1, 1), padding="SAME", **kw):
    return conv_general_dilated(x, kernel, strides, padding, dimension_numbers=NHWC, **kw)


def _loss_and_grads(x, kernel, conv):
    def loss(x, kernel):
        y = _conv(x, kernel, **conv)
        return jnp.sum(jnp.sin(y) * jnp.arange(y.size, dtype=y.dtype).reshape(y.shape) / y.size)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(x, kernel)


def _calls_onednn(fn, *args) -> bool:
    return "jaxnets_conv" in jax.jit(fn).lower(*args).as_text()


def _assert_close(fast, pure, tolerance):
    for got, want in zip(jax.tree.leaves(fast), jax.tree.leaves(pure), strict=True):
        scale = float(jnp.max(jnp.abs(want)))
        assert scale > 0
        np.testing.assert_allclose(got, want, rtol=0, atol=tolerance * scale)


CASES = {
    "lenet C1": ((4, 32, 32, 1), (5, 5, 1, 6), dict(padding="VALID")),
    "lenet C3": ((1, 14, 14, 6), (5, 5, 6, 16), dict(padding="VALID")),
    "same stride 2": ((2, 17, 15, 5), (3, 3, 5, 7), dict(strides=(2, 2))),
    "resnet stem": ((2, 16, 16, 3), (7, 7, 3, 8), dict(strides=(2, 2), padding=((3, 3),) * 2)),
    "dilated": ((2, 12, 12, 4), (3, 3, 4, 5), dict(rhs_dilation=(2, 2))),
    "1x1 projection": ((3, 9, 9, 3), (1, 1, 3, 4), dict(strides=(2, 2), padding="VALID")),
    "uneven pads": ((2, 8, 8, 2), (3, 2, 2, 3), dict(strides=(1, 2), padding=((2, 0), (1, 3)))),
    # at most 4 output pixels: oneDNN's own layouts, reordered from and to channels-last
    "2x2 image, 32 channels": ((3, 2, 2, 32), (3, 3, 32, 48), {}),
    # kernels with taps that only ever read padding: oneDNN gets the live taps only
    "1x1 image, 3x3 kernel": ((3, 1, 1, 4), (3, 3, 4, 5), {}),
    "2x2 image, stride 2": ((2, 2, 2, 4), (3, 3, 4, 5), dict(strides=(2, 2), padding="SAME")),
    "dead dilated taps": ((2, 1, 2, 3), (3, 3, 3, 4), dict(rhs_dilation=(2, 2))),
}
# the kernel shape oneDNN receives for the cases with dead taps
LIVE_KERNEL = {
    "1x1 image, 3x3 kernel": "1x1x4x5",
    "2x2 image, stride 2": "2x2x4x5",
    "dead dilated taps": "1x1x3x4",
}


@pytest.mark.parametrize("name", CASES)
def test_outputs_and_gradients_equal_the_pure_path_to_float32_rounding(name):
    x_shape, k_shape, conv = CASES[name]
    rng = np.random.default_rng(sum(x_shape))
    x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
    # scaled as initializers do (by 1/sqrt(fan-in)), so that outputs are O(1) for every case
    kernel = jnp.asarray(rng.standard_normal(k_shape) / np.sqrt(np.prod(k_shape[:3])), jnp.float32)
    fast = _loss_and_grads(x, kernel, conv)
    with native.pure_jax():
        pure = _loss_and_grads(x, kernel, conv)
    _assert_close(fast, pure, 3e-6)
    # and the fast path really ran: its program calls oneDNN, the pure one does not
    assert _calls_onednn(lambda x, k: _conv(x, k, **conv), x, kernel)
    text = jax.jit(lambda x, k: _conv(x, k, **conv)).lower(x, kernel).as_text()
    forward = next(line for line in text.splitlines() if "jaxnets_conv_forward" in line)
    live = LIVE_KERNEL.get(name, "x".join(map(str, k_shape)))
    assert f"tensor<{live}xf32>" in forward, forward


@pytest.mark.parametrize("name", CASES)
def test_forward_mode_and_second_derivatives_equal_the_pure_path(name):
    # jvp, a Hessian-vector product (jvp of the gradient) and jax.hessian along the kernel,
    # all through oneDNN's three convolution kernels, against XLA's
    x_shape, k_shape, conv = CASES[name]
    rng = np.random.default_rng(len(name))
    x, dx = (jnp.asarray(rng.standard_normal(x_shape), jnp.float32) for _ in range(2))
    kernel, dk = (
        jnp.asarray(rng.standard_normal(k_shape) / np.sqrt(np.prod(k_shape[:3])), jnp.float32)
        for _ in range(2)
    )

    def loss(x, kernel):
        return jnp.sum(jnp.sin(_conv(x, kernel, **conv)))

    @jax.jit
    def derivatives(x, kernel):
        tangent = jax.jvp(lambda x, k: _conv(x, k, **conv), (x, kernel), (dx, dk))[1]
        hvp = jax.jvp(jax.grad(loss, argnums=(0, 1)), (x, kernel), (dx, dk))[1]
        return tangent, hvp, jax.hessian(lambda scale: loss(x, scale * kernel))(1.0)

    text = derivatives.lower(x, kernel).as_text()
    assert all(f"jaxnets_conv_{kind}" in text for kind in ("forward", "input_grad", "kernel_grad"))
    fast = derivatives(x, kernel)
    with native.pure_jax():
        pure = derivatives(x, kernel)
    _assert_close(fast, pure, 1e-5)


def test_what_onednn_does_not_compute_runs_on_xla():
    x, k = jnp.ones((2, 8, 8, 4), jnp.float32), jnp.ones((3, 3, 4, 6), jnp.float32)
    assert _calls_onednn(_conv, x, k)
    # feature groups, input dilation, another layout, a 1-D signal, negative padding: XLA
    grouped = jnp.ones((3, 3, 2, 6), jnp.float32)
    assert not _calls_onednn(lambda x, k: _conv(x, k, feature_group_count=2), x, grouped)
    dilated_input = ((1, 1), (1, 1))
    assert not _calls_onednn(
        lambda x, k: _conv(x, k, padding=dilated_input, lhs_dilation=(2, 2)), x, k
    )
    nchw, oihw = jnp.ones((2, 4, 8, 8), jnp.float32), jnp.ones((6, 4, 3, 3), jnp.float32)
    assert not _calls_onednn(lambda x, k: conv_general_dilated(x, k, (1, 1), "SAME"), nchw, oihw)
    signal, taps = jnp.ones((2, 8, 4), jnp.float32), jnp.ones((3, 4, 6), jnp.float32)
    one_d = ("NWC", "WIO", "NWC")
    assert not _calls_onednn(
        lambda x, k: conv_general_dilated(x, k, (1,), "SAME", dimension_numbers=one_d), signal, taps
    )
    cropped = ((-1, 1), (0, 0))
    assert not _calls_onednn(lambda x, k: _conv(x, k, padding=cropped), x, k)
    assert _conv(x, k, padding=cropped).shape == (2, 6, 6, 6)
    assert not supports(x, k, dimension_numbers=NHWC, feature_group_count=2)
    assert not supports(x.astype(jnp.bfloat16), k.astype(jnp.bfloat16), dimension_numbers=NHWC)


def test_float64_gradient_checks_run_the_pure_path():
    with jax.enable_x64(True):
        x, k = jnp.ones((1, 6, 6, 2), jnp.float64), jnp.ones((3, 3, 2, 2), jnp.float64)
        assert not _calls_onednn(_conv, x, k)
    report = gradcheck_model("lenet5")
    assert report.passed, report


def test_pure_jax_retraces_a_function_jitted_with_the_kernels():
    x, k = jnp.ones((1, 6, 6, 2), jnp.float32), jnp.ones((3, 3, 2, 2), jnp.float32)
    conv = jax.jit(_conv)
    conv(x, k)
    with native.pure_jax():
        assert "jaxnets_conv" not in conv.lower(x, k).as_text()
        assert not native.enabled()
    assert "jaxnets_conv" in conv.lower(x, k).as_text()


def test_vmapped_members_each_get_their_own_convolution():
    # an ensemble vmaps the model over its members' kernels
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((3, 2, 7, 7, 2)), jnp.float32)
    kernels = jnp.asarray(rng.standard_normal((3, 3, 3, 2, 4)), jnp.float32)
    member_grads = jax.vmap(jax.grad(lambda x, k: jnp.sum(_conv(x, k) ** 2), 1))
    fast = jax.jit(member_grads)(x, kernels)
    with native.pure_jax():
        pure = jax.jit(member_grads)(x, kernels)
    _assert_close(fast, pure, 3e-6)


def test_models_train_on_the_kernels_with_the_pure_paths_numbers():
    # the registry's conv nets build their layers with jaxnets.nn.conv.Conv
    model = jaxnets.create_model("lenet5", num_classes=10)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 32, 32, 1)), jnp.float32)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
    grads = jax.grad(lambda v: jnp.sum(model.apply(v, x) ** 2))
    assert "jaxnets_conv_kernel_grad" in jax.jit(grads).lower(variables).as_text()
    fast = jax.jit(grads)(variables)
    with native.pure_jax():
        pure = jax.jit(grads)(variables)
    _assert_close(fast, pure, 1e-5)


_MESH_PROGRAM = """
import jax
jax.config.update("jax_num_cpu_devices", 2)
import jax.numpy as jnp
import jaxnets
from jaxnets import distributed
from jaxnets.optim import make_optimizer
from jaxnets.train import Trainer

x, y = jnp.zeros((4, 32, 32, 1)), jnp.zeros((4,), jnp.int32)
for devices, groups in ((1, None), (2, None), (2, 2)):
    trainer = Trainer(
        jaxnets.create_model("lenet5", num_classes=10), "softmax_cross_entropy",
        make_optimizer("sgd", 0.1), mesh=distributed.data_mesh(devices), reduction_groups=groups,
    )
    state = trainer.place(jax.jit(trainer.init)(jax.random.PRNGKey(0), x))
    text = trainer.train_step.lower(state, (x, y)).as_text()
    print(devices, groups, "jaxnets_conv" in text, trainer.uses_python_loops(x))
"""


def test_a_batch_split_over_devices_runs_xlas_partitionable_convolutions():
    # XLA would gather a custom call's operands onto every device (Trainer.kernels_for_mesh);
    # inside shard_map (reduction_groups) each device convolves its own rows on oneDNN. Epochs
    # scan over oneDNN's convolutions and loop from Python over XLA's (evaluation applies the
    # model outside shard_map, so any mesh of several devices loops)
    done = subprocess.run(
        [sys.executable, "-c", _MESH_PROGRAM], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-4:-1] == [
        "1 None True False",
        "2 None False True",
        "2 2 True True",
    ]

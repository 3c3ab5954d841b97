"""The training engine's steps and epochs: a hand-computed SGD step, one compile per shape,
jit against eager, per-example gradients, the compiled epoch against a loop of steps, the
epoch modes, and reduction groups."""

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_helpers import Net, init_state, momentum_trainer, toy_data

import jaxnets
from jaxnets import native
from jaxnets.optim import make_optimizer
from jaxnets.train import Trainer, fit


@pytest.fixture(scope="module")
def trainer():
    return momentum_trainer()


def test_train_step_equals_a_hand_computed_sgd_step():
    tr = Trainer(Net(dropout=0.0), "softmax_cross_entropy", make_optimizer("sgd", 0.5))
    state = init_state(tr)
    x, y = map(jnp.asarray, toy_data(8))
    params0 = jax.device_get(state.params)

    def mean_loss(p):
        z = tr.model.apply({"params": p}, x)
        return jnp.mean(jax.nn.logsumexp(z, -1) - z[jnp.arange(8), y])

    expected = jax.tree.map(lambda p, g: p - 0.5 * g, params0, jax.grad(mean_loss)(params0))
    new_state, metrics = tr.train_step(state, (x, y))
    assert int(new_state.step) == 1
    assert float(metrics["loss"]) == pytest.approx(float(mean_loss(params0)), rel=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        new_state.params,
        expected,
    )


def test_second_step_does_not_recompile(trainer):
    state = init_state(trainer)
    x, y = map(jnp.asarray, toy_data(8))
    state, _ = trainer.train_step(state, (x, y))
    size = trainer.train_step._cache_size()
    state, _ = trainer.train_step(state, (x, y))
    assert trainer.train_step._cache_size() == size


@pytest.mark.slow  # eager flax runs op by op: ~30 s on 2 cores
def test_jit_equals_eager(trainer):
    x, y = map(jnp.asarray, toy_data(8))
    jitted, _ = trainer.train_step(init_state(trainer), (x, y))
    with jax.disable_jit():
        eager, _ = trainer.step(init_state(trainer), (x, y))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        jitted.params,
        eager.params,
    )


def test_per_example_grads_average_to_the_batch_gradient():
    # without dropout: with it, each example draws its own mask in per_example_grads
    tr = Trainer(Net(dropout=0.0), "softmax_cross_entropy", make_optimizer("sgd", 1.0))
    state = init_state(tr)
    x, y = map(jnp.asarray, toy_data(6))
    per_example = tr.per_example_grads(state, (x, y))
    assert per_example["Dense_0"]["kernel"].shape == (6, 5, 16)
    # one SGD step with lr=1 moves params by minus the mean gradient
    params0 = jax.device_get(state.params)
    new_state, _ = tr.train_step(state, (x, y))
    jax.tree.map(
        lambda g, p0, p1: np.testing.assert_allclose(g.mean(0), p0 - p1, rtol=1e-4, atol=1e-6),
        per_example,
        params0,
        new_state.params,
    )
    # examples really differ
    k = np.asarray(per_example["Dense_1"]["kernel"])
    assert np.abs(k[0] - k[1]).max() > 1e-4


def test_compiled_epoch_equals_python_loop_of_steps(trainer):
    x, y = map(jnp.asarray, toy_data(40))
    scanned, metrics = trainer.train_epoch(init_state(trainer), x, y, batch_size=8)
    assert metrics["loss"].shape == (5,)
    state = init_state(trainer)
    shuffle = jax.random.fold_in(jax.random.fold_in(state.rng, 0x5EED), 0)
    order = np.asarray(jax.random.permutation(shuffle, 40)).reshape(5, 8)
    for idx in order:
        state, _ = trainer.train_step(state, (x[idx], y[idx]))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        scanned.params,
        state.params,
    )


def test_python_epoch_takes_the_same_steps_as_the_scan(trainer):
    x, y = map(jnp.asarray, toy_data(40))
    looped = dataclasses.replace(trainer, epoch_mode="python")
    assert looped.uses_python_loops(x) and not trainer.uses_python_loops(x)
    scanned, scan_metrics = trainer.train_epoch(init_state(trainer), x, y, batch_size=8)
    stepped, step_metrics = looped.train_epoch(init_state(looped), x, y, batch_size=8)
    np.testing.assert_allclose(step_metrics["loss"], scan_metrics["loss"], rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        scanned.params,
        stepped.params,
    )
    outputs = trainer.predict(scanned, x)
    for mode in (trainer, looped):
        # evaluation too: with a remainder chunk (40 = 3 * 13 + 1), and all in one chunk
        for batch_size in (13, 40):
            metrics = mode.evaluate(scanned, x, y, batch_size=batch_size)
            np.testing.assert_allclose(metrics["accuracy"], np.mean(np.argmax(outputs, -1) == y))
    with pytest.raises(ValueError, match="unknown epoch_mode 'fast'; expected one of auto"):
        dataclasses.replace(trainer, epoch_mode="fast")


def test_auto_epoch_mode_scans_onednn_convolutions_and_loops_over_xlas(native_kernels):
    conv = Trainer(
        jaxnets.create_model("lenet5", **jaxnets.model_card("lenet5").test_config),
        "softmax_cross_entropy",
        make_optimizer("sgd", 0.1),
    )
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((12, 12, 12, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 12), jnp.int32)
    # oneDNN's convolutions are custom calls, as fast inside a scan as outside: scan
    assert not conv.uses_python_loops(x)
    with native.pure_jax():  # XLA's convolutions are 13-27x slower inside a loop: Python
        assert conv.uses_python_loops(x)
    looped = dataclasses.replace(conv, epoch_mode="python")
    start = conv.init(jax.random.PRNGKey(0), x[:1])  # each epoch donates its state
    scanned, scan_metrics = conv.train_epoch(start, x, y, batch_size=4)
    start = looped.init(jax.random.PRNGKey(0), x[:1])
    stepped, step_metrics = looped.train_epoch(start, x, y, batch_size=4)
    np.testing.assert_allclose(step_metrics["loss"], scan_metrics["loss"], rtol=1e-5)
    assert scan_metrics["loss"].shape == (3,)


# --- what the surviving mutants of jaxnets/train/step.py showed untested (issue 15) ----------


class _Wrapped(nn.Module):
    """A 3x3 convolution (or, with ``conv=False``, a ReLU) run through the JAX transformation
    ``wrap``, which puts it in an inner jaxpr of the forward pass: jit and checkpoint hold it as
    a ClosedJaxpr and a plain Jaxpr respectively; ReLU adds its own custom_jvp inner jaxpr."""

    wrap: Callable
    conv: bool = True

    @nn.compact
    def __call__(self, x, train: bool = False):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, x.shape[-1], 2))

        def layer(x, kernel):
            if self.conv:
                return jax.lax.conv_general_dilated(
                    x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
                )
            return jax.nn.relu(x) * jnp.sum(kernel)

        return jnp.mean(self.wrap(layer)(x, kernel), axis=(1, 2))


def test_auto_epoch_mode_finds_convolutions_inside_inner_jaxprs_and_only_on_the_cpu(monkeypatch):
    """``"auto"`` loops from Python on the CPU for any forward pass that contains a convolution,
    also one nested in a jit, a checkpoint or both; inner jaxprs without a convolution do not
    count; on any other backend it never loops from Python (the module docstring's rule)."""
    x = jnp.zeros((2, 6, 6, 1))

    def python_loops(wrap, conv=True):
        model = _Wrapped(wrap, conv)
        return Trainer(
            model, "softmax_cross_entropy", make_optimizer("sgd", 0.1)
        ).uses_python_loops(x)

    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert python_loops(jax.jit) and python_loops(jax.checkpoint)
    assert python_loops(lambda f: jax.jit(jax.checkpoint(f)))
    assert not python_loops(jax.jit, conv=False)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert not python_loops(jax.jit)


# --- reduction groups: a batch's gradient summed over groups of examples ---------------------


def test_reduction_groups_sum_the_groups_gradients_to_the_batch_gradient():
    """reduction_groups=4 splits a batch of 8 into 4 groups of 2 and adds their gradients:
    the same gradient (regularizer included) and metrics as one reduction over the batch,
    to float32 rounding, and an SGD step that equals p - lr * g."""
    l2 = lambda p: 0.01 * sum(jnp.sum(w**2) for w in jax.tree.leaves(p))  # noqa: E731
    common = dict(loss="softmax_cross_entropy", optimizer=make_optimizer("sgd", 0.5))
    whole = Trainer(Net(dropout=0.0), regularizer=l2, **common)
    grouped = Trainer(Net(dropout=0.0), regularizer=l2, reduction_groups=4, **common)
    state = init_state(whole)
    x, y = map(jnp.asarray, toy_data(8))
    _, metrics, grads = whole.step_with_grads(state, (x, y))
    new_state, grouped_metrics, grouped_grads = grouped.step_with_grads(state, (x, y))
    for name in ("loss", "accuracy"):
        assert float(grouped_metrics[name]) == pytest.approx(float(metrics[name]), rel=1e-6)
    for g, h, p, q in zip(*map(jax.tree.leaves, (grads, grouped_grads, state.params,
                                                  new_state.params)), strict=True):  # fmt: skip
        assert float(jnp.abs(g).max()) > 1e-3
        np.testing.assert_allclose(h, g, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(q, p - 0.5 * h, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(reduction_groups=0), "reduction_groups must be"),
        (dict(reduction_groups=3, per_example=False), "couples the examples"),
    ],
)
def test_reduction_groups_refuse_impossible_settings(options, message):
    with pytest.raises(ValueError, match=message):
        Trainer(Net(), "softmax_cross_entropy", make_optimizer("sgd", 0.1), **options)


def test_a_batch_that_does_not_split_into_the_groups_is_refused_before_any_step():
    tr = Trainer(Net(), "softmax_cross_entropy", make_optimizer("sgd", 0.1), reduction_groups=3)
    x, y = toy_data(16)
    with pytest.raises(ValueError, match="batch_size 8 does not split into 3 reduction groups"):
        fit(tr, init_state(tr), (x, y), epochs=1, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="does not split into 3 reduction groups"):
        tr.train_step(init_state(tr), (jnp.asarray(x[:8]), jnp.asarray(y[:8])))

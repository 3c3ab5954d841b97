"""The training engine: pure steps, compiled epochs, callbacks, checkpoints, guards."""

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnets
from jaxnets.losses import LossSpec
from jaxnets.optim import make_optimizer
from jaxnets.train import EarlyStopping, NonFiniteLossError, Trainer, evaluate, fit


class _Net(nn.Module):
    """A small MLP with dropout, so the rng path is exercised."""

    dropout: float = 0.1

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.tanh(nn.Dense(16)(x))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.Dense(3)(h)


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 1).astype(np.int32)
    return x, y


@pytest.fixture(scope="module")
def trainer():
    return Trainer(_Net(), "softmax_cross_entropy", make_optimizer("momentum", 0.1))


def _state(trainer, seed=0):
    return trainer.init(jax.random.PRNGKey(seed), jnp.zeros((1, 5)))


def test_train_step_equals_a_hand_computed_sgd_step():
    tr = Trainer(_Net(dropout=0.0), "softmax_cross_entropy", make_optimizer("sgd", 0.5))
    state = _state(tr)
    x, y = map(jnp.asarray, _data(8))
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
    state = _state(trainer)
    x, y = map(jnp.asarray, _data(8))
    state, _ = trainer.train_step(state, (x, y))
    size = trainer.train_step._cache_size()
    state, _ = trainer.train_step(state, (x, y))
    assert trainer.train_step._cache_size() == size


@pytest.mark.slow  # eager flax runs op by op: ~30 s on 2 cores
def test_jit_equals_eager(trainer):
    x, y = map(jnp.asarray, _data(8))
    jitted, _ = trainer.train_step(_state(trainer), (x, y))
    with jax.disable_jit():
        eager, _ = trainer.step(_state(trainer), (x, y))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        jitted.params,
        eager.params,
    )


def test_per_example_grads_average_to_the_batch_gradient():
    # without dropout: with it, each example draws its own mask in per_example_grads
    tr = Trainer(_Net(dropout=0.0), "softmax_cross_entropy", make_optimizer("sgd", 1.0))
    state = _state(tr)
    x, y = map(jnp.asarray, _data(6))
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
    x, y = map(jnp.asarray, _data(40))
    scanned, metrics = trainer.train_epoch(_state(trainer), x, y, batch_size=8)
    assert metrics["loss"].shape == (5,)
    state = _state(trainer)
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
    x, y = map(jnp.asarray, _data(40))
    looped = dataclasses.replace(trainer, epoch_mode="python")
    assert looped.uses_python_loops(x) and not trainer.uses_python_loops(x)
    scanned, scan_metrics = trainer.train_epoch(_state(trainer), x, y, batch_size=8)
    stepped, step_metrics = looped.train_epoch(_state(looped), x, y, batch_size=8)
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


def test_auto_epoch_mode_loops_from_python_for_convolutions_on_cpu():
    conv = Trainer(
        jaxnets.create_model("lenet5", **jaxnets.model_card("lenet5").test_config),
        "softmax_cross_entropy",
        make_optimizer("sgd", 0.1),
    )
    x = jnp.zeros((2, 12, 12, 1))
    assert conv.uses_python_loops(x) == (jax.default_backend() == "cpu")


def test_fit_learns_and_evaluate_reports(trainer):
    x, y = _data(192)
    result = fit(
        trainer,
        _state(trainer),
        (x[:128], y[:128]),
        val=(x[128:], y[128:]),
        epochs=30,
        batch_size=16,
        progress=False,
    )
    assert len(result.history) == 30
    assert result.history[-1]["train_loss"] < 0.5 * result.history[0]["train_loss"]
    test = evaluate(trainer, result.state, (x[128:], y[128:]), batch_size=7, prefix="test_")
    assert test["test_accuracy"] > 0.8
    # chunked evaluation (7 does not divide 64) equals the one-chunk evaluation
    whole = evaluate(trainer, result.state, (x[128:], y[128:]), batch_size=64)
    assert whole["loss"] == pytest.approx(test["test_loss"], rel=1e-5)


def test_fit_writes_jsonl_metrics(trainer, tmp_path):
    import json

    x, y = _data(64)
    fit(
        trainer,
        _state(trainer),
        (x, y),
        epochs=3,
        batch_size=16,
        progress=False,
        metrics_path=tmp_path / "metrics.jsonl",
    )
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[-1]["step"] == 12


def test_early_stopping_restores_the_validation_minimum(trainer):
    x, y = _data(96)
    # an overfitting setup: a tiny train set, validation on fresh data, large lr
    tr = Trainer(_Net(dropout=0.0), "softmax_cross_entropy", make_optimizer("adam", 0.05))
    stopper = EarlyStopping("val_loss", patience=3)
    result = fit(
        tr,
        _state(tr),
        (x[:16], y[:16]),
        val=(x[16:], y[16:]),
        epochs=200,
        batch_size=8,
        callbacks=[stopper],
        progress=False,
    )
    val_losses = [h["val_loss"] for h in result.history]
    best = int(np.argmin(val_losses))
    assert result.stopped_early and stopper.stopped_epoch == best + 1 + 3
    assert stopper.best_epoch == best + 1
    restored = evaluate(tr, result.state, (x[16:], y[16:]))
    assert restored["loss"] == pytest.approx(min(val_losses), rel=1e-5)


def test_resume_after_kill_gives_the_same_final_parameters(trainer, tmp_path):
    x, y = _data(64)

    class Kill(Exception):
        pass

    class KillAfter:
        def on_fit_start(self, fit):
            pass

        def on_epoch_end(self, fit, logs):
            if logs["epoch"] == 3:
                raise Kill

        def on_fit_end(self, fit):
            pass

    full = fit(trainer, _state(trainer), (x, y), epochs=5, batch_size=8, progress=False)
    with pytest.raises(Kill):
        fit(
            trainer,
            _state(trainer),
            (x, y),
            epochs=5,
            batch_size=8,
            progress=False,
            checkpoint_dir=tmp_path / "ckpt",
            callbacks=[KillAfter()],
        )
    resumed = fit(
        trainer,
        _state(trainer, seed=123),
        (x, y),
        epochs=5,
        batch_size=8,
        progress=False,
        checkpoint_dir=tmp_path / "ckpt",
    )
    # callbacks run before the epoch's checkpoint (whose meta holds their state): the kill in
    # epoch 3's callback leaves epoch 2's checkpoint, and the resumed run redoes epoch 3
    assert resumed.start_epoch == 2 and len(resumed.history) == 3
    jax.tree.map(np.testing.assert_array_equal, resumed.state.params, full.state.params)
    assert int(resumed.state.step) == int(full.state.step) == 40


def test_non_finite_loss_stops_at_the_named_step_and_keeps_the_checkpoint(tmp_path):
    from jaxnets.checkpoint import Checkpointer

    x, y = _data(64)
    # The 20th update (count 19) multiplies by inf: params become non-finite, so the loss of
    # step 21 (epoch 3 at 8 steps/epoch) is the first non-finite one.
    poisoned = optax.chain(
        optax.sgd(0.1), optax.scale_by_schedule(lambda count: jnp.where(count == 19, jnp.inf, 1.0))
    )
    tr = Trainer(_Net(dropout=0.0), "softmax_cross_entropy", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"at step 21 \(epoch 3\).*step 16"):
        fit(
            tr,
            _state(tr),
            (x, y),
            epochs=5,
            batch_size=8,
            progress=False,
            checkpoint_dir=tmp_path / "ckpt",
        )
    ckpt = Checkpointer(tmp_path / "ckpt")
    assert ckpt.latest_step() == 16
    state, meta = ckpt.restore(like=_state(tr))
    assert meta["epoch"] == 2 and int(state.step) == 16
    assert all(np.isfinite(a).all() for a in jax.tree.leaves(state.params))


def test_bad_data_gets_a_clear_error(trainer):
    with pytest.raises(ValueError, match="training data is empty"):
        fit(
            trainer,
            _state(trainer),
            (np.zeros((0, 5)), np.zeros((0,))),
            epochs=1,
            batch_size=1,
            progress=False,
        )
    x, y = _data(16)
    with pytest.raises(ValueError, match="16 inputs but 15 targets"):
        fit(trainer, _state(trainer), (x, y[:15]), epochs=1, batch_size=4, progress=False)
    with pytest.raises(
        ValueError,
        match=r"batch_size 32 is larger than the 16 examples.*use a batch_size in \[1, 16\]",
    ):
        fit(trainer, _state(trainer), (x, y), epochs=1, batch_size=32, progress=False)


def test_trainer_for_model_checks_inputs_against_the_card():
    import jaxnets

    trainer = Trainer.for_model("mlp", make_optimizer("sgd", 0.1), hidden=(8,))
    assert trainer.loss.name == "softmax_cross_entropy" and trainer.model.hidden == (8,)
    images = np.zeros((4, 8, 8), np.float32)  # digits as images: an MLP wants (batch, 64)
    with pytest.raises(jaxnets.InputSpecError, match=r"expects input of shape \(batch, 64\)"):
        trainer.init(jax.random.PRNGKey(0), images)
    state = trainer.init(jax.random.PRNGKey(0), images.reshape(4, 64))
    with pytest.raises(jaxnets.InputSpecError, match="got shape \\(4, 8, 8\\)"):
        fit(trainer, state, (images, np.zeros(4, np.int32)), epochs=1, batch_size=2, progress=False)


# --- the step, its regularizer and augmentation, and per-example gradients, in closed form --
#
# For a linear softmax classifier z = x W + b with cross-entropy, the lecture's gradient is
# dL/dz = p − onehot(y), so each example's gradient is dW = x ⊗ (p − e_y), db = p − e_y
# (seed 004 §2.3, softmax regression). NumPy float64 below, no autodiff.


class _Linear(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(3)(x)


def _np_softmax_regression(params, x, y):
    """Per-example losses (n,), accuracies (n,) and gradients dW (n, 5, 3), db (n, 3)."""
    w = np.asarray(params["Dense_0"]["kernel"], np.float64)
    b = np.asarray(params["Dense_0"]["bias"], np.float64)
    z = np.asarray(x, np.float64) @ w + b
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    delta = p.copy()
    delta[rows, y] -= 1.0
    loss = -np.log(p[rows, y])
    right = (np.argmax(z, axis=1) == y).astype(np.float64)
    return loss, right, np.asarray(x, np.float64)[:, :, None] * delta[:, None, :], delta


def test_step_with_regularizer_and_augmentation_equals_the_closed_form_sgd_step():
    """One SGD step on the augmented batch with an L2 penalty: W <- W − lr (mean dW + λ W);
    the reported loss and accuracy are the data terms on the augmented inputs."""
    lam, lr = 0.3, 0.5
    tr = Trainer(
        _Linear(),
        "softmax_cross_entropy",
        make_optimizer("sgd", lr),
        regularizer=lambda p: 0.5 * lam * jnp.sum(p["Dense_0"]["kernel"] ** 2),
        augment=lambda key, x: 2.0 * x,
    )
    state = _state(tr)
    x, y = _data(8)
    params0 = jax.device_get(state.params)
    loss, right, dw, db = _np_softmax_regression(params0, 2.0 * x, y)
    new_state, metrics = tr.train_step(state, (jnp.asarray(x), jnp.asarray(y)))
    w0 = params0["Dense_0"]["kernel"]
    np.testing.assert_allclose(
        new_state.params["Dense_0"]["kernel"], w0 - lr * (dw.mean(0) + lam * w0), rtol=1e-5
    )
    np.testing.assert_allclose(
        new_state.params["Dense_0"]["bias"], params0["Dense_0"]["bias"] - lr * db.mean(0), rtol=1e-5
    )
    np.testing.assert_allclose(metrics["loss"], loss.mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["accuracy"], right.mean())
    assert 0 < right.mean() < 1 and int(new_state.step) == 1


def test_per_example_gradients_and_their_norms_equal_the_closed_form():
    """Each example's own gradient (no regularizer), and its global L2 norm over all leaves,
    in chunks that do not divide the data (7 examples, chunks of 3)."""
    tr = Trainer(
        _Linear(),
        "softmax_cross_entropy",
        make_optimizer("sgd", 0.1),
        regularizer=lambda p: 10.0 * jnp.sum(p["Dense_0"]["kernel"] ** 2),
    )
    state = _state(tr)
    x, y = _data(7)
    _, _, dw, db = _np_softmax_regression(jax.device_get(state.params), x, y)
    grads = tr.per_example_grads(state, (jnp.asarray(x), jnp.asarray(y)))
    np.testing.assert_allclose(grads["Dense_0"]["kernel"], dw, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grads["Dense_0"]["bias"], db, rtol=1e-5, atol=1e-7)
    norms = tr.per_example_grad_norms(state, jnp.asarray(x), jnp.asarray(y), batch_size=3)
    expected = np.sqrt((dw**2).sum(axis=(1, 2)) + (db**2).sum(axis=1))
    np.testing.assert_allclose(norms, expected, rtol=1e-5)
    assert np.ptp(expected) > 0.1  # the examples' norms differ


def test_for_model_passes_the_regularizer_augmentation_and_the_cards_per_example_setting():
    def penalty(params):
        return 0.0

    def flip(key, x):
        return x

    trainer = Trainer.for_model(
        "mlp", make_optimizer("sgd", 0.1), hidden=(8,), regularizer=penalty, augment=flip
    )
    assert trainer.regularizer is penalty and trainer.augment is flip and trainer.per_example
    batch_norm = Trainer.for_model("vgg_small", make_optimizer("sgd", 0.1))
    assert not batch_norm.per_example  # its card: batch norm couples the examples
    with pytest.raises(ValueError, match="per-example gradients are not defined"):
        batch_norm.per_example_grads  # noqa: B018


class _BatchNormNet(nn.Module):
    """Batch norm (momentum 0.9), dropout, then a linear softmax layer."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        h = nn.Dropout(0.5, deterministic=not train)(h)
        return nn.Dense(3)(h)


def test_batch_norm_steps_on_batch_statistics_and_evaluates_on_the_running_ones():
    """A training step normalises with the batch's own mean and (biased) variance and moves
    the running averages to 0.9 · old + 0.1 · batch (Ioffe & Szegedy 2015), with dropout on;
    evaluation normalises with the running averages, in NumPy from the state's parameters."""
    tr = Trainer(_BatchNormNet(), "softmax_cross_entropy", make_optimizer("sgd", 0.5))
    x, y = _data(8)
    state = _state(tr)
    state, metrics = tr.train_step(state, (jnp.asarray(x), jnp.asarray(y)))
    stats = state.model_state["batch_stats"]["BatchNorm_0"]
    np.testing.assert_allclose(stats["mean"], 0.1 * x.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * x.var(0), rtol=1e-5)
    assert np.isfinite(float(metrics["loss"]))
    p = jax.device_get(state.params)
    bn, dense = p["BatchNorm_0"], p["Dense_0"]
    h = (x - np.asarray(stats["mean"])) / np.sqrt(np.asarray(stats["var"]) + 1e-5)
    z = (h * bn["scale"] + bn["bias"]) @ dense["kernel"] + dense["bias"]
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    expected = -log_p[np.arange(8), y].mean()
    np.testing.assert_allclose(tr.evaluate(state, x, y, batch_size=3)["loss"], expected, rtol=1e-5)


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


def test_weight_decay_step_equals_the_closed_form_and_the_step_counter_is_int32():
    """make_optimizer's L2 weight decay reads the parameters the step hands the optimizer:
    W <- W − lr (mean dW + wd W), b <- b − lr (mean db + wd b), in NumPy. The state's step is the
    documented () int32 counter, from 0 (a float32 one would stop counting at 2**24)."""
    lr, wd = 0.5, 0.2
    tr = Trainer(_Linear(), "softmax_cross_entropy", make_optimizer("sgd", lr, weight_decay=wd))
    state = _state(tr)
    assert state.step.dtype == jnp.int32 and state.step.shape == () and int(state.step) == 0
    x, y = _data(8)
    params0 = jax.device_get(state.params)["Dense_0"]
    _, _, dw, db = _np_softmax_regression({"Dense_0": params0}, x, y)
    new_state, _ = tr.train_step(state, (jnp.asarray(x), jnp.asarray(y)))
    for name, grad in (("kernel", dw), ("bias", db)):
        expected = params0[name] - lr * (grad.mean(0) + wd * params0[name])
        np.testing.assert_allclose(new_state.params["Dense_0"][name], expected, rtol=1e-5)
    assert new_state.step.dtype == jnp.int32 and int(new_state.step) == 1


def test_augmentation_draws_new_noise_at_each_step_and_the_same_from_the_same_state():
    """The augmentation gets a PRNG key that changes with the step and is fixed by the state.
    With a zero update (the parameters never move) and Gaussian noise added to the inputs,
    two consecutive steps report different losses, and a fresh state repeats the first one."""

    def noisy(key, x):
        return x + jax.random.normal(key, x.shape)

    tr = Trainer(_Linear(), "softmax_cross_entropy", optax.set_to_zero(), augment=noisy)
    x, y = map(jnp.asarray, _data(8))
    state, first = tr.train_step(_state(tr), (x, y))
    _, second = tr.train_step(state, (x, y))
    _, again = tr.train_step(_state(tr), (x, y))
    assert float(first["loss"]) == float(again["loss"])
    assert abs(float(first["loss"]) - float(second["loss"])) > 1e-3


class _NoisyLinear(nn.Module):
    """Input noise from the ``dropout`` stream, drawn at evaluation too (``train`` is ignored),
    before the weights of the same scope are created."""

    noise: float

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.noise:
            x = x + self.noise * jax.random.normal(self.make_rng("dropout"), x.shape)
        return x @ self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], 3))


def test_init_gives_the_same_weights_whether_or_not_the_model_draws_noise():
    """init hands the model a ``dropout`` key of its own, apart from the ``params`` key: a model
    that draws noise while it is initialized starts, for the same seed, from the same weights as
    without the noise, so a noise on/off comparison is a controlled one."""
    kernels = [
        Trainer(_NoisyLinear(noise), "softmax_cross_entropy", make_optimizer("sgd", 0.1))
        .init(jax.random.PRNGKey(0), jnp.ones((2, 5)))
        .params["kernel"]
        for noise in (0.0, 0.5)
    ]
    np.testing.assert_array_equal(*kernels)


class _Tokens(nn.Module):
    """Integer tokens (batch, time) -> logits (batch, time, 4): an embedding, then Dense."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(4)(nn.Embed(5, 3)(x))


def _indexed_nll(z, t):
    """A user's sequence loss that indexes with its integer targets: mean_t −log softmax(z_t)[t_t]
    for z (time, 4), t (time,)."""
    return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(t.shape[0]), t])


def test_evaluate_pads_integer_tokens_and_sequence_targets_in_their_own_dtype_and_shape():
    """Chunked evaluation (7 sequences in chunks of 3: two padding rows) hands the model integer
    tokens (an embedding rejects floats) and the loss (time,) integer targets (it indexes with
    them) as they are; the mean loss and accuracy equal NumPy's. Padding is to whole chunks
    only, zeros with weight 0. Inside jax.enable_x64 the float32 model's loss stays float32,
    the dtype of its training metrics (the padding weight does not promote it)."""
    tr = Trainer(
        _Tokens(), LossSpec("indexed_nll", _indexed_nll, "sequence"), make_optimizer("sgd", 1)
    )
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=(7, 3)).astype(np.int32)
    y = rng.integers(0, 4, size=(7, 3)).astype(np.int32)
    state = tr.init(jax.random.PRNGKey(0), x[:2])
    p = jax.device_get(state.params)
    embedded = np.asarray(p["Embed_0"]["embedding"], np.float64)[x]
    z = embedded @ np.asarray(p["Dense_0"]["kernel"], np.float64) + p["Dense_0"]["bias"]
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    expected_loss = -np.take_along_axis(log_p, y[..., None], -1).mean()
    expected_accuracy = (z.argmax(-1) == y).mean()
    assert 0 < expected_accuracy < 1
    metrics = tr.evaluate(state, x, y, batch_size=3)
    np.testing.assert_allclose(metrics["loss"], expected_loss, rtol=1e-5)
    np.testing.assert_allclose(metrics["accuracy"], expected_accuracy, rtol=1e-6)
    with jax.enable_x64(True):
        in_x64 = tr.evaluate(state, x, y, batch_size=3)
    assert in_x64["loss"].dtype == jnp.float32
    np.testing.assert_allclose(in_x64["loss"], expected_loss, rtol=1e-5)

    x_pad, y_pad, weight, chunks = Trainer._padded(jnp.asarray(x), jnp.asarray(y), 3)
    assert chunks == 3 and x_pad.dtype == y_pad.dtype == jnp.int32
    zeros = np.zeros((2, 3), np.int32)
    np.testing.assert_array_equal(x_pad, np.concatenate([x, zeros]))
    np.testing.assert_array_equal(y_pad, np.concatenate([y, zeros]))
    np.testing.assert_array_equal(weight, [1, 1, 1, 1, 1, 1, 1, 0, 0])


# --- fit(on_non_finite="stop"): a diverging run ends without raising -----------------------


class _Scalar(nn.Module):
    """s = w x + b on one input feature."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(1)(x)


def test_fit_stops_after_the_epoch_of_the_first_non_finite_loss(tmp_path):
    """Squared error ½ s² on identical examples x = 1, t = 0 (so every minibatch is the same):
    with w = 1, b = 0 and SGD at lr, s is multiplied by 1 − 2 lr = −10⁴ each step, so the loss
    grows 10⁸-fold per step until it overflows float32. NumPy (float64) finds that step; fit
    ends after its epoch, without raising, keeps that epoch's logs and saves no checkpoint
    after the last finite epoch."""
    from jaxnets.checkpoint import Checkpointer

    lr, n, batch_size = 5000.5, 8, 2  # 4 steps per epoch
    s, np_losses = 1.0, []
    for _ in range(20):
        np_losses.append(0.5 * s**2)
        s *= 1 - 2 * lr  # ds/dw = ds/db = 1 at x = 1: s <- s − lr (s + s)
    limit = float(np.finfo(np.float32).max)
    expected = next(k for k, loss in enumerate(np_losses, 1) if loss > limit)
    assert np_losses[expected - 1] > 10 * limit and np_losses[expected - 2] < limit / 10
    assert expected == 6  # in epoch 2, a clear overflow and not at the epoch's first step

    tr = Trainer(_Scalar(), "squared_error", make_optimizer("sgd", lr))
    x, y = np.ones((n, 1), np.float32), np.zeros((n, 1), np.float32)

    def start():
        state = tr.init(jax.random.PRNGKey(0), x[:1])
        params = {"Dense_0": {"kernel": jnp.ones((1, 1)), "bias": jnp.zeros((1,))}}
        return state.replace(params=params, opt_state=tr.optimizer.init(params))

    common = dict(batch_size=batch_size, progress=False, on_non_finite="stop")
    finite = fit(tr, start(), (x, y), epochs=1, **common)
    assert finite.non_finite_step is None and len(finite.history) == 1

    result = fit(tr, start(), (x, y), epochs=5, checkpoint_dir=tmp_path / "ckpt", **common)
    assert result.non_finite_step == expected and not result.stopped_early
    assert [logs["epoch"] for logs in result.history] == [1, 2]
    assert result.history[0]["train_loss"] == pytest.approx(np.mean(np_losses[:4]), rel=1e-5)
    assert not np.isfinite(result.history[1]["train_loss"])
    assert int(result.state.step) == 8
    assert Checkpointer(tmp_path / "ckpt").latest_step() == 4  # epoch 1 only


def test_fit_rejects_an_unknown_non_finite_policy(trainer):
    x, y = _data(8)
    with pytest.raises(ValueError, match="on_non_finite must be 'raise' .* or 'stop' .*got 'skip'"):
        fit(trainer, _state(trainer), (x, y), epochs=1, batch_size=4, on_non_finite="skip")


def test_reduction_groups_sum_the_groups_gradients_to_the_batch_gradient():
    """reduction_groups=4 splits a batch of 8 into 4 groups of 2 and adds their gradients:
    the same gradient (regularizer included) and metrics as one reduction over the batch,
    to float32 rounding, and an SGD step that equals p - lr * g."""
    l2 = lambda p: 0.01 * sum(jnp.sum(w**2) for w in jax.tree.leaves(p))  # noqa: E731
    common = dict(loss="softmax_cross_entropy", optimizer=make_optimizer("sgd", 0.5))
    whole = Trainer(_Net(dropout=0.0), regularizer=l2, **common)
    grouped = Trainer(_Net(dropout=0.0), regularizer=l2, reduction_groups=4, **common)
    state = _state(whole)
    x, y = map(jnp.asarray, _data(8))
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
        Trainer(_Net(), "softmax_cross_entropy", make_optimizer("sgd", 0.1), **options)


def test_a_batch_that_does_not_split_into_the_groups_is_refused_before_any_step():
    tr = Trainer(_Net(), "softmax_cross_entropy", make_optimizer("sgd", 0.1), reduction_groups=3)
    x, y = _data(16)
    with pytest.raises(ValueError, match="batch_size 8 does not split into 3 reduction groups"):
        fit(tr, _state(tr), (x, y), epochs=1, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="does not split into 3 reduction groups"):
        tr.train_step(_state(tr), (jnp.asarray(x[:8]), jnp.asarray(y[:8])))

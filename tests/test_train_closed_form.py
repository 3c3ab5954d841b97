"""The training step in closed form: a linear softmax classifier's SGD step with a
regularizer, augmentation or weight decay, its per-example gradients, batch norm, the
augmentation and init PRNG keys, and chunked evaluation of integer sequences, against
NumPy."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from train_helpers import init_state, toy_data

from jaxnets.losses import LossSpec
from jaxnets.optim import make_optimizer
from jaxnets.train import Trainer

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
    state = init_state(tr)
    x, y = toy_data(8)
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
    state = init_state(tr)
    x, y = toy_data(7)
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
    x, y = toy_data(8)
    state = init_state(tr)
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


def test_weight_decay_step_equals_the_closed_form_and_the_step_counter_is_int32():
    """make_optimizer's L2 weight decay reads the parameters the step hands the optimizer:
    W <- W − lr (mean dW + wd W), b <- b − lr (mean db + wd b), in NumPy. The state's step is the
    documented () int32 counter, from 0 (a float32 one would stop counting at 2**24)."""
    lr, wd = 0.5, 0.2
    tr = Trainer(_Linear(), "softmax_cross_entropy", make_optimizer("sgd", lr, weight_decay=wd))
    state = init_state(tr)
    assert state.step.dtype == jnp.int32 and state.step.shape == () and int(state.step) == 0
    x, y = toy_data(8)
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
    x, y = map(jnp.asarray, toy_data(8))
    state, first = tr.train_step(init_state(tr), (x, y))
    _, second = tr.train_step(state, (x, y))
    _, again = tr.train_step(init_state(tr), (x, y))
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

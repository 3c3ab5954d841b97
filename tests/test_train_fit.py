"""The training loop: fit and evaluate, the metrics file, early stopping, resuming from a
checkpoint, the non-finite loss guard (raise or stop), and the data checks."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from train_helpers import Net, init_state, momentum_trainer, toy_data

import jaxnets
from jaxnets.optim import make_optimizer
from jaxnets.train import EarlyStopping, NonFiniteLossError, Trainer, evaluate, fit


@pytest.fixture(scope="module")
def trainer():
    return momentum_trainer()


def test_fit_learns_and_evaluate_reports(trainer):
    x, y = toy_data(192)
    result = fit(
        trainer,
        init_state(trainer),
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

    x, y = toy_data(64)
    fit(
        trainer,
        init_state(trainer),
        (x, y),
        epochs=3,
        batch_size=16,
        progress=False,
        metrics_path=tmp_path / "metrics.jsonl",
    )
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[-1]["step"] == 12


def test_early_stopping_restores_the_validation_minimum(trainer):
    x, y = toy_data(96)
    # an overfitting setup: a tiny train set, validation on fresh data, large lr
    tr = Trainer(Net(dropout=0.0), "softmax_cross_entropy", make_optimizer("adam", 0.05))
    stopper = EarlyStopping("val_loss", patience=3)
    result = fit(
        tr,
        init_state(tr),
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
    x, y = toy_data(64)

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

    full = fit(trainer, init_state(trainer), (x, y), epochs=5, batch_size=8, progress=False)
    with pytest.raises(Kill):
        fit(
            trainer,
            init_state(trainer),
            (x, y),
            epochs=5,
            batch_size=8,
            progress=False,
            checkpoint_dir=tmp_path / "ckpt",
            callbacks=[KillAfter()],
        )
    resumed = fit(
        trainer,
        init_state(trainer, seed=123),
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

    x, y = toy_data(64)
    # The 20th update (count 19) multiplies by inf: params become non-finite, so the loss of
    # step 21 (epoch 3 at 8 steps/epoch) is the first non-finite one.
    poisoned = optax.chain(
        optax.sgd(0.1), optax.scale_by_schedule(lambda count: jnp.where(count == 19, jnp.inf, 1.0))
    )
    tr = Trainer(Net(dropout=0.0), "softmax_cross_entropy", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"at step 21 \(epoch 3\).*step 16"):
        fit(
            tr,
            init_state(tr),
            (x, y),
            epochs=5,
            batch_size=8,
            progress=False,
            checkpoint_dir=tmp_path / "ckpt",
        )
    ckpt = Checkpointer(tmp_path / "ckpt")
    assert ckpt.latest_step() == 16
    state, meta = ckpt.restore(like=init_state(tr))
    assert meta["epoch"] == 2 and int(state.step) == 16
    assert all(np.isfinite(a).all() for a in jax.tree.leaves(state.params))


def test_bad_data_gets_a_clear_error(trainer):
    with pytest.raises(ValueError, match="training data is empty"):
        fit(
            trainer,
            init_state(trainer),
            (np.zeros((0, 5)), np.zeros((0,))),
            epochs=1,
            batch_size=1,
            progress=False,
        )
    x, y = toy_data(16)
    with pytest.raises(ValueError, match="16 inputs but 15 targets"):
        fit(trainer, init_state(trainer), (x, y[:15]), epochs=1, batch_size=4, progress=False)
    with pytest.raises(
        ValueError,
        match=r"batch_size 32 is larger than the 16 examples.*use a batch_size in \[1, 16\]",
    ):
        fit(trainer, init_state(trainer), (x, y), epochs=1, batch_size=32, progress=False)


def test_trainer_for_model_checks_inputs_against_the_card():

    trainer = Trainer.for_model("mlp", make_optimizer("sgd", 0.1), hidden=(8,))
    assert trainer.loss.name == "softmax_cross_entropy" and trainer.model.hidden == (8,)
    images = np.zeros((4, 8, 8), np.float32)  # digits as images: an MLP wants (batch, 64)
    with pytest.raises(jaxnets.InputSpecError, match=r"expects input of shape \(batch, 64\)"):
        trainer.init(jax.random.PRNGKey(0), images)
    state = trainer.init(jax.random.PRNGKey(0), images.reshape(4, 64))
    with pytest.raises(jaxnets.InputSpecError, match="got shape \\(4, 8, 8\\)"):
        fit(trainer, state, (images, np.zeros(4, np.int32)), epochs=1, batch_size=2, progress=False)


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
    x, y = toy_data(8)
    with pytest.raises(ValueError, match="on_non_finite must be 'raise' .* or 'stop' .*got 'skip'"):
        fit(trainer, init_state(trainer), (x, y), epochs=1, batch_size=4, on_non_finite="skip")

"""Tests of jaxnets.train.ensemble (vmapped members = separately trained models, early
stopping per member at its validation minimum, members on their own data, a fixed number of
steps from a per-member stream of epochs, every member's evaluation, ensemble accuracy) and
of per-example gradient norms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets import create_model
from jaxnets.optim import make_optimizer
from jaxnets.train import (
    Trainer,
    ensemble_accuracy,
    ensemble_probabilities,
    init_ensemble,
    train_ensemble,
)
from jaxnets.train.ensemble import evaluate_ensemble

MEMBERS, N, FEATURES, CLASSES = 3, 48, 5, 3


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(N, FEATURES)), jnp.float32)
    y = jnp.asarray(rng.integers(0, CLASSES, N), jnp.int32)
    val_x = jnp.asarray(rng.normal(size=(20, FEATURES)), jnp.float32)
    val_y = jnp.asarray(rng.integers(0, CLASSES, 20), jnp.int32)
    model = create_model("mlp", hidden=(16,), num_outputs=CLASSES)
    # a large learning rate on random labels: the validation loss rises after a few epochs
    trainer = Trainer(model, "softmax_cross_entropy", make_optimizer("adam", 0.05))
    keys = jax.random.split(jax.random.PRNGKey(1), MEMBERS)
    return trainer, keys, (x, y), (val_x, val_y)


def test_each_member_equals_the_same_model_trained_alone(setup):
    trainer, keys, train, val = setup
    states, history = train_ensemble(
        trainer,
        init_ensemble(trainer, keys, train[0]),
        train,
        epochs=3,
        batch_size=8,
        val=val,
    )
    assert history.train_loss.shape == history.val_loss.shape == (3, MEMBERS)
    for member in range(MEMBERS):
        alone = trainer.init(keys[member], train[0])
        for _ in range(3):
            alone, _ = trainer.train_epoch(alone, *train, batch_size=8)
        for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(states.params), strict=True):
            np.testing.assert_allclose(np.asarray(b)[member], a, rtol=1e-5, atol=1e-6)
        loss = trainer.evaluate(alone, *val, batch_size=20)["loss"]
        assert history.val_loss[-1, member] == pytest.approx(float(loss), rel=1e-5)
    # the members differ (their own inits and shuffles)
    assert len(np.unique(history.train_loss[-1].round(6))) == MEMBERS


def test_restore_best_returns_each_member_at_its_validation_minimum(setup):
    trainer, keys, train, val = setup
    states, history = train_ensemble(
        trainer,
        init_ensemble(trainer, keys, train[0]),
        train,
        epochs=12,
        batch_size=8,
        val=val,
        restore_best=True,
    )
    np.testing.assert_array_equal(history.best_epoch, history.val_loss.argmin(axis=0) + 1)
    assert np.any(history.best_epoch < 12)  # the minimum is not simply the last epoch
    probabilities = np.asarray(ensemble_probabilities(trainer, states, val[0]))
    picked = probabilities[:, np.arange(20), np.asarray(val[1])]
    np.testing.assert_allclose(
        -np.log(picked).mean(axis=1), history.val_loss.min(axis=0), rtol=1e-5
    )
    with pytest.raises(ValueError, match="restore_best needs validation data"):
        train_ensemble(trainer, states, train, epochs=1, batch_size=8, restore_best=True)


def test_members_on_their_own_data_equal_each_trained_alone_on_it(setup):
    trainer, keys, (x, y), _ = setup
    # member m trains on its own examples: x shifted by m, its own labels
    xs = jnp.stack([x + m for m in range(MEMBERS)])
    ys = jnp.stack([jnp.roll(y, m) for m in range(MEMBERS)])
    states, _ = train_ensemble(
        trainer,
        init_ensemble(trainer, keys, x),
        (xs, ys),
        epochs=1,
        batch_size=8,
        member_data=True,
    )
    for member in range(MEMBERS):
        alone = trainer.init(keys[member], x)
        alone, _ = trainer.train_epoch(alone, xs[member], ys[member], batch_size=8)
        for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(states.params), strict=True):
            np.testing.assert_allclose(np.asarray(b)[member], a, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="leading axis of the 3 members"):
        train_ensemble(trainer, states, (x, y), epochs=1, batch_size=8, member_data=True)


def test_steps_are_shuffled_epochs_that_cover_every_example_once(setup):
    _, keys, (x, y), _ = setup
    # learning rate 0: the parameters stay put, so a step's loss is the mean loss of its batch
    frozen = Trainer(
        create_model("mlp", hidden=(16,), num_outputs=CLASSES),
        "softmax_cross_entropy",
        optax.sgd(0.0),
    )
    states = init_ensemble(frozen, keys, x)
    # every member gets member 0's weights: their losses differ only by their minibatches
    states = states.replace(
        params=jax.tree.map(lambda leaf: jnp.broadcast_to(leaf[:1], leaf.shape), states.params)
    )
    # 5 + 8 steps of 8 examples: two epochs of 48 / 8 = 6 steps and one step of the third,
    # the second call starting inside the first epoch
    states, first = _by_steps(frozen, states, (x, y), steps=5, batch_size=8)
    states, second = _by_steps(frozen, states, (x, y), steps=8, batch_size=8)
    np.testing.assert_array_equal(states.step, [13] * MEMBERS)
    losses = np.concatenate([first["loss"], second["loss"]], axis=1)  # (members, steps)
    assert losses.shape == (MEMBERS, 13)
    # every example's loss by hand, with NumPy's log-softmax
    params = jax.tree.map(lambda leaf: leaf[0], states.params)
    logits = np.asarray(frozen.model.apply({"params": params}, x), np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    total = -log_p[np.arange(N), np.asarray(y)].sum()
    for member in range(MEMBERS):
        for epoch in range(2):  # each epoch's six batches hold all 48 examples once
            batch_sums = 8 * losses[member, 6 * epoch : 6 * epoch + 6]
            assert batch_sums.sum() == pytest.approx(total, rel=1e-5)
        # reshuffled every epoch: the second epoch's batches are not the first's
        assert not np.allclose(losses[member, :6], losses[member, 6:12])
    # each member shuffles with its own key
    assert not np.allclose(losses[0], losses[1])
    assert not np.allclose(losses[1], losses[2])


def test_steps_split_between_calls_equal_one_call_and_members_are_independent(setup):
    trainer, keys, train, _ = setup
    together, metrics = _by_steps(
        trainer, init_ensemble(trainer, keys, train[0]), train, steps=13, batch_size=8
    )
    assert metrics["loss"].shape == (MEMBERS, 13)
    # member 1 alone, in two calls of 10 and 3 steps (the second starts late in epoch 2)
    alone = init_ensemble(trainer, keys[1:2], train[0])
    alone, head = _by_steps(trainer, alone, train, steps=10, batch_size=8)
    alone, tail = _by_steps(trainer, alone, train, steps=3, batch_size=8)
    for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(together.params), strict=True):
        np.testing.assert_allclose(np.asarray(b)[1], np.asarray(a)[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        np.concatenate([head["loss"][0], tail["loss"][0]]), metrics["loss"][1], rtol=1e-5
    )
    assert float(metrics["loss"][1, -3:].mean()) < float(metrics["loss"][1, :3].mean())
    with pytest.raises(ValueError, match=r"batch_size must be in \[1, 48\]"):
        _by_steps(trainer, together, train, steps=1, batch_size=49)
    with pytest.raises(ValueError, match="steps must be >= 1; got 0"):
        _by_steps(trainer, together, train, steps=0, batch_size=8)


def test_full_batch_steps_are_gradient_descent_on_all_examples_and_arguments_are_checked(setup):
    """steps= without batch_size: every step's loss is the loss of the whole training set
    (the mean over all 48 examples before the update), the same as evaluate_ensemble of the
    states it started from; epochs= keeps per-step metrics whose epoch means are train_loss."""
    trainer, keys, train, val = setup
    states = init_ensemble(trainer, keys, train[0])
    start = evaluate_ensemble(trainer, states, *train, batch_size=48)["loss"]
    _, history = train_ensemble(trainer, states, train, steps=3)
    assert history.step_metrics["loss"].shape == (MEMBERS, 3)
    np.testing.assert_allclose(history.step_metrics["loss"][:, 0], start, rtol=1e-6)
    assert np.all(np.diff(history.step_metrics["loss"], axis=1) < 0)  # descends
    assert history.train_loss.shape == (0, MEMBERS)
    _, by_epochs = train_ensemble(trainer, states, train, epochs=2, batch_size=8)
    assert by_epochs.step_metrics["loss"].shape == (MEMBERS, 12)  # 2 epochs of 48 / 8
    np.testing.assert_allclose(
        by_epochs.step_metrics["loss"].reshape(MEMBERS, 2, 6).mean(axis=2).T,
        by_epochs.train_loss,
        rtol=1e-6,
    )
    for kwargs, message in [
        (dict(), "exactly one of epochs= and steps="),
        (dict(epochs=1, steps=1, batch_size=8), "exactly one of epochs= and steps="),
        (dict(epochs=1), "epochs= needs a batch_size"),
        (dict(steps=2, val=val), "train by epochs="),
        (dict(epochs=0, batch_size=8), "epochs must be >= 1; got 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            train_ensemble(trainer, states, train, **kwargs)


def test_evaluate_ensemble_scores_every_member(setup):
    trainer, keys, train, (val_x, val_y) = setup
    states = init_ensemble(trainer, keys, train[0])
    scores = evaluate_ensemble(trainer, states, val_x, val_y, batch_size=7)  # 3 chunks, padded
    probabilities = np.asarray(ensemble_probabilities(trainer, states, val_x), np.float64)
    picked = probabilities[:, np.arange(20), np.asarray(val_y)]
    np.testing.assert_allclose(scores["loss"], -np.log(picked).mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(
        scores["accuracy"], (probabilities.argmax(-1) == np.asarray(val_y)).mean(axis=1)
    )


def test_ensemble_accuracy_averages_probabilities_not_votes():
    # two members, three examples, two classes; labels [0, 1, 1]
    probabilities = np.array(
        [
            [[0.9, 0.1], [0.6, 0.4], [0.45, 0.55]],  # right, wrong, right: 2/3
            [[0.4, 0.6], [0.1, 0.9], [0.6, 0.4]],  # wrong, right, wrong: 1/3
        ]
    )
    ensemble, members = ensemble_accuracy(probabilities, np.array([0, 1, 1]))
    # means: [0.65, 0.35] right, [0.35, 0.65] right, [0.525, 0.475] wrong
    assert ensemble == pytest.approx(2 / 3)
    np.testing.assert_allclose(members, [2 / 3, 1 / 3])


def test_per_example_grad_norms_equal_single_example_gradients(setup):
    trainer, keys, (x, y), _ = setup
    state = trainer.init(keys[0], x)
    norms = np.asarray(trainer.per_example_grad_norms(state, x, y, batch_size=7))
    assert norms.shape == (N,)

    def loss(params, i):
        logits = trainer.model.apply({"params": params}, x[i : i + 1])
        return trainer.loss.fn(logits[0], y[i])

    grad = jax.jit(jax.grad(loss), static_argnums=1)
    for i in (0, 6, 7, N - 1):  # inside, at the end of and after a chunk boundary
        leaves = jax.tree.leaves(grad(state.params, i))
        expected = np.sqrt(sum(float(jnp.sum(g**2)) for g in leaves))
        assert norms[i] == pytest.approx(expected, rel=1e-5)


def _by_steps(trainer, states, train, **kwargs):
    """train_ensemble by steps, returning (states, per-step metrics (members, steps))."""
    states, history = train_ensemble(trainer, states, train, **kwargs)
    return states, history.step_metrics

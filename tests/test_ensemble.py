"""Tests of jaxnets.train.ensemble (vmapped members = separately trained models, early
stopping per member at its validation minimum, ensemble accuracy) and of per-example
gradient norms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
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

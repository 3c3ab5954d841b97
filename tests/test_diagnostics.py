"""Diagnostics: dead and saturated units on hand-set weights, step norms against a direct
computation, and the symmetry check on constant vs random init."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets.diagnostics import (
    dead_units,
    hidden_activations,
    layer_norms,
    preactivations,
    saturated_units,
    step_norms,
    symmetry_check,
)
from jaxnets.models.mlp import MLP
from jaxnets.train import Trainer


def _dense(kernel, bias):
    return {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}


def _relu_net():
    """3 inputs in [0, 1] -> 5 ReLUs (units 0, 1 dead: negative weights and bias; unit 4 off
    for some examples only) -> 4 ReLUs (unit 3 dead) -> 2 outputs."""
    hidden_0 = _dense(
        [
            [-1.0, -0.5, 1.0, 0.2, 1.0],
            [-1.0, -0.5, 0.5, 0.2, 0.0],
            [-1.0, -0.5, 0.1, 0.2, 0.0],
        ],
        [-0.1, -0.2, 0.0, 0.1, -0.5],  # unit 4: z = x_0 - 0.5 changes sign across examples
    )
    hidden_1 = _dense(np.ones((5, 4)) * [1.0, 0.5, 0.2, -1.0], [0.0, 0.0, 0.0, -0.1])
    out = _dense(np.ones((4, 2)), [0.0, 0.0])
    params = {"hidden_0": hidden_0, "hidden_1": hidden_1, "out": out}
    return MLP(hidden=(5, 4), num_outputs=2), {"params": params}


def test_dead_units_counts_units_off_for_every_example():
    model, variables = _relu_net()
    x = jax.random.uniform(jax.random.PRNGKey(0), (16, 3))
    assert float(jnp.min(x[:, 0])) < 0.5 < float(jnp.max(x[:, 0]))  # unit 4 is alive
    activations = hidden_activations(model, variables, x)
    assert list(activations) == ["hidden_0", "hidden_1"]
    p = variables["params"]
    h0 = jax.nn.relu(x @ p["hidden_0"]["kernel"] + p["hidden_0"]["bias"])
    np.testing.assert_allclose(activations["hidden_0"], h0, rtol=1e-6)
    assert dead_units(activations) == {"hidden_0": 2 / 5, "hidden_1": 1 / 4}


def test_dead_units_pools_spatial_positions():
    h = np.ones((3, 4, 4, 2), np.float32)  # (batch, height, width, channels)
    h[..., 0] = 0.0
    h[..., 1] = 0.0
    h[2, 1, 3, 1] = 0.5  # one position of one example keeps channel 1 alive
    assert dead_units({"conv": h}) == {"conv": 0.5}
    assert dead_units({"conv": h}, atol=0.5) == {"conv": 1.0}


def _tanh_net(activation="tanh"):
    """1 input x = 0.1, ..., 1.0 -> 3 units: z_0 = 100 (x - 0.55) (|z| >= 5: at -1 or +1 for
    every example), z_1 = 0 (never saturated), z_2 = 10 (x - 0.05) (|tanh| >= 0.96 on 8 of 10)."""
    params = {
        "hidden_0": _dense([[100.0, 0.0, 10.0]], [-55.0, 0.0, -0.5]),
        "out": _dense(np.ones((3, 2)), [0.0, 0.0]),
    }
    x = jnp.arange(1, 11, dtype=jnp.float32)[:, None] / 10
    return MLP(hidden=(3,), num_outputs=2, activation=activation), {"params": params}, x


@pytest.mark.parametrize(
    "activation, min_fraction, expected",
    [
        ("tanh", 0.75, 2 / 3),  # unit 2: near +-1 on 80% of the examples
        ("tanh", 0.9, 1 / 3),
        ("sigmoid", 0.75, 1 / 3),  # sigmoid >= 0.98 needs z >= 3.9: only 6 of 10 for unit 2
    ],
)
def test_saturated_units_on_a_known_layer(activation, min_fraction, expected):
    model, variables, x = _tanh_net(activation)
    activations = hidden_activations(model, variables, x)
    fractions = saturated_units(activations, activation, min_fraction=min_fraction)
    assert fractions == {"hidden_0": pytest.approx(expected)}


def test_saturation_is_refused_for_unbounded_units():
    with pytest.raises(ValueError, match="'relu', whose range is unbounded"):
        saturated_units({"h": jnp.zeros((2, 3))}, "relu")
    with pytest.raises(ValueError, match="0 < eps < 0.5"):
        saturated_units({"h": jnp.zeros((2, 3))}, "tanh", eps=0.7)


def test_preactivations_and_activation_options():
    model = MLP(
        hidden=(4, 3),
        num_outputs=2,
        activation="leaky_relu",
        activation_options=(("negative_slope", 0.3),),
    )
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 6))
    variables = jax.jit(model.init)(jax.random.PRNGKey(2), x)
    z = preactivations(model, variables, x)
    assert list(z) == ["hidden_0", "hidden_1", "out"]
    assert [a.shape for a in z.values()] == [(5, 4), (5, 3), (5, 2)]
    p = variables["params"]
    np.testing.assert_allclose(
        z["hidden_0"], x @ p["hidden_0"]["kernel"] + p["hidden_0"]["bias"], rtol=1e-5, atol=1e-6
    )
    h = hidden_activations(model, variables, x)
    expected = jnp.where(z["hidden_1"] > 0, z["hidden_1"], 0.3 * z["hidden_1"])
    np.testing.assert_allclose(h["hidden_1"], expected, rtol=1e-6)
    with pytest.raises(ValueError, match="named 'hidden_7' in MLP; .* are hidden_0, hidden_1, out"):
        hidden_activations(model, variables, x, layers=["hidden_7"])
    with pytest.raises(ValueError, match="'prelu' is a module activation"):
        hidden_activations(model.clone(activation="prelu"), variables, x)


def test_layer_norms_group_leaves_by_module_path_in_natural_order():
    tree = {
        "hidden_10": {"kernel": jnp.full((2, 2), 1.0), "bias": jnp.full((2,), 2.0)},
        "hidden_2": {"kernel": jnp.full((3,), 4.0)},
        "block": {"conv": {"kernel": jnp.full((1, 1, 1, 4), 0.5)}},
    }
    norms = layer_norms(tree)
    assert list(norms) == ["block/conv", "hidden_2", "hidden_10"]
    np.testing.assert_allclose(list(norms.values()), [1.0, np.sqrt(48.0), np.sqrt(12.0)])


def _manual_loss(params, x, y):
    h = jax.nn.relu(x @ params["hidden_0"]["kernel"] + params["hidden_0"]["bias"])
    h = jax.nn.relu(h @ params["hidden_1"]["kernel"] + params["hidden_1"]["bias"])
    z = h @ params["out"]["kernel"] + params["out"]["bias"]
    return jnp.mean(jax.nn.logsumexp(z, axis=-1) - jnp.take_along_axis(z, y[:, None], 1)[:, 0])


@pytest.fixture(scope="module")
def batch():
    x = jax.random.normal(jax.random.PRNGKey(3), (8, 5))
    y = jax.random.randint(jax.random.PRNGKey(4), (8,), 0, 3)
    return x, y


def _trainer(optimizer):
    return Trainer(MLP(hidden=(4, 3), num_outputs=3), "softmax_cross_entropy", optimizer)


def test_sgd_step_norms_equal_a_direct_computation(batch):
    lr = 0.1
    trainer = _trainer(optax.sgd(lr))
    state = trainer.init(jax.random.PRNGKey(5), batch[0])
    new_state, norms = step_norms(trainer, state, batch)
    loss, grads = jax.jit(jax.value_and_grad(_manual_loss))(state.params, *batch)
    assert norms.loss == pytest.approx(float(loss), rel=1e-6)
    for layer in ("hidden_0", "hidden_1", "out"):
        g = np.concatenate([np.ravel(leaf) for leaf in grads[layer].values()])
        p = np.concatenate([np.ravel(leaf) for leaf in state.params[layer].values()])
        assert norms.grad[layer] == pytest.approx(np.linalg.norm(g), rel=1e-5)
        assert norms.param[layer] == pytest.approx(np.linalg.norm(p), rel=1e-6)
        assert norms.update[layer] == pytest.approx(lr * norms.grad[layer], rel=1e-5)
        assert norms.update_ratio[layer] == pytest.approx(norms.update[layer] / norms.param[layer])
    stepped, _ = trainer.train_step(state, batch)  # donates state: last use
    jax.tree.map(np.testing.assert_array_equal, new_state.params, stepped.params)


def test_update_norm_is_measured_from_the_actual_step(batch):
    # Adam's first step moves every entry with a nonzero gradient by lr * g / (|g| + eps),
    # i.e. lr in size whatever |g| is: the update norm is lr * sqrt(entries), not lr * |grad|.
    lr = 0.01
    trainer = _trainer(optax.adam(lr))
    state = trainer.init(jax.random.PRNGKey(6), batch[0])
    _, norms = step_norms(trainer, state, batch)
    grads = jax.jit(jax.grad(_manual_loss))(state.params, *batch)
    for layer, leaves in grads.items():
        moving = sum(int(np.sum(np.abs(leaf) > 1e-6)) for leaf in leaves.values())
        assert norms.update[layer] == pytest.approx(lr * np.sqrt(moving), rel=1e-3)
    assert norms.update["out"] != pytest.approx(lr * norms.grad["out"], rel=0.1)


def test_step_norms_measure_the_gradient_of_the_augmented_regularized_step(batch):
    """The gradient is the one the step applied: of the data loss on the augmented batch plus
    the penalty, written out here and differentiated by jax.grad (the batch as given, or the
    data loss alone, give other norms); the loss is that objective."""
    lam, lr = 0.2, 0.1
    trainer = Trainer(
        MLP(hidden=(4, 3), num_outputs=3),
        "softmax_cross_entropy",
        optax.sgd(lr),
        regularizer=lambda p: lam * jnp.sum(p["out"]["kernel"] ** 2),
        augment=lambda key, x: x[:, ::-1] + 1.0,  # reverse and shift the features
    )
    state = trainer.init(jax.random.PRNGKey(8), batch[0])
    x, y = batch

    def objective(params):
        return _manual_loss(params, x[:, ::-1] + 1.0, y) + lam * jnp.sum(
            params["out"]["kernel"] ** 2
        )

    loss, grads = jax.jit(jax.value_and_grad(objective))(state.params)
    plain = jax.jit(jax.grad(_manual_loss))(state.params, x, y)
    new_state, norms = step_norms(trainer, state, batch)
    assert norms.loss == pytest.approx(float(loss), rel=1e-6)
    for layer in ("hidden_0", "hidden_1", "out"):
        g = np.concatenate([np.ravel(leaf) for leaf in grads[layer].values()])
        other = np.concatenate([np.ravel(leaf) for leaf in plain[layer].values()])
        assert norms.grad[layer] == pytest.approx(np.linalg.norm(g), rel=1e-5)
        assert norms.grad[layer] != pytest.approx(np.linalg.norm(other), rel=1e-3)
        assert norms.update[layer] == pytest.approx(lr * norms.grad[layer], rel=1e-5)
    expected = jax.tree.map(lambda p, g: p - lr * g, state.params, grads)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        new_state.params,
        expected,
    )


def _train(trainer, state, batch, steps):
    for _ in range(steps):
        state, _ = trainer.train_step(state, batch)
    return state


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_constant_init_stays_symmetric_random_init_does_not(batch, activation):
    trainer = Trainer(
        MLP(hidden=(4, 3), num_outputs=3, activation=activation),
        "softmax_cross_entropy",
        optax.sgd(0.5),
    )
    # two inits: train_step donates its state, and the states would share step and rng
    random_state, state = (trainer.init(jax.random.PRNGKey(7), batch[0]) for _ in range(2))
    constant = jax.tree.map(lambda leaf: jnp.full_like(leaf, 0.3), state.params)
    constant_state = state.replace(params=constant, opt_state=trainer.optimizer.init(constant))
    trained = _train(trainer, constant_state, batch, steps=5)
    moved = np.abs(trained.params["out"]["kernel"] - 0.3).max()
    assert moved > 1e-3  # training did change the weights...
    report = symmetry_check(trained.params)
    assert list(report) == ["hidden_0", "hidden_1"]
    for layer, units in (("hidden_0", 4), ("hidden_1", 3)):
        assert report[layer].units == units
        assert report[layer].identical and report[layer].max_difference <= 1e-6  # ...alike
    broken = symmetry_check(_train(trainer, random_state, batch, steps=5).params)
    assert all(not s.identical and s.max_difference > 1e-2 for s in broken.values())


def test_unit_difference_is_the_largest_pairwise_difference():
    rng = np.random.default_rng(0)
    params = {
        "hidden_0": _dense(rng.normal(size=(3, 4)), rng.normal(size=4)),
        "out": _dense(rng.normal(size=(4, 2)), rng.normal(size=2)),
    }
    incoming, bias, outgoing = (
        params["hidden_0"]["kernel"].T,
        params["hidden_0"]["bias"][:, None],
        params["out"]["kernel"],
    )
    units = np.concatenate([incoming, bias, outgoing], axis=1)
    brute = max(np.abs(a - b).max() for a, b in itertools.combinations(units, 2))
    report = symmetry_check(params)
    assert report["hidden_0"].max_difference == pytest.approx(brute, rel=1e-6)
    assert not report["hidden_0"].identical
    assert symmetry_check(params, atol=brute)["hidden_0"].identical


def test_symmetry_check_rejects_a_broken_chain():
    params = {
        "a": _dense(np.zeros((3, 4)), np.zeros(4)),
        "b": _dense(np.zeros((5, 2)), np.zeros(2)),
    }
    with pytest.raises(ValueError, match="layer 'a' has 4 units but the kernel of 'b' takes 5"):
        symmetry_check(params)
    with pytest.raises(ValueError, match="at least two Dense layers"):
        symmetry_check({"a": params["a"]})

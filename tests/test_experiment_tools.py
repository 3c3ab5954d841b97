"""The tools the failure_modes and optimizers experiments measure with: jaxnets.failures
(bad initialisations, SGD at a set rate, pooled unit shares) and jaxnets.convergence (races
to a minimum or a target loss). λ_max by power iteration is tested in test_failure_modes.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import create_model, failures
from jaxnets.convergence import curvature_range, gd_growth, race, timed_ensemble_curve, to_target
from jaxnets.landscapes import quadratic
from jaxnets.optim import make_optimizer
from jaxnets.train import Trainer, evaluate_ensemble, init_ensemble

PARAMS = {
    "hidden_0": {"kernel": np.array([[1.0, -2.0]]), "bias": np.array([0.5, 0.5])},
    "output": {"kernel": np.array([[3.0], [4.0]]), "bias": np.array([1.0])},
}


def test_initialisation_transforms_change_only_what_they_name():
    assert all(np.all(leaf == 0) for leaf in jax.tree.leaves(failures.zero_params(PARAMS)))
    constant = failures.constant_kernels(0.05)(PARAMS)
    np.testing.assert_array_equal(constant["hidden_0"]["kernel"], [[0.05, 0.05]])
    np.testing.assert_array_equal(constant["output"]["bias"], [0.0])
    scaled = failures.scale_kernels(16.0)(PARAMS)
    np.testing.assert_array_equal(scaled["hidden_0"]["kernel"], [[16.0, -32.0]])
    np.testing.assert_array_equal(scaled["hidden_0"]["bias"], [0.5, 0.5])
    biased = failures.hidden_bias(-3.0)(PARAMS)
    np.testing.assert_array_equal(biased["hidden_0"]["bias"], [-3.0, -3.0])
    np.testing.assert_array_equal(biased["output"]["bias"], [1.0])  # not a hidden layer
    np.testing.assert_array_equal(biased["hidden_0"]["kernel"], PARAMS["hidden_0"]["kernel"])


def test_unit_fractions_pool_the_layers_by_their_units():
    activations = {
        "hidden_0": jnp.array([[0.0, 1.0], [0.0, 2.0]]),  # 1 dead unit of 2
        "hidden_1": jnp.array([[0.0, 0.0, 0.0, 3.0], [0.0, 0.0, 0.0, 1.0]]),  # 3 of 4
    }
    assert failures.unit_fractions(activations, "relu", "after") == pytest.approx(
        {"dead_after": 4 / 6}
    )
    tanh = {"hidden_0": jnp.array([[0.999, 0.1], [-0.999, 0.2]])}  # unit 0 saturated
    fractions = failures.unit_fractions(tanh, "tanh", "at_init")
    assert fractions == pytest.approx({"dead_at_init": 0.0, "saturated_at_init": 0.5})


def test_settable_sgd_steps_by_the_rate_set_in_the_state():
    model = create_model("softmax_regression")
    trainer = Trainer(model, "softmax_cross_entropy", failures.settable_sgd())
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (8, 64)), jnp.float32)
    y = jnp.arange(8) % 10
    state = failures.with_learning_rate(trainer.init(jax.random.PRNGKey(0), x[:1]), 0.25)
    plain = Trainer(model, "softmax_cross_entropy", make_optimizer("sgd", 0.25))
    expected, _ = plain.step(plain.init(jax.random.PRNGKey(0), x[:1]), (x, y))
    stepped, _ = trainer.step(state, (x, y))
    for got, want in zip(
        jax.tree.leaves(stepped.params), jax.tree.leaves(expected.params), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_curvature_range_and_gd_regimes_on_the_quadratic():
    problem = quadratic(50.0)
    assert curvature_range(problem) == pytest.approx((1.0, 50.0))
    # GD with α = 1.9/κ multiplies θ₁ by 1 − 1.9 = −0.9 and θ₀ by 1 − 1.9/50 every step
    path, _ = race(problem, make_optimizer("sgd", 1.9 / 50), 30, 1e-6)
    growth = gd_growth(path)
    assert growth["steep_growth"] == pytest.approx(0.9**30, rel=1e-4)
    assert growth["shallow_growth"] == pytest.approx((1 - 1.9 / 50) ** 30, rel=1e-4)
    assert growth["steep_sign_flips"] == 1.0


def test_race_counts_the_steps_to_the_minimum():
    problem = quadratic(1.0)  # E = ½|θ|², GD with α = 0.5 halves θ, so E falls 4x a step
    path, row = race(problem, make_optimizer("sgd", 0.5), 20, 1e-6)
    # 4^-k <= 1e-6 first at k = 10
    assert row["steps_to_minimum"] == 10 and row["reached_minimum"] == 1.0
    assert row["final_distance"] == pytest.approx(np.linalg.norm(problem.start) / 2**20)
    assert path.shape == (21, 2)
    _, missed = race(problem, make_optimizer("sgd", 0.5), 5, 1e-6)
    assert missed["steps_to_minimum"] == 5 and missed["reached_minimum"] == 0.0


def test_to_target_reads_each_members_first_crossing():
    curve = (
        [0, 10, 20, 30, 40, 50],
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        np.array([[2.0, 2.0], [1.0, 1.5], [0.09, 1.2], [0.08, 1.1], [0.12, 1.0], [0.05, 0.9]]),
    )
    first, second = to_target(curve, 0.1, batch_size=32)
    assert first == pytest.approx(
        {
            "steps_to_target": 20,
            "examples_to_target": 640,
            "seconds_to_target": 2.0,
            "reached_target": 1.0,
            "final_train_loss": 0.05,
            "late_train_loss": 0.05,  # the last fifth of 5 evaluations after the start: one
        }
    )
    assert second["reached_target"] == 0.0 and second["steps_to_target"] == 50


def test_timed_ensemble_curve_evaluates_every_so_many_steps():
    trainer = Trainer(
        create_model("softmax_regression"), "softmax_cross_entropy", make_optimizer("sgd", 0.1)
    )
    rng = np.random.default_rng(0)
    train = (jnp.asarray(rng.uniform(0, 1, (64, 64)), jnp.float32), jnp.arange(64) % 10)
    states = init_ensemble(trainer, jax.random.split(jax.random.PRNGKey(0), 2), train[0][:1])
    logged = []
    (steps, seconds, losses), final = timed_ensemble_curve(
        trainer, states, train, steps=6, every=3, batch_size=16, log=lambda **r: logged.append(r)
    )
    assert steps == [0, 3, 6] and seconds[0] == 0.0 and seconds[2] >= seconds[1] >= 0
    assert losses.shape == (3, 2)
    at_start = evaluate_ensemble(trainer, states, *train, batch_size=64)["loss"]
    at_end = evaluate_ensemble(trainer, final, *train, batch_size=64)["loss"]
    np.testing.assert_allclose(losses[0], at_start, rtol=1e-6)
    np.testing.assert_allclose(losses[-1], at_end, rtol=1e-6)
    assert [row["step"] for row in logged] == [0, 3, 6]
    assert logged[2]["train_loss"] == pytest.approx(float(np.mean(losses[2])))

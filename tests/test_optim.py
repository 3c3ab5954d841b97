import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets.optim import OPTIMIZERS, make_optimizer, make_schedule


def _run(opt, steps=200):
    """Minimise the ill-conditioned quadratic ½(x² + 10 y²) from (1, 1)."""
    params = jnp.array([1.0, 1.0])
    state = opt.init(params)
    for _ in range(steps):
        grads = params * jnp.array([1.0, 10.0])
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_minimises_a_quadratic(name):
    lr = 0.05 if name in ("sgd", "momentum", "nesterov") else 0.02
    assert float(jnp.linalg.norm(_run(make_optimizer(name, lr)))) < 0.05  # from 1.41


def test_sgd_step_is_minus_lr_times_gradient():
    opt = make_optimizer("sgd", 0.1)
    updates, _ = opt.update(jnp.array([2.0]), opt.init(jnp.array([0.0])))
    assert float(updates[0]) == pytest.approx(-0.2)


def test_schedules_values():
    assert float(make_schedule(1.0, "step", decay_every=10, decay_rate=0.5)(25)) == 0.25
    assert float(
        make_schedule(1.0, "exponential", decay_every=10, decay_rate=0.5)(5)
    ) == pytest.approx(0.5**0.5)
    cosine = make_schedule(1.0, "cosine", total_steps=100)
    assert float(cosine(0)) == 1.0 and float(cosine(50)) == pytest.approx(0.5)
    assert float(cosine(100)) == pytest.approx(0.0, abs=1e-7)


def test_clip_norm_bounds_the_update():
    opt = make_optimizer("sgd", 1.0, clip_norm=1.0)
    updates, _ = opt.update(jnp.array([30.0, 40.0]), opt.init(jnp.zeros(2)))
    np.testing.assert_allclose(updates, [-0.6, -0.8], rtol=1e-6)


def test_weight_decay_adds_to_gradient():
    opt = make_optimizer("sgd", 1.0, weight_decay=0.1)
    updates, _ = opt.update(jnp.array([0.0]), opt.init(jnp.array([2.0])), jnp.array([2.0]))
    assert float(updates[0]) == pytest.approx(-0.2)


def test_bad_names_and_values_are_explained():
    with pytest.raises(ValueError, match="did you mean 'adam'"):
        make_optimizer("adan", 0.1)
    with pytest.raises(ValueError, match="cosine"):
        make_optimizer("sgd", 0.1, schedule="cosine")
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        make_optimizer("sgd", -1.0)

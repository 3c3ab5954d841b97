import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import losses


def test_squared_error_is_half_sum_of_squares():
    assert float(losses.squared_error(jnp.array([1.0, 3.0]), jnp.array([0.0, 1.0]))) == 2.5


def test_softmax_cross_entropy_matches_log_softmax_and_is_stable():
    z = jnp.array([2.0, -1.0, 0.5])
    expected = -jax.nn.log_softmax(z)[2]
    np.testing.assert_allclose(losses.softmax_cross_entropy(z, 2), expected, rtol=1e-6)
    # huge logits: a naive exp() would overflow to inf/nan
    big = jnp.array([1000.0, 0.0, -1000.0])
    assert float(losses.softmax_cross_entropy(big, 0)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.softmax_cross_entropy(big, 1)) == pytest.approx(1000.0, rel=1e-6)


@pytest.mark.parametrize("z", [-800.0, -3.0, 0.0, 2.5, 800.0])
@pytest.mark.parametrize("t", [0.0, 1.0])
def test_binary_cross_entropy_stable_from_logit(z, t):
    value = float(losses.binary_cross_entropy(jnp.array([z]), jnp.array(t)))
    p = 1.0 / (1.0 + np.exp(-np.float64(z))) if abs(z) < 50 else None
    if p is not None:
        assert value == pytest.approx(-(t * np.log(p) + (1 - t) * np.log(1 - p)), rel=1e-5)
    else:  # the correct side costs ~0, the wrong side costs |z|
        wrong = (z > 0) != (t == 1.0)
        assert value == pytest.approx(abs(z) if wrong else 0.0, abs=1e-4)
    assert np.isfinite(value)


def test_binary_hinge_and_perceptron_criterion():
    # t=1 -> s=+1; t=0 -> s=-1
    assert float(losses.binary_hinge(jnp.array([0.3]), 1.0)) == pytest.approx(0.7)
    assert float(losses.binary_hinge(jnp.array([0.3]), 0.0)) == pytest.approx(1.3)
    assert float(losses.binary_hinge(jnp.array([2.0]), 1.0)) == 0.0
    assert float(losses.perceptron_criterion(jnp.array([0.3]), 1.0)) == 0.0
    assert float(losses.perceptron_criterion(jnp.array([0.3]), 0.0)) == pytest.approx(0.3)


def test_multiclass_hinge_weston_watkins():
    # cs231n's example: scores (3.2, 5.1, -1.7), correct class 0 -> 2.9 + 0 = 2.9
    z = jnp.array([3.2, 5.1, -1.7])
    assert float(losses.multiclass_hinge(z, 0)) == pytest.approx(2.9, rel=1e-6)
    assert float(losses.multiclass_hinge(jnp.array([1.3, 4.9, 2.0]), 1)) == 0.0


def test_zero_one_and_accuracy_for_multiclass_and_binary():
    assert float(losses.zero_one(jnp.array([0.1, 2.0, -1.0]), 1)) == 0.0
    assert float(losses.zero_one(jnp.array([0.1, 2.0, -1.0]), 0)) == 1.0
    assert float(losses.zero_one(jnp.array([0.2]), 1)) == 0.0
    assert float(losses.zero_one(jnp.array([-0.2]), 1)) == 1.0
    assert float(losses.accuracy(jnp.array([-0.2]), 0)) == 1.0


def test_losses_vmap_over_batch():
    z = jax.random.normal(jax.random.PRNGKey(0), (5, 4))
    t = jnp.array([0, 1, 2, 3, 0])
    per_example = jax.vmap(losses.softmax_cross_entropy)(z, t)
    assert per_example.shape == (5,)
    np.testing.assert_allclose(per_example, losses.softmax_cross_entropy(z, t), rtol=1e-6)


def test_unknown_loss_lists_close_matches():
    with pytest.raises(KeyError, match="did you mean 'softmax_cross_entropy'"):
        losses.get_loss("softmax_crossentropy")


def test_bernoulli_nll_sums_the_per_pixel_log_likelihoods():
    z = jnp.array([[2.0, -1.0], [0.5, -30.0]])
    t = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    p = 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))
    expected = -np.sum(np.where(np.asarray(t) == 1, np.log(p), np.log1p(-p)))
    np.testing.assert_allclose(losses.bernoulli_nll(z, t), expected, rtol=1e-6)
    # a uniform model (all logits 0) costs exactly 1 bit per pixel
    bits = losses.bernoulli_nll(jnp.zeros((3, 3, 1)), jnp.ones((3, 3, 1))) / (9 * np.log(2))
    np.testing.assert_allclose(bits, 1.0, rtol=1e-6)


def test_negative_log_likelihood_ignores_the_target_and_random_targets_fit_each_kind():
    assert float(losses.negative_log_likelihood(jnp.array(-3.5), jnp.array(7.0))) == 3.5
    key = jax.random.PRNGKey(0)
    none = losses.random_targets("negative_log_likelihood", key, jnp.ones((4,)))
    assert none.shape == (4,) and not np.any(np.asarray(none))
    pixels = losses.random_targets("bernoulli_nll", key, jnp.ones((4, 3, 3, 1)))
    assert pixels.shape == (4, 3, 3, 1) and set(np.unique(np.asarray(pixels))) == {0.0, 1.0}

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import regularizers

PARAMS = {
    "Dense_0": {"kernel": jnp.array([[1.0, -2.0]]), "bias": jnp.array([5.0])},
    "Dense_1": {"kernel": jnp.array([3.0])},
}


def test_l1_l2_skip_biases_by_default():
    assert float(regularizers.l1(PARAMS)) == 6.0
    assert float(regularizers.l2(PARAMS)) == 0.5 * (1 + 4 + 9)
    assert float(regularizers.l1(PARAMS, include_biases=True)) == 11.0


def test_l2_gradient_is_the_weights_and_biases_get_none():
    g = jax.grad(regularizers.l2)(PARAMS)
    np.testing.assert_array_equal(g["Dense_0"]["kernel"], PARAMS["Dense_0"]["kernel"])
    np.testing.assert_array_equal(g["Dense_0"]["bias"], [0.0])


def test_elastic_net_interpolates():
    assert float(regularizers.elastic_net(PARAMS, 1.0)) == float(regularizers.l1(PARAMS))
    assert float(regularizers.elastic_net(PARAMS, 0.0)) == float(regularizers.l2(PARAMS))
    assert float(regularizers.elastic_net(PARAMS, 0.25)) == pytest.approx(0.25 * 6 + 0.75 * 7)
    with pytest.raises(ValueError, match="l1_ratio"):
        regularizers.elastic_net(PARAMS, 1.5)


def test_make_regularizer_scales_and_validates():
    assert float(regularizers.make_regularizer("l1", 0.1)(PARAMS)) == pytest.approx(0.6)
    assert regularizers.make_regularizer("l2", 0.0) is None
    with pytest.raises(ValueError, match="unknown regularizer"):
        regularizers.make_regularizer("l3", 0.1)

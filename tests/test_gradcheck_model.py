"""A registered model's loss as the gradient checks see it: model_loss_at (a fixed float64
batch, training mode with a fixed dropout key) and gradcheck_model."""

import jax
import numpy as np
import pytest

from jaxnets.gradcheck import (
    gradcheck,
    gradcheck_model,
    model_loss_at,
)


def test_model_loss_at_is_the_mean_squared_error_of_a_fixed_float64_batch():
    """linear_regression's tiny config (4 inputs -> 3 outputs) under its card's squared error:
    float64 parameters, and the loss is the batch MEAN of ½‖x W + b − y‖², so along the bias
    its second difference is exactly ‖δ‖² (the Hessian in b is the identity), whatever x and
    y; the fixed batch depends on the seed only. In W the Hessian is (XᵀX / B) ⊗ I₃, of rank
    3·min(B, 4): 9 of 12 for the default batch of B = 3 examples."""
    loss_fn, params = model_loss_at("linear_regression", batch_size=5)
    shapes = {k: (v.shape, v.dtype) for k, v in params["dense"].items()}
    assert shapes == {"kernel": ((4, 3), np.float64), "bias": ((3,), np.float64)}
    delta = np.array([0.3, -0.2, 0.5])
    with jax.enable_x64(True):
        at = jax.jit(
            lambda s: loss_fn(
                {"dense": {**params["dense"], "bias": params["dense"]["bias"] + s * delta}}
            )
        )
        base = float(at(0.0))
        second = float(at(1.0) + at(-1.0)) - 2 * base
        other = float(model_loss_at("linear_regression", seed=1, batch_size=5)[0](params))
        again = float(loss_fn(params))
    assert second == pytest.approx(float(delta @ delta), rel=1e-9)
    assert again == base and abs(other - again) > 1e-3
    # gradcheck_model checks that loss at its seed, in the mode asked for
    report = gradcheck_model("linear_regression", mode="directions", seed=1)
    assert report.mode == "directions" and report.passed
    assert [leaf.path for leaf in report.leaves] == ["dense/bias", "dense/kernel"]
    with jax.enable_x64(True):
        loss_1, params_1 = model_loss_at("linear_regression", seed=1)
        grads = jax.grad(loss_1)(params_1)["dense"]
        kernel_hessian = jax.hessian(
            lambda kernel: loss_1({"dense": {**params_1["dense"], "kernel": kernel}})
        )(params_1["dense"]["kernel"])
    assert np.linalg.matrix_rank(np.asarray(kernel_hessian).reshape(12, 12), tol=1e-10) == 9
    norms = [leaf.analytic_norm for leaf in report.leaves]
    np.testing.assert_allclose(
        norms, [np.linalg.norm(grads[k]) for k in ("bias", "kernel")], rtol=1e-12
    )


def test_model_loss_at_is_the_training_mode_loss_with_a_fixed_dropout_key():
    """The loss is taken in training mode: an MLP whose dropout drops every hidden unit
    (rate 1) has an output that ignores the hidden layer, so the hidden kernel's gradient is
    exactly zero (in evaluation mode dropout is the identity and it is not). At rate 0.5 the
    dropout mask comes from a fixed key: the loss is a deterministic function of the params."""
    loss_fn, params = model_loss_at("mlp_regression", overrides={"dropout_rate": 1.0})
    with jax.enable_x64(True):
        grads = jax.grad(loss_fn)(params)
    assert np.all(np.asarray(grads["hidden_0"]["kernel"]) == 0)
    assert np.any(np.asarray(grads["out"]["bias"]) != 0)
    loss_fn, params = model_loss_at("mlp_regression", overrides={"dropout_rate": 0.5})
    with jax.enable_x64(True):
        first, second = float(loss_fn(params)), float(loss_fn(params))
    assert first == second and np.isfinite(first)


def test_gradcheck_model_is_gradcheck_of_model_loss_at_with_the_same_seed_and_options():
    """Same seed for the batch and the random directions (0 by default), options passed on:
    the report equals the one of gradcheck on model_loss_at, leaf for leaf. The default mode
    is "auto": full for this 15-parameter model."""
    for kwargs in ({}, {"mode": "directions", "seed": 2}):
        report = gradcheck_model("linear_regression", tol=0.5, **kwargs)
        loss_fn, params = model_loss_at("linear_regression", seed=kwargs.get("seed", 0))
        direct = gradcheck(loss_fn, params, tol=0.5, **kwargs)
        assert report == direct and report.tol == 0.5
        assert report.mode == kwargs.get("mode", "full")

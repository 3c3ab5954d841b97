"""experiments/failure_modes.py: the curvature estimate behind the too-high learning rates,
and bad configurations are refused. The smoke run is in test_experiments_basics.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from test_experiments import load_experiment

import jaxnets
from jaxnets import failures, native
from jaxnets.experiment import parse_config
from jaxnets.optim import make_optimizer
from jaxnets.train import Trainer, batch_loss


def _dense_hessian_eigenvalues(trainer, params, x, y, key) -> np.ndarray:
    """The Hessian of the mean loss written out in full (jax.hessian of the flattened loss,
    on XLA's path) and diagonalised by LAPACK (numpy.eigvalsh), ascending."""
    flat, unravel = ravel_pytree(params)

    def loss(theta):
        return batch_loss(
            trainer.model, trainer.loss, unravel(theta), {}, (x, y), key, train=False
        )[0]

    with native.pure_jax():
        hessian = jax.jit(jax.hessian(loss))(flat)
    return np.linalg.eigvalsh(np.asarray(hessian, np.float64))


def test_power_iteration_finds_the_largest_eigenvalue_of_the_dense_hessian():
    """λ_max by Hessian-vector products equals the top eigenvalue of the dense Hessian. A wrong
    HVP (a gradient instead of its derivative, a missing normalisation) or a Rayleigh quotient
    of the wrong vectors gives another number."""
    failure_modes = load_experiment("failure_modes")
    trainer = failure_modes.make_trainer(failure_modes.Config(hidden=(4, 3)), "tanh")
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(0, 1, (12, 64)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, 12))
    key = jax.random.PRNGKey(0)
    params = trainer.init(key, x[:1]).params
    estimate = failures.top_hessian_eigenvalue(trainer, params, x, y, key, 300)
    eigenvalues = _dense_hessian_eigenvalues(trainer, params, x, y, key)
    # the top one is the largest in magnitude here, which power iteration converges to
    assert eigenvalues[-1] > abs(eigenvalues[0])
    assert float(estimate) == pytest.approx(eigenvalues[-1], rel=1e-3)


def test_the_curvature_of_a_conv_net_is_measured_where_its_convolutions_run_on_onednn(
    native_kernels,
):
    """The Hessian-vector products are forward mode over the gradient, through oneDNN's
    convolutions and their gradient kernels: LeNet-5's λ_max is the dense Hessian's (XLA's)."""
    card = jaxnets.model_card("lenet5")
    trainer = Trainer(
        jaxnets.create_model("lenet5", **card.test_config),
        "softmax_cross_entropy",
        make_optimizer("sgd", 0.1),
    )
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((8, *card.test_input_shape)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 8))
    key = jax.random.PRNGKey(0)
    params = trainer.init(key, x[:1]).params
    estimate = failures.top_hessian_eigenvalue(trainer, params, x, y, key, 300)
    lowered = failures.top_hessian_eigenvalue.lower(trainer, params, x, y, key, 300)
    assert "jaxnets_conv_kernel_grad" in lowered.as_text()
    eigenvalues = _dense_hessian_eigenvalues(trainer, params, x, y, key)
    top = max(eigenvalues, key=abs)
    assert float(estimate) == pytest.approx(top, rel=1e-3)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hidden", "64"], "hidden must be at least 2 layers"),
        (["--epochs", "0"], "epochs must be >= 1"),
        (["--seeds", "0"], "seeds must be >= 1"),
        (["--too-high-lr-factor", "1.5"], "too_high_lr_factor must be > 2"),
        (["--leaky-slope", "1"], "leaky_slope must be in (0, 1)"),
    ],
)
def test_invalid_config_is_a_usage_error(args, message, capsys):
    failure_modes = load_experiment("failure_modes")
    with pytest.raises(SystemExit) as exit_info:
        parse_config(failure_modes.Config, args)
    assert exit_info.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())

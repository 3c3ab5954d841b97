"""experiments/failure_modes.py: the curvature estimate behind the too-high learning rates,
and bad configurations are refused. The smoke run is in test_experiments_basics.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from test_experiments import load_experiment

from jaxnets import failures
from jaxnets.experiment import parse_config
from jaxnets.train import batch_loss


def test_power_iteration_finds_the_largest_eigenvalue_of_the_dense_hessian():
    """λ_max by Hessian-vector products equals the top eigenvalue of the Hessian written out
    in full (jax.hessian of the flattened loss) and diagonalised by LAPACK (numpy.eigvalsh).
    A wrong HVP (a gradient instead of its derivative, a missing normalisation) or a
    Rayleigh quotient of the wrong vectors gives another number."""
    failure_modes = load_experiment("failure_modes")
    trainer = failure_modes.make_trainer(failure_modes.Config(hidden=(4, 3)), "tanh")
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(0, 1, (12, 64)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, 12))
    key = jax.random.PRNGKey(0)
    params = trainer.init(key, x[:1]).params
    estimate = failures.top_hessian_eigenvalue(trainer, params, x, y, key, 300)

    flat, unravel = ravel_pytree(params)

    def loss(theta):
        return batch_loss(
            trainer.model, trainer.loss, unravel(theta), {}, (x, y), key, train=False
        )[0]

    eigenvalues = np.linalg.eigvalsh(np.asarray(jax.jit(jax.hessian(loss))(flat), np.float64))
    # the top one is the largest in magnitude here, which power iteration converges to
    assert eigenvalues[-1] > abs(eigenvalues[0])
    assert float(estimate) == pytest.approx(eigenvalues[-1], rel=1e-3)


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

"""experiments/optimizers.py: bad configurations are refused. Its smoke run, with the
closed-form checks of its numbers, is in test_experiments_basics.py."""

import pytest
from test_experiments import load_experiment

from jaxnets.experiment import parse_config


@pytest.mark.parametrize(
    "args, message",
    [
        (["--digits-steps", "30", "--eval-every", "20"], "must be a multiple of eval_every"),
        (["--batch-sizes", "8", "64"], "include 0"),
        (["--optimizers", "adam", "rmsprop"], "include sgd and momentum"),
        (["--optimizers", "sgd", "momentum", "lion"], "must come from"),
        (["--condition", "0.5"], "condition must be >= 1"),
    ],
)
def test_invalid_config_is_a_usage_error(args, message, capsys):
    module = load_experiment("optimizers")
    with pytest.raises(SystemExit) as exit_info:
        parse_config(module.Config, args)
    assert exit_info.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())

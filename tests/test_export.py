"""jax.export artifacts of registered models (jaxnets.export, ``jaxnets export``): they run in a
process that imports only jax and give jaxnets' own outputs at any batch size."""

import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest

import jaxnets
from jaxnets import registry
from jaxnets.cli import main
from jaxnets.export import ExportError, export_apply, export_model, initial_variables
from jaxnets.train import Trainer
from jaxnets.weights import WeightsError, save_weights

# Registered models that cannot be exported with a symbolic batch dimension, with the reason.
# Every model exports today (test_every_registered_model_exports checks it).
CANNOT_EXPORT: dict[str, str] = {}

FRESH_PROCESS = """
import sys
import jax, numpy as np
exported = jax.export.deserialize(open(sys.argv[1], "rb").read())
for path in sys.argv[2:]:
    np.save(path + ".out.npy", exported.call(np.load(path)))
assert "jaxnets" not in sys.modules, "the artifact's process imported jaxnets"
print(sorted(m for m in sys.modules if m.split(".")[0] in ("jaxnets", "flax", "optax")))
"""


def forward(name, variables, x, **config):
    model = registry.create_model(name, **config)
    return jax.jit(lambda x: model.apply(variables, x, train=False))(x)


def inputs(name, batch, seed=0, tiny=True):
    return registry.example_inputs(
        registry.model_card(name), jax.random.PRNGKey(seed), batch, tiny=tiny
    )


def test_cli_artifact_runs_in_a_process_that_imports_only_jax(tmp_path, capsys):
    out = tmp_path / "lenet5.jaxexport"
    assert main(["export", "lenet5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "input:  (b, 32, 32, 1) float32" in printed and "output: (b, 10) float32" in printed
    batches = {3: inputs("lenet5", 3, tiny=False), 5: inputs("lenet5", 5, seed=1, tiny=False)}
    for b, x in batches.items():
        np.save(tmp_path / f"x{b}.npy", np.asarray(x))
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            FRESH_PROCESS,
            str(out),
            *(str(tmp_path / f"x{b}.npy") for b in batches),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"  # neither jaxnets nor flax nor optax was imported
    variables = initial_variables("lenet5", (32, 32, 1), seed=0)
    for b, x in batches.items():
        got = np.load(tmp_path / f"x{b}.npy.out.npy")
        assert got.shape == (b, 10)
        np.testing.assert_allclose(got, forward("lenet5", variables, x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["mlp", "lenet5", "resnet18", "lstm_classifier"])
def test_export_with_a_symbolic_batch_gives_the_forward_pass(name):
    config = dict(registry.model_card(name).test_config)
    x = inputs(name, 2)
    variables = initial_variables(name, x.shape[1:], seed=3, **config)
    exported = jax.export.deserialize(export_model(name, variables, **config).serialize())
    assert str(exported.in_avals[0].shape[0]) == "b"
    for batch in (2, 7):
        x = inputs(name, batch, seed=batch)
        expected = forward(name, variables, x, **config)
        assert np.max(np.abs(expected)) > 1e-3  # outputs that could tell a wrong model apart
        np.testing.assert_allclose(exported.call(x), expected, rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", jaxnets.list_models())
def test_every_registered_model_exports(name):
    config = dict(registry.model_card(name).test_config)
    x = inputs(name, 3)
    if name in CANNOT_EXPORT:
        with pytest.raises(ExportError, match=rf"model '{name}' cannot be exported"):
            export_model(name, **config)
        return
    exported = export_model(name, seed=1, **config)
    variables = initial_variables(name, x.shape[1:], seed=1, **config)
    expected = jax.tree.leaves(forward(name, variables, x, **config))
    for got, want in zip(jax.tree.leaves(exported.call(x)), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_exported_weights_file_gives_the_weights_outputs(tmp_path, capsys):
    config = dict(registry.model_card("lenet5").test_config)
    variables = initial_variables("lenet5", (12, 12, 1), seed=5, **config)
    weights = save_weights(tmp_path / "l.weights", "lenet5", variables, **config)
    out = tmp_path / "l.jaxexport"
    assert (
        main(["export", "lenet5", "--weights", str(weights), "--out", str(out), "--batch", "4"])
        == 0
    )
    assert "input:  (4, 12, 12, 1) float32" in capsys.readouterr().out
    exported = jax.export.deserialize(out.read_bytes())
    x = inputs("lenet5", 4)
    np.testing.assert_allclose(
        exported.call(x), forward("lenet5", variables, x, **config), rtol=0, atol=1e-6
    )
    assert main(["export", "mlp", "--weights", str(weights), "--out", str(out)]) == 1
    assert "holds 'lenet5' weights" in capsys.readouterr().err


def test_variables_that_do_not_fit_are_refused_by_key():
    variables = initial_variables("mlp", (4,), hidden=(5,), num_outputs=3)
    with pytest.raises(
        WeightsError,
        match=r"on input \(batch, 4\): 'params/hidden_0/bias' has shape \(5,\) in the "
        r"weights, the model expects \(6,\)",
    ):
        export_model("mlp", variables, input_shape=(4,), hidden=(6,), num_outputs=3)


def test_tiny_exports_the_test_config_and_refuses_weights(tmp_path, capsys):
    out = tmp_path / "mlp.jaxexport"
    assert main(["export", "mlp", "--tiny", "--out", str(out)]) == 0
    assert "input:  (b, 4) float32\noutput: (b, 3) float32" in capsys.readouterr().out
    weights = save_weights(tmp_path / "m.weights", "mlp", initial_variables("mlp", (64,)))
    assert main(["export", "mlp", "--tiny", "--weights", str(weights), "--out", str(out)]) == 1
    assert "(without --tiny)" in capsys.readouterr().err


def test_seeded_variables_are_those_a_trainer_starts_from():
    config = dict(registry.model_card("mlp").test_config)
    trainer = Trainer(
        registry.create_model("mlp", **config), "softmax_cross_entropy", optax.sgd(0.1)
    )
    state = trainer.init(jax.random.PRNGKey(4), inputs("mlp", 2))
    variables = initial_variables("mlp", (4,), seed=4, **config)
    for a, b in zip(
        jax.tree.leaves(variables["params"]), jax.tree.leaves(state.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)


class BatchBranch(nn.Module):
    """Doubles its input when the batch holds more than one example: a Python branch on the
    batch size, which a symbolic batch dimension cannot decide."""

    @nn.compact
    def __call__(self, x, train=False):
        return 2 * x if x.shape[0] > 1 else x


def test_a_python_branch_on_the_batch_size_is_a_clear_error():
    with pytest.raises(ExportError, match=r"branch.*batch=N \(jaxnets export --batch N\)"):
        export_apply(BatchBranch(), {}, (3,), np.float32, label="model 'branchy'")
    exported = export_apply(BatchBranch(), {}, (3,), np.float32, batch=2)
    np.testing.assert_array_equal(exported.call(np.ones((2, 3), np.float32)), np.full((2, 3), 2.0))

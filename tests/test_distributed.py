"""Data parallelism on jax.sharding meshes, several processes through jax.distributed, and
`jaxnets launch` (issue 16). The device count is fixed when JAX's backend starts, so runs on
several devices happen in subprocesses (tests/distributed_worker.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from jaxnets import distributed, launch
from jaxnets.experiment import Run, parse_config
from jaxnets.optim import make_optimizer
from jaxnets.train import Trainer

WORKER = str(Path(__file__).with_name("distributed_worker.py"))
ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ["-m", "jaxnets.cli", "launch"]
# float32 rounding of parameters of size ~1 after a few Adam steps, summed in another order
ROUNDING = 2e-6


def _run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def meshes(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("meshes") / "report.json"
    _run([WORKER, "meshes", str(out)])
    return json.loads(out.read_text())


@pytest.mark.parametrize("model", ["mlp", "resnet20", "lstm_classifier"])
@pytest.mark.parametrize("devices", [1, 2, 4, 8])
def test_training_on_1_2_4_or_8_devices_gives_the_one_device_parameters(meshes, model, devices):
    """Two epochs of Adam on the same global batches: the MLP, the batch-norm ResNet (batch
    statistics over the global batch, running averages included) and the LSTM classifier
    end with the parameters and validation loss of the run without a mesh, to float32
    rounding: the mesh changes where the work runs, not what is computed."""
    assert meshes["devices"] == 8
    row = meshes[f"{model}/{devices}"]
    assert row["param_scale"] > 0.5  # the comparison is of trained, non-trivial weights
    assert row["param_diff"] <= ROUNDING
    assert row["model_state_diff"] <= ROUNDING
    assert row["val_loss_diff"] <= ROUNDING


@pytest.mark.parametrize("model", ["mlp", "lstm_classifier"])
@pytest.mark.parametrize("devices", [1, 2, 4, 8])
def test_reduction_groups_make_every_device_count_bitwise_equal(meshes, model, devices):
    """With reduction_groups=8 each device adds up the same groups in the same order, so
    two epochs end with exactly the parameters of the run without a mesh, not merely to
    rounding: the set-ups cannot drift apart over a long run. (Evaluation still sums its
    chunks in the mesh's order: the validation loss agrees to rounding.)"""
    row = meshes[f"grouped/{model}/{devices}"]
    assert row["param_scale"] > 0.5
    assert row["param_diff"] == 0.0
    assert row["val_loss_diff"] <= ROUNDING


def test_fsdp_splits_each_large_parameter_and_its_adam_moments_eight_ways(meshes):
    """With fsdp_min_size=256 the MLP's (4, 64) hidden kernel (1,024 bytes) and its two Adam
    moments are the arrays at or above the threshold; each device holds 1/8 of their bytes,
    and training so gives the replicated run's parameters."""
    leaves = {path: (nbytes, shards) for path, nbytes, shards in meshes["fsdp_leaves"]}
    assert set(leaves) == {
        "[0]['hidden_0']['kernel']",
        "[1][0].mu['hidden_0']['kernel']",
        "[1][0].nu['hidden_0']['kernel']",
    }
    for nbytes, shards in leaves.values():
        assert nbytes == 4 * 64 * 4 and shards == [nbytes // 8]
    assert meshes["fsdp_param_diff"] <= ROUNDING


@pytest.mark.parametrize("first, then", [(4, 2), (2, 1), (1, 4)])
def test_a_run_checkpointed_on_some_devices_resumes_on_others(meshes, first, then):
    """Epoch 1 on `first` devices with an Orbax checkpoint, epoch 2 resumed from it on `then`
    devices: the final state (parameters, Adam moments, step, rng) equals two uninterrupted
    epochs on one device."""
    assert meshes[f"resume/{first}->{then}"] <= ROUNDING


def test_ensembles_and_per_example_gradients_on_a_mesh_equal_one_device(meshes):
    """Four ensemble members trained at once, and per-example gradients, with each batch
    split over 4 devices: the same numbers as without a mesh."""
    assert meshes["ensemble_diff"] <= ROUNDING
    assert meshes["per_example_diff"] <= ROUNDING


def test_early_stopping_on_a_mesh_restores_the_best_state_onto_the_mesh(meshes):
    """EarlyStopping keeps its best state on the host; fit puts it back onto the mesh, with
    the parameters of the same run without a mesh."""
    assert meshes["early_stopping_on_mesh"]
    assert meshes["early_stopping_diff"] <= ROUNDING


def test_two_processes_of_two_devices_equal_one_process_of_four(tmp_path):
    """`jaxnets launch -n 2 --devices-per-process 2` runs two jax.distributed processes (gloo
    collectives on 127.0.0.1), each reading its half of every batch. They train the batch-norm
    ResNet for one epoch with an Orbax checkpoint (each process writing its shards), and a
    second launch resumes it for the second epoch: the parameters equal one process with 4
    devices training both epochs, and only process 0 writes results."""
    one, two, ckpt = tmp_path / "one.npz", tmp_path / "two.npz", tmp_path / "ckpt"
    _run([WORKER, "train", str(one), "--devices", "4"])
    launch_2x2 = [*LAUNCH, "-n", "2", "--devices-per-process", "2", WORKER, "train", str(two)]
    _run([*launch_2x2, "--epochs", "1", "--checkpoint-dir", str(ckpt)])
    assert [p.name for p in ckpt.iterdir()] == ["2"]  # epoch 1: 2 steps
    _run([*launch_2x2, "--checkpoint-dir", str(ckpt)])
    a, b = np.load(one), np.load(two)
    assert int(a["devices"]) == int(b["devices"]) == 4
    assert np.abs(a["params"] - b["params"]).max() <= ROUNDING
    assert abs(float(a["loss"]) - float(b["loss"])) <= ROUNDING
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "one.npz", "two.npz"]


def _digits_summary(tmp_path, name: str, flags=(), launcher=()) -> dict:
    """Run experiments/digits.py --smoke (under ``launcher``, e.g. jaxnets launch) into its
    own folder; return its one run's summary."""
    out = tmp_path / name
    _run([*launcher, "experiments/digits.py", "--smoke", "--out", str(out), *flags])
    (run,) = (out / "digits").iterdir()  # exactly one run directory
    return json.loads((run / "summary.json").read_text())


def _accuracies(summary: dict) -> tuple:
    return summary["results"], [claim["values"] for claim in summary["claims"]]


def test_digits_on_four_devices_prints_the_one_device_accuracies_bit_for_bit(tmp_path):
    """The digits experiment (reduction_groups=8) on 4 virtual devices ends with the same
    test and validation accuracies, per seed, as on one: equal floats, not close ones."""
    one = _digits_summary(tmp_path, "one")
    four = _digits_summary(tmp_path, "four", ["--devices", "4"])
    assert one["results"]["mlp"]["test_accuracy"] > 0.5  # trained, not a constant guess
    assert _accuracies(four) == _accuracies(one)


@pytest.mark.slow
def test_digits_under_launch_prints_the_one_device_accuracies_bit_for_bit(tmp_path):
    """`jaxnets launch -n 2 --devices-per-process 2 experiments/digits.py`: two processes, one
    run directory (process 0's), the accuracies of the one-device run."""
    one = _digits_summary(tmp_path, "one")
    launcher = [*LAUNCH, "-n", "2", "--devices-per-process", "2"]
    launched = _digits_summary(tmp_path, "launched", launcher=launcher)
    assert _accuracies(launched) == _accuracies(one)


def test_a_killed_process_ends_the_launch_with_an_error_naming_it_within_60_s(tmp_path):
    """Process 1 is SIGKILLed after its first epoch while process 0 trains on, blocked in a
    collective: the launcher stops process 0 and fails, naming process 1 and the signal."""
    start = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxnets.cli",
            "launch",
            "-n",
            "2",
            "--log-dir",
            str(tmp_path),
            WORKER,
            "die",
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - start < 60
    assert result.returncode != 0
    assert "process 1 of 2 was killed by SIGKILL; stopped the others" in result.stderr
    assert (tmp_path / "process-1.log").exists()


def test_launch_reports_the_first_failing_process_with_its_status_and_log(tmp_path):
    """A process exiting with status 3 fails the launch with that status; its log's tail is in
    the error; processes that finished cleanly do not count as failures."""
    script = tmp_path / "fail.py"
    script.write_text(
        "import os, sys, time\n"
        "i = int(os.environ['JAXNETS_PROCESS_ID'])\n"
        "print('process', i, 'of', os.environ['JAXNETS_NUM_PROCESSES'])\n"
        "if i == 2:\n    time.sleep(0.5); sys.exit(3)\n"
    )
    with pytest.raises(launch.LaunchError, match=r"process 2 of 3 exited with status 3") as err:
        launch.launch([sys.executable, str(script)], 3, log_dir=tmp_path)
    assert err.value.process_id == 2 and err.value.returncode == 3
    assert "process 2 of 3" in str(err.value).splitlines()[-1]
    assert (tmp_path / "process-1.log").read_text() == "process 1 of 3\n"
    assert launch.launch([sys.executable, "-c", "pass"], 2, log_dir=tmp_path) == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(processes=0), "need at least 1 process; got 0"),
        (dict(processes=2, devices_per_process=0), "need at least 1 device per process; got 0"),
    ],
)
def test_launch_rejects_impossible_counts(kwargs, message):
    with pytest.raises(ValueError, match=message):
        launch.launch([sys.executable, "-c", "pass"], **kwargs)


def test_fsdp_splits_the_largest_divisible_dimension_of_large_arrays():
    """The FSDP rule: arrays under min_size elements, or with no dimension divisible by the
    axis, are replicated; otherwise the largest divisible dimension is split."""
    spec = lambda shape: distributed.fsdp_spec(shape, 4, min_size=64)  # noqa: E731
    assert spec((8, 4)) == PartitionSpec()  # 32 elements < 64
    assert spec((3, 5, 7)) == PartitionSpec()  # nothing divisible by 4
    assert spec((12, 64)) == PartitionSpec(None, "data")
    assert spec((64, 12)) == PartitionSpec("data")
    assert spec((3, 3, 16, 32)) == PartitionSpec(None, None, None, "data")
    assert distributed.fsdp_spec((1024,), 1, min_size=1) == PartitionSpec()


def test_mesh_errors_say_what_would_work():
    """Asking for more devices than JAX sees names --devices; a mesh without a data axis, FSDP
    without a mesh and a batch that does not split over the devices are refused before any
    step runs."""
    with pytest.raises(ValueError, match=r"asked for 3 devices but JAX sees 1 .*--devices 3"):
        distributed.data_mesh(3)
    mesh = distributed.data_mesh(1)
    other = jax.sharding.Mesh(mesh.devices, ("batch",))
    model = Trainer.for_model("mlp", make_optimizer("sgd", 0.1)).model
    with pytest.raises(ValueError, match="needs a 'data' axis"):
        Trainer(model, "softmax_cross_entropy", make_optimizer("sgd", 0.1), mesh=other)
    with pytest.raises(ValueError, match="fsdp shards parameters over a mesh: pass mesh="):
        Trainer(model, "softmax_cross_entropy", make_optimizer("sgd", 0.1), fsdp=True)


def test_devices_flag_after_the_backend_started_is_a_usage_error(capsys):
    """`--devices` must act before JAX starts (the CPU device count is fixed then): asked too
    late, the scripts' parser says so and exits with 2 instead of training on one device."""
    jax.devices()  # the backend of this test process has started

    class Config:
        """A config."""

    with pytest.raises(SystemExit) as err:
        parse_config(Config, ["--devices", "2"])
    assert err.value.code == 2
    assert "JAX's backend has already started" in capsys.readouterr().err


@pytest.mark.parametrize(
    "env, message",
    [
        ({"JAXNETS_NUM_PROCESSES": "two"}, "JAXNETS_NUM_PROCESSES='two' is not an integer"),
        (
            {"JAXNETS_NUM_PROCESSES": "2"},
            "a multi-process run needs the coordinator address, the process count",
        ),
    ],
)
def test_configure_rejects_a_broken_launch_environment(env, message):
    with pytest.raises(ValueError, match=message):
        distributed.configure(env=env)


def test_only_process_0_writes_a_run_directory(tmp_path, monkeypatch):
    """On processes other than 0 a Run creates nothing: no directory, metrics, figures,
    texts or summary, so a multi-process run writes exactly one run directory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(distributed, "is_main_process", lambda: False)
    run = Run("exp", {"a": 1}, root=tmp_path)
    run.log(epoch=1)
    run.write_text("samples.txt", "abc")
    run.savefig(plt.figure(), "curve")
    summary = run.write_summary({"v": {"m": 1.0}}, [])
    assert summary["results"] == {"v": {"m": 1.0}} and run.metrics_path is None
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(distributed, "is_main_process", lambda: True)
    main = Run("exp", {"a": 1}, root=tmp_path)
    main.write_text("samples.txt", "abc")
    assert sorted(p.name for p in main.dir.iterdir()) == ["config.json", "samples.txt"]

"""Runs that survive: kill -9 (from a callback, and mid-save) under EarlyStopping, damaged
checkpoints, another run's directory and non-finite states, on a tiny MLP
(tests/checkpoint_fault_worker.py). Each resumed run must equal the uninterrupted one bitwise,
stop where it stopped, and leave a metrics log with every epoch exactly once."""

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import checkpoint_fault_worker as worker
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets.checkpoint import (
    Checkpointer,
    CheckpointError,
    CorruptCheckpointError,
    CorruptCheckpointWarning,
    ForeignCheckpointError,
)
from jaxnets.optim import make_optimizer
from jaxnets.train import NonFiniteLossError, Trainer, fit

WORKER = str(Path(__file__).with_name("checkpoint_fault_worker.py"))
STEPS_PER_EPOCH = 16 // worker.BATCH


@pytest.fixture(scope="module")
def trainer():
    return worker.trainer()  # one Trainer: its compiled epoch is reused by every run here


@pytest.fixture(scope="module")
def uninterrupted(trainer, tmp_path_factory):
    """The reference run, never interrupted: (result, stopper, its metrics lines)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    result, stopper = worker.run(trainer, root / "ckpt", root / "metrics.jsonl")
    assert result.stopped_early and stopper.stopped_epoch == stopper.best_epoch + worker.PATIENCE
    return result, stopper, _metrics(root / "metrics.jsonl")


def _metrics(path: Path) -> list[dict]:
    """The JSONL lines without their timings (which differ between runs)."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [
        {k: v for k, v in line.items() if k not in ("seconds", "steps_per_s")} for line in lines
    ]


def _kill_9(mode: str, directory: Path, metrics: Path, epoch: int) -> None:
    proc = subprocess.run(
        [sys.executable, WORKER, mode, str(directory), str(metrics), str(epoch)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]


def _assert_same_run(resumed, stopper, metrics: Path, uninterrupted) -> None:
    full, full_stopper, full_metrics = uninterrupted
    jax.tree.map(np.testing.assert_array_equal, resumed.state, full.state)
    assert resumed.stopped_early
    assert (stopper.best_epoch, stopper.stopped_epoch) == (
        full_stopper.best_epoch,
        full_stopper.stopped_epoch,
    )
    assert _metrics(metrics) == full_metrics  # every epoch exactly once, same numbers


def _files(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``directory``: (size, mtime in ns)."""
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_kill_9_under_early_stopping_resumes_bitwise_and_a_finished_run_is_not_rerun(
    trainer, uninterrupted, tmp_path
):
    """Killed after the best epoch, while EarlyStopping counts its patience: the resumed run
    restores the patience count, stops at the same epoch and restores the best state from
    disk (the process that kept it in memory is gone). Running it again returns the result
    without training or writing anything."""
    _, full_stopper, _ = uninterrupted
    ckpt, metrics = tmp_path / "ckpt", tmp_path / "metrics.jsonl"
    kill_epoch = full_stopper.best_epoch + worker.PATIENCE - 1  # one epoch before the stop
    _kill_9("callback", ckpt, metrics, kill_epoch)
    # fit's metrics logger runs after the user's callbacks: the epoch left neither its line
    # nor its checkpoint (the mid-save kill below leaves the line without the checkpoint)
    assert len(_metrics(metrics)) == kill_epoch - 1
    assert Checkpointer(ckpt).latest_step() == (kill_epoch - 1) * STEPS_PER_EPOCH

    resumed, stopper = worker.run(trainer, ckpt, metrics)
    assert resumed.start_epoch == kill_epoch - 1
    _assert_same_run(resumed, stopper, metrics, uninterrupted)
    assert Checkpointer(ckpt / "best").latest_step() == full_stopper.best_epoch * STEPS_PER_EPOCH

    before = _files(tmp_path)
    again, again_stopper = worker.run(trainer, ckpt, metrics)
    assert again.history == [] and again.stopped_early
    assert again.start_epoch == full_stopper.stopped_epoch
    _assert_same_run(again, again_stopper, metrics, uninterrupted)
    assert _files(tmp_path) == before


def test_kill_9_mid_save_resumes_from_the_previous_checkpoint(trainer, uninterrupted, tmp_path):
    """Killed while Orbax writes the best epoch's first checkpoint (its best state): nothing
    of that step is final, the resumed run starts from the epoch before and equals the
    uninterrupted run."""
    _, full_stopper, _ = uninterrupted
    ckpt, metrics = tmp_path / "ckpt", tmp_path / "metrics.jsonl"
    _kill_9("save", ckpt, metrics, full_stopper.best_epoch)
    previous = (full_stopper.best_epoch - 1) * STEPS_PER_EPOCH
    assert Checkpointer(ckpt).latest_step() == previous
    assert len(_metrics(metrics)) == full_stopper.best_epoch  # the killed epoch's line too

    resumed, stopper = worker.run(trainer, ckpt, metrics)
    assert resumed.start_epoch == full_stopper.best_epoch - 1
    _assert_same_run(resumed, stopper, metrics, uninterrupted)


def test_a_crash_before_the_first_checkpoint_leaves_each_epoch_logged_once(
    trainer, uninterrupted, tmp_path, monkeypatch
):
    """The first save fails after epoch 1's metrics line was written: the rerun starts over
    and cuts the log back to where the first attempt found it (here: one line of an earlier
    run, which stays)."""
    ckpt, metrics = tmp_path / "ckpt", tmp_path / "metrics.jsonl"
    metrics.write_text('{"epoch": 99}\n')
    save = Checkpointer.save

    def fail(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Checkpointer, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        worker.run(trainer, ckpt, metrics)
    assert len(_metrics(metrics)) == 2
    monkeypatch.setattr(Checkpointer, "save", save)
    resumed, stopper = worker.run(trainer, ckpt, metrics)
    assert resumed.start_epoch == 0
    assert metrics.read_text().startswith('{"epoch": 99}\n')
    metrics.write_text(metrics.read_text().split("\n", 1)[1])
    _assert_same_run(resumed, stopper, metrics, uninterrupted)


def _three_checkpoints(trainer, directory: Path, **kwargs):
    """Epochs 1-3 of the tiny run with a checkpoint each: steps 2, 4, 6."""
    x, y = worker.data()
    state = trainer.init(jax.random.PRNGKey(0), x[:1])
    fit(
        trainer,
        state,
        (x[:16], y[:16]),
        epochs=3,
        batch_size=worker.BATCH,
        progress=False,
        checkpoint_dir=directory,
        **kwargs,
    )
    return state


def _data_files(step_dir: Path) -> list[Path]:
    """The array data files of a step's state that a restore reads: the OCDBT database Orbax
    merges the processes' writes into (small arrays are stored inline in its nodes)."""
    files = sorted((step_dir / "state" / "d").iterdir())
    assert files, f"no data files under {step_dir}"
    return files


def test_single_byte_flips_in_the_latest_checkpoint_are_detected_and_fall_back(trainer, tmp_path):
    """Flip one bit of one byte at 24 random places in the latest step's array data (each
    trial in a fresh copy: TensorStore caches what it read per path): each is reported,
    naming the step, and the previous checkpoint is restored instead, or restores the same
    values (a byte no array depends on). Never different values."""
    like = _three_checkpoints(trainer, tmp_path / "original")
    latest, _ = Checkpointer(tmp_path / "original").restore(like)
    rng, outcomes = np.random.default_rng(0), {"detected": 0, "harmless": 0}
    for trial in range(24):
        directory = tmp_path / f"trial{trial}"
        shutil.copytree(tmp_path / "original", directory)
        files = _data_files(directory / "6")
        path = files[trial % len(files)]
        data = bytearray(path.read_bytes())
        data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(data))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step, state, _ = Checkpointer(directory).restore_latest_good(like)
        if step == 6:
            jax.tree.map(np.testing.assert_array_equal, state, latest)
            outcomes["harmless"] += 1
        else:
            assert step == 4
            assert any(
                issubclass(w.category, CorruptCheckpointWarning)
                and f"checkpoint step 6 in {directory}" in str(w.message)
                for w in caught
            )
            outcomes["detected"] += 1
    assert outcomes["detected"] >= 20, outcomes


@pytest.mark.parametrize("damage", ["truncate_data", "remove_manifest", "empty_meta", "empty_dir"])
def test_a_partial_or_empty_latest_step_is_set_aside_and_the_run_resumes_before_it(
    trainer, tmp_path, damage
):
    """A truncated data file, a missing manifest, an empty meta file or an emptied step
    directory: fit warns naming the step, resumes from the previous checkpoint (the damaged
    one is renamed ``6.corrupt``, not deleted) and trains on to the same state."""
    _three_checkpoints(trainer, tmp_path / "a")
    _three_checkpoints(trainer, tmp_path / "b")
    step_dir = tmp_path / "b" / "6"
    if damage == "truncate_data":
        path = _data_files(step_dir)[0]
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "remove_manifest":
        (step_dir / "state" / "manifest.ocdbt").unlink()
    elif damage == "empty_meta":
        (step_dir / "meta" / "metadata").write_text("")
    else:
        for p in sorted(step_dir.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
    x, y = worker.data()
    common = dict(epochs=4, batch_size=worker.BATCH, progress=False)
    state = trainer.init(jax.random.PRNGKey(0), x[:1])
    full = fit(trainer, state, (x[:16], y[:16]), checkpoint_dir=tmp_path / "a", **common)
    with pytest.warns(CorruptCheckpointWarning, match=f"checkpoint step 6 in {tmp_path / 'b'}"):
        resumed = fit(trainer, state, (x[:16], y[:16]), checkpoint_dir=tmp_path / "b", **common)
    assert resumed.start_epoch == 2
    jax.tree.map(np.testing.assert_array_equal, resumed.state, full.state)
    assert (tmp_path / "b" / "6.corrupt").is_dir()
    assert Checkpointer(tmp_path / "b").steps() == [4, 6, 8]


def test_no_good_checkpoint_is_a_clear_error(trainer, tmp_path):
    like = _three_checkpoints(trainer, tmp_path)
    for step in (2, 4, 6):
        (tmp_path / str(step) / "meta" / "metadata").write_text("{not json")
    with (
        pytest.warns(CorruptCheckpointWarning),
        pytest.raises(
            CorruptCheckpointError,
            match=rf"no good checkpoint in {tmp_path}(.|\n)*step 2(.|\n)*fresh",
        ),
    ):
        Checkpointer(tmp_path).restore_latest_good(like)


def test_orbax_errors_reach_the_user_as_checkpoint_errors_naming_the_checkpoint(trainer, tmp_path):
    like = _three_checkpoints(trainer, tmp_path)
    ckpt = Checkpointer(tmp_path)
    with pytest.raises(CorruptCheckpointError, match=f"checkpoint step 5 in {tmp_path}"):
        ckpt.restore(like, step=5)
    wider = worker.trainer(width=17).init(jax.random.PRNGKey(0), jnp.zeros((1, 5)))
    with pytest.raises(CorruptCheckpointError, match=f"arrays of checkpoint step 6 in {tmp_path}"):
        ckpt.restore(wider, step=6)
    with pytest.raises(CheckpointError, match=f"writing checkpoint step 6 in {tmp_path} failed"):
        ckpt.save(6, ckpt.restore(like, step=6)[0])  # Orbax refuses to overwrite a step


def test_a_foreign_checkpoint_directory_is_refused_and_nothing_is_deleted(trainer, tmp_path):
    """Another run's directory (another width, batch size and data set size) is refused
    before anything is written, naming each field that differs and the two ways out;
    resume="force" adopts it."""
    _three_checkpoints(trainer, tmp_path)
    before = _files(tmp_path)
    other = worker.trainer(width=17)
    x, y = worker.data()
    state = other.init(jax.random.PRNGKey(0), x[:1])
    with pytest.raises(ForeignCheckpointError) as caught:
        fit(
            other,
            state,
            (x[:24], y[:24]),
            epochs=9,
            batch_size=4,
            progress=True,  # the refusal comes before any callback starts
            checkpoint_dir=tmp_path,
        )
    message = str(caught.value)
    for field in (
        "batch_size: checkpoint has 8, this run has 4",
        "train_size: checkpoint has 16, this run has 24",
        "model.hyperparameters",
        "'width': 16",
        "fresh checkpoint_dir",
        "resume='force'",
        f"step 6 in {tmp_path}",
    ):
        assert field in message
    assert "optimizer" not in message and "input" not in message  # only what differs
    assert _files(tmp_path) == before

    adopted = dict(train=(x[:24], y[:24]), epochs=4, batch_size=8, checkpoint_dir=tmp_path)
    state = trainer.init(jax.random.PRNGKey(1), x[:1])
    forced = fit(trainer, state, **adopted, progress=False, resume="force")
    assert forced.start_epoch == 3 and int(forced.state.step) == 6 + 3
    # now it is this run's directory: all epochs done, a rerun returns without training
    before = _files(tmp_path)
    again = fit(trainer, state, **adopted, progress=False)
    assert again.history == [] and again.start_epoch == 4 and not again.stopped_early
    jax.tree.map(np.testing.assert_array_equal, again.state, forced.state)
    assert _files(tmp_path) == before


@pytest.fixture(scope="module")
def written(trainer, tmp_path_factory):
    """A directory with three checkpoints of a run fingerprinted with {"data": "v1"}."""
    directory = tmp_path_factory.mktemp("written")
    _three_checkpoints(trainer, directory, fingerprint={"data": "v1"})
    return directory


@pytest.mark.parametrize(
    "change, differs",
    [
        (
            "learning_rate",
            "optimizer.probe: checkpoint has ['-0.05', '-0.05'], this run has ['-0.01', '-0.01']",
        ),
        (  # SGD at 0.5 takes Adam's first two steps at 0.05: its state types tell them apart
            "optimizer",
            "optimizer.state: checkpoint has ['ScaleByAdamState', 'ScaleByScheduleState'], "
            "this run has ['EmptyState', 'EmptyState']",
        ),
        ("batch_size", "batch_size: checkpoint has 8, this run has 4"),
        ("fingerprint", "data: checkpoint has 'v1', this run has 'v2'"),
    ],
)
def test_another_setting_is_refused_naming_the_field(written, change, differs):
    """Each setting a resumed run must share, changed alone, is named in the refusal."""
    x, y = worker.data()
    kwargs, tr = {"fingerprint": {"data": "v1"}, "batch_size": 8}, worker.trainer()
    if change in ("learning_rate", "optimizer"):
        optimizer = make_optimizer("adam", 0.01) if change == "learning_rate" else optax.sgd(0.5)
        tr = Trainer(worker.TinyNet(), "softmax_cross_entropy", optimizer)
    elif change == "batch_size":
        kwargs["batch_size"] = 4
    else:
        kwargs["fingerprint"] = {"data": "v2"}
    state = tr.init(jax.random.PRNGKey(0), x[:1])
    with pytest.raises(ForeignCheckpointError) as caught:
        fit(
            tr,
            state,
            (x[:16], y[:16]),
            epochs=4,
            progress=False,
            checkpoint_dir=written,
            **kwargs,
        )
    assert differs in str(caught.value)
    assert str(caught.value).count("checkpoint has") == 1


def _poisoned_trainer(bad_count: int) -> Trainer:
    """SGD whose update number ``bad_count`` (0-based) is multiplied by NaN."""
    poisoned = optax.chain(
        optax.sgd(0.1),
        optax.scale_by_schedule(lambda count: jnp.where(count == bad_count, jnp.nan, 1.0)),
    )
    return Trainer(worker.TinyNet(), "softmax_cross_entropy", poisoned)


@pytest.mark.parametrize("policy", ["raise", "stop"])
def test_nan_params_after_finite_losses_are_never_checkpointed(tmp_path, policy):
    """The NaN update is epoch 2's last step (step 4): every loss is finite, the parameters
    are not. The kept checkpoint is epoch 1's, and it is finite."""
    tr = _poisoned_trainer(bad_count=3)
    x, y = worker.data()
    state = tr.init(jax.random.PRNGKey(0), x[:1])
    run = dict(
        epochs=3,
        batch_size=worker.BATCH,
        progress=False,
        on_non_finite=policy,
        checkpoint_dir=tmp_path,
    )
    if policy == "raise":
        with pytest.raises(
            NonFiniteLossError,
            match=r"every loss was finite.*end of epoch 2 \(steps 3-4\).*\['params'\]"
            rf".*last good checkpoint \(step 2\) is kept in {tmp_path}",
        ):
            fit(tr, state, (x[:16], y[:16]), **run)
    else:
        result = fit(tr, state, (x[:16], y[:16]), **run)
        assert result.non_finite_step == 4 and len(result.history) == 2
        assert np.isfinite(result.history[-1]["train_loss"])
    ckpt = Checkpointer(tmp_path)
    assert ckpt.steps() == [2]
    kept, _ = ckpt.restore(state)
    assert all(np.isfinite(a).all() for a in jax.tree.leaves(kept))


def test_a_nan_learning_rate_writes_no_checkpoint(tmp_path):
    """optax.sgd(nan) built by hand, one full-batch step per epoch: the only loss is finite,
    the parameters after it are NaN, and no checkpoint is written."""
    tr = Trainer(worker.TinyNet(), "softmax_cross_entropy", optax.sgd(float("nan")))
    x, y = worker.data()
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written"):
        fit(
            tr,
            tr.init(jax.random.PRNGKey(0), x[:1]),
            (x[:16], y[:16]),
            epochs=2,
            batch_size=16,
            progress=False,
            checkpoint_dir=tmp_path,
        )
    assert Checkpointer(tmp_path).steps() == []


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(resume="always"), ValueError, "resume must be 'auto' .* or 'force' .*got 'always'"),
        (dict(checkpoint_every=0), ValueError, "checkpoint_every must be an int >= 1.*got 0"),
        (dict(checkpoint_every=1.5), TypeError, "checkpoint_every must be an int >= 1; got 1.5"),
    ],
)
def test_bad_checkpoint_options_are_named(trainer, tmp_path, kwargs, error, words):
    x, y = worker.data()
    with pytest.raises(error, match=words):
        fit(trainer, None, (x, y), epochs=1, batch_size=8, checkpoint_dir=tmp_path, **kwargs)
    assert not tmp_path.joinpath("best").exists() and list(tmp_path.iterdir()) == []

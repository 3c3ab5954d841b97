"""Subprocess side of tests/test_distributed.py: the device count is fixed when JAX's backend
starts, so each set-up runs in its own process.

    python tests/distributed_worker.py meshes OUT.json   # 16 virtual devices, meshes of 1-8
    python tests/distributed_worker.py train OUT.npz [--devices N] [--epochs E]
        [--checkpoint-dir DIR]                           # also under jaxnets launch
    python tests/distributed_worker.py die               # under launch: process 1 dies

Each writes what the test compares (process 0 only) and prints nothing else of note.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import jax
import numpy as np

from jaxnets import distributed, registry
from jaxnets.optim import make_optimizer
from jaxnets.train import EarlyStopping, Trainer, evaluate, fit, init_ensemble, train_ensemble

EPOCHS, BATCH = 2, 8


def _data(name: str, n: int = 16, seed: int = 0):
    """n random examples of the model's tiny input shape, labels in {0, 1}."""
    card = registry.model_card(name)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *card.tiny_input_shape)).astype(np.float32)
    return x, rng.integers(0, 2, n).astype(np.int32)


def _trainer(name: str, mesh=None, **options) -> Trainer:
    card = registry.model_card(name)
    optimizer = make_optimizer("adam", 1e-2)
    return Trainer.for_model(name, optimizer, mesh=mesh, **card.test_config, **options)


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in jax.tree.leaves(distributed.to_host(tree))])


def _fit(trainer: Trainer, name: str, **kwargs):
    x, y = _data(name)
    state = trainer.init(jax.random.PRNGKey(0), x[:1])
    kwargs.setdefault("epochs", EPOCHS)
    result = fit(trainer, state, (x, y), batch_size=BATCH, progress=False, **kwargs)
    return result.state, evaluate(trainer, result.state, (x[:13], y[:13]))["loss"]


def meshes(out: str) -> None:
    """On 8 devices: every model trained without a mesh and on meshes of 1, 2, 4 and 8
    devices; FSDP's shard sizes; resume across device counts; ensembles; per-example
    gradients. Writes the largest differences from the no-mesh run."""
    report: dict = {"devices": len(distributed.data_mesh(8).devices.flat)}
    for name in ("mlp", "resnet20", "lstm_classifier"):
        base, base_loss = _fit(_trainer(name), name)
        for k in (1, 2, 4, 8):
            state, loss = _fit(_trainer(name, distributed.data_mesh(k)), name)
            report[f"{name}/{k}"] = {
                "param_diff": float(np.abs(_flat(state.params) - _flat(base.params)).max()),
                "model_state_diff": float(
                    np.abs(_flat(state.model_state) - _flat(base.model_state)).max()
                    if jax.tree.leaves(state.model_state)
                    else 0.0
                ),
                "val_loss_diff": abs(loss - base_loss),
                "param_scale": float(np.abs(_flat(base.params)).max()),
            }

    # reduction_groups: the same 8 groups wherever they sit give bitwise equal parameters
    for name in ("mlp", "lstm_classifier"):
        base, base_loss = _fit(_trainer(name, reduction_groups=8), name)
        for k in (1, 2, 4, 8):
            state, loss = _fit(_trainer(name, distributed.data_mesh(k), reduction_groups=8), name)
            report[f"grouped/{name}/{k}"] = {
                "param_diff": float(np.abs(_flat(state.params) - _flat(base.params)).max()),
                "val_loss_diff": abs(loss - base_loss),
                "param_scale": float(np.abs(_flat(base.params)).max()),
            }

    # FSDP: a wider MLP whose large kernels and their Adam moments are split 8 ways
    mesh8 = distributed.data_mesh(8)
    wide = dict(hidden=(64,), num_outputs=3)
    fsdp = Trainer.for_model(
        "mlp", make_optimizer("adam", 1e-2), mesh=mesh8, fsdp=True, fsdp_min_size=256, **wide
    )
    replicated = Trainer.for_model("mlp", make_optimizer("adam", 1e-2), mesh=mesh8, **wide)
    x, y = _data("mlp")
    runs = {}
    for label, tr in (("fsdp", fsdp), ("replicated", replicated)):
        state = tr.init(jax.random.PRNGKey(0), x[:1])
        runs[label] = fit(tr, state, (x, y), epochs=EPOCHS, batch_size=BATCH, progress=False)
    leaves = []
    state = runs["fsdp"].state
    for path, leaf in jax.tree_util.tree_leaves_with_path((state.params, state.opt_state)):
        if leaf.size >= 256:
            shard_bytes = {s.data.nbytes for s in leaf.addressable_shards}
            leaves.append([jax.tree_util.keystr(path), leaf.nbytes, sorted(shard_bytes)])
    report["fsdp_leaves"] = leaves
    report["fsdp_param_diff"] = float(
        np.abs(_flat(state.params) - _flat(runs["replicated"].state.params)).max()
    )

    # resume across device counts: 1 epoch on `first` devices, the rest on `then`, against
    # both epochs on one device without a mesh
    import tempfile

    uninterrupted, _ = _fit(_trainer("mlp"), "mlp")
    for first, then in ((4, 2), (2, 1), (1, 4)):
        with tempfile.TemporaryDirectory() as ckpt:
            _fit(
                _trainer("mlp", distributed.data_mesh(first)), "mlp", epochs=1, checkpoint_dir=ckpt
            )
            tr_then = _trainer("mlp", distributed.data_mesh(then))
            resumed, _ = _fit(tr_then, "mlp", checkpoint_dir=ckpt)
        report[f"resume/{first}->{then}"] = float(
            np.abs(_flat(resumed) - _flat(uninterrupted)).max()
        )

    # ensembles (4 members, each step's batch split over 4 devices) and per-example grads
    x, y = _data("mlp")
    ensembles = {}
    for k in (None, 4):
        tr = _trainer("mlp", None if k is None else distributed.data_mesh(k))
        states = init_ensemble(tr, jax.random.split(jax.random.PRNGKey(1), 4), x[:1])
        states, history = train_ensemble(tr, states, (x, y), epochs=EPOCHS, batch_size=BATCH)
        ensembles[k] = (_flat(states.params), tr)
    report["ensemble_diff"] = float(np.abs(ensembles[4][0] - ensembles[None][0]).max())
    grads = {}
    for k in (None, 4):
        tr = _trainer("mlp", None if k is None else distributed.data_mesh(k))
        state = tr.init(jax.random.PRNGKey(0), x[:1])
        grads[k] = _flat(tr.per_example_grads(state, (x[:8], y[:8])))
    report["per_example_diff"] = float(np.abs(grads[4] - grads[None]).max())

    # EarlyStopping restores its best state (a host copy) onto the mesh at the end of fit
    stopped = {}
    for k in (None, 4):
        tr = _trainer("mlp", None if k is None else distributed.data_mesh(k))
        state = tr.init(jax.random.PRNGKey(0), x[:1])
        stopper = EarlyStopping("val_loss", patience=1)
        result = fit(tr, state, (x, y), val=(x[:8], y[:8]), epochs=3, batch_size=BATCH,
                     callbacks=[stopper], progress=False)  # fmt: skip
        loss = evaluate(tr, result.state, (x, y))["loss"]
        stopped[k] = (_flat(result.state.params), loss, result.state.params)
    report["early_stopping_diff"] = float(np.abs(stopped[4][0] - stopped[None][0]).max())
    report["early_stopping_on_mesh"] = all(
        leaf.sharding.mesh.shape == {"data": 4} for leaf in jax.tree.leaves(stopped[4][2])
    )
    with open(out, "w") as f:
        json.dump(report, f, indent=1)


def train(out: str, epochs: int = EPOCHS, checkpoint_dir: str | None = None) -> None:
    """resnet20 (batch norm) trained on whatever mesh --devices / jaxnets launch made, for
    ``epochs`` epochs, resuming from (and saving to) ``checkpoint_dir`` if given."""
    trainer = _trainer("resnet20")
    state, loss = _fit(trainer, "resnet20", epochs=epochs, checkpoint_dir=checkpoint_dir)
    if distributed.is_main_process():
        np.savez(out, params=_flat(state.params), loss=loss, devices=trainer.data_devices)


def die() -> None:
    """Process 1 is killed (SIGKILL) after the first step; process 0 goes on into the next
    collective, which its peer never joins."""
    trainer = _trainer("mlp")
    x, y = _data("mlp")
    state = trainer.init(jax.random.PRNGKey(0), x[:1])
    fit(trainer, state, (x, y), epochs=1, batch_size=BATCH, progress=False)
    if jax.process_index() == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    fit(trainer, state, (x, y), epochs=10_000, batch_size=BATCH, progress=False)


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "meshes":
        # twice the largest mesh: see jaxnets.distributed.CPU_DEVICE_SPARE_FACTOR
        jax.config.update("jax_num_cpu_devices", 16)
        meshes(rest[0])
    else:
        import argparse

        parser = argparse.ArgumentParser()
        parser.add_argument("out", nargs="?")
        parser.add_argument("--devices", type=int)
        parser.add_argument("--epochs", type=int, default=EPOCHS)
        parser.add_argument("--checkpoint-dir")
        args = parser.parse_args(rest)
        distributed.configure(args.devices)
        if command == "train":
            train(args.out, args.epochs, args.checkpoint_dir)
        else:
            die()

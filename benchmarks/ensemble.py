"""Benchmark: an 8-member ensemble trained as one vmapped state vs a loop over 8 jitted models.

Lecture: seed 004, Lecture 12 "Generalization" (line 2500), §4.4 "Ensembles": averaging K
independently trained models; DESIGN: "ensembles are vmapped states". Both ways run the same
:class:`jaxnets.train.Trainer` step (an MLP on digit-sized inputs, Adam, softmax
cross-entropy) on the same minibatches for the same members:

* ``vmapped``: ``jax.jit(jax.vmap(trainer.step))`` over a state whose leaves carry a leading
  member axis (:func:`jaxnets.train.init_ensemble`): one dispatch per ensemble step, and XLA
  batches the members' matmuls;
* ``loop``: ``trainer.train_step`` (the jitted single-model step) called once per member from
  Python: K dispatches per ensemble step.

``python -m benchmarks.ensemble --out benchmarks/results`` times both for each ``--hidden``
width, ``--repeats`` rounds alternating the two (so load changes hit both), and writes
``<out>/ensemble.json``: per case the median (min-max) milliseconds per ensemble step, the
speed-up of vmapped over loop, and the goal (at least 4x on the default case). The speed-up
is largest where a step is small and the loop's per-call cost dominates.

``member_scaling`` (:func:`member_scaling`, at the first ``--hidden``) says how far it can go
on the device: the vmapped step's time for K = ``--scaling-members`` members, a line
``fixed + per_member·K`` fitted through them, and one jitted single-model step. The loop of K
costs about K single steps, so the speed-up tends to ``single / per_member`` as K grows: what
vmapping gains there once the per-call cost is shared out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import Timer, machine_info, make_goal, utc_now

__all__ = ["time_case", "member_scaling", "main"]

_GOAL_SPEEDUP = 4.0


def _setup(members: int, hidden: int, batch: int, features: int, classes: int, batches: int):
    import jax
    import jax.numpy as jnp

    from jaxnets import create_model
    from jaxnets.optim import make_optimizer
    from jaxnets.train import Trainer, init_ensemble

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((batches, batch, features), np.float32))
    y = jnp.asarray(rng.integers(0, classes, (batches, batch)), jnp.int32)
    model = create_model("mlp", hidden=(hidden,), num_outputs=classes)
    trainer = Trainer(model, "softmax_cross_entropy", make_optimizer("adam", 1e-3))
    keys = jax.random.split(jax.random.PRNGKey(0), members)
    stacked = init_ensemble(trainer, keys, x[0])
    separate = [jax.tree.map(lambda leaf, i=i: leaf[i], stacked) for i in range(members)]
    vmapped_step = jax.jit(jax.vmap(trainer.step, in_axes=(0, None)), donate_argnums=0)
    return trainer, vmapped_step, stacked, separate, x, y


def _interleaved_rounds_ms(runs: list, minibatches, steps: int, repeats: int) -> list[list]:
    """Milliseconds per call, one per round, for each ``(step, state)`` of ``runs``:
    ``step(state, batch) -> (state, metrics)`` cycling through ``minibatches`` (already on the
    device, as a data loader hands them over). Every round times ``steps`` calls of each run in
    turn, so load changes hit them all alike. The states should be warm (compiled)."""
    import jax

    states = [state for _, state in runs]
    rounds = [[] for _ in runs]
    for _ in range(repeats):
        for j, (step, _) in enumerate(runs):
            with Timer() as t:
                for i in range(steps):
                    states[j], _ = step(states[j], minibatches[i % len(minibatches)])
                jax.block_until_ready(states[j])
            rounds[j].append(1e3 * t.seconds / steps)
    return rounds


def _check_sizes(sizes: list[int]) -> None:
    if len(set(sizes)) < 2 or min(sizes) < 1:
        raise ValueError(
            f"the member scaling sweep needs two or more distinct ensemble sizes >= 1 (a line "
            f"is fitted through them); got {sizes}"
        )


def member_scaling(sizes: list[int], hidden: int, batch: int, steps: int, repeats: int) -> dict:
    """How the vmapped step's time grows with the number of members K, against one jitted
    single-model step.

    Returns ``members`` (``sizes``), ``vmapped_ms`` (median ms per vmapped step at each K),
    ``single_ms`` (median ms per ``trainer.train_step`` of one model), the least-squares line
    ``vmapped_ms ≈ fixed_ms + per_member_ms·K`` and ``speedup_limit = single_ms /
    per_member_ms``: a loop of K models costs about K·single_ms, so the speed-up
    K·single_ms / (fixed_ms + per_member_ms·K) tends to that limit as K grows (None when the
    fitted slope is not positive, i.e. lost in timing noise). Needs at least two distinct
    sizes.
    """
    import jax

    _check_sizes(sizes)
    batches = 8
    runs = []
    for members in sizes:
        trainer, vmapped_step, stacked, separate, x, y = _setup(
            members, hidden, batch, 64, 10, batches
        )
        runs.append((vmapped_step, stacked))
    runs.append((trainer.train_step, separate[0]))
    minibatches = [(x[i], y[i]) for i in range(batches)]
    warm = [(step, jax.block_until_ready(step(state, minibatches[0])[0])) for step, state in runs]
    rounds = _interleaved_rounds_ms(warm, minibatches, steps, repeats)
    *vmapped_ms, single_ms = [statistics.median(r) for r in rounds]
    per_member_ms, fixed_ms = np.polyfit(np.asarray(sizes, float), np.asarray(vmapped_ms), 1)
    return {
        "hidden": hidden,
        "members": list(sizes),
        "vmapped_ms": vmapped_ms,
        "single_ms": single_ms,
        "fixed_ms": float(fixed_ms),
        "per_member_ms": float(per_member_ms),
        "speedup_limit": float(single_ms / per_member_ms) if per_member_ms > 0 else None,
    }


def time_case(members: int, hidden: int, batch: int, steps: int, repeats: int) -> dict:
    """Milliseconds per ensemble step, vmapped and looped, over ``repeats`` alternating rounds
    of ``steps`` steps each, after one step that compiles both; ``max_param_difference`` is
    the largest difference of the members' parameters after that first step."""
    import jax

    batches = 8
    trainer, vmapped_step, stacked, separate, x, y = _setup(members, hidden, batch, 64, 10, batches)

    # the minibatches are on the device before timing, as a data loader would hand them over:
    # slicing them inside the timed loop would add the same dispatches to both ways
    minibatches = [(x[i], y[i]) for i in range(batches)]

    def loop_step(states, batch):
        return [trainer.train_step(s, batch)[0] for s in states], None

    with Timer() as compile_vmapped:
        stacked = jax.block_until_ready(vmapped_step(stacked, minibatches[0])[0])
    with Timer() as compile_loop:
        separate = jax.block_until_ready(loop_step(separate, minibatches[0])[0])
    # after one step from the same states both ways hold the same parameters (later they drift
    # apart by rounding: a batched and a plain matmul sum in different orders, and Adam's
    # normalised updates amplify the difference where gradients are near zero)
    difference = max(
        float(np.max(np.abs(np.asarray(a)[i] - np.asarray(b))))
        for i, s in enumerate(separate)
        for a, b in zip(jax.tree.leaves(stacked.params), jax.tree.leaves(s.params), strict=True)
    )
    vmapped_ms, loop_ms = _interleaved_rounds_ms(
        [(vmapped_step, stacked), (loop_step, separate)], minibatches, steps, repeats
    )
    spread = lambda v: {"median": statistics.median(v), "min": min(v), "max": max(v)}  # noqa: E731
    return {
        "members": members,
        "hidden": hidden,
        "batch": batch,
        "steps": steps,
        "vmapped_ms": spread(vmapped_ms),
        "loop_ms": spread(loop_ms),
        "speedup": statistics.median(loop_ms) / statistics.median(vmapped_ms),
        "warmup_s": {"vmapped": compile_vmapped.seconds, "loop": compile_loop.seconds},
        "max_param_difference": difference,
        "device": str(jax.devices()[0].device_kind),
        "framework": "jaxnets",
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=200, help="timed steps per round")
    p.add_argument("--repeats", type=int, default=5, help="alternating rounds per case")
    p.add_argument(
        "--scaling-members",
        type=int,
        nargs="*",
        default=[1, 2, 4, 8, 16],
        help="ensemble sizes of the vmapped-step scaling sweep at the first --hidden (none: skip)",
    )
    p.add_argument("--out", type=Path, default=None, help="write <out>/ensemble.json")
    args = p.parse_args(argv)
    if args.members < 2 or args.steps < 1 or args.repeats < 1:
        p.error("--members must be >= 2, --steps and --repeats >= 1")
    if args.scaling_members:
        try:
            _check_sizes(args.scaling_members)
        except ValueError as error:
            p.error(f"--scaling-members: {error}")
    load_before = os.getloadavg()
    cases = []
    for hidden in args.hidden:
        case = time_case(args.members, hidden, args.batch, args.steps, args.repeats)
        print(
            f"{args.members} members, hidden {hidden}, batch {args.batch}: vmapped "
            f"{case['vmapped_ms']['median']:.2f} ms/step, loop {case['loop_ms']['median']:.2f} "
            f"ms/step, speed-up {case['speedup']:.1f}x (params after one step agree to "
            f"{case['max_param_difference']:.1e})",
            file=sys.stderr,
        )
        cases.append(case)
    default = cases[0]
    scaling = None
    if args.scaling_members:
        scaling = member_scaling(
            args.scaling_members, default["hidden"], args.batch, args.steps, args.repeats
        )
        limit = scaling["speedup_limit"]
        print(
            f"vmapped step = {scaling['fixed_ms']:.3f} ms + {scaling['per_member_ms']:.3f} ms "
            f"per member; one jitted member step {scaling['single_ms']:.3f} ms; speed-up limit "
            + ("none measurable" if limit is None else f"{limit:.1f}x"),
            file=sys.stderr,
        )
    results = {
        "benchmark": "ensemble",
        "created": utc_now(),
        "config": vars(args) | {"out": str(args.out)},
        "machine": machine_info(cases, load_before),
        "cases": cases,
        "member_scaling": scaling,
        "goals": [
            make_goal(
                f"{args.members}-member vmapped ensemble step vs a loop of {args.members} jitted "
                "models",
                "speedup",
                default["speedup"],
                _GOAL_SPEEDUP,
                "above",
                hidden=default["hidden"],
                batch=default["batch"],
            )
        ],
    }
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ensemble.json").write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()

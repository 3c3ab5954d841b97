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

``python -m benchmarks.run --cases ensemble`` (:func:`run_benchmark`; in the driver's process,
on JAX's default device) times both for each ``--ensemble.hidden`` width, ``repeats`` rounds
alternating the two (so load changes hit both), and writes ``<out>/ensemble.json``: per case
the median (min-max) milliseconds per ensemble step, the speed-up of vmapped over loop, and
the goal (at least 4x on the default case). The speed-up is largest where a step is small and
the loop's per-call cost dominates.

``member_scaling`` (:func:`member_scaling`, at the first width) says how far it can go
on the device: the vmapped step's time for K = ``scaling_members`` members, a line
``fixed + per_member·K`` fitted through them, and one jitted single-model step. The loop of K
costs about K single steps, so the speed-up tends to ``single / per_member`` as K grows: what
vmapping gains there once the per-call cost is shared out.
"""

from __future__ import annotations

import dataclasses
import os
import statistics

import numpy as np

from benchmarks import common
from benchmarks.steps import Timer

__all__ = ["CASES", "NAME", "RESULT_FILES", "Plan", "member_scaling", "time_case"]
__all__ += ["run_benchmark"]

NAME, CASES = "ensemble", ("ensemble",)
RESULT_FILES = {"cpu": "ensemble.json"}
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
    return {
        "members": members,
        "hidden": hidden,
        "batch": batch,
        "steps": steps,
        "vmapped_ms": common.spread(vmapped_ms),
        "loop_ms": common.spread(loop_ms),
        "speedup": statistics.median(loop_ms) / statistics.median(vmapped_ms),
        "warmup_s": {"vmapped": compile_vmapped.seconds, "loop": compile_loop.seconds},
        "max_param_difference": difference,
        "device": str(jax.devices()[0].device_kind),
        "framework": "jaxnets",
    }


@dataclasses.dataclass(frozen=True)
class Plan:
    """The ensemble benchmark's options (``--ensemble.<field>`` of :mod:`benchmarks.run`).

    Attributes:
      members: K, the ensemble's size (>= 2).
      hidden: the MLP widths timed; the goal is on the first.
      batch: minibatch size.
      steps: timed ensemble steps per round (None: 200; 20 with ``--quick``).
      scaling_members: ensemble sizes of the vmapped-step scaling sweep at the first width
        (empty: skip it).
    """

    members: int = 8
    hidden: tuple[int, ...] = (64, 256, 1024)
    batch: int = 32
    steps: int | None = None
    scaling_members: tuple[int, ...] = (1, 2, 4, 8, 16)

    def __post_init__(self):
        if self.members < 2 or (self.steps is not None and self.steps < 1) or not self.hidden:
            raise ValueError(
                f"members must be >= 2, steps >= 1 and hidden name a width; got "
                f"members={self.members}, steps={self.steps}, hidden={self.hidden}"
            )
        if self.scaling_members:
            _check_sizes(list(self.scaling_members))


def run_benchmark(settings: common.Settings, plan: Plan, cases=CASES, log=print) -> dict:
    """Every width of ``plan.hidden`` timed vmapped and looped (:func:`time_case`, ``repeats``
    rounds, default 5), then the :func:`member_scaling` sweep at the first width.

    Returns ``{"benchmark": "ensemble", "created", "machine", "config", "cases",
    "member_scaling", "goals"}``; ``cases[i]`` as :func:`time_case`, the goal on the first
    width: the vmapped step at least 4x faster than the loop.
    """
    repeats = settings.repeats_for(5)
    steps = plan.steps or (20 if settings.quick else 200)
    load_before = os.getloadavg()
    cases = []
    for hidden in plan.hidden:
        case = time_case(plan.members, hidden, plan.batch, steps, repeats)
        log(
            f"{plan.members} members, hidden {hidden}, batch {plan.batch}: vmapped "
            f"{case['vmapped_ms']['median']:.2f} ms/step, loop {case['loop_ms']['median']:.2f} "
            f"ms/step, speed-up {case['speedup']:.1f}x (params after one step agree to "
            f"{case['max_param_difference']:.1e})"
        )
        cases.append(case)
    default = cases[0]
    scaling = None
    if plan.scaling_members:
        sizes = list(plan.scaling_members)
        scaling = member_scaling(sizes, default["hidden"], plan.batch, steps, repeats)
        limit = scaling["speedup_limit"]
        log(
            f"vmapped step = {scaling['fixed_ms']:.3f} ms + {scaling['per_member_ms']:.3f} ms "
            f"per member; one jitted member step {scaling['single_ms']:.3f} ms; speed-up limit "
            + ("none measurable" if limit is None else f"{limit:.1f}x")
        )
    config = {
        **{k: getattr(plan, k) for k in ("members", "batch")},
        "hidden": list(plan.hidden),
        "steps": steps,
        "repeats": repeats,
        "scaling_members": list(plan.scaling_members),
    }
    goal = common.make_goal(
        f"{plan.members}-member vmapped ensemble step vs a loop of {plan.members} jitted models",
        "speedup",
        default["speedup"],
        _GOAL_SPEEDUP,
        "above",
        hidden=default["hidden"],
        batch=default["batch"],
    )
    machine = common.machine_info(cases, load_before)
    return common.benchmark_result(
        NAME, machine, config, cases, member_scaling=scaling, goals=[goal]
    )

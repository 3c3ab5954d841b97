"""The LSTM benchmark (benchmarks/rnn.py, benchmarks/rnn_models.py): jaxnets' and the hand-written
Flax LSTM compute the same step on the same weights in PyTorch's gate order, the step's FLOP
count, the CPU and GPU plans, ratios and goals, config errors and the README table.

No test needs torch (CI has none): the gate order is checked against a NumPy transcription
of ``torch.nn.LSTM``'s documented equations, and the plans run with a faked process runner.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from benchmarks import common, rnn, rnn_models, steps
from benchmarks import readme_table as bench_table
from benchmarks import run as bench_run
from jaxnets.optim import make_optimizer
from jaxnets.train import Trainer, TrainState

_B, _T, _F, _H = 3, 5, 4, 6
_GATES = "ifgo"  # PyTorch's order of the four blocks of 4H


def _batch(seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((_B, _T, _F), dtype=np.float32)
    return jnp.asarray(x), jnp.asarray(rng.standard_normal((_B, 1), dtype=np.float32))


def _flax_params(seed=0):
    """Random parameters of the Flax model, drawn by NumPy, with distinct gate biases."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(
        lambda: rnn_models.flax_model(_H).init(jax.random.PRNGKey(0), jnp.zeros((1, _T, _F)))
    )
    return jax.tree.map(
        lambda s: jnp.asarray(0.5 * rng.standard_normal(s.shape), s.dtype), shapes["params"]
    )


def _to_jaxnets(flax_params):
    """Flax OptimizedLSTMCell's per-gate Dense layers as jaxnets' (F, 4H)/(H, 4H) blocks."""
    cell = flax_params["cell"]
    join = lambda prefix, leaf: jnp.concatenate(  # noqa: E731
        [cell[prefix + g][leaf] for g in _GATES], axis=-1
    )
    lstm = {
        "input_to_hidden": {"kernel": join("i", "kernel"), "bias": join("h", "bias")},
        "hidden_to_hidden": join("h", "kernel"),
    }
    return {"recurrent": {"cell": lstm}, "readout": flax_params["readout"]}


def _torch_equations(params, x):
    """h_T of ``torch.nn.LSTM`` as its documentation writes it, from jaxnets' parameters
    (weight_ih = kernel.T with rows i, f, g, o; NumPy, float64)."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["recurrent"]["cell"])
    sigmoid = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    h = c = np.zeros((x.shape[0], _H))
    for t in range(x.shape[1]):
        gates = np.asarray(x[:, t], np.float64) @ p["input_to_hidden"]["kernel"]
        gates += p["input_to_hidden"]["bias"] + h @ p["hidden_to_hidden"]
        i, f, g, o = np.split(gates, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
    return h


def _half_mse(model, params, x, y):
    return 0.5 * jnp.mean((model.apply({"params": params}, x) - y) ** 2)


def test_jaxnets_and_flax_lstms_agree_with_torch_equations_on_copied_weights():
    x, y = _batch()
    flax_params = _flax_params()
    params = _to_jaxnets(flax_params)
    jaxnets_model, flax_model = (
        rnn_models.jaxnets_model(_H, unroll=2),
        rnn_models.flax_model(_H, unroll=2),
    )
    # The copied tree has exactly jaxnets' names and shapes.
    expected = jax.eval_shape(lambda: jaxnets_model.init(jax.random.PRNGKey(0), x))["params"]
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(lambda s: s.shape, expected)
    h_t = _torch_equations(params, x)
    readout = h_t @ np.asarray(params["readout"]["kernel"]) + np.asarray(params["readout"]["bias"])
    for model, p in ((jaxnets_model, params), (flax_model, flax_params)):
        np.testing.assert_allclose(model.apply({"params": p}, x), readout, rtol=1e-5, atol=1e-6)
    # Swapping PyTorch's i and f blocks changes the output: the check above pins the order.
    swapped = jax.tree.map(lambda a: a, params)
    f_i_g_o = np.r_[_H : 2 * _H, :_H, 2 * _H : 4 * _H]
    swapped["recurrent"]["cell"]["hidden_to_hidden"] = params["recurrent"]["cell"][
        "hidden_to_hidden"
    ][:, f_i_g_o]
    assert np.max(np.abs(jaxnets_model.apply({"params": swapped}, x) - readout)) > 1e-3


@jax.jit
def _jaxnets_and_flax_grads(flax_params, x, y):
    jaxnets_grads = jax.grad(lambda p: _half_mse(rnn_models.jaxnets_model(_H), p, x, y))(
        _to_jaxnets(flax_params)
    )
    loss, flax_grads = jax.value_and_grad(lambda p: _half_mse(rnn_models.flax_model(_H), p, x, y))(
        flax_params
    )
    return loss, jaxnets_grads, _to_jaxnets(flax_grads)


def test_jaxnets_and_flax_lstm_gradients_agree_on_the_same_weights():
    loss, ours, theirs = _jaxnets_and_flax_grads(_flax_params(), *_batch())
    assert 0.05 < float(loss) < 50
    leaves = zip(jax.tree_util.tree_leaves_with_path(ours), jax.tree.leaves(theirs), strict=True)
    for (path, a), b in leaves:
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))
        assert float(jnp.max(jnp.abs(a))) > 1e-4  # every parameter gets a gradient


def test_trainer_step_equals_hand_written_flax_step():
    x, y = _batch()
    flax_params = _flax_params()
    trainer = Trainer(rnn_models.jaxnets_model(_H), "squared_error", make_optimizer("adam", 1e-2))
    # Both steps donate their state: each gets its own copy of the weights.
    params = jax.tree.map(jnp.copy, _to_jaxnets(flax_params))
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=trainer.optimizer.init(params),
        model_state={},
        rng=jax.random.PRNGKey(0),
    )
    step, create_state = rnn_models.flax_train_step(rnn_models.flax_model(_H), optax.adam(1e-2))
    flax_state = create_state({"params": jax.tree.map(jnp.copy, flax_params)})
    new, metrics = trainer.train_step(state, (x, y))
    flax_new, flax_metrics = step(flax_state, (x, y))
    assert float(metrics["loss"]) == pytest.approx(float(flax_metrics["loss"]), rel=1e-6)
    for a, b, before in zip(
        jax.tree.leaves(new.params),
        jax.tree.leaves(_to_jaxnets(flax_new.params)),
        jax.tree.leaves(_to_jaxnets(flax_params)),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, atol=1e-6)
        # Adam's first step moves every weight by about the learning rate.
        assert float(jnp.max(jnp.abs(a - before))) == pytest.approx(1e-2, rel=1e-2)


def test_step_flops_match_xla_count_of_the_unrolled_step():
    config = rnn.CaseConfig("jaxnets", batch=4, time=6, features=8, hidden=32, unroll=6)
    x = jnp.zeros((config.batch, config.time, config.features))
    trainer = Trainer(rnn_models.jaxnets_model(32, unroll=6), "squared_error", optax.sgd(0.1))
    state = jax.eval_shape(trainer.init, jax.random.PRNGKey(0), x)
    y = jnp.zeros((config.batch, 1))
    # Fully unrolled, XLA counts every time step (a scan's body is counted once).
    counted = steps.step_flops(trainer.train_step, state, (x, y))
    # By hand: 3 passes of 6 recurrent (4, 32) @ (32, 128) matmuls, 2 of the projection.
    by_hand = 3 * 6 * 2 * 4 * 32 * 128 + 2 * 2 * 24 * 8 * 128 + 3 * 2 * 4 * 32
    assert rnn.step_flops(config) == by_hand
    # XLA adds the gates' elementwise work and the update, under 15% at H=32.
    assert by_hand <= counted <= 1.15 * by_hand


def test_make_data_targets_are_a_standardised_leaky_sum():
    config = rnn.CaseConfig("flax", batch=64, time=7, features=3, steps=4, data_batches=2)
    x, y = rnn.make_data(config)
    assert x.shape == (2, 64, 7, 3) and y.shape == (2, 64, 1) and y.dtype == np.float32
    assert float(y.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(y.std()) == pytest.approx(1.0, rel=1e-5)
    # The target is affine in x with weights 0.9^(T-1-t) v: regressing it on x recovers them.
    design = np.concatenate([x.reshape(128, 21), np.ones((128, 1), np.float32)], axis=1)
    coef, *_ = np.linalg.lstsq(design, y.reshape(128), rcond=None)
    coef = coef[:-1].reshape(7, 3)
    np.testing.assert_allclose(coef[:-1] / coef[1:], 0.9, rtol=1e-4)


def test_case_config_and_plan_errors_name_the_valid_choices():
    with pytest.raises(ValueError, match=r"unroll must be in \[1, time=10\]"):
        rnn.CaseConfig("jaxnets", time=10, unroll=11)
    with pytest.raises(
        ValueError, match="unknown dtype 'float16'; choose one of float32, bfloat16"
    ):
        rnn.CaseConfig("jaxnets", dtype="float16")
    with pytest.raises(ValueError, match="hidden=0"):
        rnn.CaseConfig("torch", hidden=0)
    with pytest.raises(ValueError, match="data_batches=4, steps=2"):
        rnn.CaseConfig("flax", steps=2)
    assert rnn.resolve_unroll("full", 100) == 100 and rnn.resolve_unroll("8", 100) == 8
    with pytest.raises(ValueError, match=r"unroll must be 'full' or an integer in \[1, 100\]"):
        rnn.resolve_unroll("fast", 100)
    with pytest.raises(ValueError, match=r"\[1, 100\]; got 0"):
        rnn.resolve_unroll(0, 100)
    with pytest.raises(ValueError, match="unknown dtype 'float16'; choose one of float32"):
        rnn.Plan(dtype="float16")
    with pytest.raises(ValueError, match="unknown device 'tpu'; choose one of cpu, gpu"):
        common.Settings(device="tpu")


_MEASURED = ("sequences_per_s", "ms_per_step", "cpu_ms_per_step", "compile_s", "seconds")
_MEASURED += ("first_loss", "final_loss", "peak_flops_per_s")


def _plan(monkeypatch, speeds, **kwargs):
    """Run ``rnn.run_benchmark`` with a faked process runner: each case takes
    ``speeds[(framework, unroll)]`` sequences/s. Returns (launched configs, result)."""
    launched = []

    def fake_round_robin(module, configs, repeats, device, describe, log):
        assert module == "benchmarks.rnn"
        launched.extend(configs)
        records = []
        for c in configs:
            speed = speeds[(c.framework, c.unroll)]
            record = {**dict.fromkeys(_MEASURED, 1.0), "sequences_per_s": speed}
            record["ms_per_step"] = 1e3 * c.batch / speed
            record["peak_flops_per_s"] = None if c.framework == "torch" else 1e12
            records.append([{**dataclasses.asdict(c), **record, "step_flops": 5e9}])
        return records

    monkeypatch.setattr(common, "run_round_robin", fake_round_robin)
    # the runner is faked, so the plan needs no torch install (make test has none)
    monkeypatch.setattr(common, "check_frameworks", lambda frameworks: None)
    device = kwargs.pop("device", "cpu")
    settings = common.Settings(device=device, frameworks=("jaxnets", "flax", "torch"))
    return launched, rnn.run_benchmark(settings, rnn.Plan(**kwargs))


def test_cpu_plan_sweeps_unroll_and_sets_the_goal_against_pytorch(monkeypatch):
    speeds = {("jaxnets", u): 200.0 + u for u in (1, 2, 4, 8, 100)}
    speeds |= {("flax", 1): 100.5, ("torch", 1): 201.0}
    launched, result = _plan(monkeypatch, speeds)
    plan = sorted((c.framework, c.unroll) for c in launched)
    assert plan == sorted([*(("jaxnets", u) for u in (1, 2, 4, 8, 100)), ("flax", 1), ("torch", 1)])
    assert {(c.batch, c.time, c.features, c.hidden, c.dtype) for c in launched} == {
        (32, 100, 64, 256, "float32")
    }
    # 20 timed steps a process; 5 for the fully unrolled step (~3 s each on the CPU).
    assert {c.unroll: c.steps for c in launched} == {1: 20, 2: 20, 4: 20, 8: 20, 100: 5}
    ratios = {r["unroll"]: r for r in result["ratios"]}
    assert sorted(ratios) == [1, 2, 4, 8, 100]
    at1, at4 = ratios[1], ratios[4]
    assert at1["jaxnets_over_torch_sequences_per_s"] == pytest.approx(201 / 201)
    assert at1["jaxnets_over_flax_step_time"] == pytest.approx(100.5 / 201)
    assert at4["over_unroll_1_step_time"] == pytest.approx(201 / 204)
    assert at4["jaxnets_over_torch_sequences_per_s"] == pytest.approx(204 / 201)
    # 5e9 FLOPs a step, 201/32 steps a second, over a 1e12 FLOP/s peak.
    assert at1["peak_fraction"]["torch"] == pytest.approx(5e9 * 201 / 32 / 1e12)
    assert at4["jaxnets_over_flax_step_time"] is None  # Flax ran at unroll 1 only
    (goal,) = result["goals"]  # at the comparison unroll only
    assert (goal["unroll"], goal["threshold"], goal["holds"]) == (1, 1.0, True)
    speeds[("torch", 1)] = 202.0
    assert not _plan(monkeypatch, speeds)[1]["goals"][0]["holds"]


def test_gpu_plan_is_hidden_1024_t200_batch_128_in_bfloat16_without_goal(monkeypatch):
    speeds = {("jaxnets", u): 1000.0 for u in (1, 2, 4, 8, 16)}
    speeds |= {("flax", 8): 900.0, ("torch", 1): 2000.0}
    launched, result = _plan(monkeypatch, speeds, device="gpu", dtype="bfloat16")
    assert {(c.framework, c.unroll) for c in launched} == set(speeds)
    shape = {(c.batch, c.time, c.features, c.hidden) for c in launched}
    assert shape == {(128, 200, 64, 1024)}
    assert {(c.device, c.dtype, c.steps, c.peak_size) for c in launched} == {
        ("gpu", "bfloat16", 100, 8192)
    }
    assert result["config"]["unroll"] == 8 and result["config"]["unrolls"] == [1, 2, 4, 8, 16]
    assert result["goals"] == []  # the goal against PyTorch is the CPU's
    assert {r["jaxnets_over_torch_sequences_per_s"] for r in result["ratios"]} == {0.5}


@pytest.mark.slow  # a real benchmark process; the plan tests above run in `make test`
def test_run_writes_rnn_json_and_the_readme_renders_it(tmp_path):
    argv = ["--cases", "lstm", "--out", str(tmp_path), "--frameworks", "jaxnets", "flax"]
    argv += ["--lstm.batches", "4", "--lstm.time", "6", "--lstm.hidden", "8"]
    argv += ["--lstm.unroll", "full", "--lstm.unrolls", "full", "--lstm.steps", "8"]
    argv += ["--repeats", "1", "--lstm.peak-size", "32"]
    returned = bench_run.main(argv)["rnn"]
    on_disk = json.loads((tmp_path / "rnn.json").read_text())
    assert on_disk == returned
    cases = {c["framework"]: c for c in on_disk["cases"]}
    assert sorted(cases) == ["flax", "jaxnets"]
    for case in cases.values():
        assert (case["batch"], case["unroll"], case["time"], case["hidden"]) == (4, 6, 6, 8)
        rep = case["repeats"][0]
        # Unit-variance targets and a small initial readout: ½ MSE starts near ½, and 11
        # Adam steps on the same 4 batches lower it.
        assert 0.2 < rep["first_loss"] < 1.5 and rep["final_loss"] < rep["first_loss"]
        assert case["compile_s"]["median"] > 0
    (ratio,) = on_disk["ratios"]
    vs_flax = cases["jaxnets"]["ms_per_step"]["median"] / cases["flax"]["ms_per_step"]["median"]
    assert ratio["jaxnets_over_flax_step_time"] == pytest.approx(vs_flax)
    assert ratio["jaxnets_over_torch_sequences_per_s"] is None and on_disk["goals"] == []
    readme = tmp_path / "README.md"
    readme.write_text("<!-- bench:start -->\nSTALE\n<!-- bench:end -->\n")
    bench_table.main([str(tmp_path / "rnn.json"), "--readme", str(readme)])
    block = readme.read_text()
    assert "STALE" not in block
    assert "**LSTM (H=8, T=6, 64 input features) training step on the CPU**" in block
    flax_row = next(line for line in block.splitlines() if line.startswith("| Flax nn.RNN"))
    cells = [c.strip() for c in flax_row.strip("|").split("|")]
    flax = cases["flax"]
    assert cells[1:3] == ["4", "6"]
    assert cells[3].startswith(f"{flax['sequences_per_s']['median']:.0f} (")
    assert cells[6] == f"{flax['first_loss']['median']:.3f} → {flax['final_loss']['median']:.3f}"
    assert cells[8] == f"{1 / vs_flax:.2f}x"  # jaxnets' speed over Flax's
    (sweep_row,) = [line for line in block.splitlines() if line.startswith("| 4 | 6 (full) |")]
    assert sweep_row.split("|")[6].strip() == "n/a"  # no unroll-1 case to compare with


def test_readme_table_renders_fake_gpu_results():
    def summary(framework, unroll, speed, compile_s=2.0):
        spread = lambda v: None if v is None else {"median": v, "min": v, "max": v}  # noqa: E731
        return {
            "framework": framework,
            "batch": 128,
            "unroll": unroll,
            "sequences_per_s": {"median": speed, "min": speed - 10, "max": speed + 10},
            "ms_per_step": spread(1e3 * 128 / speed),
            "compile_s": spread(compile_s),
            "first_loss": spread(0.5),
            "final_loss": spread(0.25),
        }

    cases = [summary("jaxnets", 1, 500.0), summary("jaxnets", 8, 1000.0)]
    cases += [summary("flax", 8, 800.0), summary("torch", 1, 1250.0, None)]
    ratios = [
        {
            "batch": 128,
            "unroll": u,
            "jaxnets_over_torch_sequences_per_s": s / 1250,
            "over_unroll_1_step_time": 500 / s,
            "peak_fraction": {"jaxnets": 0.3, "flax": 0.24, "torch": 0.38},
        }
        for u, s in ((1, 500.0), (8, 1000.0))
    ]
    machine = {"cpu_model": "X", "cores": 16, "load_average_before": [0.0] * 3}
    machine |= {"load_average_after": [0.0] * 3, "versions": {"jax": "0.11"}}
    machine |= {"jax_devices": ["NVIDIA H100"], "torch_devices": ["NVIDIA H100"]}
    config = {"hidden": 1024, "time": 200, "features": 64, "dtype": "bfloat16", "device": "gpu"}
    config |= {"batches": [128], "unroll": 8, "repeats": 3, "steps": 100, "full_unroll_steps": 100}
    config |= {"learning_rate": 1e-3, "peak_size": 8192}
    results = {"benchmark": "rnn", "config": config, "cases": cases, "ratios": ratios}
    text = bench_table.render_markdown({**results, "machine": machine, "goals": []})
    assert "**LSTM (H=1024, T=200, 64 input features, bfloat16) training step on the GPU**" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[1:4] == [
        "| jaxnets | 128 | 8 | 1000 (990-1010) | 128.0 | 2.0 | 0.500 → 0.250 | 30% |  |",
        "| Flax nn.RNN (hand-written jit) | 128 | 8 | 800 (790-810) | 160.0 | 2.0 "
        "| 0.500 → 0.250 | 24% | 1.25x |",
        "| PyTorch nn.LSTM (cuDNN) | 128 | n/a | 1250 (1240-1260) | 102.4 | n/a "
        "| 0.500 → 0.250 | 38% | 0.80x |",
    ]
    assert rows[-2:] == [
        "| 128 | 1 | 256.0 | 500 (490-510) | 2.0 | 1.00x | 0.40x |",
        "| 128 | 8 | 128.0 | 1000 (990-1010) | 2.0 | 0.50x | 0.80x |",
    ]
    # Without jaxnets (--frameworks flax torch) the rows stay, their ratios read n/a.
    flax_and_torch = {**results, "cases": cases[2:], "ratios": []}
    text = bench_table.render_markdown({**flax_and_torch, "machine": machine, "goals": []})
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[1].startswith("| Flax nn.RNN") and rows[1].endswith("| n/a | n/a |")
    assert rows[2].startswith("| PyTorch nn.LSTM (cuDNN)") and len(rows) == 4  # + sweep header

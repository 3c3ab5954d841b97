"""The benchmark harness (benchmarks/): one process per case, JSON shape, ratios, tables, and
that the three frameworks of the conv-net benchmark compute the same thing.

The end-to-end cases are tiny (MLP 784-32-10 on 256 examples, LeNet-5 at batch 8 for 4 timed
steps) so the file stays fast; what is checked is the bookkeeping, and that every framework
really trained (its loss fell). One ResNet-18 step runs here on 16x16 images
(jaxnets and Flax agree); the bfloat16 training case is marked slow.
"""

import dataclasses
import json
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

import jaxnets
import jaxnets.models  # noqa: F401  (registers the models)
from benchmarks import cnn, cnn_models, common, mlp, steps
from benchmarks import readme_table as bench_table
from benchmarks import run as bench_run
from benchmarks.readme_table import render_markdown
from jaxnets import cli_config
from jaxnets.optim import make_optimizer
from jaxnets.train import Trainer, TrainState

_TINY = mlp.Plan(batches=(8,), examples=256, epochs=1, hidden=(32,))
_RESNET18_PARAMS = 11_181_642  # torchvision.models.resnet18(num_classes=10)
# Lecture 10 Table 1 (line 2446): LeNet-5's connections, one multiply-add each in a forward pass.
_LENET5_CONNECTIONS = {"C1": 117_600, "C3": 240_000, "F5": 48_000, "F6": 10_080, "output": 840}
_LENET5_WEIGHTS = 150 + 2400 + 48_000 + 10_080 + 840  # Table 1's "# weights" column
_LENET5_BIASES = 6 + 16 + 120 + 84 + 10  # one per map or unit
# A training step (Lecture 10 after Table 1): the forward pass, then two more passes for the
# weight and input gradients, less the input gradient of C1, which nothing needs.
_LENET5_STEP_MULTIPLY_ADDS = 3 * sum(_LENET5_CONNECTIONS.values()) - _LENET5_CONNECTIONS["C1"]


@pytest.fixture(scope="module")
def jax_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = ["--out", str(out), "--cases", "mlp", "--frameworks", "jaxnets", "flax"]
    argv += ["--mlp.batches", "8", "--mlp.examples", "256", "--mlp.epochs", "1", "--repeats", "1"]
    returned = bench_run.main([*argv, "--mlp.hidden", "32"])
    assert sorted(returned) == ["mlp"]
    return returned["mlp"], json.loads((out / "mlp.json").read_text()), out


@pytest.fixture(scope="module")
def cnn_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_cnn")
    # One framework keeps it fast; the ratio and goal arithmetic is checked on its own below.
    argv = ["--quick", "--out", str(out), "--cases", "lenet5", "--frameworks", "jaxnets"]
    returned = bench_run.main([*argv, "--cnn.batches", "8", "--cnn.peak-size", "128"])
    assert sorted(returned) == ["cnn"]
    return returned["cnn"], json.loads((out / "cnn.json").read_text()), out


def _check_case(case, framework):
    assert case["framework"] == framework and case["batch"] == 8
    assert case["steps"] == 256 // 8
    assert len(case["repeats"]) == 1
    speed = case["steps_per_s"]
    assert 0 < speed["min"] <= speed["median"] <= speed["max"]
    assert speed["median"] * case["ms_per_step"]["median"] == pytest.approx(1000.0, rel=1e-9)
    assert case["cpu_ms_per_step"]["median"] > 0
    rep = case["repeats"][0]
    # One epoch more of SGD on the same 256 examples must lower the mean training loss,
    # which starts near log(10) = 2.30 for 10 balanced classes.
    assert 1.5 < rep["first_loss"] < 3.5
    assert rep["final_loss"] < rep["first_loss"]


def test_jax_cases_write_json_with_medians_ratios_and_goals(jax_results):
    returned, on_disk, _ = jax_results
    assert on_disk == returned
    cases = {c["framework"]: c for c in on_disk["cases"]}
    assert sorted(cases) == ["flax", "jaxnets"]
    for name, case in cases.items():
        _check_case(case, name)
        assert case["compile_s"]["median"] > 0
    (ratio,) = on_disk["ratios"]
    expected = cases["jaxnets"]["ms_per_step"]["median"] / cases["flax"]["ms_per_step"]["median"]
    assert ratio == {
        "batch": 8,
        "jaxnets_over_flax_step_time": pytest.approx(expected),
        "jaxnets_over_torch_steps_per_s": None,
    }
    (goal,) = on_disk["goals"]
    assert goal["value"] == pytest.approx(expected) and goal["threshold"] == 1.05
    assert goal["holds"] == (expected <= 1.05)
    machine = on_disk["machine"]
    assert machine["cores"] >= 1 and len(machine["load_average_before"]) == 3
    assert machine["versions"]["jax"] == jax.__version__
    assert machine["jax_devices"] == ["cpu"]
    assert on_disk["config"]["hidden"] == [32] and on_disk["config"]["examples"] == 256


def test_markdown_table_has_one_row_per_batch_with_the_ratios(jax_results):
    _, results, _ = jax_results
    text = render_markdown(results)
    (row,) = [line for line in text.splitlines() if line.startswith("| 8 |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    ratio = results["ratios"][0]["jaxnets_over_flax_step_time"]
    # batch, jaxnets, flax, the two ratios (no torch column in a run without torch)
    assert len(cells) == 5
    assert cells[3] == f"{ratio:.2f}x" and cells[4] == "n/a"
    assert cells[1].startswith(f"{results['cases'][0]['steps_per_s']['median']:.0f} (")


def test_unknown_framework_bad_repeats_and_bad_cases_are_rejected():
    with pytest.raises(ValueError, match="unknown frameworks \\['tf'\\]"):
        common.Settings(frameworks=("tf",))
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        common.Settings(frameworks=("flax",), repeats=0)
    with pytest.raises(ValueError, match="dtype bfloat16 needs a model with a dtype field"):
        cnn.CaseConfig("flax", "lenet5", 8, dtype="bfloat16")
    with pytest.raises(ValueError, match="unknown model 'vgg'; choose one of lenet5, resnet18"):
        cnn.CaseConfig("flax", "vgg", 8)
    with pytest.raises(ValueError, match="need 1 <= data_batches <= steps"):
        cnn.CaseConfig("flax", "lenet5", 8, steps=2)
    message = "the mlp benchmark runs on the cpu only; leave mlp out of --cases with --device gpu"
    with pytest.raises(ValueError, match=message):
        bench_run.RunConfig(cases=("mlp", "lenet5"), device="gpu")
    with pytest.raises(ValueError, match="unknown case 'vgg'; choose one of mlp, lenet5"):
        bench_run.RunConfig(cases=("vgg",))
    # On the command line both are usage errors (exit 2), before anything runs.
    for argv in (["--cases", "mlp", "--device", "gpu"], ["--mlp.hidden", "wide"]):
        with pytest.raises(SystemExit) as exit_info:
            bench_run.main(argv)
        assert exit_info.value.code == 2


def test_run_flags_build_each_benchmarks_plan():
    argv = ["--cases", "lstm", "partition", "--quick", "--no-quick", "--repeats", "2"]
    argv += ["--lstm.unrolls", "1", "full", "--partition.models", "mlp", "--cnn.batches", "8"]
    expected = bench_run.RunConfig(
        cases=("lstm", "partition"),
        repeats=2,
        lstm=bench_run.rnn.Plan(unrolls=("1", "full")),
        partition=bench_run.partition.Plan(models=("mlp",)),
        cnn=cnn.Plan(batches=(8,)),
    )
    assert cli_config.config_from_args(bench_run.RunConfig, argv) == expected
    assert cli_config.argparse_config(bench_run.RunConfig, argv) == expected
    assert expected.selected == ("lstm", "partition")
    assert bench_run.RunConfig(device="gpu").selected == ("lenet5", "resnet18", "lstm")


def test_case_flags_round_trip_through_the_generated_cli():
    config = cnn.CaseConfig("flax", "resnet18", 4, steps=6, dtype="bfloat16", learning_rate=0.1)
    argv = cli_config.config_to_args(config)
    # Defaults are left out; what differs is spelled as the CLI flags (the shared step fields
    # of benchmarks.steps.StepCase first).
    assert argv == ["--steps", "6", "--dtype", "bfloat16", "--framework", "flax"] + [
        "--model",
        "resnet18",
        "--batch",
        "4",
        "--learning-rate",
        "0.1",
    ]
    assert cli_config.config_from_args(cnn.CaseConfig, argv) == config
    assert cli_config.argparse_config(cnn.CaseConfig, argv) == config


def test_cnn_quick_run_writes_json_with_flops_and_peak(cnn_results):
    returned, on_disk, _ = cnn_results
    assert on_disk == returned
    (case,) = on_disk["cases"]
    assert (case["framework"], case["model"], case["batch"], case["steps"], case["dtype"]) == (
        "jaxnets",
        "lenet5",
        8,
        4,
        "float32",
    )
    ips, ms = case["images_per_s"]["median"], case["ms_per_step"]["median"]
    assert ips * ms == pytest.approx(8 * 1000.0, rel=1e-9)
    assert case["compile_s"]["median"] > 0 and case["peak_flops_per_s"]["median"] > 1e8
    rep = case["repeats"][0]
    # Synthetic 10-class labels: the loss starts near log(10) and a few steps on the same
    # 4 batches must lower it.
    assert 1.8 < rep["first_loss"] < 2.8 and rep["final_loss"] < rep["first_loss"]
    # XLA's count at batch 8: 8 images of Table 1's connections, three passes (see below).
    assert (
        8 * 2 * _LENET5_STEP_MULTIPLY_ADDS
        < rep["step_flops"]
        < 8 * 2.2 * _LENET5_STEP_MULTIPLY_ADDS
    )
    (ratio,) = on_disk["ratios"]
    assert ratio["jaxnets_over_flax_step_time"] is None and on_disk["goals"] == []
    assert ratio["peak_fraction"]["jaxnets"] == pytest.approx(
        rep["step_flops"] * ips / 8 / rep["peak_flops_per_s"]
    )
    assert on_disk["config"]["peak_size"] == 128 and on_disk["config"]["device"] == "cpu"
    assert on_disk["machine"]["jax_devices"] == ["cpu"]


def test_readme_block_renders_mlp_and_cnn_tables(jax_results, cnn_results, tmp_path):
    *_, mlp_dir = jax_results
    cnn_result, _, cnn_dir = cnn_results
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:start -->\nSTALE\n<!-- bench:end -->\nafter\n")
    bench_table.main(
        [str(mlp_dir / "mlp.json"), str(cnn_dir / "cnn.json"), "--readme", str(readme)]
    )
    text = readme.read_text()
    block = text.split("<!-- bench:start -->")[1].split("<!-- bench:end -->")[0]
    assert "STALE" not in block and text.endswith("after\n")
    assert block.index("**MLP 784-32-10 on the CPU**") < block.index("**Conv nets on the CPU")
    (row,) = [line for line in block.splitlines() if line.startswith("| LeNet-5 | 8 |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    # model, batch, jaxnets images/s, two ratios, compile time, peak fraction
    assert len(cells) == 7
    case, ratio = cnn_result["cases"][0], cnn_result["ratios"][0]
    assert cells[2].startswith(f"{case['images_per_s']['median']:.0f} (")
    assert cells[3] == cells[4] == "n/a"
    assert cells[5] == f"{case['compile_s']['median']:.1f}"
    assert cells[6] == f"{100 * ratio['peak_fraction']['jaxnets']:.0f}%"


def _summary(framework, model, batch, images_per_s, step_flops=None, peak=None):
    def spread(v):
        return None if v is None else {"median": v, "min": v, "max": v}

    return {
        "framework": framework,
        "model": model,
        "batch": batch,
        "images_per_s": spread(images_per_s),
        "ms_per_step": spread(1e3 * batch / images_per_s),
        "step_flops": spread(step_flops),
        "repeats": [{"peak_flops_per_s": peak}] if peak else [],
    }


def test_peak_fraction_and_gpu_goal_arithmetic():
    cases = [
        # batch 512 at 1024 images/s is 2 steps/s; 1e12 FLOPs a step over a 1e14 peak: 2%.
        _summary("jaxnets", "resnet18", 512, 1024.0, step_flops=1.01e12, peak=1e14),
        _summary("flax", "resnet18", 512, 1000.0, step_flops=1e12, peak=3e14),
        _summary("torch", "resnet18", 512, 512.0),
    ]
    (ratio,), goals = cnn.ratios_and_goals(cases, "gpu")
    assert ratio["step_flops"] == 1e12  # the Flax step's count
    assert ratio["peak_flops_per_s"] == 2e14  # median of the JAX processes' peaks
    assert ratio["peak_fraction"] == {
        "jaxnets": pytest.approx(1e12 * 2 / 2e14),
        "flax": pytest.approx(1e12 * 1000 / 512 / 2e14),
        "torch": pytest.approx(1e12 * 1 / 2e14),
    }
    assert ratio["jaxnets_over_flax_step_time"] == pytest.approx(1000 / 1024)
    by_metric = {g["metric"]: g for g in goals}
    assert by_metric["jaxnets_over_flax_step_time"]["holds"]
    speedup = by_metric["jaxnets_over_torch_images_per_s"]
    assert speedup["value"] == 2.0 and speedup["threshold"] == 1.8 and speedup["holds"]
    # A 1.5x speedup misses the GPU goal; on the CPU there is no goal against PyTorch.
    cases[2] = _summary("torch", "resnet18", 512, 1024.0 / 1.5)
    goals = cnn.ratios_and_goals(cases, "gpu")[1]
    assert [g["holds"] for g in goals] == [True, False]
    assert [g["metric"] for g in cnn.ratios_and_goals(cases, "cpu")[1]] == [
        "jaxnets_over_flax_step_time"
    ]


def _param_count(model, input_shape):
    x = jnp.zeros((1, *input_shape))
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    return variables, sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize("model", cnn_models.MODELS)
def test_flax_models_have_jaxnets_parameter_tree(model):
    shape = cnn_models.INPUT_SHAPES[model]
    ours, ours_count = _param_count(cnn_models.flax_model(model), shape)
    theirs, theirs_count = _param_count(jaxnets.create_model(model, num_classes=10), shape)
    # Same names and shapes: the two steps can be run on the same variables.
    assert jax.tree.map(lambda a: a.shape, ours) == jax.tree.map(lambda a: a.shape, theirs)
    expected = {"lenet5": _LENET5_WEIGHTS + _LENET5_BIASES, "resnet18": _RESNET18_PARAMS}
    assert ours_count == theirs_count == expected[model]


def test_bfloat16_resnet18_convolves_in_bfloat16_with_float32_parameters():
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    for model in (
        cnn_models.flax_model("resnet18", dtype="bfloat16"),
        jaxnets.create_model("resnet18", num_classes=10, dtype=jnp.bfloat16),
    ):
        variables, _ = _param_count(model, (32, 32, 3))
        apply = lambda v, x, m=model: m.apply(v, x, train=True, mutable=["batch_stats"])  # noqa: E731
        jaxpr = jax.make_jaxpr(apply)(variables, x)
        convs = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
        # conv1, 16 block convs and 3 projection shortcuts, all with bf16 operands.
        assert len(convs) == 20
        assert {v.aval.dtype for e in convs for v in e.invars} == {jnp.dtype(jnp.bfloat16)}
        assert {a.dtype for a in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
        assert jaxpr.out_avals[0].shape == (2, 10) and jaxpr.out_avals[0].dtype == jnp.float32


def _lenet5_batch(batch=8):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, 32, 32, 1), dtype=np.float32)
    return x, rng.integers(0, 10, batch).astype(np.int32)


def _random_variables(model, input_shape, seed=0):
    """Variables of ``model`` drawn with NumPy (compiling a jitted init costs seconds)."""
    rng = np.random.default_rng(seed)
    shapes, _ = _param_count(model, input_shape)
    params = jax.tree.map(
        lambda s: (0.2 * rng.standard_normal(s.shape)).astype(s.dtype), shapes["params"]
    )
    # Running statistics only matter in evaluation mode; any valid ones will do.
    model_state = jax.tree.map(lambda s: np.ones(s.shape, s.dtype), shapes.get("batch_stats", {}))
    return {"params": params, **({"batch_stats": model_state} if model_state else {})}


def _same_step(model_name, x, y):
    """One jaxnets step and one hand-written Flax step from the same variables."""
    trainer = Trainer(
        jaxnets.create_model(model_name, num_classes=10),
        "softmax_cross_entropy",
        make_optimizer("momentum", 0.01, momentum=0.9),
        per_example=jaxnets.model_card(model_name).per_example_grads,
    )
    variables = _random_variables(
        cnn_models.flax_model(model_name), cnn_models.INPUT_SHAPES[model_name]
    )
    model_state = {k: v for k, v in variables.items() if k != "params"}
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=jax.tree.map(jnp.asarray, variables["params"]),
        opt_state=trainer.optimizer.init(variables["params"]),
        model_state=jax.tree.map(jnp.asarray, model_state),
        rng=jax.random.PRNGKey(0),
    )
    step, create_state = cnn_models.flax_train_step(
        cnn_models.flax_model(model_name), optax.sgd(0.01, momentum=0.9)
    )
    # Both steps donate their state: each gets its own copy of the variables.
    flax_state = create_state(jax.tree.map(jnp.asarray, variables))
    (new, metrics), (flax_new, flax_metrics) = (
        trainer.train_step(state, (x, y)),
        step(flax_state, (x, y)),
    )
    assert float(metrics["loss"]) == pytest.approx(float(flax_metrics["loss"]), rel=1e-6)
    # NumPy, not jnp: eager jnp ops compile one program per leaf shape (~1.5 s for ResNet-18)
    new_params, flax_params = jax.device_get((new.params, flax_new.params))
    diffs = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), new_params, flax_params)
    assert max(jax.tree.leaves(diffs)) < 1e-6
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), new.params, variables["params"])
    assert min(jax.tree.leaves(moved)) > 0  # every parameter was updated


def test_lenet5_jaxnets_and_flax_steps_agree_on_the_same_variables():
    _same_step("lenet5", *map(jnp.asarray, _lenet5_batch()))


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["jaxnets", "flax"])
def test_resnet18_case_trains_in_bfloat16(framework):
    record = cnn.run_case(
        cnn.CaseConfig(
            framework,
            "resnet18",
            4,
            steps=2,
            data_batches=1,
            warmup_steps=1,
            dtype="bfloat16",
            peak_size=64,
        )
    )
    assert record["dtype"] == "bfloat16" and record["final_loss"] < record["first_loss"]
    assert record["step_flops"] > 4 * 100e6  # ~128 MFLOPs an image at 32x32 (XLA's count)


def test_resnet18_jaxnets_and_flax_steps_agree_on_the_same_variables():
    """The full ResNet-18 (every block, projection and batch norm) on 16x16 images, batch 3.

    The cost is the two compiles, not the images: 16x16 still leaves a 2x2 map for stage 3's
    stride-2 block and three values per channel for stage 4's batch statistics, so a block
    computing e.g. relu(F(x)) + x instead of relu(F(x) + x) changes the loss.
    """
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((3, 16, 16, 3), dtype=np.float32))
    _same_step("resnet18", x, jnp.asarray([1, 2, 3], jnp.int32))


def test_step_flops_are_three_forward_passes_of_lenet5_connections():
    model = cnn_models.flax_model("lenet5")
    step, create_state = cnn_models.flax_train_step(model, optax.sgd(0.01))
    state = create_state(_random_variables(model, (32, 32, 1)))
    flops = {
        b: steps.step_flops(step, state, (jnp.zeros((b, 32, 32, 1)), jnp.zeros(b, jnp.int32)))
        for b in (8, 16)
    }
    per_image = (flops[16] - flops[8]) / 8
    # + tanh, pooling and softmax
    assert 2 * _LENET5_STEP_MULTIPLY_ADDS <= per_image <= 1.05 * 2 * _LENET5_STEP_MULTIPLY_ADDS


def test_matmul_peak_is_flops_over_seconds(monkeypatch):
    clock = iter(np.arange(0.0, 100.0, 0.5))  # every timing reads 0.5 s
    monkeypatch.setattr(steps, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    assert steps.matmul_peak(64, "float32", trials=2, chain=3) == 2 * 64**3 * 3 / 0.5


def _torch_weights(params):
    """Flax LeNet-5/ResNet parameters as a PyTorch state dict (same layer names)."""
    import torch

    state = {}
    for (*module, name), leaf in traverse_util.flatten_dict(params).items():
        a = np.asarray(leaf)
        if name == "kernel" and a.ndim == 4:
            a = a.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        elif name == "kernel" and module == ["F5"]:
            # Flax flattens S4's maps as (h, w, c), PyTorch as (c, h, w).
            a = a.reshape(5, 5, 16, -1).transpose(2, 0, 1, 3).reshape(400, -1).T
        elif name == "kernel":
            a = a.T
        key = ".".join(module) + "." + {"kernel": "weight", "scale": "weight"}.get(name, name)
        state[key] = torch.from_numpy(np.array(a))  # a writable copy
    return state


def test_torch_lenet5_matches_flax_loss_and_gradient_norm():
    torch = pytest.importorskip("torch", reason="torch is not installed: pip install torch==2.13.0")
    x, y = _lenet5_batch()
    model = cnn_models.flax_model("lenet5")
    params = _random_variables(model, (32, 32, 1))["params"]

    @jax.jit
    def loss_and_grads(p):
        def loss_fn(p):
            logits = model.apply({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(p)
        return loss, optax.tree.norm(grads)

    loss, grad_norm_jax = loss_and_grads(params)
    net = cnn_models.torch_model("lenet5")
    net.load_state_dict(_torch_weights(params))
    torch_loss = torch.nn.functional.cross_entropy(
        net(torch.from_numpy(x).permute(0, 3, 1, 2)), torch.from_numpy(y).long()
    )
    torch_loss.backward()
    assert torch_loss.item() == pytest.approx(float(loss), rel=1e-5)
    grad_norm = math.sqrt(sum(float((p.grad**2).sum()) for p in net.parameters()))
    assert grad_norm == pytest.approx(float(grad_norm_jax), rel=1e-4)


def test_torch_resnet18_has_torchvision_parameter_count_and_flax_names():
    torch = pytest.importorskip("torch", reason="torch is not installed: pip install torch==2.13.0")
    net = cnn_models.torch_model("resnet18")
    assert sum(p.numel() for p in net.parameters()) == _RESNET18_PARAMS
    # Every Flax parameter (kernels transposed) loads by name with its shape; what is left is
    # the running statistics, which Flax keeps in batch_stats.
    variables, _ = _param_count(cnn_models.flax_model("resnet18"), (32, 32, 3))
    zeros = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), variables["params"])
    missing, unexpected = net.load_state_dict(_torch_weights(zeros), strict=False)
    assert unexpected == [] and all(
        k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in missing
    )
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_torch_case_trains_and_is_timed_without_compile():
    pytest.importorskip("torch", reason="torch is not installed: pip install torch==2.13.0")
    # One thread: the tiny case is all per-op overhead, and the test should not depend on
    # how busy the other core is.
    settings = common.Settings(frameworks=("torch",), repeats=1, torch_threads=1)
    results = mlp.run_benchmark(settings, _TINY, log=lambda _: None)
    (case,) = results["cases"]
    _check_case(case, "torch")
    assert case["compile_s"] is None
    assert results["config"]["torch_threads"] == 1
    assert results["ratios"][0]["jaxnets_over_torch_steps_per_s"] is None
    cnn_results = cnn.run_benchmark(
        settings, cnn.Plan(batches=(8,), steps=4), ("lenet5",), log=lambda _: None
    )
    (case,) = cnn_results["cases"]
    assert case["compile_s"] is None and case["step_flops"] is None
    assert cnn_results["ratios"][0]["peak_fraction"] == {"torch": None}
    rep = case["repeats"][0]
    assert rep["final_loss"] < rep["first_loss"]
    assert cnn_results["machine"]["torch_devices"] == ["cpu"]


def test_gpu_defaults_train_resnet18_in_bfloat16_at_batch_512(monkeypatch):
    launched = []

    def fake_round_robin(module, configs, repeats, device, describe, log):
        launched.extend(configs)
        measured = ("images_per_s", "ms_per_step", "cpu_ms_per_step", "compile_s", "seconds")
        measured += ("first_loss", "final_loss", "step_flops", "peak_flops_per_s")
        record = dict.fromkeys(measured, 1.0)
        return [[{**dataclasses.asdict(c), **record, "device": "gpu"}] for c in configs]

    monkeypatch.setattr(common, "run_round_robin", fake_round_robin)
    # the runner is faked, so the plan needs no torch install (make test has none)
    monkeypatch.setattr(common, "check_frameworks", lambda frameworks: None)
    settings = common.Settings(device="gpu", frameworks=("jaxnets", "torch"))
    results = cnn.run_benchmark(settings, cnn.Plan())
    plan = {(c.framework, c.model): (c.batch, c.steps, c.dtype, c.device) for c in launched}
    assert plan == {
        ("jaxnets", "lenet5"): (256, 4000, "float32", "gpu"),
        ("torch", "lenet5"): (256, 4000, "float32", "gpu"),
        ("jaxnets", "resnet18"): (512, 1000, "bfloat16", "gpu"),
        ("torch", "resnet18"): (512, 1000, "bfloat16", "gpu"),
    }
    assert {c.peak_size for c in launched} == {8192}
    assert results["config"]["dtypes"] == {"lenet5": "float32", "resnet18": "bfloat16"}
    # On a GPU the ResNet also has the goal against PyTorch.
    assert [g["metric"] for g in results["goals"] if g["model"] == "resnet18"] == [
        "jaxnets_over_torch_images_per_s"
    ]

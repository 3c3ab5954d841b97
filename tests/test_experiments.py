"""Experiment scripts: `--smoke` runs write the run directory; bad configs are refused."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxnets.data import make_execution_task
from jaxnets.experiment import Claim, mean_over_seeds, parse_config

ROOT = Path(__file__).resolve().parent.parent


def load_experiment(name):
    spec = importlib.util.spec_from_file_location(
        f"experiments_{name}", ROOT / "experiments" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def check_run_dir(summary, out, experiment):
    runs = list((out / experiment).iterdir())
    assert len(runs) == 1
    files = {p.name for p in runs[0].iterdir()}
    assert {"config.json", "metrics.jsonl", "summary.json"} <= files
    assert any(f.endswith(".png") for f in files)
    on_disk = json.loads((runs[0] / "summary.json").read_text())
    assert on_disk["experiment"] == experiment and on_disk["results"] == summary["results"]
    for claim in on_disk["claims"]:
        values = np.array(claim["values"])
        beyond = (
            values - claim["threshold"]
            if claim["direction"] == "above"
            else (claim["threshold"] - values)
        )
        assert claim["holds"] == bool(np.all(beyond >= claim["margin"]))
    return runs[0]


def test_claim_holds_is_computed():
    assert Claim("x", "test_accuracy", 0.96, 0.95, "above").holds
    assert not Claim("x", "test_mse", 0.02, 0.01, "below").holds
    with pytest.raises(ValueError, match="direction"):
        Claim("x", "m", 1.0, 1.0, "sideways")
    with pytest.raises(ValueError, match="margin must be >= 0"):
        Claim("x", "m", 1.0, 1.0, "above", margin=-0.1)


def test_claim_holds_only_when_every_seed_clears_the_threshold_by_the_margin():
    accuracy = Claim("acc", "test_accuracy", (0.981, 0.978, 0.984), 0.97, "above", margin=0.005)
    assert accuracy.values == (0.981, 0.978, 0.984) and accuracy.worst == 0.978
    assert accuracy.value == pytest.approx(0.981) and accuracy.slack == pytest.approx(0.008)
    assert accuracy.holds
    # the mean clears 0.97 + 0.01 but the worst seed does not
    assert not Claim("acc", "test_accuracy", (0.99, 0.978), 0.97, "above", margin=0.01).holds
    mse = Claim("mse", "test_mse", [0.004, 0.006], 0.01, "below", margin=0.003)
    assert mse.worst == 0.006 and mse.slack == pytest.approx(0.004) and mse.holds
    assert not Claim("mse", "test_mse", [0.004, 0.0085], 0.01, "below", margin=0.003).holds
    assert not Claim("nan", "test_mse", [0.004, float("nan")], 0.01, "below").holds
    row = accuracy.as_dict()
    assert row["values"] == [0.981, 0.978, 0.984] and row["margin"] == 0.005 and row["holds"]
    assert "over 3 seed(s)" in str(accuracy) and str(accuracy).startswith("[holds]")


def test_mean_over_seeds_averages_the_metrics_every_seed_has():
    rows = [{"acc": 0.9, "loss": 1.0}, {"acc": 0.8, "loss": 3.0, "extra": 7.0}]
    assert mean_over_seeds(rows) == pytest.approx({"acc": 0.85, "loss": 2.0})
    with pytest.raises(ValueError, match="at least one"):
        mean_over_seeds([])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "epochs must be >= 1"),
        (["--learning-rate", "-1"], "learning_rate must be > 0"),
        (["--activation", "relux"], "unknown activation 'relux'"),
        (["--batch-size", "many"], "many"),
    ],
)
def test_invalid_config_is_a_usage_error(args, message, capsys):
    digits = load_experiment("digits")
    with pytest.raises(SystemExit) as exit_info:
        parse_config(digits.Config, args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Traceback" not in err


def test_help_lists_every_config_field(capsys):
    import dataclasses

    for name in ("digits", "xor", "linear_regression", "cnn"):
        experiment = load_experiment(name)
        with pytest.raises(SystemExit) as exit_info:
            parse_config(experiment.Config, ["--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        for field in dataclasses.fields(experiment.Config):
            assert "--" + field.name.replace("_", "-") in out


@pytest.mark.slow  # `make train` runs it; test_digits_smoke runs the same main()
def test_digits_script_runs_as_a_program(tmp_path):
    # the path `make train` takes: a subprocess, argv parsed by tyro
    script = str(ROOT / "experiments" / "digits.py")
    proc = subprocess.run(
        [sys.executable, script, "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "softmax_regression" in proc.stdout and (tmp_path / "digits").is_dir()


def test_cnn_table1_check_names_the_wrong_cell():
    experiment = load_experiment("cnn")
    from jaxnets import create_model
    from jaxnets.inspect import layer_table

    table = layer_table(create_model("lenet5", c3=15), (32, 32, 1))
    wrong = experiment.table1_mismatches(table)
    assert len(wrong) == 3 and wrong[0].startswith("C3:")  # C3 and S4 change, and F5's inputs


def test_counts_print_as_integers_and_metrics_to_four_digits():
    from jaxnets.experiment import format_number, format_table

    assert format_number(61706.0) == "61,706" and format_number(256.0) == "256"
    assert format_number(0.98125) == "0.9812" and format_number(4.1e-23) == "4.1e-23"
    assert format_table({"lenet5": {"parameters": 61706.0}}).splitlines()[1].endswith("61,706")


def test_readme_tables_are_generated_from_summaries():
    from jaxnets.experiment import replace_block, results_markdown

    summary = {
        "results": {"mlp": {"test_accuracy": 0.98125}},
        "claims": [Claim("c", "test_accuracy", (0.98, 0.9825), 0.97, "above", 0.005).as_dict()],
    }
    table = results_markdown({"digits": summary})
    assert "| mlp | 0.9812 |" in table
    assert "| digits | c | 0.9812 | 0.98, 0.9825 | above 0.97 | 0.005 | yes |" in table
    text = "a\n<!-- results:start -->\nold\n<!-- results:end -->\nb"
    assert replace_block(text, "results", "new") == (
        "a\n<!-- results:start -->\nnew\n<!-- results:end -->\nb"
    )
    with pytest.raises(ValueError, match="no <!-- bench:start -->"):
        replace_block(text, "bench", "x")


def test_record_copies_the_newest_full_size_run_and_skips_smoke_runs(tmp_path):
    from jaxnets.experiment import record_summaries, recorded_summaries

    def write(stamp, smoke, accuracy):
        run = tmp_path / "runs" / "digits" / stamp
        run.mkdir(parents=True)
        summary = {"config": {"smoke": smoke}, "results": {"mlp": {"acc": accuracy}}}
        (run / "summary.json").write_text(json.dumps(summary))

    write("20260101-000000", False, 0.5)
    write("20260102-000000", False, 0.9)
    write("20260103-000000", True, 0.1)  # newer, but a smoke run
    assert record_summaries(tmp_path / "runs", tmp_path / "results") == ["digits"]
    recorded = recorded_summaries(tmp_path / "results")
    assert recorded["digits"]["results"]["mlp"]["acc"] == 0.9
    with pytest.raises(FileNotFoundError, match="no full-size run of xor"):
        record_summaries(tmp_path / "runs", tmp_path / "results", ["xor"])


def test_readme_results_equal_what_the_committed_summaries_generate():
    from jaxnets.experiment import RESULTS_DIR, recorded_summaries, results_markdown

    summaries = recorded_summaries(RESULTS_DIR)
    experiments = {p.stem for p in (ROOT / "experiments").glob("*.py")}
    assert set(summaries) == experiments, "record every experiment: make results && make readme"
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- results:start -->\n", 1)[1].split("\n<!-- results:end -->")[0]
    assert block == results_markdown(summaries), "README is stale: run `make readme`"
    for name, summary in summaries.items():
        assert summary["experiment"] == name and not summary["config"].get("smoke")
        for claim in summary["claims"]:
            assert (
                Claim(
                    claim["claim"],
                    claim["metric"],
                    claim["values"],
                    claim["threshold"],
                    claim["direction"],
                    claim["margin"],
                ).holds
                == claim["holds"]
            )


def test_seq2seq_teacher_forcing_arrays_shift_the_target_and_mask_padding():
    seq2seq = load_experiment("seq2seq_execute")
    task = make_execution_task(20, seed=1)
    x, y = seq2seq.teacher_forcing_arrays(task)
    source_length, answer_length = task.source_ids.shape[1], task.target_ids.shape[1]
    assert x.shape == (20, source_length + answer_length) and y.shape == (20, answer_length)
    np.testing.assert_array_equal(x[:, :source_length], task.source_ids)
    assert (x[:, source_length] == task.vocab.go_id).all()
    np.testing.assert_array_equal(x[:, source_length + 1 :], task.target_ids[:, :-1])
    for row, answer in zip(y, task.answers, strict=True):
        assert (row[: len(answer) + 1] >= 0).all() and (row[len(answer) + 1 :] == -1).all()
        assert row[len(answer)] == task.vocab.eos_id


@pytest.mark.slow  # its parts are tested in test_nplm.py and test_words.py; `make test-all` runs it
def test_language_model_smoke(tmp_path):
    language_model = load_experiment("language_model")
    summary = language_model.main(language_model.Config(smoke=True, out=str(tmp_path)))
    run = check_run_dir(summary, tmp_path, "language_model")
    perplexity = {name: row["test_perplexity"] for name, row in summary["results"].items()}
    assert set(perplexity) == {
        "unigram (add-k)",
        "bigram (add-k)",
        "trigram (add-k)",
        "trigram (interpolated)",
        "NPLM K=1",
        "NPLM K=1 (no direct)",
        "NPLM K=2",
        "NPLM K=2 (no direct)",
        "NPLM chosen on validation",
    }
    # a 60-token vocabulary: every model is better than uniform, the interpolation beats unigram
    assert all(1 < p < 60 for p in perplexity.values())
    assert perplexity["trigram (interpolated)"] < perplexity["unigram (add-k)"]
    (claim,) = summary["claims"]
    assert len(claim["values"]) == summary["config"]["seeds"] == 2
    assert claim["value"] == pytest.approx(
        summary["results"]["NPLM chosen on validation"]["test_ratio_to_trigram"]
    )
    assert (run / "tsne_words.png").stat().st_size > 0
    assert len((run / "samples.txt").read_text().splitlines()) == 2
    assert (run / "neighbours.txt").read_text().count("cosine") == 2

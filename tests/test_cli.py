"""The `jaxnets` console script: list, info, gradcheck and its errors."""

import subprocess
import sys

import pytest

from jaxnets.cli import main


def test_list_and_glob(capsys):
    assert main(["list", "mlp_*"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert "mlp_elu" in names and all(n.startswith("mlp_") for n in names)
    assert main(["list", "nothing*"]) == 1


def test_info_prints_card_and_exact_parameter_count(capsys):
    assert main(["info", "mlp"]) == 0
    out = capsys.readouterr().out
    assert "lecture:" in out and "softmax_cross_entropy" in out
    # 64 -> 128 -> 10: (64*128 + 128) + (128*10 + 10)
    total = [line for line in out.splitlines() if line.startswith("total")][0]
    assert total.split()[-1] == "9,610"


def test_info_prints_the_layer_table_of_lecture_10(capsys):
    assert main(["info", "lenet5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line.split()[:1] in (["C3"], ["F6"])}
    # Table 1: C3 has 1600 units, 240,000 connections, 2400 weights (and 16 biases)
    assert rows["C3"][1:6] == ["convolution", "10x10x16", "1,600", "240,000", "2,400"]
    assert rows["F6"][3:7] == ["84", "84", "10,080", "10,080"]
    assert "32x32 (whole input)" in "\n".join(lines)


def test_info_names_the_module_the_model_lives_in(capsys):
    assert main(["info", "lenet5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "module:            jaxnets.models.cnn.LeNet5" in lines


def test_info_tiny_uses_the_tiny_input_shape(capsys):
    assert main(["info", "lenet5", "--tiny"]) == 0
    c1 = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("C1"))
    # tiny config: 2 maps of 3x3 on 12x12x1 inputs -> 10x10x2 units, each with 9 connections
    assert c1.split()[2:6] == ["10x10x2", "200", "1,800", "18"]


def test_gradcheck_reports_the_worst_leaf(capsys):
    assert main(["gradcheck", "xor_mlp"]) == 0
    out = capsys.readouterr().out
    assert "worst:" in out and out.strip().endswith("PASS")


def test_unknown_model_is_a_clear_error(capsys):
    assert main(["info", "softmax_regresion"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'softmax_regression'" in err and "Traceback" not in err


def test_console_entry_point_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "jaxnets.cli", "list", "xor*"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("xor_mlp")


@pytest.mark.parametrize("tol", ["inf", "1", "0", "-1e-6", "nan", "tight"])
def test_gradcheck_tolerance_that_cannot_fail_is_a_usage_error(tol, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["gradcheck", "linear_regression", "--tol", tol])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --tol" in err and "Traceback" not in err

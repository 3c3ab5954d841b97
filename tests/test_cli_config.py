"""jaxnets.cli_config: the argparse fallback reads the same flags into the same dataclass as
tyro, config_to_args writes flags that rebuild a config, and bad flags are usage errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest

from jaxnets import cli_config


@dataclasses.dataclass(frozen=True)
class _Inner:
    widths: tuple[int, ...] = (64, 256)
    limit: int | None = None
    shuffle: bool = True


@dataclasses.dataclass(frozen=True)
class _Config:
    name: str
    device: Literal["cpu", "gpu"] = "cpu"
    quick: bool = False
    compile: bool = True
    hidden: tuple[int, ...] = (512, 512)
    cases: tuple[str, ...] | None = None
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    out: Path = Path("results")
    steps: int | None = 3
    learning_rate: float = 0.1
    shape: tuple[int, int] = (1, 2)
    inner: _Inner = _Inner(widths=(7,))


_ARGS = {
    "defaults": ["--name", "a"],
    "every kind": [
        "--name",
        "b",
        "--device",
        "gpu",
        "--quick",
        "--no-compile",
        "--hidden",
        "3",
        "4",
        "5",
        "--cases",
        "mlp",
        "lstm",
        "--seeds",
        "1",
        "2",
        "--out",
        "/tmp/x",
        "--steps",
        "None",
        "--learning-rate",
        "1e-3",
        "--shape",
        "8",
        "9",
        "--inner.limit",
        "4",
        "--inner.no-shuffle",
    ],
    "empty and none": ["--name", "c", "--hidden", "--cases", "None", "--inner.widths", "2"],
    "last bool flag wins": ["--name", "d", "--quick", "--no-quick", "--no-compile", "--compile"],
}
_EXPECTED = {
    "defaults": _Config("a"),
    "every kind": _Config(
        "b",
        device="gpu",
        quick=True,
        compile=False,
        hidden=(3, 4, 5),
        cases=("mlp", "lstm"),
        seeds=[1, 2],
        out=Path("/tmp/x"),
        steps=None,
        learning_rate=1e-3,
        shape=(8, 9),
        inner=_Inner(widths=(7,), limit=4, shuffle=False),
    ),
    "empty and none": _Config("c", hidden=(), cases=None, inner=_Inner(widths=(2,))),
    "last bool flag wins": _Config("d"),
}


@pytest.mark.parametrize("case", sorted(_ARGS))
def test_argparse_fallback_builds_what_tyro_builds(case):
    pytest.importorskip("tyro", reason="the comparison needs tyro: pip install -e '.[dev]'")
    args = _ARGS[case]
    tyro_config = cli_config.config_from_args(_Config, args)
    assert tyro_config == _EXPECTED[case]
    assert cli_config.argparse_config(_Config, args) == _EXPECTED[case]


@pytest.mark.parametrize("case", sorted(_EXPECTED))
def test_config_to_args_round_trips_through_both_parsers(case):
    config = _EXPECTED[case]
    args = cli_config.config_to_args(config)
    assert cli_config.argparse_config(_Config, args) == config
    if case == "defaults":  # only what differs from a default is written
        assert args == ["--name", "a", "--inner.widths", "7"]
    if case == "every kind":
        assert args[args.index("--hidden") : args.index("--hidden") + 4] == [
            "--hidden",
            "3",
            "4",
            "5",
        ]
        assert "--no-compile" in args and "--inner.no-shuffle" in args
        assert args[args.index("--steps") + 1] == "None"


def test_without_tyro_config_from_args_is_the_argparse_fallback(monkeypatch):
    calls = []
    monkeypatch.setattr(cli_config.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(
        cli_config, "argparse_config", lambda *a: calls.append(a) or _EXPECTED["defaults"]
    )
    assert cli_config.config_from_args(_Config, ["--name", "a"], "text") == _EXPECTED["defaults"]
    assert calls == [(_Config, ["--name", "a"], "text")]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--name", "a", "--colour", "red"], "unrecognized arguments: --colour red"),
        ([], "the following arguments are required: --name"),
        (["--name", "a", "--device", "tpu"], "invalid choice 'tpu' (choose from cpu, gpu)"),
        (["--name", "a", "--steps", "many"], "invalid int value: 'many'"),
        (["--name", "a", "--shape", "1"], "--shape: expected 2 arguments"),
    ],
)
def test_bad_flags_are_usage_errors_that_name_the_flag(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_config.argparse_config(_Config, args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_flag_is_a_usage_error_with_tyro_too():
    pytest.importorskip("tyro", reason="needs tyro: pip install -e '.[dev]'")
    with pytest.raises(SystemExit) as exit_info:
        cli_config.config_from_args(_Config, ["--name", "a", "--colour", "red"])
    assert exit_info.value.code == 2


@dataclasses.dataclass(frozen=True)
class _Checked:
    steps: int = 1

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1; got {self.steps}")


def test_an_invalid_value_is_a_usage_error_on_both_paths(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_config.argparse_config(_Checked, ["--steps", "0"])
    assert exit_info.value.code == 2
    assert "invalid configuration: steps must be >= 1; got 0" in capsys.readouterr().err
    pytest.importorskip("tyro", reason="needs tyro: pip install -e '.[dev]'")
    with pytest.raises(SystemExit) as exit_info:
        cli_config.config_from_args(_Checked, ["--steps", "0"])
    assert exit_info.value.code == 2
    assert "steps must be >= 1; got 0" in capsys.readouterr().err


def test_every_experiment_config_reads_the_same_without_tyro(monkeypatch):
    """parse_config (every experiment's command line) goes through config_from_args: with
    tyro hidden, the argparse fallback builds the same digits Config from the same flags."""
    from test_experiments import load_experiment

    from jaxnets.experiment import parse_config

    digits = load_experiment("digits")
    flags = ["--smoke", "--epochs", "3", "--hidden", "16", "8", "--no-smoke", "--out", "/tmp/r"]
    with_tyro = parse_config(digits.Config, flags)
    monkeypatch.setattr(cli_config.importlib.util, "find_spec", lambda name: None)
    without = parse_config(digits.Config, flags)
    assert without == with_tyro
    assert (without.epochs, without.hidden, without.smoke) == (3, (16, 8), False)

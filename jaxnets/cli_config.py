"""A frozen dataclass from command-line flags: tyro where it is installed, else argparse.

Experiments and benchmarks describe their settings as frozen dataclasses (DESIGN:
"a CLI generated from it"). :func:`config_from_args` builds one from flags with tyro (the
``[dev]`` extra installs it); where tyro cannot be assumed (an accelerator machine with only
jax, flax, optax, torch and pytest) :func:`argparse_config` reads the same flags with argparse,
so a command line means the same dataclass either way. :func:`config_to_args` writes the flags
that rebuild a config, e.g. for a child process.

The flags, as tyro spells them: ``--field-name VALUE`` per field (``_`` becomes ``-``), a field
without a default is required; ``bool``: ``--flag`` / ``--no-flag``; ``tuple[X, ...]`` and
``list[X]``: zero or more values; ``tuple[X, Y]``: exactly that many; ``X | None``: a value or
``None``; ``Literal[...]``: one of the choices; a nested dataclass field ``inner``:
``--inner.field-name``. Values of ``int``, ``float``, ``str``, ``pathlib.Path`` and the like
are converted by calling the type on the text.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["argparse_config", "config_from_args", "config_to_args"]

ConfigT = TypeVar("ConfigT")
_NONE = "None"  # how tyro spells None for an optional field


def config_from_args(
    config_cls: Callable[..., ConfigT],
    args: Sequence[str] | None = None,
    description: str | None = None,
) -> ConfigT:
    """``config_cls`` (a dataclass) from flags ``args`` (None: ``sys.argv[1:]``).

    With tyro installed, ``tyro.cli``; otherwise :func:`argparse_config`, which reads the same
    flags into the same dataclass. Either way an unknown flag, a malformed value or a
    ValueError of the dataclass' ``__post_init__`` (an invalid configuration) exits with status
    2 and a message on stderr (SystemExit); ``--help`` lists every field.
    """
    if importlib.util.find_spec("tyro") is None:
        return argparse_config(config_cls, args, description)
    import tyro

    # tyro reports a ValueError of __post_init__ as a usage error itself
    return tyro.cli(config_cls, args=None if args is None else list(args), description=description)


def _flag(path: str, negate: bool = False) -> str:
    """tyro's flag of a field path: ``inner.some_flag`` -> ``--inner.some-flag`` (negated:
    ``--inner.no-some-flag``)."""
    *outer, name = path.replace("_", "-").split(".")
    return "--" + ".".join([*outer, ("no-" if negate else "") + name])


def _is_optional(hint) -> tuple[bool, Any]:
    """(whether ``hint`` is ``X | None``, X)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(rest) == len(typing.get_args(hint)) - 1 and len(rest) == 1:
            return True, rest[0]
        raise TypeError(f"only `X | None` unions are supported as flags; got {hint}")
    return False, hint


def _converter(hint, optional: bool) -> Callable[[str], Any]:
    """Text -> value of ``hint`` (a scalar type or a Literal); ``"None"`` -> None if optional."""
    if typing.get_origin(hint) is typing.Literal:
        choices = typing.get_args(hint)

        def convert(text: str):
            for choice in choices:
                if str(choice) == text:
                    return choice
            raise argparse.ArgumentTypeError(
                f"invalid choice {text!r} (choose from {', '.join(map(str, choices))})"
            )

    elif hint is bool:

        def convert(text: str):
            if text not in ("True", "False"):
                raise argparse.ArgumentTypeError(f"expected True or False; got {text!r}")
            return text == "True"

    else:
        convert = hint
    if not optional:
        return convert

    def convert_optional(text: str):
        return None if text == _NONE else convert(text)

    # argparse names the type in its error: "invalid int value: 'x'"
    convert_optional.__name__ = getattr(convert, "__name__", "value")
    return convert_optional


def _add_fields(parser: argparse.ArgumentParser, config_cls: type, prefix: str) -> None:
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        if not field.init:
            continue
        optional, hint = _is_optional(hints[field.name])
        flag = _flag(prefix + field.name)
        if dataclasses.is_dataclass(hint):
            _add_fields(parser, hint, f"{prefix}{field.name}.")
            continue
        required = not _has_default(field)
        default = "required" if required else f"default: {_default(field)}"
        kwargs = {"dest": prefix + field.name, "help": f"({default})"}
        if typing.get_origin(hint) is typing.Literal:
            kwargs["metavar"] = "{" + ",".join(map(str, typing.get_args(hint))) + "}"
        origin, items = typing.get_origin(hint), typing.get_args(hint)
        if hint is bool and not optional:
            # as tyro: the last of --flag and --no-flag given wins; without a default, one of
            # them is required
            pair = parser.add_mutually_exclusive_group(required=True) if required else parser
            pair.add_argument(flag, action="store_true", **kwargs)
            pair.add_argument(_flag(prefix + field.name, True), action="store_false", **kwargs)
        elif origin in (tuple, list):
            variable = origin is list or (len(items) == 2 and items[1] is Ellipsis)
            nargs = "*" if variable else len(items)
            if not variable and len(set(items)) > 1:
                raise TypeError(f"{flag}: a fixed tuple needs one item type; got {hint}")
            convert = _converter(items[0], optional)
            parser.add_argument(flag, nargs=nargs, type=convert, required=required, **kwargs)
        else:
            parser.add_argument(flag, type=_converter(hint, optional), required=required, **kwargs)


def _build(config_cls: type, values: dict, prefix: str, base=None):
    """``config_cls`` from parsed ``values`` (a key per given flag, named by its path), the
    fields not given taken from ``base`` (an instance) or else the defaults."""
    hints = typing.get_type_hints(config_cls)
    kwargs = {}
    for field in dataclasses.fields(config_cls):
        if not field.init:
            continue
        key = prefix + field.name
        optional, hint = _is_optional(hints[field.name])
        if dataclasses.is_dataclass(hint):
            if any(k.startswith(key + ".") for k in values):
                inner = getattr(base, field.name) if base is not None else _default(field)
                kwargs[field.name] = _build(hint, values, key + ".", inner)
            continue
        if key not in values:
            continue
        value = values[key]
        if isinstance(value, list):
            # [None] for an optional sequence given as None; else the field's container type
            value = None if optional and value == [None] else typing.get_origin(hint)(value)
        kwargs[field.name] = value
    return config_cls(**kwargs) if base is None else dataclasses.replace(base, **kwargs)


def _has_default(field: dataclasses.Field) -> bool:
    return not (
        field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    )


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    return None if field.default_factory is dataclasses.MISSING else field.default_factory()


def argparse_config(
    config_cls: Callable[..., ConfigT],
    args: Sequence[str] | None = None,
    description: str | None = None,
) -> ConfigT:
    """``config_cls`` from flags ``args`` (None: ``sys.argv[1:]``) read by argparse, for where
    tyro is not installed: the flags of the module docstring, the same dataclass as tyro's.

    An unknown flag, a missing required one, a malformed value or a ValueError of the
    dataclass' ``__post_init__`` exits with status 2 and a usage message (SystemExit), as
    :func:`config_from_args` does with tyro.
    """
    # Flags not given are left out of the namespace (SUPPRESS): they keep the defaults.
    parser = argparse.ArgumentParser(
        description=description or config_cls.__doc__,
        allow_abbrev=False,
        argument_default=argparse.SUPPRESS,
    )
    _add_fields(parser, config_cls, "")
    parsed = parser.parse_args(None if args is None else list(args))
    try:
        return _build(config_cls, vars(parsed), "")
    except ValueError as err:  # raised by the dataclass' __post_init__: an invalid value
        parser.error(f"invalid configuration: {err}")


def config_to_args(config) -> list[str]:
    """The flags that rebuild dataclass ``config`` with :func:`config_from_args`: every field
    without a default or differing from it (sequences as several values, bools as
    ``--flag``/``--no-flag``, None as ``None``, nested dataclasses as ``--inner.field``)."""
    return _to_args(config, "")


def _to_args(config, prefix: str) -> list[str]:
    argv = []
    for field in dataclasses.fields(config):
        if not field.init:
            continue
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            argv += _to_args(value, f"{prefix}{field.name}.")
            continue
        if _has_default(field) and value == _default(field):
            continue
        path = prefix + field.name
        if isinstance(value, bool):
            argv.append(_flag(path, negate=not value))
        elif isinstance(value, tuple | list):
            argv += [_flag(path), *map(str, value)]
        else:
            argv += [_flag(path), _NONE if value is None else str(value)]
    return argv

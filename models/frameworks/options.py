"""Framework hyper-parameters, declared next to each framework: a dataclass ``Options`` on the class,
whose defaults are the published recipe. A field made with ``option(..., help=...)`` is also a
command-line flag, ``--<framework>-<field>`` (e.g. ``--moco-enqueue``); the entry point adds the flags
of every registered framework from these declarations, validation holds each value to the field's
``choices`` and ``check``, and the run builds the chosen framework's options from the parsed arguments.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any, get_type_hints

# (test, what the value must be): e.g. (lambda v: v > 0, "must be positive")
Check = tuple[Callable[[Any], bool], str]


def option(default: Any, help: str | None = None, *, choices: tuple | None = None,
           check: Check | None = None) -> Any:
    """A framework hyper-parameter, as a dataclass field: ``default`` is the published recipe's value;
    with ``help`` it is a flag too. ``choices`` and ``check`` are what a value must satisfy."""
    return field(default=default, metadata={"help": help, "choices": choices, "check": check})


@dataclass
class FrameworkOptions:
    """What every framework's options hold: the projector's shared settings. A framework's own
    ``Options`` subclasses this with its hyper-parameters."""

    proj_hidden: int | None = None  # overrides the projector's hidden width (--proj-hidden)
    imagenet: bool = False  # ImageNet-scale data (SimSiam's projector then has 3 layers)


def flag_dest(framework: str, name: str) -> str:
    """The argparse attribute of a framework's option: ``moco`` + ``enqueue`` -> ``moco_enqueue``."""
    return f"{framework}_{name}"


def flag_name(framework: str, name: str) -> str:
    """The command-line flag of a framework's option: ``moco`` + ``enqueue`` -> ``--moco-enqueue``."""
    return "--" + flag_dest(framework, name).replace("_", "-")


def flag_fields(options: type[FrameworkOptions]) -> list[Field]:
    """The fields of ``options`` that are command-line flags (declared with a help text)."""
    return [f for f in fields(options) if f.metadata.get("help")]


def argparse_kwargs(options: type[FrameworkOptions], f: Field) -> dict[str, Any]:
    """``add_argument`` keywords for the flag of field ``f``: its default, help, choices, and a type
    from its annotation (a bool is a switch)."""
    kind = get_type_hints(options)[f.name]
    kw: dict[str, Any] = {"default": f.default, "help": f.metadata["help"]}
    if kind is bool:
        kw["action"] = "store_true" if not f.default else argparse.BooleanOptionalAction
        return kw
    if kind in (int, float):
        kw["type"] = kind
    if f.metadata.get("choices") is not None:
        kw["choices"] = list(f.metadata["choices"])
    return kw


def check_options(opts: FrameworkOptions, name_of: Callable[[str], str] = str) -> None:
    """ValueError naming (``name_of``) the first field whose value is not one of its ``choices`` or
    fails its ``check``."""
    for f in fields(opts):
        value, choices, check = getattr(opts, f.name), f.metadata.get("choices"), f.metadata.get("check")
        if choices is not None and value not in choices:
            raise ValueError(f"{name_of(f.name)} must be one of {tuple(choices)}, got {value!r}")
        if check is not None and not check[0](value):
            raise ValueError(f"{name_of(f.name)} {check[1]}, got {value!r}")


def options_from_args(options: type[FrameworkOptions], framework: str, args: Mapping[str, Any],
                      **shared: Any) -> FrameworkOptions:
    """``options`` with each flag's value from ``args`` (parsed arguments as a dict) and the ``shared``
    fields; a flag that ``args`` lacks (arguments a checkpoint stored before the flag existed) keeps
    its default, the value such a run trained with."""
    own = {f.name: args.get(flag_dest(framework, f.name), f.default) for f in flag_fields(options)}
    return options(**own, **shared)

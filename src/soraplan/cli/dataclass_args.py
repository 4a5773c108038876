"""Command-line flags generated from a config dataclass, so the flags and the config never drift."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls, helps: dict | None = None,
                            choices: dict | None = None) -> None:
    """``--<field>`` for every field: bools become switches (``--no_<field>`` for those on by default),
    fields without a default are required."""
    helps, choices = helps or {}, choices or {}
    for field in fields(cls):
        flag, help_text = f"--{field.name}", helps.get(field.name)
        required = field.default is MISSING and field.default_factory is MISSING
        annotation = str(field.type)
        if annotation == "bool":
            parser.add_argument(flag, action="store_true", default=field.default, help=help_text)
            if field.default:
                parser.add_argument(f"--no_{field.name}", dest=field.name, action="store_false")
            continue
        kind = float if "float" in annotation else int if "int" in annotation else str
        parser.add_argument(flag, type=kind, required=required, default=None if required else field.default,
                            choices=choices.get(field.name), help=help_text)


def dataclass_from_args(cls, args):
    return cls(**{field.name: getattr(args, field.name) for field in fields(cls)})

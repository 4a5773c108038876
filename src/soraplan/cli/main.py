"""Entry point of the ``soraplan`` command: one sub-command per job, each in its own module."""

from __future__ import annotations

import argparse
import os
import sys

from . import data, demo, distill, download, evaluate, inspect, lora, sample, serve, train, train_vae
from ..utils.memory import keep_freed_memory
from .errors import UserError

COMMANDS = (sample, train, distill, lora, demo, evaluate, serve, inspect, train_vae, data, download)


class OneLineErrorParser(argparse.ArgumentParser):
    """Flag mistakes as one line ("soraplan sample: error: ..."), exit status 2, no usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="soraplan", description="Image-to-video generation and training (Open-Sora Plan v1.3 compatible)."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       parser_class=OneLineErrorParser)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line as typed, for the provenance of outputs
    if os.environ.get("SORAPLAN_KEEP_FREED_MEMORY", "0") == "1":
        keep_freed_memory()  # a whole-process choice, made here only on request; see soraplan.utils.memory
    try:
        return args.run(args) or 0
    except UserError as error:
        print(f"soraplan {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"soraplan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

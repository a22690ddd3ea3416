"""The ``latentcam`` command line: parses arguments, calls the public API, writes files.

Each command group lives in its own module with a ``register(subparsers)`` function that
adds its sub-commands; each sub-command's handler takes the parsed ``argparse.Namespace``.
Errors meant for people (:class:`latentcam.errors.LatentcamError`) are printed as one line
and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from latentcam.errors import LatentcamError, one_line

#: Modules under ``latentcam.cli`` that add sub-commands, in the order of ``--help``.
COMMAND_MODULES = (
    "data",
    "train",
    "imports",
    "explain",
    "directions",
    "evaluate",
    "report",
    "sweep",
    "demo",
    "app",
)


class _Parser(argparse.ArgumentParser):
    """argparse that exits with status 2 and one line on bad usage (its default status too;
    argparse alone prints the usage block first)."""

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # argparse drops a "--" value (``--n=--``) and hands the option [] without calling
        # its type; give the type the "--" to refuse, like any other value
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            return self._get_value(action, "--")
        return super()._get_values(action, arg_strings)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="latentcam",
        description=(
            "Train VAEs, conditional VAEs and segmentation VAEs on faces, and explain every "
            "latent unit with Grad-CAM, traversals and interpretability metrics."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"latentcam.cli.{name}")
        except ModuleNotFoundError as err:  # a command group not built yet
            if err.name == f"latentcam.cli.{name}":
                continue
            raise
        module.register(subparsers)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("latentcam")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # Lightning's package logger has its own console handler: do not print its lines twice,
    # and drop its advertisement for a cloud logger.
    logging.getLogger("lightning").propagate = False
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except LatentcamError as err:
        print(f"latentcam {args.command}: error: {one_line(str(err))}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"latentcam {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

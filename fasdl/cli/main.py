"""``fasdl``: the entry point. Each subcommand module has ``register(subparsers)``.

Exit codes: 0 success, 1 runtime failure, 2 bad input (a ValueError naming the field),
3 no plan meets the deadline.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from typing import NoReturn

from fasdl import __version__
from fasdl.errors import FasdlError, PlanInfeasible

SUBCOMMANDS = ["demo", "train", "profile", "fit", "optimize", "smoke"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse already exits 2; add the hint
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n(see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fasdl",
        description="Train deep-learning models on serverless functions that talk through an object store.",
    )
    parser.add_argument("--version", action="version", version=f"fasdl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"fasdl.cli.{name}")
        module.register(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"fasdl: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PlanInfeasible as e:
        print(f"fasdl {args.command}: {e}", file=sys.stderr)
        return 3
    except ValueError as e:  # InvalidInput and other user mistakes
        print(f"fasdl {args.command}: error: {e}", file=sys.stderr)
        return 2
    except FasdlError as e:
        print(f"fasdl {args.command}: failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fasdl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

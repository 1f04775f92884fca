"""``fasdl``: the entry point. Each subcommand module has ``register(subparsers)``.

Exit codes: 0 success, 1 runtime failure (a ``FasdlError``, or any other exception: a fault of
the program, never the user's), 2 bad input (an ``InvalidInput``, naming the flag the user
typed), 3 no plan meets the deadline.

An ``InvalidInput`` names a field by the package's name (``num_aggregators``). Unless a layer
above already renamed it (a payload key), it is shown as the subcommand's flag whose ``dest``
is that field, or the ``dest`` that the subcommand's ``field_dests`` default maps it to
(``{"num_aggregators": "aggregators"}``): ``-K/--aggregators``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
import warnings
from typing import NoReturn, TextIO

from fasdl import __version__
from fasdl.cli.platform_flags import apply_platform_flags
from fasdl.errors import FasdlError, InvalidInput, PlanInfeasible

SUBCOMMANDS = [
    "demo",
    "train",
    "resume",
    "status",
    "report",
    "runs",
    "profile",
    "fit",
    "optimize",
    "smoke",
    "aws",
]


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


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    print(f"fasdl: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        apply_platform_flags(args)
        return int(args.func(args) or 0)
    except PlanInfeasible as e:
        print(f"fasdl {args.command}: {e}", file=sys.stderr)
        return 3
    except InvalidInput as e:  # the user's mistake, and only that
        if e.shown_as == e.field:
            e.named_as(flag_for(parser, args, e.field))
        print(f"fasdl {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (FasdlError, OSError) as e:  # OSError: a file that cannot be read or written
        print(f"fasdl {args.command}: failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fasdl {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a fault of the program (or of a user's model code), not bad input
        traceback.print_exc(file=sys.stderr)
        print(
            f"fasdl {args.command}: internal error: {type(e).__name__}: {e} "
            "(not a mistake in the command: see the traceback above)",
            file=sys.stderr,
        )
        return 1


def flag_for(parser: argparse.ArgumentParser, args: argparse.Namespace, field: str) -> str:
    """The flag of ``args.command`` for the package's ``field``, as ``-K/--aggregators``; the
    field itself when no flag sets it."""
    dest = getattr(args, "field_dests", {}).get(field, field)
    for group in parser._actions:
        if isinstance(group, argparse._SubParsersAction) and args.command in group.choices:
            for action in group.choices[args.command]._actions:
                if action.dest == dest and action.option_strings:
                    return "/".join(sorted(action.option_strings, key=len))
    return field


if __name__ == "__main__":
    sys.exit(main())

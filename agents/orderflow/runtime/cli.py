"""The runtime's command line, ``python -m orderflow.runtime`` (``worker``, ``dlq``,
``streams``), and the pieces an application uses to build its own command.

Why composable: the operator commands belong to the runtime (they know nothing of any
application), while an application's command (orderflow's ``orderflow``) puts its own
subcommands beside them. :func:`build_parser` takes the ``register`` functions of both;
:func:`run` gives every command the same error contract: a failure is one line on stderr
(``<prog> <command>: error: ...``) and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from typing import Any, NoReturn, cast

from pydantic import ValidationError

from orderflow.runtime.commands import COMMANDS, Register
from orderflow.runtime.commands.base import EXIT_FAILED, EXIT_USAGE, CommandError, Subparsers
from orderflow.runtime.commands.base import describe_exception as describe

EXIT_INTERRUPTED = 130
PROG = "python -m orderflow.runtime"


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors that point at the command's ``--help``
    (subcommand parsers are made of the same class, so this holds at every level)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def installed_version(package: str = "orderflow.runtime") -> str:
    """``"<distribution> <version>"`` of the installed distribution holding ``package``.

    Found from the installed metadata, not a constant: ``orderflow`` is a namespace that
    several distributions may share (the runtime could ship on its own), so the one
    whose files hold ``package`` is the answer."""
    top = package.partition(".")[0]
    names = list(dict.fromkeys(metadata.packages_distributions().get(top, [])))
    marker = package.replace(".", "/") + "/__init__.py"

    def holds(name: str) -> bool:
        return any(str(path).endswith(marker) for path in metadata.distribution(name).files or [])

    chosen = next((name for name in names if holds(name)), names[0] if names else None)
    if chosen is None:
        return f"{package} (not installed as a distribution)"
    return f"{chosen} {metadata.version(chosen)}"


class VersionAction(argparse.Action):
    """``--version``: looks the version up only when asked (reading every installed
    distribution's metadata costs more than the rest of a command's start)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        self.describe: Callable[[], str] = kwargs.pop("describe")
        super().__init__(option_strings, dest, nargs=0, help="print the installed version")

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> None:
        print(self.describe())
        parser.exit()


def build_parser(
    *,
    prog: str = PROG,
    description: str = "Faust-style agents on Redis Streams: run a worker, inspect streams, "
    "handle dead letters.",
    version: Callable[[], str] = installed_version,
    commands: Iterable[Register] = COMMANDS,
) -> Parser:
    """The root parser with ``--version`` and one subcommand per ``register`` function."""
    parser = Parser(prog=prog, description=description)
    parser.add_argument("--version", action=VersionAction, describe=version)
    # Subcommand parsers are Parsers too (argparse uses the root's class); the commands'
    # register() functions only need the ArgumentParser side of them.
    subparsers = cast(
        "Subparsers", parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    )
    for register in commands:
        register(subparsers)
    return parser


def settings_error(exc: ValidationError) -> str:
    """A pydantic error in one line: which field(s), what is wrong with the value."""
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or exc.title}: {error['msg']}"
        + (f" (got {error['input']!r})" if isinstance(error.get("input"), str) else "")
        for error in exc.errors()
    )
    return f"invalid {exc.title} (ORDERFLOW_* environment): {problems}"


def fail(prog: str, message: str, code: int) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code


def run(
    build: Callable[[], argparse.ArgumentParser],
    argv: Sequence[str] | None = None,
    *,
    prog: str = PROG,
) -> int:
    """Build the parser, parse ``argv``, run the chosen command; every failure becomes
    one line and an exit code. ``build`` runs in here because importing an application's
    commands may read its settings (a bad ``ORDERFLOW_*`` value is a one-line error too)."""
    try:
        parser = build()
    except ValidationError as exc:
        return fail(prog, settings_error(exc), EXIT_USAGE)
    args = parser.parse_args(argv)
    prog = f"{parser.prog} {args.command}"
    try:
        return int(args.func(args))
    except CommandError as exc:
        return fail(prog, str(exc), exc.code)
    except ValidationError as exc:
        return fail(prog, settings_error(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug or an unforeseen failure: still one line, with where
        return fail(prog, f"unexpected {describe(exc)}", EXIT_FAILED)


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())

"""The ``orderflow`` command: the runtime's commands plus the ordering system's own.

``worker``, ``dlq`` and ``streams`` come from the runtime (:mod:`orderflow.runtime.commands`,
also runnable as ``python -m orderflow.runtime``); ``demo``, ``refill``, ``seed`` and
``api`` are this application's, one module each under ``orderflow.agents.commands`` with
the same ``register(subparsers)`` convention. The runtime's :func:`~orderflow.runtime.cli.run`
gives all of them one ``--version``, ``--help`` at every level and one-line errors.
Every command module is imported outright: a broken one fails the command loudly.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from orderflow.runtime import cli as runtime_cli
from orderflow.runtime.commands import COMMANDS as RUNTIME_COMMANDS
from orderflow.runtime.commands import Register

PROG = "orderflow"


def application_commands() -> tuple[Register, ...]:
    """The ordering system's commands. Imported when the parser is built, not when this
    module is: importing them builds the services' Apps, which read the settings, and a
    bad ``ORDERFLOW_*`` value must come out of :func:`main` as one line."""
    from orderflow.agents.commands import api, demo, refill, seed

    return (demo.register, refill.register, seed.register, api.register)


def version() -> str:
    return runtime_cli.installed_version("orderflow.agents")


def build_parser() -> runtime_cli.Parser:
    return runtime_cli.build_parser(
        prog=PROG,
        description="Faust-style agents on Redis Streams, and the orderflow ordering system.",
        version=version,
        commands=(*RUNTIME_COMMANDS, *application_commands()),
    )


def main(argv: Sequence[str] | None = None) -> int:
    return runtime_cli.run(build_parser, argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())

"""The ``orderflow`` command: one entry point, one module per subcommand.

Each module under ``orderflow.agents.commands`` exposes ``register(subparsers)`` which
adds its parser and sets ``func`` (a callable taking the parsed namespace and
returning an exit code). Keeping the wiring here and the work there lets every
command be read, tested and documented on its own.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = ("worker", "dlq", "streams", "demo", "refill", "seed", "api")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orderflow",
        description="Faust-style agents on Redis Streams, and the orderflow ordering system.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"orderflow.agents.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"orderflow.agents.commands.{name}":
                raise
            continue  # command not built yet in this checkout
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

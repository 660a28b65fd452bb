"""The runtime's operator commands: ``worker``, ``dlq`` and ``streams``.

Each module exposes ``register(subparsers)``, which adds its parser and sets ``func`` (a
callable taking the parsed namespace and returning an exit code, or raising
:class:`~orderflow.runtime.commands.base.CommandError`). They belong to the runtime, not
to any application built on it: they know an App only through ``MODULE:APP`` and Redis
only through its URL. :mod:`orderflow.runtime.cli` runs them as ``python -m
orderflow.runtime``; an application's own command adds :data:`COMMANDS` beside its own.
"""

from __future__ import annotations

from orderflow.runtime.commands import dlq, streams, worker
from orderflow.runtime.commands.base import Register

COMMANDS: tuple[Register, ...] = (worker.register, dlq.register, streams.register)

__all__ = ["COMMANDS", "Register"]

"""Lifecycle hooks of an App: ``on_startup``, ``on_shutdown``, ``on_error``.

Why hooks instead of subclassing ``App``: what a service needs around its agents (open
a store before the first event, close it after the last handler returned, report
failures to an error tracker) composes; subclasses overriding ``start``/``stop`` do
not, and get the ordering subtly wrong (a store closed while a handler still runs).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from orderflow.runtime.event import Event

log = logging.getLogger("orderflow.app")

Hook = Callable[[], Awaitable[Any]]
ErrorHook = Callable[[BaseException, Event[Any] | None], Awaitable[Any]]
H = TypeVar("H", bound=Hook)
EH = TypeVar("EH", bound=ErrorHook)


class Hooks:
    """The hook registry an App inherits (``name`` labels its log lines)."""

    name: str

    def __init__(self) -> None:
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []
        self.error_hooks: list[ErrorHook] = []

    def on_startup(self, fun: H) -> H:
        """Decorator: ``await fun()`` after connecting, before any agent or timer starts.
        Hooks run in declaration order; one that raises makes ``start()`` fail (fail fast:
        a worker whose store is unreachable should not consume)."""
        self.startup_hooks.append(fun)
        return fun

    def on_shutdown(self, fun: H) -> H:
        """Decorator: ``await fun()`` after every agent and timer has stopped, in reverse
        declaration order. Every hook runs even if an earlier one raised."""
        self.shutdown_hooks.append(fun)
        return fun

    def on_error(self, fun: EH) -> EH:
        """Decorator: ``await fun(exc, event)`` when a handler raises on ``event`` (before
        it is retried or dead-lettered) or a timer raises (``event`` is ``None``). For
        reporting (e.g. an error tracker); the runtime's own policy still applies."""
        self.error_hooks.append(fun)
        return fun

    async def run_startup_hooks(self) -> None:
        for hook in self.startup_hooks:
            await hook()

    async def run_shutdown_hooks(self) -> None:
        for hook in reversed(self.shutdown_hooks):
            try:
                await hook()
            except Exception:
                log.exception("app %s: on_shutdown hook %r failed", self.name, hook)

    async def report_error(self, exc: BaseException, event: Event[Any] | None = None) -> None:
        """Call the ``on_error`` hooks; a hook that raises is logged, never propagated."""
        for hook in self.error_hooks:
            try:
                await hook(exc, event)
            except Exception:
                log.exception("app %s: on_error hook %r failed", self.name, hook)

"""The correlation scope of ONE event of a ``take_events`` list, while it is handled.

Why a scope per event: a body that handles the events of a list concurrently (one
task per order, say) cannot use the stream as its scope, because the stream names one
event at a time (for a list: the whole list, whose derived send ids differ from the
ids a one-at-a-time handling would make). ``with stream.handling(event):`` sets this
scope for the block in the calling task only (a ``ContextVar``), so sends made there
-- also envelopes a store builds in its thread, which copies the caller's context --
get this event's correlation id, name it as their cause, and get the derived ids
``uuid5(<group>/<agent>, <event id>, <ordinal>)`` of :mod:`orderflow.runtime.send_ids`:
exactly the ids handling the event on its own would make. So a retried event (its
list failed, or it failed alone and comes back by itself) re-sends the same ids and
downstream dedupe drops the copies.
"""

from __future__ import annotations

from typing import Any

from orderflow.runtime.event import Event
from orderflow.runtime.send_ids import derived_event_id


class EventScope:
    """A :class:`~orderflow.runtime.context.Scope` for one event (see the module doc)."""

    __slots__ = ("_event", "_handler", "_sends")

    def __init__(self, event: Event[Any], handler: str) -> None:
        self._event = event
        self._handler = handler
        self._sends = 0

    @property
    def event(self) -> Event[Any]:
        return self._event

    @property
    def correlation_id(self) -> str | None:
        return self._event.correlation_id

    @property
    def child_causation_id(self) -> str | None:
        return self._event.event_id

    @property
    def event_id(self) -> str | None:
        return self._event.event_id

    @property
    def event_type(self) -> str | None:
        return self._event.event_type

    def child_event_id(self) -> str | None:
        ordinal = self._sends
        self._sends = ordinal + 1
        return derived_event_id(self._handler, [self._event.event_id], ordinal)

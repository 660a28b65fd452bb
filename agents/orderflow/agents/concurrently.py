"""Handling the events that have already arrived together: concurrently across orders,
in stream order within one, and their outbox published in ONE round trip.

Why: an agent that handles one event at a time pays one store transaction and one
Redis round trip per event, strictly one after another, while the events the consumer
already read (``XREADGROUP COUNT 100``) wait. Handed a ``stream.take_events`` list,
:func:`handle_concurrently` starts the handlers of different orders at once, so their
store writes are in flight together (the SQLite writer can commit what is queued in one
transaction, a PostgreSQL pool runs them in parallel), and :func:`handle_and_publish`
then publishes every resulting outbox message with one ``send_envelopes`` pipeline.
At low load a list is one event and this is exactly the one-at-a-time path.

The guarantees of one-at-a-time handling hold:

* **Order within a key.** Events of one key (the order id) run one after another in
  list order, so ``preparing`` is never applied before ``confirmed`` (the status is
  monotonic: the late ``confirmed`` would be dropped as stale). Their outbox messages
  are published in that order too.
* **Failure isolation.** An event whose handler raises is failed alone
  (``stream.fail``: retried after its back-off, dead-lettered after
  ``max_deliveries``); the others of the list are acked. The next event of the same
  key still runs, as it would if the events were handled one at a time.
* **Nothing acked before its effects are committed and published.** The list is
  acked when the body asks for the next one, after the publish. A publish that fails
  raises, so the whole list is failed and retried (handlers are idempotent: a
  committed change comes back as stale and its outbox rows are left to the relay).
* **Send ids.** Each handler runs in ``stream.handling(event)``: outbox envelopes
  get the ids, correlation and cause that handling the event alone would give them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from orderflow.agents.outbox import publish_outbox
from orderflow.agents.publish_marks import PublishedMarks
from orderflow.models.store import OutboxMessage, Store
from orderflow.runtime import App, Event, Record, Stream

T = TypeVar("T", bound=Record)
R = TypeVar("R")

KeyOf = Callable[[Event[T]], str | None]
"""What orders the events: those with the same key are handled one after another."""


def envelope_key(event: Event[Any]) -> str | None:
    """The envelope's key (the order id, for every stream of the ordering system)."""
    return event.key


_MISSING: Any = object()


async def handle_concurrently(
    stream: Stream[T],
    events: Sequence[Event[T]],
    handler: Callable[[Event[T]], Awaitable[R]],
    *,
    key: KeyOf[T] = envelope_key,
) -> list[R]:
    """Run ``handler`` on each event of ``events`` (a ``stream.take_events`` list):
    events of one ``key`` one after another in list order, different keys concurrently
    (events without a key each on their own). Returns the results in list order, without
    those of the events that failed (each failed alone through ``stream.fail``)."""
    chains: dict[str, list[int]] = {}
    for position, event in enumerate(events):
        chains.setdefault(key(event) or f"\0{event.event_id}", []).append(position)
    results: list[R] = [_MISSING] * len(events)

    async def run_chain(positions: list[int]) -> None:
        for position in positions:
            event = events[position]
            try:
                with stream.handling(event):
                    results[position] = await handler(event)
            except Exception as exc:
                await stream.fail(event, exc)

    if len(chains) == 1:  # one order (always so at low load): no task to create
        [positions] = chains.values()
        await run_chain(positions)
    else:
        try:
            # One task per key (each with its own context: its own scope, its own span).
            # A TaskGroup, not gather: should stream.fail itself raise, the other chains
            # are cancelled before the body fails the list, never left running.
            async with asyncio.TaskGroup() as group:
                for positions in chains.values():
                    group.create_task(run_chain(positions))
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
    return [result for result in results if result is not _MISSING]


async def handle_and_publish(
    app: App,
    store: Store,
    stream: Stream[T],
    events: Sequence[Event[T]],
    handler: Callable[[Event[T]], Awaitable[Sequence[OutboxMessage]]],
    *,
    key: KeyOf[T] = envelope_key,
    marks: PublishedMarks | None = None,
) -> int:
    """:func:`handle_concurrently`, each handler returning the outbox rows it committed,
    then all of them published in one round trip (in list order), their "published"
    marks handed to ``marks`` (see :func:`~orderflow.agents.outbox.publish_outbox`);
    returns how many entries were appended."""
    outboxes = await handle_concurrently(stream, events, handler, key=key)
    messages = [message for rows in outboxes for message in rows]
    return await publish_outbox(app, store, messages, marks=marks)

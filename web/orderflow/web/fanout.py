"""Fan-out of order and delivery updates to the WebSocket clients of one process.

Why no consumer group: with a shared group, Redis hands each entry to ONE consumer,
so a client connected to gateway replica B would miss the updates that replica A
happened to read. Here every gateway process follows ``orders-stream`` and
``deliveries-stream`` in full with the runtime's group-less reader
(:meth:`App.follow <orderflow.runtime.App.follow>`: plain ``XREAD BLOCK``, its own
cursor and connection, reconnects with back-off) and forwards each update to the
sockets of this process that track that order.

One reader per process, whatever the number of sockets: a socket only owns an
in-memory queue (:class:`Subscription`), so 10,000 open sockets cost 10,000 queues and
still one Redis read at a time.

Order across the two streams (a client must see an order's and its delivery's updates in
publication order):

- single Redis server: ONE :class:`~orderflow.runtime.MultiFollower`
  (``app.follow_many``) reads both streams, and all their partitions, with one
  ``XREAD``; one reply holds everything appended up to that moment, sorted by entry
  time, and is handed out at once. No wait is added to any update.
- Redis Cluster: the streams live on different slots, so one ``XREAD`` over both fails
  (``CROSSSLOT``), and on different masters, whose clocks give ids that cannot be
  compared to the millisecond. There one follower per stream runs, and updates are held
  ``reorder_window`` seconds (5 ms) before they are handed out in entry-time order: the
  two followers wake up separately, so without it an order's update could overtake the
  delivery update written just before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from orderflow.agents.topics import DELIVERIES_STREAM, ORDERS_STREAM, declare_topic
from orderflow.models.events import (
    DeliveryCreated,
    DeliveryStatusUpdated,
    OrderCancelled,
    OrderCreated,
    OrderStatusUpdated,
)
from orderflow.runtime import App, MultiFollower, Record, TopicFollower
from orderflow.runtime.connection import is_cluster_url

log = logging.getLogger(__name__)

TRACKED_STREAMS: tuple[str, ...] = (ORDERS_STREAM, DELIVERIES_STREAM)
REORDER_WINDOW = 0.005  # cluster only: seconds an update waits, so an older one can pass

U = TypeVar("U")


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """The order reached ``status`` at ``at``."""

    order_id: str
    status: str
    at: str


@dataclass(frozen=True, slots=True)
class DeliveryUpdate:
    """The delivery of an order reached ``status``; ``created`` marks its first event."""

    order_id: str
    delivery_id: str
    status: str
    at: str
    created: bool = False


Update = OrderUpdate | DeliveryUpdate


def update_from(value: Record) -> Update | None:
    """The update a tracking event carries, or ``None`` for any other record.

    The followers already decoded and validated the entry with the runtime's record
    registry; what is not one of the four tracking events never reaches a browser.
    """
    if isinstance(value, OrderCreated):
        return OrderUpdate(value.order_id, value.status, value.created_at)
    if isinstance(value, OrderStatusUpdated | OrderCancelled):
        return OrderUpdate(value.order_id, value.status, value.at)
    if isinstance(value, DeliveryCreated):
        return DeliveryUpdate(
            value.order_id, value.delivery_id, value.status, value.created_at, created=True
        )
    if isinstance(value, DeliveryStatusUpdated):
        return DeliveryUpdate(value.order_id, value.delivery_id, value.status, value.at)
    return None


class Subscription:
    """The updates of one order for one socket, buffered up to ``limit``.

    A socket that cannot keep up (its queue reaches ``limit``) is marked
    ``overflowed`` and receives ``None``: it should close, and the client
    reconnects and gets a fresh snapshot, rather than the process buffering
    without bound.
    """

    def __init__(self, order_id: str, limit: int) -> None:
        self.order_id = order_id
        self.limit = limit
        self.queue: asyncio.Queue[Update | None] = asyncio.Queue()
        self.overflowed = False

    def offer(self, update: Update) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= self.limit:
            self.overflowed = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(update)

    async def get(self) -> Update | None:
        return await self.queue.get()

    def drain(self) -> list[Update | None]:
        """Everything already queued, without waiting."""
        items: list[Update | None] = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items


class TrackingHub:
    """This process's followers of the tracked streams, dispatching to subscriptions.

    ``app`` is a follower-only App (never started: following needs only its
    connection); the hub declares each stream on it with the records the ordering
    system publishes there (:func:`declare_topic`), so anything else on the streams is
    skipped by the followers. A hub runs once: after :meth:`stop` it is done.
    ``windowed`` is True on a cluster (``redis+cluster://``): one follower per stream
    and the ``reorder_window`` hold; on one server one ordered reader and no hold.
    """

    def __init__(
        self,
        app: App,
        streams: Sequence[str] = TRACKED_STREAMS,
        *,
        queue_limit: int = 1000,
        reorder_window: float = REORDER_WINDOW,
    ) -> None:
        self.app = app
        self.queue_limit = queue_limit
        self.reorder_window = reorder_window
        topics = [declare_topic(app, stream) for stream in streams]
        # One ordered read of every stream where the server allows it (see the module).
        self.windowed = is_cluster_url(app.url)
        self._followers: list[TopicFollower[Any] | MultiFollower] = (
            [app.follow(topic) for topic in topics] if self.windowed
            else [app.follow_many(topics)]
        )  # fmt: skip
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._held: list[tuple[bytes, Update]] = []
        self._flush_at: asyncio.TimerHandle | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False

    # -- subscriptions -------------------------------------------------------

    @contextlib.contextmanager
    def subscribe(self, order_id: str) -> Iterator[Subscription]:
        """Receive the updates of ``order_id`` while the ``with`` block runs."""
        subscription = Subscription(order_id, self.queue_limit)
        self._subscriptions.setdefault(order_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._subscriptions.get(order_id)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscriptions[order_id]

    @property
    def subscription_count(self) -> int:
        return sum(len(subscribers) for subscribers in self._subscriptions.values())

    def dispatch(self, update: Update) -> int:
        """Hand ``update`` to every subscription of its order; returns how many got it."""
        subscribers = self._subscriptions.get(update.order_id)
        if not subscribers:
            return 0
        for subscription in tuple(subscribers):
            subscription.offer(update)
        return len(subscribers)

    # -- lifecycle -----------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once every follower's cursor is fixed: updates from then on are delivered."""
        return all(follower.ready for follower in self._followers)

    async def wait_ready(self, within: float) -> bool:
        """Wait up to ``within`` seconds for the cursors; False if Redis is still unreachable."""
        return await followers_ready(self._followers, within)

    def start(self) -> None:
        """Start one task per follower (it resolves its cursors, then reads)."""
        if self._stopped:
            raise RuntimeError("a stopped TrackingHub cannot be started again")
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._follow(f), name=f"orderflow-tracking:{f.stream}")
                for f in self._followers
            ]

    async def stop(self, grace: float = 2.0) -> None:
        """Stop the followers (at once, also mid-read) and close their connections.

        ``grace`` only bounds the wait for their tasks: a server shutdown never hangs
        on the fan-out; a task still running after it is cancelled with a warning.
        """
        self._stopped = True
        for follower in self._followers:
            follower.stop()
        tasks, self._tasks = self._tasks, []
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                log.warning("tracking fan-out %s did not stop within %.1fs", task.get_name(), grace)
                task.cancel()
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.warning("tracking fan-out %s ended with %r", task.get_name(),
                                task.exception())  # fmt: skip
        for follower in self._followers:
            await follower.aclose()
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        self._held.clear()

    # -- reading -------------------------------------------------------------

    async def _follow(self, follower: TopicFollower[Any] | MultiFollower) -> None:
        """Hand each update out as it comes (one ordered reader), or hold it (cluster)."""
        async for event in follower:  # never raises: the follower reconnects by itself
            update = update_from(event.value)
            if update is not None:
                if self.windowed:
                    self._hold(event.entry_id, update)
                else:
                    self.dispatch(update)

    def _hold(self, entry_id: bytes, update: Update) -> None:
        """Queue ``update``; the first one held schedules the hand-out (see the module)."""
        self._held.append((entry_id, update))
        if self._flush_at is None:
            loop = asyncio.get_running_loop()
            self._flush_at = loop.call_later(self.reorder_window, self._flush)

    def _flush(self) -> None:
        self._flush_at = None
        held, self._held = self._held, []
        for _, update in in_time_order(held):
            self.dispatch(update)


async def followers_ready(
    followers: Iterable[TopicFollower[Any] | MultiFollower], within: float
) -> bool:
    """Wait up to ``within`` seconds in all for every follower's cursor; False if not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    for follower in followers:
        if not await follower.wait_ready(max(0.0, deadline - loop.time())):
            return False
    return True


def in_time_order(held: Iterable[tuple[bytes, U]]) -> list[tuple[bytes, U]]:
    """Updates of both streams, interleaved by entry time.

    Entry ids start with the server's clock in milliseconds, so a stable sort on that
    part puts an order's and its delivery's events back in publication order across
    streams (within one millisecond the per-stream order is kept, which is all Redis
    can tell).
    """
    return sorted(held, key=lambda entry: int(entry[0].split(b"-", 1)[0]))

"""Live stock for every open page of one gateway process, at the cost of one menu read.

Where stock changes: placing an order reserves it (``order.created.v1`` on
``orders-stream``), a refill or the ops console's set-stock sets it
(``stock.changed.v1`` on ``menu-stream``, :mod:`orderflow.agents.stock_events`);
cancellations do not exist yet. The hub follows both streams with the runtime's
group-less reader (every gateway process sees every entry, like the tracking hub)
and, on any of those events, reads the menu ONCE for the whole process and hands the
new absolute levels to every subscription.

Why absolute levels and a re-read, not deltas: a page that missed a message is healed
by the next one, a page's first message is the cached levels (no read per page), and
a late or repeated event can only cause a re-read, never a wrong number.

Reads are coalesced: events that arrive while a read runs cause one more read, and two
reads are at least ``min_interval`` apart, so a burst of orders costs one read per
interval per process whatever the number of pages. The followers are paced the same
way (``min_read_interval``): a change is noticed no later than the coalesced read would
have happened anyway, and what arrived meanwhile comes in one ``XREAD`` reply instead
of one round trip per entry -- on ``orders-stream`` up to one per status change of
every order: pacing took 1.4 to 4.4 ``XREAD`` replies per order off the API process
(docs/benchmarks.md, "API CPU per order"). A subscription holds only the latest levels
(a slot, not a queue): a slow page skips intermediate levels, it never makes the
process buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from orderflow.agents.topics import MENU_STREAM, ORDERS_STREAM, declare_topic
from orderflow.models.documents import MenuItem
from orderflow.models.events import OrderCreated, StockChanged
from orderflow.runtime import App, TopicFollower
from orderflow.web.fanout import followers_ready
from orderflow.web.metrics import MENU_READS

log = logging.getLogger(__name__)

READ_RETRY_SECONDS = 1.0  # after a failed menu read (store down), the next attempt

StockLevels = dict[str, int]


class StockSubscription:
    """The latest stock levels for one page; each :meth:`next` returns newer ones."""

    def __init__(self) -> None:
        self._latest: StockLevels | None = None
        self._changed = asyncio.Event()

    def offer(self, levels: StockLevels) -> None:
        self._latest = levels
        self._changed.set()

    async def next(self) -> StockLevels:
        await self._changed.wait()
        self._changed.clear()
        assert self._latest is not None  # set before the event
        return self._latest


class MenuHub:
    """This process's followers of the stock events and its one cached menu read."""

    def __init__(
        self,
        app: App,
        read_menu: Callable[[], Awaitable[list[MenuItem]]],
        *,
        min_interval: float = 0.25,
    ) -> None:
        self.app = app
        self.read_menu = read_menu
        self.min_interval = min_interval
        self.levels: StockLevels | None = None
        self.reads = 0
        # Paced like the reads they cause: entries that arrive between two menu reads
        # come in one XREAD reply, not one round trip each (see the module).
        self._followers: list[TopicFollower[Any]] = [
            app.follow(declare_topic(app, stream), min_read_interval=min_interval)
            for stream in (ORDERS_STREAM, MENU_STREAM)
        ]
        self._subscriptions: set[StockSubscription] = set()
        self._dirty = False
        self._last_read = float("-inf")
        self._refresher: asyncio.Task[None] | None = None
        self._reading = False  # set once the cursors are fixed and the first read starts
        self._tasks: list[asyncio.Task[None]] = []

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[StockSubscription]:
        """Receive the levels while the ``with`` block runs (the cached ones at once)."""
        subscription = StockSubscription()
        self._subscriptions.add(subscription)
        if self.levels is not None:
            subscription.offer(self.levels)
        elif self._reading and (self._refresher is None or self._refresher.done()):
            self.refresh()  # no levels and no read under way (the store was down): read
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    @property
    def subscription_count(self) -> int:
        return len(self._subscriptions)

    async def wait_ready(self, within: float) -> bool:
        """Wait up to ``within`` seconds for the followers' cursors."""
        return await followers_ready(self._followers, within)

    def start(self) -> None:
        """Follow the streams, then read the levels once (after the cursors are fixed,
        so no change falls between the read and the first followed entry)."""
        self._tasks = [
            asyncio.create_task(self._follow(f), name=f"orderflow-menu:follow:{f.stream}")
            for f in self._followers
        ]
        self._tasks.append(asyncio.create_task(self._first_read(), name="orderflow-menu:read"))

    async def stop(self, grace: float = 2.0) -> None:
        """Stop following and reading, at once; closes the followers' connections."""
        for follower in self._followers:
            follower.stop()
        tasks = [*self._tasks, *([self._refresher] if self._refresher is not None else [])]
        self._tasks, self._refresher = [], None
        for task in tasks:
            if not task.get_name().startswith("orderflow-menu:follow"):
                task.cancel()  # a read or a wait; the followers end by themselves
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
        for follower in self._followers:
            await follower.aclose()

    def refresh(self) -> None:
        """Read the levels again soon (coalesced, see the module) and hand them out."""
        self._dirty = True
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.create_task(self._refresh(), name="orderflow-menu:refresh")

    async def _first_read(self) -> None:
        while not await self.wait_ready(10.0):
            pass
        self._reading = True
        self.refresh()

    async def _follow(self, follower: TopicFollower[Any]) -> None:
        async for event in follower:  # never raises: the follower reconnects by itself
            if isinstance(event.value, OrderCreated | StockChanged):
                self.refresh()

    async def _refresh(self) -> None:
        loop = asyncio.get_running_loop()
        while self._dirty:
            wait = self._last_read + self.min_interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._dirty = False
            self._last_read = loop.time()
            try:
                items = await self.read_menu()
            except Exception as exc:  # store down: keep the old levels, try again later
                log.warning("menu read for the stock fan-out failed: %s", exc)
                self._dirty = True
                await asyncio.sleep(READ_RETRY_SECONDS)
                continue
            self.reads += 1
            MENU_READS.inc()
            levels = {item.id: item.stock for item in items}
            if levels != self.levels:
                self.levels = levels
                for subscription in tuple(self._subscriptions):
                    subscription.offer(levels)

"""The store contract: one interface, three adapters (SQLite embedded; PostgreSQL, MongoDB).

Every adapter passes the same contract suite (``tests/store``). The promises:

* ``place_order`` is one transaction: stock of every line is checked and
  decremented, the order is inserted and the outgoing events go to the outbox
  -- all or nothing. Concurrent buyers of the last items never oversell.
* Status updates are monotonic: a stale or repeated status returns
  ``StatusChange(changed=False)``, changes nothing and writes no outbox row.
* ``cancel_order`` is one transaction, and ``cancelled`` is terminal: see
  :mod:`orderflow.models.store.cancellation`.
* ``create_delivery`` is idempotent per order, and returns the order's ``Customer``
  (``recipient``) read in the same transaction: the one way personal data leaves
  the store for a service -- events never carry it.
* Every write that emits events returns the outbox rows it committed
  (``.outbox`` of its result), for the caller to publish at once; rows a crash left
  unpublished are found by ``outbox_pending`` (the relay).
* An ``idempotency_key`` makes a retried ``place_order`` return the first
  order without reserving stock again.
* ``prune_outbox`` deletes only rows published long enough ago, never pending ones.
* Every operation finishes within a deadline (the caller's, set with
  ``deadline.within(seconds)``, or the store's own budget from ``open_store``):
  past it the operation raises ``DeadlineExceeded`` (a ``StoreUnavailable``), and
  a write that raised it was abandoned -- nothing of it is committed, then or
  later. A write whose caller is cancelled is abandoned the same way, unless
  its commit had already begun.
* Concurrent writes may share one commit (SQLite's group commit; PostgreSQL's, of
  orders); each keeps its own all-or-nothing: a write that fails or is abandoned
  leaves nothing, the others commit, and a shared commit that fails fails every
  write in it.
* ``wait_for_outbox`` lets the relay sleep until outbox rows are committed, where
  the store can tell (PostgreSQL: ``LISTEN/NOTIFY``); elsewhere it is a plain sleep
  and the relay polls.

Open one with :func:`open_store` (``sqlite:///path.db``, ``postgresql://...`` or
``mongodb://...``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, runtime_checkable
from urllib.parse import urlsplit

from orderflow.models.documents import (
    Customer,
    Delivery,
    DeliveryStatusChange,
    MenuItem,
    Order,
    OrderLine,
    OrderLineRequest,
    OrderStatusChange,
    utc_now,
)
from orderflow.models.store.cancellation import (
    CancelEvents,
    Cancellation,
    CancelResult,
    no_cancel_events,
)
from orderflow.models.store.deadline import DEFAULT_DEADLINE_SECONDS, DeadlineExceeded
from orderflow.models.store.errors import (
    DeliveryNotFound,
    IdempotencyKeyReused,
    NotCancellable,
    OrderNotFound,
    OutcomeUnknown,
    OutOfStock,
    StoreError,
    StoreUnavailable,
    UnknownItem,
)
from orderflow.models.store.outbox import OutboxMessage
from orderflow.models.store.recent import MAX_RECENT_ORDERS, check_recent_limit
from orderflow.models.store.stock_checks import check_stock, out_of_stock, wanted_quantities


@dataclass(frozen=True, slots=True)
class PlaceOrderResult:
    """What ``place_order`` returns.

    ``outbox`` holds the messages this call wrote (publish them now); it is
    empty when ``replayed`` is true (the first call wrote and published them).
    """

    order: Order
    outbox: list[OutboxMessage] = field(default_factory=list)
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class StatusTransition:
    """A status change the store is about to commit; given to event factories.

    ``entity_id`` is the order id for orders and the delivery id for deliveries;
    ``simulate`` is the order's flag (for a delivery too), read in the same
    transaction, so the events can tell the stateless simulator whether to go on.
    """

    entity_id: str
    order_id: str
    previous: str
    status: str
    at: str
    simulate: bool = True


@dataclass(frozen=True, slots=True)
class StatusChange:
    """What a status update did. ``changed`` is ``False`` for a stale or repeated status
    (nothing written, ``outbox`` empty); otherwise ``outbox`` holds the rows committed.
    ``cancelled``: the order is cancelled, so the status was dropped (callers count it)."""

    changed: bool
    outbox: list[OutboxMessage] = field(default_factory=list)
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What ``create_delivery`` did: ``created`` is ``False`` when the order already had
    its delivery (returned as is, ``outbox`` empty). ``recipient`` is the order's customer
    (``None`` if it was placed without one): what the courier needs, read from the store."""

    delivery: Delivery
    created: bool
    outbox: list[OutboxMessage] = field(default_factory=list)
    recipient: Customer | None = field(default=None, repr=False)


OrderEvents: TypeAlias = Callable[[Order], Sequence[OutboxMessage]]
DeliveryEvents: TypeAlias = Callable[[Delivery], Sequence[OutboxMessage]]
TransitionEvents: TypeAlias = Callable[[StatusTransition], Sequence[OutboxMessage]]
"""Factories of outbox messages, called inside the transaction (only there are the new
order, the new delivery or the ``previous`` status known). A store may call one more
than once when it retries its transaction: it must only build messages."""


def no_events(_subject: object) -> list[OutboxMessage]:
    """The factory for a write that emits nothing (tools, tests)."""
    return []


# Shared by adapters: the parts of the contract that do not depend on the backend
# (the stock checks: :mod:`orderflow.models.store.stock_checks`).


def new_order(
    lines: Sequence[OrderLineRequest],
    items: Mapping[str, Any],
    *,
    simulate: bool = True,
    customer: Customer | None = None,
) -> Order:
    """A ``created`` order with the names and prices of ``items`` at this moment."""
    order_lines = []
    for line in lines:
        item = items[line.item_id]
        order_lines.append(
            OrderLine(
                item_id=line.item_id,
                name=item["name"],
                quantity=line.quantity,
                unit_price=int(item["price"]),
            )
        )
    now = utc_now()
    return Order(
        id=uuid.uuid4().hex,
        lines=order_lines,
        total=sum(line.quantity * line.unit_price for line in order_lines),
        status="created",
        history=[OrderStatusChange(status="created", at=now)],
        created_at=now,
        updated_at=now,
        simulate=simulate,
        customer=customer,
    )


def new_delivery(order_id: str) -> Delivery:
    """A ``waiting`` delivery for ``order_id``."""
    now = utc_now()
    return Delivery(
        id=uuid.uuid4().hex,
        order_id=order_id,
        status="waiting",
        history=[DeliveryStatusChange(status="waiting", at=now)],
        created_at=now,
        updated_at=now,
    )


@runtime_checkable
class Store(Protocol):
    """What the services need from persistence. See the module docstring for guarantees."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the store cannot serve requests (readiness probe)."""

    async def seed_menu(self, items: Sequence[MenuItem]) -> int:
        """Insert items that are missing (existing ones keep their stock); return how many."""

    async def list_menu(self) -> list[MenuItem]: ...

    async def set_stock(self, item_id: str, stock: int) -> None:
        """Raise ``UnknownItem`` for a missing item, ``ValueError`` for negative stock."""

    async def refill(self, stock: int | None = None) -> int:
        """Restock every item to its seed level (or to ``stock``); return items touched."""

    async def place_order(
        self,
        lines: Sequence[OrderLineRequest],
        *,
        idempotency_key: str | None,
        request_hash: str | None,
        events: OrderEvents,
        simulate: bool = True,
        customer: Customer | None = None,
    ) -> PlaceOrderResult:
        """Reserve stock, insert the order and its outbox rows in one transaction.

        ``simulate`` and ``customer`` are stored with the order. Raises
        ``UnknownItem``, ``OutOfStock`` (nothing reserved) or
        ``IdempotencyKeyReused``. ``events`` may be called more than once (the
        transaction can be retried); it must only build messages.
        """

    async def get_order(self, order_id: str) -> Order | None:
        """The order with its status history and its delivery (if any)."""

    async def recent_orders(self, limit: int) -> list[Order]:
        """The ``limit`` newest orders (by ``created_at``), newest first, each as
        ``get_order`` returns it: the operator console's list. Raises ``ValueError``
        for a ``limit`` outside 1..``MAX_RECENT_ORDERS``."""

    async def update_order_status(
        self, order_id: str, status: str, at: str, events: TransitionEvents = no_events
    ) -> StatusChange:
        """Apply ``status`` if it is newer, with ``events(transition)`` in the outbox, in one
        transaction. Stale or repeated: ``changed=False``, nothing written; the order is
        cancelled: ``changed=False, cancelled=True``, nothing written.

        Raises ``OrderNotFound``; ``ValueError`` for ``cancelled`` (use ``cancel_order``).
        """

    async def cancel_order(
        self, order_id: str, events: CancelEvents = no_cancel_events
    ) -> CancelResult:
        """Cancel a ``created`` or ``confirmed`` order in one transaction (the rules:
        :mod:`orderflow.models.store.cancellation`). Raises ``OrderNotFound``,
        ``NotCancellable`` (``preparing`` or later: nothing changed)."""

    async def create_delivery(
        self, order_id: str, events: DeliveryEvents = no_events
    ) -> DeliveryResult:
        """Create the order's delivery once, with ``events(delivery)`` in the outbox.
        Raises ``OrderNotFound``."""

    async def update_delivery_status(
        self, delivery_id: str, status: str, at: str, events: TransitionEvents = no_events
    ) -> StatusChange:
        """Like ``update_order_status`` for deliveries. Raises ``DeliveryNotFound``."""

    async def outbox_pending(
        self, limit: int = 100, min_age_seconds: float = 0
    ) -> list[OutboxMessage]:
        """Unpublished rows at least ``min_age_seconds`` old, oldest first."""

    async def mark_published(self, outbox_ids: Sequence[str]) -> None: ...

    async def prune_outbox(self, published_before_seconds: float) -> int:
        """Delete rows published more than ``published_before_seconds`` ago; return how many.

        Unpublished rows are never deleted, whatever their age (the relay still
        owes them a publish). Published rows are only history: the stream holds
        the event and the publish marker dedupes a late re-publish, so keeping
        them forever would just grow the outbox. Raises ``ValueError`` for a
        negative age.
        """

    async def count_orders(self, item_id: str | None = None) -> int:
        """All orders, or the orders with a line for ``item_id``."""

    async def wait_for_outbox(self, timeout: float) -> bool:  # noqa: ASYNC109 - returns False
        """Sleep until outbox rows may be waiting, at most ``timeout`` seconds.

        ``True`` as soon as a transaction that wrote outbox rows has committed (in
        any process) since the previous call; ``False`` when ``timeout`` passed
        without one. It lets the relay wake when there is something to look at
        instead of only polling. An optional capability: a store that cannot be
        told (SQLite, MongoDB) sleeps ``timeout`` and answers ``False``, and the
        relay's periodic poll does the work, as it does for notifications lost
        while a PostgreSQL listener reconnects.
        """


SUPPORTED_SCHEMES = ("sqlite", "postgresql", "postgres", "mongodb", "mongodb+srv")


async def open_store(url: str, *, deadline: float | None = None) -> Store:
    """Open (and create the schema of) the store ``url`` points to.

    ``deadline``: seconds any one operation may take when its caller set no
    deadline of its own (:func:`orderflow.models.store.deadline.within`); past it
    the operation raises ``DeadlineExceeded`` and nothing of it is committed.
    Default: ``DEFAULT_DEADLINE_SECONDS``.

    ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
    ``postgresql://user:pass@host/dbname`` (or ``postgres://``) or
    ``mongodb://host/dbname?replicaSet=rs0`` (database defaults to ``orderflow``).
    The PostgreSQL and MongoDB adapters are imported lazily so that ``asyncpg`` and
    ``pymongo`` stay optional (the ``postgres`` and ``mongo`` extras).
    """
    budget = DEFAULT_DEADLINE_SECONDS if deadline is None else deadline
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        from orderflow.models.store.sqlite import SqliteStore

        return await SqliteStore.open_url(url, deadline=budget)
    if scheme in ("postgresql", "postgres"):
        try:
            from orderflow.models.store.postgres import PostgresStore
        except ModuleNotFoundError as exc:
            if exc.name != "asyncpg":
                raise
            raise StoreUnavailable(
                "a postgresql:// store needs asyncpg: pip install 'orderflow[postgres]'"
            ) from exc
        return await PostgresStore.open_url(url, deadline=budget)
    if scheme in ("mongodb", "mongodb+srv"):
        from orderflow.models.store.mongodb import MongoStore

        return await MongoStore.open_url(url, deadline=budget)
    raise ValueError(
        f"unsupported store URL {url!r}: expected one of {', '.join(SUPPORTED_SCHEMES)}"
    )


@asynccontextmanager
async def opened_store(url: str, *, deadline: float | None = None) -> AsyncIterator[Store]:
    """``open_store`` for one short job (a command, a check): closed on the way out."""
    store = await open_store(url, deadline=deadline)
    try:
        yield store
    finally:
        await store.close()


__all__ = [
    "DEFAULT_DEADLINE_SECONDS",
    "MAX_RECENT_ORDERS",
    "CancelEvents",
    "CancelResult",
    "Cancellation",
    "DeadlineExceeded",
    "DeliveryEvents",
    "DeliveryNotFound",
    "DeliveryResult",
    "IdempotencyKeyReused",
    "NotCancellable",
    "OrderEvents",
    "OrderNotFound",
    "OutOfStock",
    "OutboxMessage",
    "OutcomeUnknown",
    "PlaceOrderResult",
    "StatusChange",
    "StatusTransition",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TransitionEvents",
    "UnknownItem",
    "check_recent_limit",
    "check_stock",
    "new_delivery",
    "new_order",
    "no_cancel_events",
    "no_events",
    "open_store",
    "opened_store",
    "out_of_stock",
    "wanted_quantities",
]

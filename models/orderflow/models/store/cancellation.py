"""The cancel part of the store contract, shared by every adapter.

``Store.cancel_order(order_id, events)`` is ONE transaction that:

* reads the order's status under the write lock (SQLite's ``BEGIN IMMEDIATE``,
  PostgreSQL's row lock, MongoDB's conditional update) -- never before it, so a
  concurrent status update and a cancel are ordered by the store, and exactly one
  of them wins;
* refuses with ``NotCancellable`` (carrying the current status) unless the order is
  ``created`` or ``confirmed``; answers a repeat (already ``cancelled``) with the
  order as it is and ``cancelled=False``, writing nothing (no second stock return);
* otherwise sets ``cancelled`` (appended to the history), gives every line's
  quantity back to its menu item, and writes ``events(cancellation)`` -- the
  ``order.cancelled.v1`` and ``stock.changed.v1`` events -- to the outbox.

Why ``cancelled`` needs no other rule: its rank is above every lifecycle status
(``orderflow.models.documents.ORDER_STATUS_RANKS``), so the monotonic
``update_order_status`` drops every later status of a cancelled order by itself; it
then answers ``StatusChange(changed=False, cancelled=True)`` so the caller can count
the drop. ``update_order_status`` never sets ``cancelled`` itself (``ValueError``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from orderflow.models.documents import CANCELLABLE_STATUSES, CANCELLED, Order, order_status_rank
from orderflow.models.store.errors import NotCancellable
from orderflow.models.store.outbox import OutboxMessage

CANCELLED_RANK = order_status_rank(CANCELLED)
LAST_CANCELLABLE_RANK = max(order_status_rank(status) for status in CANCELLABLE_STATUSES)


@dataclass(frozen=True, slots=True)
class Cancellation:
    """A cancel the store is about to commit; given to the events factory.

    ``returned`` maps each item id to the quantity given back to its stock."""

    order_id: str
    previous: str
    at: str
    returned: Mapping[str, int]
    simulate: bool = True


@dataclass(frozen=True, slots=True)
class CancelResult:
    """What ``cancel_order`` did: ``cancelled`` is ``False`` for a repeat (the order was
    already cancelled: nothing written, ``outbox`` empty). ``order`` is the order as
    stored after the call, so a repeat returns the very same document."""

    order: Order
    cancelled: bool
    outbox: list[OutboxMessage] = field(default_factory=list)


CancelEvents: TypeAlias = Callable[[Cancellation], Sequence[OutboxMessage]]


def must_cancel(order_id: str, status: str) -> bool:
    """Inside the transaction, with ``status`` read under its lock: ``True`` to cancel
    now, ``False`` for a repeat; ``NotCancellable`` once the order is ``preparing``
    or later."""
    if status == CANCELLED:
        return False
    if status not in CANCELLABLE_STATUSES:
        raise NotCancellable(order_id, status)
    return True


def lifecycle_rank(status: str) -> int:
    """The rank of a status ``update_order_status`` may apply: never ``cancelled``."""
    if status == CANCELLED:
        raise ValueError("an order is cancelled with cancel_order, not update_order_status")
    return order_status_rank(status)


def returned_quantities(lines: Sequence[tuple[str, int]]) -> dict[str, int]:
    """Total quantity per item of the order's ``(item_id, quantity)`` lines, in id order
    (the order every adapter takes the items' locks in)."""
    totals: dict[str, int] = {}
    for item_id, quantity in lines:
        totals[item_id] = totals.get(item_id, 0) + quantity
    return dict(sorted(totals.items()))


def no_cancel_events(_cancellation: Cancellation) -> list[OutboxMessage]:
    """The factory for a cancel that emits nothing (tools, tests)."""
    return []


__all__ = [
    "CANCELLED_RANK",
    "LAST_CANCELLABLE_RANK",
    "CancelEvents",
    "CancelResult",
    "Cancellation",
    "NotCancellable",
    "lifecycle_rank",
    "must_cancel",
    "no_cancel_events",
    "returned_quantities",
]

"""Errors every store adapter raises, so callers never catch a driver's exception.

The web layer maps them to problems: ``UnknownItem`` -> 404, ``OutOfStock`` ->
409 (naming the item and what is left), ``IdempotencyKeyReused`` -> 422/409.
"""

from __future__ import annotations

from collections.abc import Iterable


class StoreError(Exception):
    """Base class of every error a store raises on purpose."""


class UnknownItem(StoreError, LookupError):
    """One or more menu item ids do not exist."""

    def __init__(self, item_ids: Iterable[str]) -> None:
        self.item_ids: list[str] = sorted(set(item_ids))
        super().__init__(f"unknown menu item(s): {', '.join(self.item_ids)}")


class OutOfStock(StoreError):
    """A line asks for more than is left; nothing of the order was reserved."""

    def __init__(self, item_id: str, name: str, requested: int, available: int) -> None:
        self.item_id = item_id
        self.name = name
        self.requested = requested
        self.available = available
        super().__init__(
            f"not enough {name!r} ({item_id}): {requested} requested, {available} left"
        )


class IdempotencyKeyReused(StoreError):
    """The same Idempotency-Key came back with a different request body."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"idempotency key {key!r} was already used for a different request")


class OrderNotFound(StoreError, LookupError):
    """A status update or delivery refers to an order the store does not have."""

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        super().__init__(f"order {order_id!r} not found")


class DeliveryNotFound(StoreError, LookupError):
    """A status update refers to a delivery the store does not have."""

    def __init__(self, delivery_id: str) -> None:
        self.delivery_id = delivery_id
        super().__init__(f"delivery {delivery_id!r} not found")


class StoreUnavailable(StoreError):
    """The store cannot serve the request (locked too long, no replica set, unreachable)."""


class OutcomeUnknown(StoreUnavailable):
    """The store was lost while committing: the write may or may not have happened.

    Only a retry can tell (with the same idempotency key, for an order); callers
    must not report it as "nothing happened".
    """


class NotCancellable(StoreError):
    """The order moved past ``confirmed`` (the kitchen has it): it can no longer be
    cancelled. ``status`` is the status it has now; nothing was changed."""

    def __init__(self, order_id: str, status: str) -> None:
        self.order_id = order_id
        self.status = status
        super().__init__(f"order {order_id!r} is {status}: it can no longer be cancelled")

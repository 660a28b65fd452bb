"""What one client has been told about its order: the snapshot, then only newer changes.

Shared by the tracking WebSocket (:mod:`orderflow.web.tracking`) and the order event
stream (:mod:`orderflow.web.order_events`): both subscribe to the hub first, then
build an :class:`OrderView` from the store and the status cache (:func:`load_view`),
and pass every update through :meth:`OrderView.apply`, which drops what is not newer
than what the client already has (statuses only move forward).

A change is the same message for every client that is still behind it, so its JSON
is built once per change (:func:`encoded`), not once per socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sanic import Sanic

from orderflow.agents.status_cache import read_latest_status
from orderflow.models.documents import DELIVERY_STATUSES, ORDER_STATUS_RANKS, Order
from orderflow.web.fanout import DeliveryUpdate, OrderUpdate, Update

log = logging.getLogger(__name__)

_ORDER_RANK: dict[str, int] = ORDER_STATUS_RANKS  # cancelled: above all, so terminal
_DELIVERY_RANK: dict[str, int] = {status: rank for rank, status in enumerate(DELIVERY_STATUSES)}


@dataclass
class OrderView:
    """What one socket has told its client so far; only newer statuses pass."""

    order_id: str
    status: str = ""
    history: list[dict[str, str]] = field(default_factory=list)
    delivery_id: str | None = None
    delivery_status: str = ""
    delivery_history: list[dict[str, str]] = field(default_factory=list)

    @property
    def order_rank(self) -> int:
        return _ORDER_RANK.get(self.status, -1)

    @property
    def delivery_rank(self) -> int:
        return _DELIVERY_RANK.get(self.delivery_status, -1)

    def snapshot_message(self) -> dict[str, Any]:
        delivery = None
        if self.delivery_id is not None:
            delivery = {
                "delivery_id": self.delivery_id,
                "status": self.delivery_status,
                "history": list(self.delivery_history),
            }
        return {
            "type": "snapshot",
            "order_id": self.order_id,
            "status": self.status,
            "history": list(self.history),
            "delivery": delivery,
        }

    def apply(self, update: Update) -> dict[str, Any] | None:
        """The message for ``update``, or ``None`` if it is not newer than what was sent."""
        kind = self.advance(update)
        return None if kind is None else message_for(update, kind)

    def apply_encoded(self, update: Update) -> str | None:
        """:meth:`apply`, as the JSON text every socket of the order shares."""
        kind = self.advance(update)
        return None if kind is None else encoded(update, kind)

    def advance(self, update: Update) -> str | None:
        """Take ``update`` into the view if it is newer; its message type, else ``None``."""
        if isinstance(update, OrderUpdate):
            rank = _ORDER_RANK.get(update.status, -1)
            if rank <= self.order_rank:
                return None
            self.status = update.status
            self.history.append({"status": update.status, "at": update.at})
            return "order.status"
        rank = _DELIVERY_RANK.get(update.status, -1)
        if rank <= self.delivery_rank:
            return None
        kind = "delivery.created" if self.delivery_id is None else "delivery.status"
        self.delivery_id = update.delivery_id
        self.delivery_status = update.status
        self.delivery_history.append({"status": update.status, "at": update.at})
        return kind


def message_for(update: Update, kind: str) -> dict[str, Any]:
    """The ``kind`` message (``order.status``, ``delivery.created|status``) of ``update``."""
    if isinstance(update, OrderUpdate):
        return {"type": kind, "order_id": update.order_id, "status": update.status,
                "at": update.at}  # fmt: skip
    return {
        "type": kind,
        "order_id": update.order_id,
        "delivery_id": update.delivery_id,
        "status": update.status,
        "at": update.at,
    }


@lru_cache(maxsize=4096)
def encoded(update: Update, kind: str) -> str:
    """The JSON of :func:`message_for`, built once per change for all its sockets.

    Updates are frozen (hashable) and the hub hands the same object to every
    subscription, so the sockets of one order hit the cache after the first; 4,096
    entries hold every change of the last few seconds at the load curve's rates.
    """
    return json.dumps(message_for(update, kind))


def view_from_order(order: Order) -> OrderView:
    view = OrderView(order.id, order.status, [h.model_dump() for h in order.history])
    if order.delivery is not None:
        view.delivery_id = order.delivery.id
        view.delivery_status = order.delivery.status
        view.delivery_history = [h.model_dump() for h in order.delivery.history]
    return view


def merge_cached_status(
    view: OrderView | None, order_id: str, cached: dict[str, Any] | None
) -> OrderView | None:
    """Fold the notifications cache entry into the view; only newer statuses change it.

    The cache (see :mod:`orderflow.agents.status_cache`) holds the latest status without the
    history: ``{"order_id", "status", "at", "delivery": {"delivery_id", "status",
    "at"} | null}``. It can be ahead of the store only in a gateway whose store
    is a lagging replica; usually the store already has everything.
    """
    if cached is None:
        return view
    status, at = cached.get("status"), cached.get("at")
    if view is None:
        if status not in _ORDER_RANK or not isinstance(at, str):
            return None  # nothing usable: the order is unknown here
        view = OrderView(order_id)
    if isinstance(status, str) and isinstance(at, str):
        view.apply(OrderUpdate(order_id, status, at))
    delivery = cached.get("delivery")
    if isinstance(delivery, dict):
        delivery_id, delivery_status = delivery.get("delivery_id"), delivery.get("status")
        delivery_at = delivery.get("at")
        if (
            isinstance(delivery_id, str)
            and isinstance(delivery_status, str)
            and isinstance(delivery_at, str)
        ):
            view.apply(DeliveryUpdate(order_id, delivery_id, delivery_status, delivery_at))
    return view


async def load_view(app: Sanic, order_id: str) -> OrderView | None:
    """The latest known state of the order: the store (with history) merged with the cache.

    Both are read: the cache alone has no history, and an order whose cache entry
    expired (24 h TTL) or was never written is still known to the store. They are read
    at the same time (each is a round trip, and this is on every socket's way to its
    first message); the merge keeps the later status whichever answered first.
    """
    cached, stored = await asyncio.gather(
        _cached_status(app, order_id), _stored_order(app, order_id)
    )
    if isinstance(stored, Exception):
        if cached is None:
            raise stored
        log.warning("store read failed for %s; snapshot from the cache", order_id)
        stored = None
    view = None if stored is None else view_from_order(stored)
    return merge_cached_status(view, order_id, cached)


async def _cached_status(app: Sanic, order_id: str) -> dict[str, Any] | None:
    redis = getattr(app.ctx, "redis", None)
    if redis is None:
        return None
    try:
        return await read_latest_status(redis, order_id)
    except Exception as exc:  # the cache is an optimisation; the store still answers
        log.warning("status cache read failed for %s: %s", order_id, exc)
        return None


async def _stored_order(app: Sanic, order_id: str) -> Order | Exception | None:
    """The order from the store, or the error reading it (the cache may still answer)."""
    store = getattr(app.ctx, "store", None)
    if store is None:
        return None
    try:
        order: Order | None = await store.get_order(order_id)
        return order
    except Exception as exc:
        return exc

"""WebSocket order tracking: ``/ws/v1/order-tracking/<order_id>``.

The protocol (documented for clients in ``docs/realtime.md``):

* malformed id -> close ``4400``; unknown order -> close ``4404`` (with a reason);
* first message ``{"type": "snapshot", "order_id", "status", "history", "delivery"}``;
* then ``order.status``, ``delivery.created`` and ``delivery.status`` messages as the
  changes happen, never older than what this socket was already told;
* a text message ``{"type": "ping"}`` is answered with ``{"type": "pong"}``; protocol
  level ping frames (Sanic's keep-alive) drop a dead peer;
* input is bounded (:mod:`orderflow.web.client_input`): a message over
  ``ws_max_message_bytes`` -> close ``1009``, more messages than the per-socket
  budget -> close ``1008``; output too: a send the client does not take within
  ``ws_send_timeout_seconds`` -> close ``1013``. Sends wait for the transport to
  drain, so a client that does not read stops its own input from being read.

The socket subscribes to this process's :class:`~orderflow.web.fanout.TrackingHub` BEFORE it
reads the snapshot, so an update that lands while the snapshot is being built is
queued rather than lost; the monotonic filter then drops whatever the snapshot
already covered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from sanic import Request, Sanic
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.protocol import State

from orderflow.agents.settings import Settings, get_settings
from orderflow.agents.status_cache import read_latest_status
from orderflow.models.documents import DELIVERY_STATUSES, ORDER_STATUS_RANKS, Order
from orderflow.runtime import App
from orderflow.web.client_input import MessageBudget, reply_to
from orderflow.web.fanout import DeliveryUpdate, OrderUpdate, Subscription, TrackingHub, Update
from orderflow.web.metrics import WEBSOCKET_CONNECTIONS
from orderflow.web.read_ahead import ReadAheadLimit
from orderflow.web.ui import exclude_from_openapi
from orderflow.web.validation import is_plausible_order_id

log = logging.getLogger(__name__)

ROUTE = "/ws/v1/order-tracking/<order_id:str>"

CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_MALFORMED_ID = 4400
CLOSE_UNKNOWN_ORDER = 4404
CLOSE_UNAVAILABLE = 4503

HUB_READY_TIMEOUT = 10.0

_ORDER_RANK: dict[str, int] = ORDER_STATUS_RANKS  # cancelled: above all, so terminal
_DELIVERY_RANK: dict[str, int] = {status: rank for rank, status in enumerate(DELIVERY_STATUSES)}


# -- the per-socket monotonic view ---------------------------------------------


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
        if isinstance(update, OrderUpdate):
            rank = _ORDER_RANK.get(update.status, -1)
            if rank <= self.order_rank:
                return None
            self.status = update.status
            self.history.append({"status": update.status, "at": update.at})
            return {
                "type": "order.status",
                "order_id": self.order_id,
                "status": update.status,
                "at": update.at,
            }
        rank = _DELIVERY_RANK.get(update.status, -1)
        if rank <= self.delivery_rank:
            return None
        kind = "delivery.created" if self.delivery_id is None else "delivery.status"
        self.delivery_id = update.delivery_id
        self.delivery_status = update.status
        self.delivery_history.append({"status": update.status, "at": update.at})
        return {
            "type": kind,
            "order_id": self.order_id,
            "delivery_id": update.delivery_id,
            "status": update.status,
            "at": update.at,
        }


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
    expired (24 h TTL) or was never written is still known to the store.
    """
    cached: dict[str, Any] | None = None
    redis = getattr(app.ctx, "redis", None)
    if redis is not None:
        try:
            cached = await read_latest_status(redis, order_id)
        except Exception as exc:  # the cache is an optimisation; the store still answers
            log.warning("status cache read failed for %s: %s", order_id, exc)
    view: OrderView | None = None
    store = getattr(app.ctx, "store", None)
    if store is not None:
        try:
            order = await store.get_order(order_id)
        except Exception:
            if cached is None:
                raise
            log.warning("store read failed for %s; snapshot from the cache", order_id)
            order = None
        if order is not None:
            view = view_from_order(order)
    return merge_cached_status(view, order_id, cached)


# -- the socket ------------------------------------------------------------------


async def order_tracking(request: Request, ws: WebsocketImplProtocol, order_id: str) -> None:
    """Stream the order's snapshot, then its changes, until the client goes away."""
    app = request.app
    if not is_plausible_order_id(order_id):
        await ws.close(CLOSE_MALFORMED_ID, "malformed order id: expected 32 lowercase hex digits")
        return
    read_ahead = ReadAheadLimit.install(ws)
    try:
        await _track(app, ws, order_id)
    finally:
        await read_ahead.release()


async def _track(app: Sanic, ws: WebsocketImplProtocol, order_id: str) -> None:
    hub: TrackingHub | None = getattr(app.ctx, "tracking_hub", None)
    if hub is None or not await hub.wait_ready(HUB_READY_TIMEOUT):
        await ws.close(CLOSE_UNAVAILABLE, "order tracking is not available yet; retry")
        return
    with hub.subscribe(order_id) as subscription:
        try:
            view = await load_view(app, order_id)
        except Exception:
            log.exception("snapshot failed for order %s", order_id)
            await ws.close(CLOSE_UNAVAILABLE, "order store unavailable; retry")
            return
        if view is None:
            await ws.close(CLOSE_UNKNOWN_ORDER, f"unknown order {order_id}")
            return
        WEBSOCKET_CONNECTIONS.inc()
        settings = _settings(app)
        client = ClientSocket(ws, settings.ws_send_timeout_seconds)
        budget = MessageBudget(settings.ws_message_rate, settings.ws_message_burst)
        try:
            if await client.send(view.snapshot_message()):
                await _serve(client, view, subscription, budget)
        finally:
            WEBSOCKET_CONNECTIONS.dec()


class ClientSocket:
    """The socket with bounded sends: each waits for the transport to drain, at most
    ``send_timeout`` seconds; a client that does not read for that long is closed."""

    def __init__(self, ws: WebsocketImplProtocol, send_timeout: float) -> None:
        self.ws = ws
        self.send_timeout = send_timeout

    async def send(self, message: dict[str, Any]) -> bool:
        """True once sent; False (socket closed with 1013) if the client did not take it."""
        try:
            await asyncio.wait_for(self.ws.send(json.dumps(message)), self.send_timeout)
        except TimeoutError:
            self.close_now(CLOSE_TRY_AGAIN_LATER, "client not reading; reconnect for a snapshot")
            return False
        return True

    async def close(self, code: int, reason: str) -> None:
        """The closing handshake, or at once if the client's output is still blocked."""
        try:
            await asyncio.wait_for(self.ws.close(code, reason), self.send_timeout)
        except TimeoutError:
            self.close_now(code, reason)

    def close_now(self, code: int, reason: str) -> None:
        """Queue the close frame and drop the connection without waiting for the client."""
        log.info("closing a tracking socket (%d): %s", code, reason)
        self.ws.fail_connection(code, reason)


async def _serve(
    client: ClientSocket, view: OrderView, subscription: Subscription, budget: MessageBudget
) -> None:
    """Run the update pump and the client reader until either ends; both are cancelled
    and awaited before this returns, so no task of the socket outlives it."""
    pump = asyncio.create_task(_pump_updates(client, view, subscription))
    reader = asyncio.create_task(_answer_client(client, budget))
    try:
        done, _ = await asyncio.wait({pump, reader}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.debug("tracking socket ended: %r", task.exception())
    finally:
        for task in (pump, reader):
            task.cancel()
        for task in (pump, reader):
            with contextlib.suppress(BaseException):
                await task


async def _pump_updates(client: ClientSocket, view: OrderView, subscription: Subscription) -> None:
    while True:
        update = await subscription.get()
        if update is None:
            await client.close(CLOSE_TRY_AGAIN_LATER, "client too slow; reconnect for a snapshot")
            return
        message = view.apply(update)
        if message is not None and not await client.send(message):
            return


async def _answer_client(client: ClientSocket, budget: MessageBudget) -> None:
    """Answer ``{"type": "ping"}``; anything else gets an error message, not a close.

    A client over its message budget is closed with 1008 (see ``client_input``).
    """
    ws = client.ws
    while True:
        data = await ws.recv()
        if data is None:
            if ws.ws_proto.state is not State.OPEN:
                return
            continue
        if not budget.spend():
            # At once: a flooding client is not waited for (its frames are not read).
            client.close_now(CLOSE_POLICY_VIOLATION, f"too many messages: {budget.describe()}")
            return
        if not await client.send(reply_to(data)):
            return


# -- wiring ----------------------------------------------------------------------


def _settings(app: Sanic) -> Settings:
    settings = getattr(app.ctx, "settings", None)
    return settings if isinstance(settings, Settings) else get_settings()


async def _start_hub(app: Sanic) -> None:
    """The fan-out of this process: a follower-only App (never started as a worker:
    its followers need only its connection) and the hub that follows the streams."""
    settings = _settings(app)
    gateway = App("gateway", broker=settings.redis_url, settings=settings)
    hub = TrackingHub(gateway)
    app.ctx.tracking_hub = hub
    if not settings.redis_url:
        log.error("ORDERFLOW_REDIS_URL is not set: order tracking cannot read the streams")
        return
    hub.start()


async def _stop_hub(app: Sanic) -> None:
    hub: TrackingHub | None = getattr(app.ctx, "tracking_hub", None)
    if hub is not None:
        await hub.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(hub.app.stop(), 2.0)


def register(app: Sanic) -> None:
    """Add the tracking route, its keep-alive settings and the per-process fan-out task."""
    settings = _settings(app)
    # Sanic pings every interval and drops a peer whose pong is missing after the timeout.
    app.config.WEBSOCKET_PING_INTERVAL = settings.ws_ping_interval
    app.config.WEBSOCKET_PING_TIMEOUT = settings.ws_ping_timeout
    # A bigger client message is refused by the protocol layer with close 1009.
    app.config.WEBSOCKET_MAX_SIZE = settings.ws_max_message_bytes
    app.add_websocket_route(order_tracking, ROUTE, name="order_tracking")
    exclude_from_openapi(app, "order_tracking")
    register_hub(app)


def register_hub(app: Sanic) -> None:
    """Only the per-process fan-out, for a role that serves the order event streams
    (Server-Sent Events, :mod:`orderflow.web.order_events`) but not the WebSocket."""
    app.register_listener(_start_hub, "after_server_start")
    app.register_listener(_stop_hub, "before_server_stop")

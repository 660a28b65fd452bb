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
  drain, so a client that does not read stops its own input from being read; the
  kernel holds at most ``ws_send_buffer_bytes`` (doubled by Linux) of its output and
  the transport 64 KiB before that happens.

A client that does not read holds up nothing but its own socket: the hub hands each
update to every socket's own queue without awaiting any socket, and only that socket's
pump awaits its send (the socket is counted in ``orderflow_websocket_sends_blocked``
while the client's buffers are full); when it fails (timeout, or the queue overflowed) only
that socket is closed, with 1013. Each change is encoded once
(:func:`~orderflow.web.order_view.encoded`), not once per socket, and a send is
bounded by ``asyncio.timeout``, not ``wait_for``: measured (loaded machine),
``json.dumps`` of a message 9.5 us, ``wait_for`` 36 us against 9 us, so about 37 us
less per socket and change (4.6 ms for 125 sockets). What did delay every socket in
benchmarks/fanout.py was a full garbage collection, not a socket: see
:mod:`orderflow.web.heap_freeze`.

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
import socket
from typing import Any

from sanic import Request, Sanic
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.protocol import State

from orderflow.agents.settings import Settings, get_settings
from orderflow.runtime import App
from orderflow.web.client_input import MessageBudget, reply_to
from orderflow.web.fanout import Subscription, TrackingHub
from orderflow.web.metrics import WEBSOCKET_CONNECTIONS, WEBSOCKET_SENDS_BLOCKED
from orderflow.web.order_view import OrderView, load_view
from orderflow.web.read_ahead import ReadAheadLimit
from orderflow.web.ui import exclude_from_openapi
from orderflow.web.validation import is_plausible_order_id

log = logging.getLogger(__name__)

ROUTE = "/ws/v1/order-tracking/<order_id:str>"

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_MALFORMED_ID = 4400
CLOSE_UNKNOWN_ORDER = 4404
CLOSE_UNAVAILABLE = 4503

HUB_READY_TIMEOUT = 10.0

# -- the socket ------------------------------------------------------------------


async def order_tracking(request: Request, ws: WebsocketImplProtocol, order_id: str) -> None:
    """Stream the order's snapshot, then its changes, until the client goes away."""
    app = request.app
    if not is_plausible_order_id(order_id):
        await ws.close(CLOSE_MALFORMED_ID, "malformed order id: expected 32 lowercase hex digits")
        return
    bound_send_buffer(ws, _settings(app).ws_send_buffer_bytes)
    read_ahead = ReadAheadLimit.install(ws)
    try:
        await _track(app, ws, order_id)
    finally:
        await read_ahead.release()


def bound_send_buffer(ws: WebsocketImplProtocol, size: int) -> None:
    """Cap the socket's kernel send buffer (``ws_send_buffer_bytes``): what a client
    that does not read can make the kernel hold for it before its sends block."""
    io_proto = ws.io_proto
    transport = None if io_proto is None else io_proto.transport
    sock = None if transport is None else transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # the peer is already gone
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


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
        LIVE_CLIENTS.add(client)
        try:
            if await client.send(view.snapshot_message()):
                await _serve(client, view, subscription, budget)
        finally:
            LIVE_CLIENTS.discard(client)
            WEBSOCKET_CONNECTIONS.dec()


# Every open tracking socket of this process. At shutdown those whose client is not
# reading (:meth:`ClientSocket.not_reading`) are aborted (see _stop_hub): Sanic's
# closing handshake would wait behind their output, and so would the server's stop,
# up to its 15 s graceful timeout.
LIVE_CLIENTS: set[ClientSocket] = set()


class ClientSocket:
    """The socket with bounded sends: each waits for the transport to drain, at most
    ``send_timeout`` seconds; a client that does not read for that long is closed."""

    def __init__(self, ws: WebsocketImplProtocol, send_timeout: float) -> None:
        self.ws = ws
        self.send_timeout = send_timeout
        self._blocked_sends = 0  # sends of this socket waiting for its client to read

    async def send(self, message: dict[str, Any] | str) -> bool:
        """True once sent; False (socket closed with 1013) if the client did not take it.

        ``asyncio.timeout``, not ``wait_for``: no task per send (a fan-out to 1,000
        sockets made 1,000 of them per change).
        """
        text = message if isinstance(message, str) else json.dumps(message)
        blocked = self._output_blocked()
        if blocked:
            self._blocked_sends += 1
            if self._blocked_sends == 1:  # the gauge counts sockets, not their sends
                WEBSOCKET_SENDS_BLOCKED.inc()
        try:
            async with asyncio.timeout(self.send_timeout):
                await self.ws.send(text)
        except TimeoutError:
            self.close_now(CLOSE_TRY_AGAIN_LATER, "client not reading; reconnect for a snapshot")
            return False
        finally:
            if blocked:
                self._blocked_sends -= 1
                if self._blocked_sends == 0:
                    WEBSOCKET_SENDS_BLOCKED.dec()
        return True

    def not_reading(self) -> bool:
        """True while a send of this socket is blocked, or bytes sent to it still wait in
        the transport (the kernel's send buffer is full): its client stopped reading,
        possibly between two sends."""
        if self._blocked_sends:
            return True
        io_proto = self.ws.io_proto
        transport = None if io_proto is None else io_proto.transport
        return transport is not None and transport.get_write_buffer_size() > 0

    def _output_blocked(self) -> bool:
        """True while the transport's buffer is over its high-water mark: the client
        has not taken what was sent (Sanic's protocol pauses writing; a send waits)."""
        io_proto = self.ws.io_proto
        can_write: asyncio.Event | None = getattr(io_proto, "_can_write", None)
        return can_write is not None and not can_write.is_set()

    async def close(self, code: int, reason: str) -> None:
        """The closing handshake, or at once if the client's output is still blocked."""
        try:
            await asyncio.wait_for(self.ws.close(code, reason), self.send_timeout)
        except TimeoutError:
            self.close_now(code, reason)

    def drop(self, code: int, reason: str) -> None:
        """:meth:`close_now`, then abort the connection: its output is not flushed."""
        self.close_now(code, reason)
        io_proto = self.ws.io_proto
        if io_proto is not None and io_proto.transport is not None:
            io_proto.transport.abort()

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
        message = view.apply_encoded(update)
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
    for client in tuple(LIVE_CLIENTS):  # clients not reading do not hold the stop
        if client.not_reading():
            client.drop(CLOSE_GOING_AWAY, "server shutting down")
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

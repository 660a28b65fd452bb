"""Answer clients that half-close their connection after sending a request.

A client may send its whole request and then shut down its sending side
(``shutdown(SHUT_WR)``: "I have nothing more to say, I am still listening").
Sanic's protocol treats that end-of-file like a vanished client: it closes the
transport, which cancels the handler, so the client never gets its answer even
though it waits for one (and an order may already be committing). This
protocol keeps the write side open instead, as HTTP/1.1 allows (RFC 9112
section 9.6 only requires the server to close *after* answering):

* EOF on an idle connection (nothing buffered, no request in progress): close
  it, as Sanic does -- nobody is waiting for anything;
* EOF while a request is buffered or being handled: keep the transport open,
  let the handler answer, then close (``keep_alive`` is turned off);
* if that request then needs bytes that will never come (its body was cut
  short), close the connection instead of waiting for the request timeout.

A client that closes both directions (or resets) before its answer still
cancels the handler; see docs/http.md for what it can rely on then.

Every connection that ends is counted for :mod:`orderflow.web.heap_freeze`, which
hands frozen objects back to the garbage collector after enough of them.
"""

from __future__ import annotations

from typing import Any

from sanic.http.constants import Stage
from sanic.server.protocols.websocket_protocol import WebSocketProtocol

from orderflow.web import heap_freeze


class HalfCloseProtocol(WebSocketProtocol):
    """Sanic's HTTP + WebSocket protocol, answering half-closed HTTP/1.1 clients."""

    __slots__ = ("_peer_done_sending",)  # Sanic's protocols have slots, no __dict__

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._peer_done_sending = False

    def eof_received(self) -> bool | None:
        if self.websocket is not None:
            return super().eof_received()
        http = getattr(self, "_http", None)
        in_progress = http is not None and http.stage is not Stage.IDLE
        if not self.recv_buffer and not in_progress:
            return False  # idle keep-alive connection: close it
        self._peer_done_sending = True
        if http is not None:
            http.keep_alive = False  # answer this request, then close
        if self._data_received is not None:
            self._data_received.set()
        return True  # keep the transport open for the answer

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        heap_freeze.connection_closed()

    async def receive_more(self) -> None:
        if self._peer_done_sending:
            # The request needs bytes the client said it will not send: give up on it.
            self.close()
        await super().receive_more()

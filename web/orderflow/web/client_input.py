"""What a tracking client may send, and how much of it: replies and a per-socket budget.

A tracking client has one thing to say, ``{"type": "ping"}`` (a heartbeat a
browser can send; it cannot send protocol pings). Everything else gets the
documented ``error`` message, never a dropped socket: not JSON, not an object,
an unknown type, and JSON nested so deeply that the decoder gives up
(``RecursionError``, which is not a ``ValueError``).

Why a budget: Sanic parses every frame of what it has read off the socket as
soon as it arrives, and each message the handler takes resumes reading for
another chunk, so a client that floods small messages without reading the
answers makes the server hold every parsed frame of the flood (a million
pings grew a gateway worker by ~170 MB, kept after the client left). A client
has no reason to send more than a few heartbeats; one that does is closed
with 1008 (policy violation) before it can pile anything up.
"""

from __future__ import annotations

import json
import time
from typing import Any

UNSUPPORTED = 'unsupported message; send {"type":"ping"}'
TOO_DEEP = 'message nested too deeply; send {"type":"ping"}'


def reply_to(data: str | bytes) -> dict[str, Any]:
    """The answer to one client message: ``pong`` for a ping, else an ``error``."""
    try:
        message = json.loads(data)
    except RecursionError:
        return {"type": "error", "detail": TOO_DEEP}
    except (ValueError, UnicodeDecodeError):
        message = None
    if isinstance(message, dict) and message.get("type") == "ping":
        return {"type": "pong"}
    return {"type": "error", "detail": UNSUPPORTED}


class MessageBudget:
    """A token bucket: ``burst`` messages at once, refilled at ``rate`` per second.

    :meth:`spend` is False once a client sends faster than that; the socket is
    then closed (see the module). Time comes from ``time.monotonic``.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def spend(self) -> bool:
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def describe(self) -> str:
        return f"at most {self.burst} messages at once and {self.rate:g} per second"

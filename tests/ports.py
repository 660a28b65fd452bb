"""Ports a test picks before something binds them: below Linux's ephemeral range.

A port picked with ``bind(0)`` is free when picked and in the ephemeral range
(32768-60999), where, before the process the test starts binds it, the local side
of any outgoing connection, a ``bind(0)`` elsewhere or a cluster node's bus port
(the node's + 10000) can take it first (seen twice: "Address already in use" for
the demo's API, and for a chart workload's API). Below 32768 none of those lands.
"""

from __future__ import annotations

import random
import socket

LOW, HIGH = 20_000, 32_000


def port_below_ephemeral_range() -> int:
    """A port in 20000-32000 that is free now (nothing binds there by itself)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(LOW, HIGH)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {LOW}-{HIGH}")

"""One client process of benchmarks/fanout.py: many WebSocket readers, one event loop.

Why a separate process: a thousand sockets read by the benchmark's own event loop
would make the client, not the gateway, the bottleneck on two cores; fanout.py
starts several of these. Protocol with the parent, one line each on stdout:

* ``ready <n>`` once all ``n`` sockets are open and have their snapshot;
* ``progress <order_id> <k>`` whenever the reader of that order with the fewest
  messages so far has ``k`` (so the parent waits on a condition, not a sleep);
* after ``stop`` on stdin: ``result <json>`` with, per socket, its order and the
  ``[type, status, receive wall time]`` of every message after the snapshot.

    python benchmarks/fanout_clients.py WS_BASE ORDER_ID[,ORDER_ID...] SOCKETS
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; (soft, hard) afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(ws_base: str, order_ids: list[str], sockets: int) -> None:
    from websockets.asyncio.client import connect

    received: list[list[list[Any]]] = [[] for _ in range(sockets)]
    orders = [order_ids[i % len(order_ids)] for i in range(sockets)]
    readers_of: dict[str, list[int]] = {}
    for index, order_id in enumerate(orders):
        readers_of.setdefault(order_id, []).append(index)
    reported: dict[str, int] = dict.fromkeys(order_ids, 0)
    connections = []
    for order_id in orders:  # one at a time: a burst of handshakes is not what is measured
        ws = await connect(f"{ws_base}/ws/v1/order-tracking/{order_id}", open_timeout=60)
        snapshot = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
        if snapshot.get("type") != "snapshot":
            raise SystemExit(f"first message is not a snapshot: {snapshot!r}")
        connections.append(ws)
    say(f"ready {sockets}")

    async def read(index: int) -> None:
        ws, order_id = connections[index], orders[index]
        async for raw in ws:
            message = json.loads(raw)
            received[index].append([message.get("type"), message.get("status"), time.time()])
            least = min(len(received[i]) for i in readers_of[order_id])
            if least > reported[order_id]:
                reported[order_id] = least
                say(f"progress {order_id} {least}")

    readers = [asyncio.create_task(read(index)) for index in range(sockets)]
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "stop"
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)
    result = [{"order_id": orders[i], "messages": received[i]} for i in range(sockets)]
    say("result " + json.dumps(result))


if __name__ == "__main__":
    raise_fd_limit()
    asyncio.run(main(sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])))

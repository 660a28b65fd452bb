"""Fan-out: many WebSocket clients on ONE gateway process, following orders as they move.

Starts its own stack (benchmarks/stack.py) with the demo's layout: one
``orderflow api`` process with one Sanic worker (role ``all``: the gateway the demo
runs) and every service worker; the operator console is on (a random token) so the
benchmark moves orders itself. It places ``--orders`` orders with
``"simulate": false`` (they wait at ``created``), opens ``--clients`` WebSocket
readers spread evenly over them, from ``--client-processes`` processes
(benchmarks/fanout_clients.py) so that the readers are not the bottleneck, then
moves every order through all its steps with ``POST /api/v1/ops/orders/<id>/advance``,
one change at a time, each time waiting until every reader of that order has
every message published so far (a condition the client processes report).

* ``received_all``: every reader received one message for every tracking event
  (order status, delivery created / status) published for its order.
* ``fanout_p99_ms``: per change, the stream entry's time (the server's clock,
  ms) -> the last reader of that order received it; p99 over the changes.
* ``rss_per_client_kb``: the gateway's resident set (its process tree) with the
  readers connected minus before, divided by the readers.
* Non-readers: the second half of the orders moves with ``--non-readers`` extra
  sockets open on them that complete the handshake and then never read (receive
  buffer shrunk to the minimum); the readers' fan-out p99 without (first half) and
  with them (second half) are both reported. The second half starts once the
  gateway counts every one of them as a tracking connection
  (``orderflow_websocket_connections``): the 101 answer comes before the socket has
  subscribed and loaded its snapshot, and those 50 snapshot reads used to overlap
  the first changes measured. ``non_reader_sends_blocked``: the gateway's
  ``orderflow_websocket_sends_blocked`` at the end (7 messages of ~150 bytes never
  fill a socket's buffers, so 0: sockets whose sends really are blocked are
  tests/web/test_stuck_clients.py's subject).

The benchmark raises its soft RLIMIT_NOFILE to the hard limit before it starts the
stack (the gateway inherits it) and so does each client process.

    python benchmarks/fanout.py --clients 1000
    python benchmarks/fanout.py --clients 40 --orders 4 --json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import secrets
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):  # run as `python benchmarks/fanout.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.fanout_clients import raise_fd_limit
from benchmarks.fanout_results import published_for, summarize
from benchmarks.procstat import cpu_seconds, load_average, rss_kb, run_queue_wait_seconds
from benchmarks.stack import (
    ALL_SERVICES,
    Stack,
    StackError,
    log,
    order_id_of,
    pid_of,
    print_table,
    run_benchmark,
)

CLIENTS = Path(__file__).resolve().parent / "fanout_clients.py"
WAIT_S = 120.0  # the most any one wait may take before the run fails
# The "result" line of a client process carries every message of its readers (~50 B each).
RESULT_LINE_LIMIT = 256 * 1024 * 1024


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fanout.py",
        description=(
            "CLIENTS WebSocket readers on one gateway process follow ORDERS orders while an "
            "operator moves them step by step; reports received_all, fanout_p99_ms (status "
            "published -> last reader received), rss_per_client_kb, and the readers' p99 "
            "with and without sockets that never read. Progress on stderr, a table on stdout."
        ),
    )
    parser.add_argument("--clients", type=int, default=1000, help="WebSocket readers (1000)")
    parser.add_argument("--orders", type=int, default=8, help="orders followed (default 8)")
    parser.add_argument(
        "--client-processes", type=int, default=4, help="processes the readers run in (4)"
    )
    parser.add_argument(
        "--non-readers", type=int, default=50, help="sockets that never read, second half (50)"
    )
    parser.add_argument("--item", default="margherita", help="item to order (default margherita)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, store)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return parser


class ClientProcess:
    """One fanout_clients.py process and what it has reported so far."""

    def __init__(self, proc: asyncio.subprocess.Process, orders: list[str]) -> None:
        self.proc = proc
        self.orders = orders
        self.ready = asyncio.Event()
        self.progress: dict[str, int] = dict.fromkeys(orders, 0)
        self.result: list[dict[str, Any]] | None = None
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            kind, _, rest = raw.decode().rstrip("\n").partition(" ")
            if kind == "ready":
                self.ready.set()
            elif kind == "progress":
                order_id, count = rest.split()
                self.progress[order_id] = int(count)
            elif kind == "result":
                self.result = json.loads(rest)

    async def stop(self) -> list[dict[str, Any]]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stop\n")
        await self.proc.stdin.drain()
        await asyncio.wait_for(self.reader, WAIT_S)
        await self.proc.wait()
        if self.result is None:
            raise StackError(
                f"a client process ended without a result (code {self.proc.returncode})"
            )
        return self.result


async def wait_for(
    condition: Callable[[], Awaitable[bool]], what: str, check_alive: Callable[[], None]
) -> None:
    """Poll ``condition()`` (a cheap in-memory or Redis check) until true, or fail."""
    deadline = time.monotonic() + WAIT_S
    while not await condition():
        if time.monotonic() > deadline:
            raise StackError(f"gave up after {WAIT_S:.0f}s waiting for {what}")
        check_alive()
        await asyncio.sleep(0.005)  # the state is in other processes


def never_reading_socket(host: str, port: int, path: str) -> socket.socket:
    """A WebSocket that completes its handshake and never reads a byte after it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
    sock.settimeout(30)
    sock.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:  # the 101 answer only; the snapshot is left unread
        chunk = sock.recv(1)
        if not chunk:
            raise StackError("the gateway closed a never-reading socket during its handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise StackError(f"a never-reading socket was refused: {head[:80]!r}")
    return sock


async def gateway_gauge(client: httpx.AsyncClient, name: str) -> float | None:
    """The gateway's unlabelled gauge ``name`` from its ``/metrics``; None if absent."""
    text = (await client.get("/metrics")).text
    match = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    return None if match is None else float(match[1])


def fanned_out_check(
    redis: Any, order_id: str, step: str, processes: list[ClientProcess]
) -> Callable[[], Awaitable[bool]]:
    """True once ``step`` is published and every reader of the order has every change
    published for it so far."""

    async def check() -> bool:
        published = await published_for(redis, order_id)
        if not any(p.status == step for p in published):
            return False
        return all(
            proc.progress[order_id] >= len(published)
            for proc in processes
            if order_id in proc.progress
        )

    return check


async def move_orders(
    client: httpx.AsyncClient,
    redis: Any,
    orders: list[str],
    processes: list[ClientProcess],
    check_alive: Any,
) -> None:
    """Every order through all its steps, one change at a time, each fanned out in full."""
    for order_id in orders:
        while True:
            answer = await client.post(f"/api/v1/ops/orders/{order_id}/advance")
            if answer.status_code == 409:
                kind = str(answer.json().get("type", ""))
                if kind.endswith("order-delivered"):
                    break
                if kind.endswith("step-pending"):
                    await asyncio.sleep(0.005)  # the services have not applied the last step
                    continue
            if answer.status_code != 202:
                raise StackError(f"advance answered {answer.status_code}: {answer.text[:300]}")
            step = answer.json()["status"]
            await wait_for(
                fanned_out_check(redis, order_id, step, processes),
                f"order {order_id} step {step} to reach every reader",
                check_alive,
            )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import redis.asyncio as aioredis

    soft, hard = raise_fd_limit()
    log(f"RLIMIT_NOFILE soft limit raised to {soft} (hard {hard}); the gateway inherits it")
    need = args.clients + args.non_readers + 200
    if soft < need:
        raise StackError(f"the fd limit {soft} is below the {need} sockets this run needs")
    token = secrets.token_urlsafe(24)
    stack = Stack(
        http_workers=1,
        services=ALL_SERVICES,
        keep=args.keep,
        extra_env={"ORDERFLOW_OPERATOR_TOKEN": token},
    )
    load_at_start = load_average()
    async with stack:
        store = await stack.open_store()
        try:
            await store.set_stock(args.item, 1_000_000)
        finally:
            await store.close()
        headers = {"Authorization": f"Bearer {token}"}
        client = httpx.AsyncClient(base_url=stack.base_url, headers=headers, timeout=30.0)
        redis = aioredis.Redis.from_url(stack.redis_url)
        processes: list[ClientProcess] = []
        never_readers: list[socket.socket] = []
        try:
            body = {"lines": [{"item_id": args.item, "quantity": 1}], "simulate": False}
            orders: list[str] = []
            for _ in range(args.orders):
                answer = await client.post("/api/v1/orders", json=body)
                if answer.status_code != 201 or (order_id := order_id_of(answer.json())) is None:
                    raise StackError(f"POST answered {answer.status_code}: {answer.text[:300]}")
                orders.append(order_id)
            gateway_pid = pid_of(stack, "api")
            rss_before = rss_kb(gateway_pid)
            per_process = [
                args.clients // args.client_processes
                + (1 if i < args.clients % args.client_processes else 0)
                for i in range(args.client_processes)
            ]
            offset = 0
            for sockets in per_process:
                if sockets == 0:
                    continue
                # Each process's readers cover the orders round-robin from its own offset.
                mine = [
                    orders[(offset + i) % len(orders)] for i in range(min(sockets, len(orders)))
                ]
                offset += sockets
                spawned = await asyncio.create_subprocess_exec(
                    sys.executable, str(CLIENTS), stack.ws_url, ",".join(mine), str(sockets),
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    limit=RESULT_LINE_LIMIT,
                )  # fmt: skip
                processes.append(ClientProcess(spawned, mine))
            log(f"{args.clients} readers connecting from {len(processes)} processes")

            async def all_ready() -> bool:
                return all(p.ready.is_set() for p in processes)

            await wait_for(all_ready, "every reader to connect", stack.check_alive)
            rss_with = rss_kb(gateway_pid)
            log(f"gateway RSS {rss_before} KiB before, {rss_with} KiB with {args.clients} readers")
            half = max(1, len(orders) // 2)
            phase_a, phase_b = orders[:half], orders[half:]
            started_ms = int(time.time() * 1000)
            # CPU while the orders move: the gateway's, and the readers' (all processes).
            cpu_before = (cpu_seconds(gateway_pid), [cpu_seconds(p.proc.pid) for p in processes])
            wait_before = run_queue_wait_seconds(gateway_pid)
            await move_orders(client, redis, phase_a, processes, stack.check_alive)
            log(f"first half moved ({len(phase_a)} orders); opening {args.non_readers} non-readers")
            port = int(stack.base_url.rsplit(":", 1)[1])
            for index in range(args.non_readers if phase_b else 0):
                path = f"/ws/v1/order-tracking/{phase_b[index % len(phase_b)]}"
                never_readers.append(
                    await asyncio.to_thread(never_reading_socket, "127.0.0.1", port, path)
                )
            sockets = args.clients + len(never_readers)

            async def all_subscribed() -> bool:
                return await gateway_gauge(client, "orderflow_websocket_connections") == sockets

            await wait_for(all_subscribed, "the non-readers' snapshots", stack.check_alive)
            await move_orders(client, redis, phase_b, processes, stack.check_alive)
            stack.check_alive()
            blocked = await gateway_gauge(client, "orderflow_websocket_sends_blocked")
            moving_s = time.time() - started_ms / 1000
            gateway_cpu = cpu_seconds(gateway_pid) - cpu_before[0]
            gateway_wait = run_queue_wait_seconds(gateway_pid) - wait_before
            readers_cpu = sum(cpu_seconds(p.proc.pid) for p in processes) - sum(cpu_before[1])
            results = [await client_proc.stop() for client_proc in processes]
            published = {order_id: await published_for(redis, order_id) for order_id in orders}
        finally:
            for sock in never_readers:
                sock.close()
            for client_proc in processes:
                if client_proc.proc.returncode is None:
                    client_proc.proc.kill()
            await client.aclose()
            await redis.aclose()
    summary = summarize(results, published, phase_a, phase_b, started_ms=started_ms)
    return {
        "clients": sum(len(r) for r in results),
        **summary,
        "rss_per_client_kb": round((rss_with - rss_before) / args.clients, 2),
        "gateway_rss_before_kb": rss_before,
        "gateway_rss_with_clients_kb": rss_with,
        "orders": len(orders),
        "non_readers": len(never_readers),
        "non_reader_sends_blocked": blocked,
        "client_processes": len(processes),
        "moving_s": round(moving_s, 2),
        "gateway_cpu_share_while_moving": round(gateway_cpu / moving_s, 2),
        "readers_cpu_share_while_moving": round(readers_cpu / moving_s, 2),
        # Runnable but not running (waiting for a CPU), per second while moving.
        "gateway_run_queue_wait_share_while_moving": round(gateway_wait / moving_s, 2),
        "fd_soft_limit": soft,
        "load_average_at_start": [round(x, 2) for x in load_at_start],
    }


def report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    print_table(
        "fan-out — one gateway process, WebSocket readers (ms; KiB)",
        [(key, "n/a" if value is None else value) for key, value in result.items()
         if not isinstance(value, list | dict)],
    )  # fmt: skip
    p99 = result["fanout_p99_ms"]
    verdict = "met" if result["received_all"] and p99 is not None and p99 <= 50 else "NOT met"
    print(f"goal received_all and fanout p99 <= 50 ms: {verdict}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.clients < 1 or args.orders < 2 or args.client_processes < 1 or args.non_readers < 0:
        print(
            "--clients >= 1, --orders >= 2, --client-processes >= 1, --non-readers >= 0",
            file=sys.stderr,
        )
        return 2
    return run_benchmark("fanout", run(args), lambda result: report(result, args.json))


if __name__ == "__main__":
    sys.exit(main())

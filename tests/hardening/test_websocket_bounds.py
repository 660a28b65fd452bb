"""The tracking WebSocket against a client that misbehaves on purpose (issue 9, point 3).

Real gateway processes (``orderflow api`` on a free port, the test Valkey, a SQLite
file shared with the test); the client writes raw frames on a plain socket and
reads only what a test looks at:

* a flood of ~21 MB of ``{"type":"ping"}`` frames that never reads a pong leaves the
  gateway's worker process within ``RSS_TOLERANCE`` of its resident memory before
  the flood once the client has left (without the bounds: +170 MiB, kept), both
  when the message budget cuts the flood off (1008) and with the budget lifted,
  where only the read-ahead limit and back-pressure bound it;
* the budget is exact: ``burst`` messages answered, the next one closes with 1008;
* a 2,000-deep nested JSON frame gets the documented ``error`` message and the
  socket stays open; a frame over the size cap is closed with 1009;
* a gateway stopped (SIGTERM) while a flooding client is connected logs no
  "Task was destroyed but it is pending".
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orderflow.models.store import Store
from orderflow.runtime.localserver import LocalRedisServer
from tests.hardening.raw_websocket import (
    GUARD_SECONDS,
    OPCODE_CLOSE,
    OPCODE_TEXT,
    FrameReader,
    client_frame,
    close_code,
    open_raw,
)
from tests.proctree import descendants, resident_bytes
from tests.web.api_process import ApiProcess
from tests.web.test_tracking import place_order

PING = json.dumps({"type": "ping"}, separators=(",", ":")).encode()
FLOOD_FRAMES = 1_000_000  # 21 bytes each on the wire: the issue's ~20 MB
# The client gives up writing once the server has not taken a byte for this long:
# the server applies back-pressure (it stopped reading). Not an assertion.
STALL_SECONDS = 5.0
# What the worker may hold above its pre-flood RSS once the client has gone.
# Bounded, it holds at most one unread message and the transport's write buffer
# (64 KiB high-water mark) per socket; what remains is allocator slack from
# having handled up to a million messages. 30 MB is far below the ~130 MB the
# unbounded server kept and well above that slack (a few MB measured).
RSS_TOLERANCE = 30 * 1024 * 1024
SETTLE_GUARD = 30.0  # seconds to wait for the RSS to come down (a guard, not a bound)
STOP_GRACE_S = 20.0  # before SIGKILL: past Sanic's 15 s graceful shutdown, so a kill means a hang


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('ws-bounds-store') / 'orderflow.db'}"


BURST = 20
# With (almost) no refill, a count of answered messages is exact whatever the load.
STRICT_BUDGET = {"ORDERFLOW_WS_MESSAGE_BURST": str(BURST), "ORDERFLOW_WS_MESSAGE_RATE": "0.001"}
# No budget in practice; a client that does not read for 2 s is dropped (1013).
NO_BUDGET = {
    "ORDERFLOW_WS_MESSAGE_BURST": "1000000000",
    "ORDERFLOW_WS_SEND_TIMEOUT_SECONDS": "2",
}


def started_gateway(
    redis_server: LocalRedisServer, store_url: str, log: Path, env: dict[str, str]
) -> ApiProcess:
    """A gateway process to use in a ``with`` block (started on entry, stopped on exit)."""
    return ApiProcess(redis_url=redis_server.url, store_url=store_url, log_path=log, extra_env=env)


@pytest.fixture(scope="module")
def gateway(
    redis_server: LocalRedisServer, store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    """A gateway with the default limits but a budget that does not refill."""
    log = tmp_path_factory.mktemp("ws-bounds-logs") / "gateway.log"
    with started_gateway(redis_server, store_url, log, STRICT_BUDGET) as process:
        yield process


def tracking_path(order_id: str) -> str:
    return f"/ws/v1/order-tracking/{order_id}"


def sanic_worker(gateway: ApiProcess) -> int:
    """The pid of the Sanic worker process that serves the sockets (one worker)."""
    assert gateway.child.process is not None
    workers = [
        pid
        for pid in descendants(gateway.child.process.pid)
        if b"SANIC_WORKER_NAME=Sanic-Server" in Path(f"/proc/{pid}/environ").read_bytes()
    ]
    assert len(workers) == 1, descendants(gateway.child.process.pid)
    return workers[0]


def ping_pong_round(port: int, order_id: str) -> list[dict[str, object]]:
    """Connect, read the snapshot, ping once: the two messages a well-behaved client gets."""
    with open_raw(port, tracking_path(order_id)) as sock:
        frames = FrameReader(sock)
        first = frames.next_data()
        sock.sendall(client_frame(PING))
        second = frames.next_data()
        assert first is not None and second is not None
        return [json.loads(first[1]), json.loads(second[1])]


def flood(sock: socket.socket, frames: int = FLOOD_FRAMES) -> tuple[int, bool]:
    """Send up to ``frames`` pings without reading; the bytes the server took, and
    whether it stopped taking them (back-pressure) before the end."""
    chunk = client_frame(PING) * 1000
    sent = 0
    sock.settimeout(STALL_SECONDS)
    for _ in range(frames // 1000):
        try:
            sock.sendall(chunk)
        except TimeoutError:
            return sent, True
        except OSError:
            return sent, False  # the server closed the connection
        sent += len(chunk)
    return sent, False


def flood_and_leave(port: int, order_id: str) -> tuple[int, bool]:
    with open_raw(port, tracking_path(order_id)) as sock:
        return flood(sock)


def flood_until_dropped(port: int, order_id: str) -> tuple[int, bool]:
    """Flood until the server stops taking input, then read what it sent: pongs until,
    once the send timeout has passed, the server drops the connection.

    The close frame (1013) often does not arrive: a socket closed with unread input
    makes the kernel send a reset, which discards what the client had not read yet.
    Without the send timeout the server would hold the connection and this read
    would run into the guard.
    """
    with open_raw(port, tracking_path(order_id)) as sock:
        sent, stalled = flood(sock)
        assert stalled, f"the server took all {sent} bytes without pushing back"
        sock.settimeout(GUARD_SECONDS)
        pongs, code = count_pongs_until_close(FrameReader(sock))
        assert pongs > 0 and code in (1013, None), (pongs, code)
        return sent, stalled


async def settled(pid: int, bound: int) -> int:
    """The worker's RSS once it is at most ``bound`` (or when the guard runs out)."""
    deadline = time.monotonic() + SETTLE_GUARD
    while True:
        rss = resident_bytes(pid)
        if rss <= bound or time.monotonic() > deadline:
            return rss
        await asyncio.sleep(0.5)


async def assert_flood_leaves_memory_within_tolerance(
    gateway: ApiProcess, store: Store, flood_with: Callable[[int, str], tuple[int, bool]]
) -> None:
    order = await place_order(store)
    worker = sanic_worker(gateway)
    warm_up = await asyncio.to_thread(ping_pong_round, gateway.port, order.id)
    assert [m["type"] for m in warm_up] == ["snapshot", "pong"]
    baseline = resident_bytes(worker)

    sent, stalled = await asyncio.to_thread(flood_with, gateway.port, order.id)
    peak = resident_bytes(worker)
    after = await settled(worker, baseline + RSS_TOLERANCE)
    print(
        f"flood: {sent / 1e6:.1f} MB taken, stalled={stalled}; worker RSS baseline"
        f" {baseline / 2**20:.1f} MiB, right after {peak / 2**20:.1f} MiB,"
        f" settled {after / 2**20:.1f} MiB"
    )
    assert after <= baseline + RSS_TOLERANCE
    # The same worker still serves: the flood cost it nothing a new client notices.
    assert sanic_worker(gateway) == worker
    again = await asyncio.to_thread(ping_pong_round, gateway.port, order.id)
    assert [m["type"] for m in again] == ["snapshot", "pong"]


async def test_a_ping_flood_cut_off_by_the_budget_leaves_memory_within_tolerance(
    gateway: ApiProcess, store: Store
) -> None:
    await assert_flood_leaves_memory_within_tolerance(gateway, store, flood_and_leave)


async def test_a_ping_flood_without_a_budget_leaves_memory_within_tolerance(
    redis_server: LocalRedisServer, store_url: str, store: Store, tmp_path: Path
) -> None:
    """Only the read-ahead limit and the bounded sends stand between the flood and the
    worker's memory here; the client, which reads nothing, is dropped with 1013."""
    with started_gateway(redis_server, store_url, tmp_path / "gateway.log", NO_BUDGET) as gw:
        await assert_flood_leaves_memory_within_tolerance(gw, store, flood_until_dropped)


def count_pongs_until_close(frames: FrameReader) -> tuple[int, int | None]:
    """Read until the close frame: how many pongs came, and the close code (None: the
    connection ended without one)."""
    pongs = 0
    while (frame := frames.next_data()) is not None:
        opcode, payload = frame
        if opcode == OPCODE_CLOSE:
            return pongs, close_code(payload)
        if opcode == OPCODE_TEXT and payload == b'{"type": "pong"}':
            pongs += 1
    return pongs, None


def pongs_then_close(port: int, order_id: str, pings: int) -> tuple[int, int | None]:
    """Send ``pings`` pings at once, then read: how many pongs came, and the close code."""
    with open_raw(port, tracking_path(order_id)) as sock:
        sock.sendall(client_frame(PING) * pings)
        return count_pongs_until_close(FrameReader(sock))


async def test_more_messages_than_the_budget_are_closed_with_1008(
    gateway: ApiProcess, store: Store
) -> None:
    order = await place_order(store)
    pongs, code = await asyncio.to_thread(pongs_then_close, gateway.port, order.id, BURST + 5)
    assert (pongs, code) == (BURST, 1008)


def reply_and_ping(port: int, order_id: str, payload: bytes) -> list[tuple[int, bytes]]:
    """Send ``payload`` then a ping; the two frames that answer them (or the close)."""
    with open_raw(port, tracking_path(order_id)) as sock:
        frames = FrameReader(sock)
        snapshot = frames.next_data()
        assert snapshot is not None and json.loads(snapshot[1])["type"] == "snapshot"
        sock.sendall(client_frame(payload))
        answers = []
        for _ in range(2):
            frame = frames.next_data()
            if frame is None:
                break
            answers.append(frame)
            if frame[0] == OPCODE_CLOSE:
                break
            if len(answers) == 1:
                sock.sendall(client_frame(PING))
        return answers


async def test_deeply_nested_json_gets_the_error_message_and_the_socket_stays_open(
    gateway: ApiProcess, store: Store
) -> None:
    order = await place_order(store)
    nested = b"[" * 2000 + b"]" * 2000
    answers = await asyncio.to_thread(reply_and_ping, gateway.port, order.id, nested)
    assert [opcode for opcode, _ in answers] == [OPCODE_TEXT, OPCODE_TEXT]
    error, pong = (json.loads(payload) for _, payload in answers)
    assert error["type"] == "error" and "nested too deeply" in error["detail"]
    assert pong == {"type": "pong"}


async def test_a_message_over_the_size_cap_is_closed_with_1009(
    gateway: ApiProcess, store: Store
) -> None:
    order = await place_order(store)
    too_big = json.dumps({"type": "ping", "pad": "x" * 5000}).encode()  # cap: 4096 bytes
    answers = await asyncio.to_thread(reply_and_ping, gateway.port, order.id, too_big)
    assert len(answers) == 1 and answers[0][0] == OPCODE_CLOSE
    assert close_code(answers[0][1]) == 1009


async def test_a_gateway_stopped_during_a_flood_leaves_no_pending_task(
    redis_server: LocalRedisServer, store_url: str, store: Store, tmp_path: Path
) -> None:
    log = tmp_path / "gateway.log"
    with started_gateway(redis_server, store_url, log, NO_BUDGET) as gw:
        order = await place_order(store)
        with open_raw(gw.port, tracking_path(order.id)) as sock:
            sent, _ = await asyncio.to_thread(flood, sock, 100_000)
            assert sent > 0
            # SIGTERM, the socket still open. The stop takes 0.4-1.5 s here, idle; on a
            # busy machine (two CPU burners) it took over the default 5 s grace and the
            # process was killed: the grace is what the test allows, not what it measures.
            stop = functools.partial(gw.tree.stop, grace=STOP_GRACE_S)
            codes = await asyncio.to_thread(stop)
    assert codes == {"api": 0}, gw.log()
    assert "Task was destroyed but it is pending" not in log.read_text()

"""The admin port: /livez, /readyz and /metrics of a running App, against real servers.

Readiness must fail for the reasons a cluster needs to see — the App not running, Redis
not answering, an agent's consumer task gone — and recover when the cause does.
Requests are written on raw sockets so that malformed ones really reach the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import pytest

from orderflow.runtime import App, Record, Stream
from orderflow.runtime.admin import AdminServer
from orderflow.runtime.health import app_readiness
from orderflow.runtime.localserver import LocalRedisServer, free_port
from tests.runtime.worker_process import WorkerPool, wait_until


class Ping(Record, event_type="admin.ping.v1"):
    n: int


Reply = tuple[int, dict[str, str], bytes]


async def request(port: int, raw: bytes) -> Reply:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split(" ")[1]), headers, body


async def get(port: int, path: str, method: str = "GET") -> Reply:
    return await request(port, f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())


async def readiness(port: int) -> tuple[int, dict[str, Any]]:
    status, _, body = await get(port, "/readyz")
    return status, json.loads(body)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def make_app(url: str, *, body_returns: bool = False) -> App:
    app = App("admintest", broker=url, block_ms=100)
    pings = app.topic("admin-pings", value_type=Ping)

    async def handle(stream: Stream[Ping]) -> None:
        if body_returns:  # a bug: the body ends before shutdown and is never restarted
            return
        async for _ in stream:
            pass

    app.agent(pings, name="handle")(handle)

    @app.timer(60.0, name="tick")
    async def tick() -> None:
        return None

    return app


@pytest.fixture
async def admin_of() -> AsyncIterator[Callable[[App], Awaitable[AdminServer]]]:
    servers: list[AdminServer] = []

    async def start(app: App) -> AdminServer:
        server = AdminServer("127.0.0.1", 0, partial(app_readiness, app))
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


async def test_ready_only_while_the_app_runs_and_every_route_answers(redis_url, admin_of):
    app = make_app(redis_url)
    admin = await admin_of(app)
    port = admin.port

    status, body = await readiness(port)  # a worker waiting for Redis looks like this
    assert status == 503 and body == {
        "ready": False,
        "checks": {"app": "not running (starting or stopped)"},
    }
    assert (await get(port, "/livez"))[0] == 200

    await app.start()
    try:
        status, body = await readiness(port)
        assert status == 200 and body["ready"] is True
        checks = body["checks"]
        assert checks["app"] == checks["redis"] == checks["agent:handle"] == "ok"
        assert checks["task:admintest:scheduler"] == checks["task:admintest:timer:tick"] == "ok"
        assert all(detail == "ok" for detail in checks.values()), checks

        status, headers, metrics = await get(port, "/metrics?name[]=x")
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
        assert b"orderflow_events_processed_total" in metrics

        status, headers, empty = await get(port, "/readyz", method="HEAD")
        assert status == 200 and empty == b"" and int(headers["Content-Length"]) > 0
        status, headers, _ = await get(port, "/readyz", method="POST")
        assert status == 405 and headers["Allow"] == "GET, HEAD"
        assert (await get(port, "/admin"))[0] == 404
        assert (await request(port, b"hello there\r\n\r\n"))[0] == 400
        assert (await request(port, b"GET /" + b"x" * 10_000 + b" HTTP/1.1\r\n\r\n"))[0] == 400
    finally:
        await app.stop()
    status, body = await readiness(port)
    assert status == 503 and body["checks"] == {"app": "not running (starting or stopped)"}


async def test_an_agent_body_that_returned_makes_the_worker_unready(redis_url, admin_of):
    app = make_app(redis_url, body_returns=True)
    admin = await admin_of(app)
    await app.start()
    try:

        async def unready() -> bool:
            status, body = await readiness(admin.port)
            return status == 503 and body["checks"]["agent:handle"] == "task ended"

        await eventually(unready, "the agent check to fail")
        _, body = await readiness(admin.port)
        assert body["checks"]["redis"] == "ok"  # only the agent is named
    finally:
        await app.stop()


async def test_unready_while_redis_is_gone_and_ready_again_when_it_is_back(
    fresh_server: LocalRedisServer, admin_of, caplog
):
    caplog.set_level(logging.INFO, logger="orderflow.admin")
    app = make_app(fresh_server.url)
    admin = await admin_of(app)
    await app.start()
    try:
        assert (await readiness(admin.port))[0] == 200
        fresh_server.stop()

        async def redis_down() -> bool:
            status, body = await readiness(admin.port)
            checks = body["checks"]
            return (
                status == 503
                and checks["redis"].startswith("cannot reach Redis")
                and (checks["agent:handle"].startswith("cannot reach Redis ("))
            )

        await eventually(redis_down, "the redis and agent checks to fail")
        _, body = await readiness(admin.port)
        assert str(fresh_server.port) not in json.dumps(body)  # what, never where

        fresh_server.start()

        async def ready() -> bool:
            return (await readiness(admin.port))[0] == 200

        await eventually(ready, "readiness to come back", within=60)
    finally:
        await app.stop()
    changes = [r.getMessage() for r in caplog.records if r.name == "orderflow.admin"]
    assert changes[0] == "ready: every check passes"
    assert changes[1].startswith("not ready: redis (cannot reach Redis")
    assert changes[2] == "ready: every check passes"
    assert len([c for c in changes if c.startswith("not ready")]) == 1  # one line, not per probe


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:  # not listening (yet), or no answer within the timeout
        return 0, b""


def log_messages(output: str) -> str:
    return "\n".join(json.loads(line)["message"] for line in output.splitlines() if line[:1] == "{")


def test_the_worker_command_serves_its_admin_port_from_before_redis_is_up(tmp_path):
    """`orderflow worker --admin-port`: alive and "starting" while it waits for Redis,
    ready once its App runs, with the environment variable the chart sets."""
    redis_port, admin_port = free_port(), free_port()
    pool = WorkerPool(f"redis://127.0.0.1:{redis_port}/0", tmp_path)
    try:
        worker = pool.start(env={"ORDERFLOW_ADMIN_PORT": str(admin_port)})
        wait_until(
            lambda: http_get(admin_port, "/livez")[0] == 200 or not worker.alive(),
            timeout=60,
            what="/livez while waiting for Redis",
        )
        status, body = http_get(admin_port, "/readyz")
        assert status == 503 and json.loads(body)["checks"] == {
            "app": "not running (starting or stopped)"
        }
        with LocalRedisServer(port=redis_port):
            banner = f"admin http://0.0.0.0:{admin_port} (/metrics /livez /readyz)"
            wait_until(
                lambda: banner in log_messages(worker.output()) or not worker.alive(),
                timeout=60,
                what="the start banner naming the admin port",
            )
            assert worker.alive(), worker.output()
            status, body = http_get(admin_port, "/readyz")
            assert status == 200, body
            worker.signal(signal.SIGTERM)
            assert worker.wait(timeout=60) == 0
    finally:
        pool.close()


async def test_livez_is_not_answered_while_the_event_loop_is_blocked(redis_url, admin_of):
    """Served by the loop, not a thread: a synchronous call that blocks the loop must
    fail the liveness probe (which then restarts the pod)."""
    admin = await admin_of(make_app(redis_url))
    loop = asyncio.get_running_loop()

    def probe_while_blocked() -> tuple[int, bytes]:
        time.sleep(0.2)  # the loop is blocked by now
        return http_get(admin.port, "/livez", timeout=0.5)

    probe = loop.run_in_executor(None, probe_while_blocked)
    time.sleep(2.0)  # noqa: ASYNC251 - the point: a handler blocking the loop
    assert await probe == (0, b"")  # timed out: no answer
    assert await loop.run_in_executor(None, http_get, admin.port, "/livez") == (200, b"ok\n")

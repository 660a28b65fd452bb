"""``orderflow demo`` for real: a subprocess on a free port, its own Valkey and SQLite.

It must print the URL, serve the UI and the menu, carry an order to
``delivered`` (zero simulator delays), and on SIGTERM stop every process it
started (API and its Sanic worker, four service workers, Valkey), exit 0 and
print its summary line. Run twice: with its private Valkey, and with
``ORDERFLOW_REDIS_URL`` pointing at the test session's server (no Valkey started).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis as redis_sync

from orderflow.runtime.localserver import LocalRedisServer, free_port
from tests.proctree import descendants, still_running
from tests.system.demo_process import (
    ROOT,
    START_TIMEOUT,
    http_get,
    http_post_json,
    pump_lines,
    wait_for_line,
)

STOP_TIMEOUT = 60.0


def flush(url: str) -> None:
    client = redis_sync.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("redis", ["private", "external"])
def test_demo_serves_the_system_and_stops_cleanly(
    tmp_path: Path, redis: str, request: pytest.FixtureRequest
) -> None:
    """``private``: the demo starts its own Valkey; ``external``: ORDERFLOW_REDIS_URL is used."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERFLOW_")}
    if redis == "external":
        server: LocalRedisServer = request.getfixturevalue("redis_server")
        flush(server.url)
        env["ORDERFLOW_REDIS_URL"] = server.url
    env.update(
        ORDERFLOW_PORT=str(port),
        ORDERFLOW_DATA_DIR=str(tmp_path / ".data"),
        ORDERFLOW_SIMULATOR_DELAY_MIN="0",
        ORDERFLOW_SIMULATOR_DELAY_MAX="0",
        PYTHONPATH=str(ROOT),
    )
    demo = subprocess.Popen(
        [sys.executable, "-m", "orderflow.agents.cli", "demo"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert demo.stdout is not None
    threading.Thread(target=pump_lines, args=(demo.stdout, lines), daemon=True).start()
    seen: list[str] = []
    try:
        url_line = wait_for_line(lines, f"http://127.0.0.1:{port}/", seen, START_TIMEOUT)
        assert "orderflow is running" in url_line
        base = f"http://127.0.0.1:{port}"

        status, content_type, body = http_get(base + "/")
        assert status == 200 and content_type.startswith("text/html")
        assert b"<html" in body.lower()
        status, content_type, body = http_get(base + "/api/v1/menu")
        assert status == 200 and "json" in content_type
        menu = json.loads(body)
        items = menu["items"] if isinstance(menu, dict) else menu
        assert len(items) >= 12

        order = http_post_json(
            base + "/api/v1/orders", {"lines": [{"item_id": items[0]["id"], "quantity": 1}]}
        )
        deadline = time.monotonic() + 60
        while True:
            _, _, body = http_get(f"{base}/api/v1/orders/{order['id']}")
            current = json.loads(body)
            if current["status"] == "delivered" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert [h["status"] for h in current["history"]] == [
            "created",
            "confirmed",
            "preparing",
            "out_for_delivery",
            "delivered",
        ]
        assert current["delivery"]["status"] == "delivered"
        assert (tmp_path / ".data" / "orderflow.db").exists()

        tree = descendants(demo.pid)
        # The default paired layout: orders + delivery, notifications + simulator.
        assert sum("orderflow.agents.cli worker" in cmd for cmd in tree.values()) == 2, tree
        assert any("orderflow.agents.cli api" in cmd for cmd in tree.values()), tree
        private_servers = [cmd for cmd in tree.values() if "valkey" in cmd]
        assert len(private_servers) == (1 if redis == "private" else 0), tree

        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=STOP_TIMEOUT) == 0, "".join(seen)
        summary = wait_for_line(lines, "orderflow demo stopped", seen, 10)
        assert "3/3 processes exited cleanly" in summary
        assert "1 order(s) in the store" in summary
        leftovers = {pid: cmd for pid, cmd in tree.items() if still_running(pid, cmd)}
        assert leftovers == {}
    finally:
        if demo.poll() is None:
            for pid in descendants(demo.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            demo.kill()
            demo.wait()
        if redis == "external":
            flush(env["ORDERFLOW_REDIS_URL"])  # leave the shared server as other tests expect it

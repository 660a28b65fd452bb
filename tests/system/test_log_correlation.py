"""One order, one correlation id, in the JSON logs of every process it passes through.

What docs/deploying.md promises an operator following an order in Loki: the id the
client sends as ``X-Correlation-ID`` comes back on the answer and is on the API's
log lines and on every worker's lines about that order, from ``placed`` to
``delivered``. Run on ``orderflow demo`` with ``ORDERFLOW_LOG_FORMAT=json``, the
way the docs show it; the lines are read as JSON, as a log store would.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from orderflow.runtime.localserver import free_port
from tests.system.test_demo import (
    ROOT,
    START_TIMEOUT,
    STOP_TIMEOUT,
    http_get,
    pump_lines,
    wait_for_line,
)

CORRELATION_ID = "trace-me-456"


def place_order(base: str, item_id: str) -> tuple[str, dict[str, Any]]:
    request = urllib.request.Request(
        base + "/api/v1/orders",
        data=json.dumps({"lines": [{"item_id": item_id, "quantity": 1}]}).encode(),
        headers={"content-type": "application/json", "x-correlation-id": CORRELATION_ID},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
        return response.headers["x-correlation-id"], json.loads(response.read())


def json_lines(text: list[str]) -> list[dict[str, Any]]:
    parsed = []
    for line in text:
        if line.startswith("{"):
            parsed.append(json.loads(line))
    return parsed


@pytest.mark.timeout(240)
def test_one_correlation_id_follows_an_order_through_every_process(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERFLOW_")}
    env.update(
        ORDERFLOW_PORT=str(port),
        ORDERFLOW_DATA_DIR=str(tmp_path / ".data"),
        ORDERFLOW_LOG_FORMAT="json",
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
        wait_for_line(lines, f"http://127.0.0.1:{port}/", seen, START_TIMEOUT)
        base = f"http://127.0.0.1:{port}"
        echoed, order = place_order(base, "margherita")
        assert echoed == CORRELATION_ID
        deadline = time.monotonic() + 60
        while json.loads(http_get(f"{base}/api/v1/orders/{order['id']}")[2])["status"] != (
            "delivered"
        ):
            assert time.monotonic() < deadline, "the order did not reach delivered"
            time.sleep(0.1)
        # The last worker line about the order may follow the status by a moment.
        wait_for_line(lines, f"order {order['id']} is now delivered", seen, 30)
    finally:
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=STOP_TIMEOUT)
    while not lines.empty():
        seen.append(lines.get())

    ours = [line for line in json_lines(seen) if line["correlation_id"] == CORRELATION_ID]
    by_service: dict[str, list[str]] = {}
    for line in ours:
        by_service.setdefault(line["service"], []).append(line["message"])
    assert set(by_service) >= {"orderflow-all", "orders", "delivery"}, by_service
    api = by_service["orderflow-all"]
    assert f"order {order['id']} placed: 1 line(s), total {order['total']}" in api
    assert any(m.startswith("POST /api/v1/orders 201 ") for m in api), api
    assert [m for m in by_service["orders"] if m.startswith(f"order {order['id']} is now")] == [
        f"order {order['id']} is now {status}"
        for status in ("confirmed", "preparing", "out_for_delivery", "delivered")
    ]
    assert any(m.endswith("is now delivered") for m in by_service["delivery"])
    # Every line about the order carries its id (the access lines of the test's own
    # GET polls are other requests, with ids of their own).
    about_order = [
        line
        for line in json_lines(seen)
        if order["id"] in line["message"] and line["logger"] != "orderflow.http.access"
    ]
    without = [line for line in about_order if line["correlation_id"] != CORRELATION_ID]
    assert about_order and without == []

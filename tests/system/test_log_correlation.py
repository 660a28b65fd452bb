"""One order, one correlation id, in the JSON logs of every process it passes through.

What docs/deploying.md promises an operator following an order in Loki: the id the
client sends as ``X-Correlation-ID`` comes back on the answer and is on the API's
log lines and on every worker's lines about that order, from ``placed`` to
``delivered``. Run on ``orderflow demo`` with ``ORDERFLOW_LOG_FORMAT=json``, the
way the docs show it; the lines are read as JSON, as a log store would.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.system.demo_process import RunningDemo, http_get

STOP_TIMEOUT = 60.0

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
    # The default layout runs orders and delivery in one worker process: each line still
    # names the service whose task wrote it (tests/runtime/test_service_names.py).
    demo = RunningDemo(tmp_path, {"ORDERFLOW_LOG_FORMAT": "json"})
    try:
        demo.wait_started()
        base = demo.base_url
        echoed, order = place_order(base, "margherita")
        assert echoed == CORRELATION_ID
        deadline = time.monotonic() + 60
        while json.loads(http_get(f"{base}/api/v1/orders/{order['id']}")[2])["status"] != (
            "delivered"
        ):
            assert time.monotonic() < deadline, "the order did not reach delivered"
            time.sleep(0.1)
        # The last worker line about the order may follow the status by a moment.
        demo.wait_for_line(f"order {order['id']} is now delivered", 30)
        demo.stop(STOP_TIMEOUT)
    finally:
        demo.kill_everything()
    seen = demo.drain()

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

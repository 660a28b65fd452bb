"""``orderflow demo --cluster`` for real: a subprocess that starts its own 3-master cluster.

It must say so in its banner, carry an order placed through the HTTP API and one placed
in the UI (Debian's Chromium, as tests/web/test_browser.py drives it) to ``delivered``
with the per-order topics in 3 partitions spread over the masters, and on SIGTERM stop
every process it started (API, four workers, six cluster nodes), free the nodes' ports,
exit 0 and print its summary line.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from orderflow.agents.topics import ORDERS_STREAM
from orderflow.runtime.connection import cluster_nodes
from orderflow.runtime.partitions import partition_streams
from orderflow.runtime.pytest_plugin import sync_client_for
from tests.proctree import descendants, still_running
from tests.system.demo_process import RunningDemo, http_get, http_post_json
from tests.web.checkout_form import fill_delivery_details
from tests.web.test_browser import CHROMIUM, CHROMIUM_ARGS

STOP_TIMEOUT = 90.0
UI_WAIT_MS = 60_000  # a guard against hanging, not a latency assertion
LIFECYCLE = ["created", "confirmed", "preparing", "out_for_delivery", "delivered"]


def wait_delivered(base: str, order_id: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        current: dict[str, Any] = json.loads(http_get(f"{base}/api/v1/orders/{order_id}")[2])
        if current["status"] == "delivered" or time.monotonic() > deadline:
            return current
        time.sleep(0.2)


def order_in_the_ui(base: str) -> str:
    """Order a margherita in Chromium, watch the timeline reach delivered and the menu's
    stock go down by one (the live-stock fan-out); the order's id."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(base + "/")
            margherita = page.locator('[data-testid="menu-item"][data-item-id="margherita"]')
            expect(margherita).to_be_visible(timeout=UI_WAIT_MS)
            stock_before = int(margherita.get_attribute("data-stock") or "-1")
            assert stock_before > 1
            margherita.get_by_role("button", name=re.compile("Add Margherita")).click()
            fill_delivery_details(page)
            page.get_by_test_id("place-order").click()
            expect(page.get_by_test_id("order-step-delivered")).to_have_attribute(
                "data-state", "done", timeout=UI_WAIT_MS
            )
            for step in ("waiting", "on_the_way", "delivered"):
                expect(page.get_by_test_id(f"delivery-step-{step}")).to_have_attribute(
                    "data-state", "done"
                )
            # The live menu follows every partition of orders-stream (order.created.v1).
            expect(margherita).to_have_attribute(
                "data-stock", str(stock_before - 1), timeout=UI_WAIT_MS
            )
            return page.get_by_test_id("order-id").inner_text()
        finally:
            browser.close()


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.browser
@pytest.mark.timeout(420)
def test_demo_on_a_private_cluster_delivers_and_stops_cleanly(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (Debian package 'chromium'; .ci/run installs it)")
    demo = RunningDemo(tmp_path, args=("--cluster",))
    try:
        demo.wait_started()
        banner = demo.wait_for_line("redis: redis+cluster://", 10)
        assert "(a private cluster: 3 masters + 3 replicas;" in banner
        assert "per-order topics in 3 partitions)" in banner
        cluster_url = banner.split("redis: ", 1)[1].split()[0]
        nodes, _ = cluster_nodes(cluster_url)
        tree = descendants(demo.pid)
        servers = {pid: cmd for pid, cmd in tree.items() if cmd.endswith("[cluster]")}
        assert len(servers) == 6, tree
        assert sum("orderflow.agents.cli worker" in cmd for cmd in tree.values()) == 2, tree

        menu = json.loads(http_get(demo.base_url + "/api/v1/menu")[2])
        line = {"item_id": menu["items"][0]["id"], "quantity": 1}
        try:
            order = http_post_json(demo.base_url + "/api/v1/orders", {"lines": [line]})
        except AssertionError as exc:  # with the demo's log: the API logs why it failed
            raise AssertionError(f"{exc}\n--- demo output ---\n{''.join(demo.drain())}") from exc
        current = wait_delivered(demo.base_url, order["id"])
        assert [h["status"] for h in current["history"]] == LIFECYCLE
        assert current["delivery"]["status"] == "delivered"

        ui_order = order_in_the_ui(demo.base_url)
        assert wait_delivered(demo.base_url, ui_order)["status"] == "delivered"

        # The orders topic is 3 streams, on at least two of the 3 masters.
        client = sync_client_for(cluster_url)
        try:
            partitions = partition_streams(ORDERS_STREAM, 3)
            assert not client.exists(ORDERS_STREAM)
            owners = {client.get_node_from_key(name).port for name in partitions}  # type: ignore[attr-defined]
            assert len(owners) >= 2
        finally:
            client.close()

        demo.process.send_signal(signal.SIGTERM)
        assert demo.process.wait(timeout=STOP_TIMEOUT) == 0, demo.output()
        summary = demo.wait_for_line("orderflow demo stopped", 10)
        assert "3/3 processes exited cleanly" in summary  # the API and the paired workers
        assert "2 order(s) in the store" in summary
        leftovers = {pid: cmd for pid, cmd in tree.items() if still_running(pid, cmd)}
        assert leftovers == {}
        assert all(port_is_free(port) for _, port in nodes)
    finally:
        demo.kill_everything()


def test_cluster_refuses_an_external_redis_url(tmp_path: Path) -> None:
    """``--cluster`` with ORDERFLOW_REDIS_URL set: a clear error, nothing started."""
    demo = RunningDemo(
        tmp_path, {"ORDERFLOW_REDIS_URL": "redis://127.0.0.1:1/0"}, args=("--cluster",)
    )
    try:
        assert demo.process.wait(timeout=60) == 2
        assert "--cluster starts a private cluster" in demo.wait_for_line("--cluster", 10)
    finally:
        demo.kill_everything()

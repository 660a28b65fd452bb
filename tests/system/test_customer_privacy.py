"""Delivery details never leave the store: not in a stream entry, a Redis key or a log line.

The whole system as ``orderflow demo`` runs it (API, orders, delivery, notifications,
simulator, outbox relays; its own Valkey and SQLite file), logging at DEBUG so that
nothing a verbose deployment would write is missed. Orders carry recognisable
details -- a name and an address with a fresh canary, a phone number with fresh
digits -- and go through every path:

* two simulated orders to ``delivered`` (order, delivery, notifications, simulator);
* one placed with ``"simulate": false`` whose malformed status report is dead-lettered
  (the dead-letter path: the entry and its reason land in ``dead-letters``);
* a retried order (Idempotency-Key replay) and two bad requests (422: a bad phone,
  a control character), whose bodies carry the canary too;
* the operator console reading the orders (it may show the details; it must not log them).

The API's ``/metrics`` is read too.

Then every key of the demo's Redis is read (``XRANGE`` of every stream, dead letters
included, and the value of every other key) and every line every process wrote, and
the canary is in none of them -- while the order ids are, which shows the reading
reached the data.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from orderflow.models.documents import utc_now
from orderflow.models.events import OrderStatusReported
from orderflow.runtime.envelope import Envelope
from tests.system.demo_process import RunningDemo, http_get

OPS_TOKEN = "privacy-test-operator-token-0123456789"
STOP_TIMEOUT = 60.0


def request(
    base: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        base + path,
        data=data,
        headers={"content-type": "application/json", **(headers or {})},
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_until(what: str, check: Any, within: float = 90.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {within:.0f}s"
        time.sleep(0.1)


def every_redis_value(client: Any) -> tuple[dict[str, str], int]:
    """Everything in the database as text, by key; and how many stream entries were read."""
    values: dict[str, str] = {}
    entries = 0
    for key in client.scan_iter(count=500):
        kind = client.type(key).decode()
        name = key.decode(errors="replace")
        if kind == "stream":
            rows = client.xrange(key)
            entries += len(rows)
            value: Any = [(entry_id, fields) for entry_id, fields in rows]
            value.append(client.xinfo_groups(key))
        elif kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            raise AssertionError(f"key {name} of unexpected type {kind}")
        values[name] = repr(value) if not isinstance(value, bytes) else value.decode("latin-1")
    return values, entries


@pytest.mark.timeout(300)
def test_delivery_details_reach_no_stream_entry_redis_key_or_log_line(tmp_path: Path) -> None:
    canary = f"Privacy-Canary-{uuid.uuid4().hex}"
    phone_digits = f"{uuid.uuid4().int % 10**10:010d}"
    phone = f"+99 {phone_digits[:3]} {phone_digits[3:6]} {phone_digits[6:]}"
    secrets = [canary, phone, phone_digits, canary.lower(), json.dumps(canary)[1:-1]]

    def customer(n: int) -> dict[str, str]:
        return {
            "name": f"Zed Q. {canary}-{n}",
            "address": f"{n} {canary} Street, Flat 7",
            "phone": phone,
        }

    demo = RunningDemo(
        tmp_path,
        {"ORDERFLOW_LOG_LEVEL": "DEBUG", "ORDERFLOW_OPERATOR_TOKEN": OPS_TOKEN},
    )
    try:
        demo.wait_started()
        base = demo.base_url
        redis_line = demo.wait_for_line("redis: ", 30)
        redis_url = re.search(r"redis: (\S+)", redis_line)
        assert redis_url is not None
        client: Any = redis.Redis.from_url(redis_url.group(1))  # sync redis-py: loosely typed

        delivered = []
        for n in range(2):
            status, order = request(
                base,
                "/api/v1/orders",
                {"lines": [{"item_id": "margherita", "quantity": 1}], "customer": customer(n)},
                {"Idempotency-Key": f"privacy-{n}-{canary}"},
            )
            assert status == 201, order
            assert order["customer"] == customer(n)
            delivered.append(order["id"])
        # A retry replays the first order (same key, same body): the details again, once.
        status, replay = request(
            base,
            "/api/v1/orders",
            {"lines": [{"item_id": "margherita", "quantity": 1}], "customer": customer(0)},
            {"Idempotency-Key": f"privacy-0-{canary}"},
        )
        assert status == 201 and replay["id"] == delivered[0]

        status, manual = request(
            base,
            "/api/v1/orders",
            {
                "lines": [{"item_id": "tiramisu", "quantity": 1}],
                "customer": customer(2),
                "simulate": False,
            },
        )
        assert status == 201, manual
        for bad in ({"phone": f"{canary}"}, {"name": f"Zed\n{canary}"}):
            status, problem = request(
                base,
                "/api/v1/orders",
                {
                    "lines": [{"item_id": "margherita", "quantity": 1}],
                    "customer": {**customer(3), **bad},
                },
            )
            assert status == 422 and problem["errors"], problem

        # The dead-letter path: a status report for the manual order that no service can
        # apply (no such status) is dead-lettered with its reason.
        report = Envelope.new(
            OrderStatusReported(order_id=manual["id"], status="confirmed", at=utc_now()),
            source="privacy-test",
            key=manual["id"],
        ).to_fields()
        report["payload"] = report["payload"].replace('"confirmed"', '"teleported"')
        client.xadd("order-status-stream", report)
        wait_until(
            "the dead letter",
            lambda: any(
                manual["id"].encode() in fields.get(b"raw", b"")
                for _, fields in client.xrange("dead-letters")
            ),
        )
        for order_id in delivered:
            wait_until(
                f"order {order_id} delivered",
                lambda order_id=order_id: (
                    json.loads(http_get(f"{base}/api/v1/orders/{order_id}")[2])["status"]
                    == "delivered"
                ),
            )
        for order_id in delivered:
            demo.wait_for_line(f"order {order_id} is now delivered", 30)
        # The stored order still has its details, and the console shows them.
        fetched = json.loads(http_get(f"{base}/api/v1/orders/{manual['id']}")[2])
        assert fetched["customer"] == customer(2)
        status, console = request(
            base, "/api/v1/ops/orders?limit=10", headers={"Authorization": f"Bearer {OPS_TOKEN}"}
        )
        assert status == 200
        assert {o["id"]: o["customer"] for o in console["orders"]}[manual["id"]] == customer(2)

        values, entries = every_redis_value(client)
        metrics = http_get(f"{base}/metrics")[2].decode()
        client.close()
        demo.stop(STOP_TIMEOUT)
    finally:
        demo.kill_everything()
    output = "".join(demo.drain())

    # The reading reached the data: every order is in the streams and in the logs.
    streams = "\n".join(values.values())
    assert entries >= 20, values.keys()
    assert "dead-letters" in values
    for order_id in [*delivered, manual["id"]]:
        assert order_id in streams
        assert order_id in output
    assert "teleported" in values["dead-letters"]
    assert len(output.splitlines()) > 100  # DEBUG: the processes said a lot
    assert "orderflow_orders_placed_total" in metrics
    # ...and the details are in none of it.
    for secret in secrets:
        leaked = [key for key, value in values.items() if secret in value]
        assert leaked == [], f"{secret!r} found in Redis keys {leaked}"
        lines = [line for line in output.splitlines() if secret in line]
        assert lines == [], f"{secret!r} found in log lines:\n" + "\n".join(lines[:5])
        assert secret not in metrics
    for log_file in (tmp_path / ".data").rglob("*.log"):
        text = log_file.read_text(errors="replace")
        assert not any(secret in text for secret in secrets), log_file

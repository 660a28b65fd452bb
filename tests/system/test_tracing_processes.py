"""One order is one trace, from the POST to ``delivered``, across real processes.

``orderflow demo`` runs as a user runs it (the API and the four services in the default
layout's worker processes, two services to a process), with ``ORDERFLOW_TRACING=true``
and the standard ``OTEL_*`` variables pointing the OTLP/HTTP exporter of every process
at a receiver this test serves. The
order is placed with a client ``traceparent``; the ``order.status_updated.v1
{delivered}`` entry on the orders stream names the span that wrote it, and the test
walks that span's parents back to the POST: every hop a received span, all of one
trace, through the orders, simulator and delivery services.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis as redis_sync

from orderflow.runtime.envelope import Envelope
from orderflow.runtime.localserver import LocalRedisServer
from tests.system.demo_process import RunningDemo, http_get
from tests.system.otlp_receiver import OtlpReceiver, ReceivedSpan

CLIENT_TRACE = "5b8efff798038103d269b633813fc60c"
CLIENT_SPAN = "eee19b7ec3c1b174"
REFUSED_TRACE = "0af7651916cd43dd8448eb211c80319c"  # the client's trace of a refused order
SERVER, CONSUMER = 2, 5  # OTLP's Span.SpanKind values
ORDER_REPORT = ("orders", "persist_order_status order.status_reported.v1")
ORDER_UPDATE = ("simulator", "advance_orders order.status_updated.v1")
DELIVERY_REPORT = ("delivery", "persist_delivery_status delivery.status_reported.v1")
EXPECTED_CHAIN = [
    ("orderflow-all", "POST /api/v1/orders"),
    ("simulator", "start_orders order.simulate.v1"),
    ORDER_REPORT,  # confirmed
    ORDER_UPDATE,
    ORDER_REPORT,  # preparing
    ORDER_UPDATE,
    ORDER_REPORT,  # out_for_delivery
    ("delivery", "create_deliveries order.status_updated.v1"),
    ("simulator", "start_deliveries delivery.simulate.v1"),
    DELIVERY_REPORT,  # on_the_way
    ("simulator", "advance_deliveries delivery.status_updated.v1"),
    DELIVERY_REPORT,  # delivered
    ORDER_REPORT,  # delivered
]


def post_order(base: str, body: object, trace_id: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        base + "/api/v1/orders",
        data=json.dumps(body).encode(),
        headers={
            "content-type": "application/json",
            "traceparent": f"00-{trace_id}-{CLIENT_SPAN}-01",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def delivered_entry(client: redis_sync.Redis, order_id: str) -> Envelope | None:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange("orders-stream")  # type: ignore[assignment]
    for _, fields in entries:
        envelope = Envelope.from_fields(fields)
        if (
            envelope.event_type == "order.status_updated.v1"
            and envelope.payload.get("order_id") == order_id
            and envelope.payload.get("status") == "delivered"
        ):
            return envelope
    return None


def chain_to_root(spans: list[ReceivedSpan], span_id: str) -> list[ReceivedSpan] | None:
    """The span ``span_id`` and its ancestors up to the first one whose parent was not
    received (the POST, whose parent is the client's); ``None`` while one is missing."""
    by_id = {span.span_id: span for span in spans}
    chain: list[ReceivedSpan] = []
    current = by_id.get(span_id)
    while current is not None:
        chain.append(current)
        if current.parent_id == CLIENT_SPAN:
            return chain
        current = by_id.get(current.parent_id)
    return None


@pytest.mark.timeout(240)
def test_one_order_is_one_trace_from_post_to_delivered(
    tmp_path: Path, redis_server: LocalRedisServer
) -> None:
    client = redis_sync.Redis.from_url(redis_server.url)
    client.flushall()
    with OtlpReceiver() as receiver:
        demo = RunningDemo(
            tmp_path,
            {
                "ORDERFLOW_REDIS_URL": redis_server.url,
                "ORDERFLOW_TRACING": "true",
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_TRACES_SAMPLER": "parentbased_always_on",
                "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: spans leave soon after they end
            },
            # The default layout: orders and delivery share a worker process, and
            # each span still names the service that handled its event.
        )
        try:
            demo.wait_started()
            _, _, body = http_get(demo.base_url + "/api/v1/menu")
            menu = json.loads(body)
            items = menu["items"] if isinstance(menu, dict) else menu
            status, order = post_order(
                demo.base_url, {"lines": [{"item_id": items[0]["id"], "quantity": 1}]}, CLIENT_TRACE
            )
            assert status == 201
            refused_status, problem = post_order(demo.base_url, {"lines": []}, REFUSED_TRACE)
            assert refused_status == 422, problem
            order_id = str(order["id"])

            deadline = time.monotonic() + 60  # a generous bound for the whole lifecycle
            envelope = None
            while envelope is None and time.monotonic() < deadline:
                envelope = delivered_entry(client, order_id)
                time.sleep(0.1)
            assert envelope is not None, demo.output()
            assert envelope.traceparent is not None
            _, trace_id, writer_span, _ = envelope.traceparent.split("-")
            assert trace_id == CLIENT_TRACE

            chain = None
            while chain is None and time.monotonic() < deadline:
                chain = chain_to_root(receiver.snapshot(), writer_span)
                time.sleep(0.1)
            refused: list[ReceivedSpan] = []
            while not refused and time.monotonic() < deadline:
                refused = [s for s in receiver.snapshot() if s.trace_id == REFUSED_TRACE]
                time.sleep(0.1)
            assert chain is not None, f"spans received: {receiver.snapshot()}"

            demo.process.send_signal(signal.SIGTERM)
            assert demo.process.wait(timeout=60) == 0, demo.output()
        finally:
            demo.kill_everything()
            client.flushall()
            client.close()

    root_first = list(reversed(chain))
    post = root_first[0]
    assert post.service == "orderflow-all" and post.kind == SERVER
    assert post.name == "POST /api/v1/orders"
    assert post.attributes["http.response.status_code"] == 201
    assert all(span.trace_id == CLIENT_TRACE for span in root_first)
    assert all(span.kind == CONSUMER for span in root_first[1:])
    # Every hop is an event handled, named after its agent and event type, and the
    # span that wrote "delivered" is the orders service persisting the report.
    assert root_first[-1].service == "orders"
    assert root_first[-1].name == "persist_order_status order.status_reported.v1"
    for span in root_first[1:]:
        assert span.name.endswith(" " + str(span.attributes["orderflow.event_type"]))
        assert (
            span.attributes["orderflow.correlation_id"]
            == post.attributes["orderflow.correlation_id"]
        )
    # The order's path, hop by hop: placed -> the simulator confirms -> orders records
    # it -> ... -> the delivery service records "delivered" and reports it -> orders.
    assert [(span.service, span.name) for span in root_first] == EXPECTED_CHAIN
    assert len({span.span_id for span in root_first}) == len(root_first)

    # Spans of the same trace from every service arrived, the notifications too.
    in_trace = {span.service for span in receiver.spans if span.trace_id == CLIENT_TRACE}
    assert in_trace == {"orderflow-all", "orders", "simulator", "delivery", "notifications"}

    # A refused order is a span too (its status code), and starts no event span.
    [refused_span] = refused
    assert refused_span.name == "POST /api/v1/orders" and refused_span.parent_id == CLIENT_SPAN
    assert refused_span.attributes["http.response.status_code"] == 422

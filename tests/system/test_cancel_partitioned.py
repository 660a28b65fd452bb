"""Cancelling with the per-order topics partitioned (``ORDERFLOW_TOPIC_PARTITIONS=3``), on
the session's server and on its private cluster (the fixtures of
``test_partitioned_system.py``).

Orders placed with ``simulate: false`` (nothing moves them but the test) until their ids
cover every partition; each is cancelled. Its ``order.cancelled.v1`` lands in its own
partition of orders-stream only, the notifications cache (reading every partition) says
``cancelled``, the stock announcement goes to the one menu-stream, and a status
reported afterwards on the order's partition of order-status-stream is dropped by the
orders worker and counted.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from orderflow.agents.cancellation import cancel_order
from orderflow.agents.manual_steps import OPERATOR_SOURCE
from orderflow.agents.outbox import outbox_message, outbox_topic
from orderflow.agents.placement import place_order
from orderflow.agents.status_cache import read_latest_status
from orderflow.agents.topics import MENU_STREAM, ORDER_STATUS_STREAM, ORDERS_STREAM
from orderflow.models.documents import OrderLineRequest, utc_now
from orderflow.models.events import OrderStatusReported
from orderflow.models.store import Store
from orderflow.runtime import App, Envelope
from orderflow.runtime.partitions import partition_of, partition_streams
from orderflow.runtime.testing import eventually
from tests.system.conftest import all_consumed, stream_envelopes
from tests.system.test_partitioned_system import (
    MAX_ORDERS,
    PARTITIONS,
    redis_client,
    redis_url,
    three_partitions,
)

__all__ = ["redis_client", "redis_url", "three_partitions"]  # fixtures used by name


def dropped_confirmed() -> float:
    sample = REGISTRY.get_sample_value(
        "orderflow_status_dropped_after_cancel_total", {"reported": "confirmed"}
    )
    return sample or 0.0


async def stock_of(store: Store) -> dict[str, int]:
    return {item.id: item.stock for item in await store.list_menu()}


@pytest.mark.timeout(240)
async def test_cancels_land_in_their_partition_and_later_reports_are_dropped(
    services: list[App], store: Store, redis_client: aioredis.Redis, publisher: App
) -> None:
    dropped_before = dropped_confirmed()
    stock_before = await stock_of(store)
    order_ids: list[str] = []
    while len({partition_of(i, PARTITIONS) for i in order_ids}) < PARTITIONS:
        assert len(order_ids) < MAX_ORDERS
        line = OrderLineRequest(item_id="diavola", quantity=1)
        placed = await place_order(store, publisher, [line], simulate=False)
        order_ids.append(placed.order.id)
    for order_id in order_ids:
        assert (await cancel_order(store, publisher, order_id)).cancelled
        # What a late report would be: the orders worker must drop it.
        report = outbox_message(
            ORDER_STATUS_STREAM,
            OrderStatusReported(order_id=order_id, status="confirmed", at=utc_now()),
            source=OPERATOR_SOURCE,
            key=order_id,
        )
        await outbox_topic(publisher, ORDER_STATUS_STREAM).send_envelope(report.envelope)

    await eventually(lambda: all_consumed(redis_client), timeout=60)
    await eventually(lambda: dropped_confirmed() - dropped_before == len(order_ids), timeout=30)

    for order_id in order_ids:
        order = await store.get_order(order_id)
        assert order is not None
        assert [h.status for h in order.history] == ["created", "cancelled"]
        home = partition_of(order_id, PARTITIONS)
        for index, name in enumerate(partition_streams(ORDERS_STREAM, PARTITIONS)):
            entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis_client.xrange(name)  # type: ignore[assignment]
            cancels = [
                e
                for e in (Envelope.from_fields(fields) for _, fields in entries)
                if e.event_type == "order.cancelled.v1" and e.payload["order_id"] == order_id
            ]
            assert len(cancels) == (1 if index == home else 0), (index, home)
        cached = await read_latest_status(redis_client, order_id)
        assert cached is not None and cached["status"] == "cancelled"
    announced = await stream_envelopes(redis_client, MENU_STREAM)
    assert [e.event_type for e in announced] == ["stock.changed.v1"] * len(order_ids)
    assert await stock_of(store) == stock_before  # every order's diavola came back

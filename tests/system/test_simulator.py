"""The simulator never sleeps in an agent: long delays become parked delayed events.

With delays of 30-60 s, the simulator still handles every event at once: each
report it owes is parked in the runtime's delayed sets, nothing has reached the
status streams yet, and its consumer groups have nothing pending. A sleeping
implementation would hold each event (and block its agent) for the delay.
It reacts to simulation requests and to persisted statuses that have a
successor, and to nothing else: not to the statuses of an order placed with
``simulate: false``.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from orderflow.agents.simulator import DelayPicker, create_simulator_app
from orderflow.agents.topics import (
    DELIVERIES_STREAM,
    DELIVERY_STATUS_STREAM,
    ORDER_STATUS_STREAM,
    ORDERS_STREAM,
    SIMULATE_DELIVERY_STREAM,
    SIMULATE_ORDER_STREAM,
)
from orderflow.models.documents import utc_now
from orderflow.models.events import (
    DeliverySimulate,
    DeliveryStatusUpdated,
    OrderCreated,
    OrderSimulate,
    OrderStatusUpdated,
)
from orderflow.runtime import Envelope, Record, keys
from orderflow.runtime.testing import eventually, run_app

N = 25


def hex_id(n: int) -> str:
    return f"{n:032x}"


async def publish(redis: aioredis.Redis, stream: str, value: Record) -> None:
    fields: Any = Envelope.new(value, source="test").to_fields()
    await redis.xadd(stream, fields)


async def test_long_delays_are_parked_not_slept(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    app = create_simulator_app(broker=redis_url, delay_min=30.0, delay_max=60.0)
    async with run_app(app):
        for n in range(N):
            order, delivery, now = hex_id(n), hex_id(n + 1000), utc_now()
            # Owed: a report each (4 per n)...
            await publish(
                redis_client,
                SIMULATE_ORDER_STREAM,
                OrderSimulate(order_id=order, status="confirmed"),
            )
            await publish(
                redis_client,
                ORDERS_STREAM,
                OrderStatusUpdated(order_id=order, status="confirmed", at=now, previous="created"),
            )
            await publish(
                redis_client,
                SIMULATE_DELIVERY_STREAM,
                DeliverySimulate(delivery_id=delivery, order_id=order, status="on_the_way"),
            )
            await publish(
                redis_client,
                DELIVERIES_STREAM,
                DeliveryStatusUpdated(
                    delivery_id=delivery,
                    order_id=order,
                    status="on_the_way",
                    at=now,
                    previous="waiting",
                ),
            )
            # ...and nothing for these: no successor, or not a status update.
            await publish(
                redis_client,
                ORDERS_STREAM,
                OrderStatusUpdated(
                    order_id=order, status="out_for_delivery", at=now, previous="preparing"
                ),
            )
            await publish(
                redis_client,
                ORDERS_STREAM,
                OrderCreated(order_id=order, lines=[], total=0, created_at=now),
            )
            await publish(redis_client, DELIVERIES_STREAM, DeliveryStatusUpdated(
                delivery_id=delivery, order_id=order, status="delivered", at=now,
                previous="on_the_way"))  # fmt: skip
            # ...nor for an order placed with simulate=false: an operator moves it on.
            await publish(redis_client, ORDERS_STREAM, OrderStatusUpdated(
                order_id=order, status="confirmed", at=now, previous="created",
                simulate=False))  # fmt: skip
            await publish(redis_client, DELIVERIES_STREAM, DeliveryStatusUpdated(
                delivery_id=delivery, order_id=order, status="on_the_way", at=now,
                previous="waiting", simulate=False))  # fmt: skip

        async def all_handled() -> bool:
            for stream in (
                SIMULATE_ORDER_STREAM,
                SIMULATE_DELIVERY_STREAM,
                ORDERS_STREAM,
                DELIVERIES_STREAM,
            ):
                info = await redis_client.xinfo_stream(stream)
                groups = await redis_client.xinfo_groups(stream)
                if [(g["pending"], g["last-delivered-id"]) for g in groups] != [
                    (0, info["last-generated-id"])
                ]:
                    return False
            return True

        await eventually(all_handled, timeout=30)
        # Every event is handled and acked while the reports it caused wait 30 s or more.
        assert await redis_client.zcard(keys.delayed_key(ORDER_STATUS_STREAM)) == 2 * N
        assert await redis_client.zcard(keys.delayed_key(DELIVERY_STATUS_STREAM)) == 2 * N
        assert await redis_client.xlen(ORDER_STATUS_STREAM) == 0
        assert await redis_client.xlen(DELIVERY_STATUS_STREAM) == 0


def test_delay_picker_stays_in_bounds() -> None:
    picker = DelayPicker(0.5, 2.0, seed=7)
    delays = [picker() for _ in range(1000)]
    assert min(delays) >= 0.5
    assert max(delays) <= 2.0
    assert len(set(delays)) > 900
    assert DelayPicker(0.0, 0.0)() == 0.0
    assert DelayPicker(3.0, 1.0)() == 3.0  # max below min: min wins (a misconfiguration)

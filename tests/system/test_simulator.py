"""The simulator never sleeps in an agent: long delays become parked delayed events.

With delays of 30-60 s, the simulator still handles every request at once: the
follow-ups are in the runtime's delayed sets, nothing has reached the status
streams yet, and the simulator's consumer group has nothing pending. A sleeping
implementation would hold each request (and block its agent) for the delay.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from agents.runtime import Envelope, keys
from agents.runtime.testing import eventually, run_app
from agents.simulator import DelayPicker, create_simulator_app
from agents.topics import (
    DELIVERY_STATUS_STREAM,
    ORDER_STATUS_STREAM,
    SIMULATE_DELIVERY_STREAM,
    SIMULATE_ORDER_STREAM,
)
from models.events import DeliverySimulate, OrderSimulate
from tests.system.conftest import all_consumed

REQUESTS = 50


def hex_id(n: int) -> str:
    return f"{n:032x}"


async def test_long_delays_are_parked_not_slept(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    app = create_simulator_app(broker=redis_url, delay_min=30.0, delay_max=60.0)
    async with run_app(app):
        for n in range(REQUESTS):
            order = OrderSimulate(order_id=hex_id(n), status="confirmed")
            delivery = DeliverySimulate(
                delivery_id=hex_id(n + 1000), order_id=hex_id(n), status="on_the_way"
            )
            await redis_client.xadd(
                SIMULATE_ORDER_STREAM,
                Envelope.new(order, source="test").to_fields(),  # type: ignore[arg-type]
            )
            await redis_client.xadd(
                SIMULATE_DELIVERY_STREAM,
                Envelope.new(delivery, source="test").to_fields(),  # type: ignore[arg-type]
            )

        async def all_parked() -> bool:
            return (
                await redis_client.zcard(keys.delayed_key(ORDER_STATUS_STREAM)) == REQUESTS
                and await redis_client.zcard(keys.delayed_key(DELIVERY_STATUS_STREAM)) == REQUESTS
                and await redis_client.zcard(keys.delayed_key(SIMULATE_ORDER_STREAM)) == REQUESTS
                and await redis_client.zcard(keys.delayed_key(SIMULATE_DELIVERY_STREAM)) == REQUESTS
            )

        await eventually(all_parked, timeout=30)
        # Every request is handled and acked while its follow-ups wait 30 s or more.
        for stream in (SIMULATE_ORDER_STREAM, SIMULATE_DELIVERY_STREAM):
            groups = await redis_client.xinfo_groups(stream)
            assert [g["pending"] for g in groups] == [0]
        assert await redis_client.xlen(ORDER_STATUS_STREAM) == 0
        assert await redis_client.xlen(DELIVERY_STATUS_STREAM) == 0
        assert not await all_consumed(redis_client)  # the parked events are still to come


def test_delay_picker_stays_in_bounds() -> None:
    picker = DelayPicker(0.5, 2.0, seed=7)
    delays = [picker() for _ in range(1000)]
    assert min(delays) >= 0.5
    assert max(delays) <= 2.0
    assert len(set(delays)) > 900
    assert DelayPicker(0.0, 0.0)() == 0.0
    assert DelayPicker(3.0, 1.0)() == 3.0  # max below min: min wins (a misconfiguration)

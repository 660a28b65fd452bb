"""The notifications cache merge: forward-only per order and per delivery, TTL refreshed.

The notifications service reads orders-stream and deliveries-stream
independently, so updates can arrive in any order; these tests feed the merge
script out-of-order and repeated updates directly.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from orderflow.agents.status_cache import (
    merge_delivery_status,
    merge_order_status,
    read_latest_status,
    status_key,
)

ORDER = "0" * 31 + "1"
DELIVERY = "0" * 31 + "2"


async def merge_order(redis: aioredis.Redis, status: str, at: str, ttl: int = 600) -> int:
    pipe = redis.pipeline(transaction=True)
    merge_order_status(pipe, order_id=ORDER, status=status, at=at, ttl_seconds=ttl)
    (changed,) = await pipe.execute()
    return int(changed)


async def merge_delivery(redis: aioredis.Redis, status: str, at: str) -> int:
    pipe = redis.pipeline(transaction=True)
    merge_delivery_status(
        pipe, order_id=ORDER, delivery_id=DELIVERY, status=status, at=at, ttl_seconds=600
    )
    (changed,) = await pipe.execute()
    return int(changed)


async def test_older_or_repeated_statuses_never_overwrite_newer(
    redis_client: aioredis.Redis,
) -> None:
    assert await read_latest_status(redis_client, ORDER) is None
    assert await merge_order(redis_client, "preparing", "t3") == 1
    assert await merge_order(redis_client, "confirmed", "t2") == 0  # late
    assert await merge_order(redis_client, "preparing", "t3") == 0  # repeated
    assert await merge_order(redis_client, "created", "t1") == 0  # late
    cached = await read_latest_status(redis_client, ORDER)
    assert cached == {"order_id": ORDER, "status": "preparing", "at": "t3", "delivery": None}
    assert await merge_order(redis_client, "out_for_delivery", "t4") == 1
    cached = await read_latest_status(redis_client, ORDER)
    assert cached is not None and cached["status"] == "out_for_delivery"


async def test_delivery_and_order_statuses_merge_independently(
    redis_client: aioredis.Redis,
) -> None:
    # The delivery stream may be read before the order's own update arrives.
    assert await merge_delivery(redis_client, "on_the_way", "t6") == 1
    assert await merge_delivery(redis_client, "waiting", "t5") == 0
    assert await merge_order(redis_client, "out_for_delivery", "t4") == 1
    assert await merge_delivery(redis_client, "delivered", "t7") == 1
    assert await merge_order(redis_client, "delivered", "t8") == 1
    assert await read_latest_status(redis_client, ORDER) == {
        "order_id": ORDER,
        "status": "delivered",
        "at": "t8",
        "delivery": {"delivery_id": DELIVERY, "status": "delivered", "at": "t7"},
    }


async def test_every_write_refreshes_the_ttl(redis_client: aioredis.Redis) -> None:
    await merge_order(redis_client, "created", "t1", ttl=50)
    assert 0 < await redis_client.ttl(status_key(ORDER)) <= 50
    await merge_order(redis_client, "confirmed", "t2", ttl=500)
    assert 50 < await redis_client.ttl(status_key(ORDER)) <= 500

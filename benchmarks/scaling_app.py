"""The no-op agent ``benchmarks/scaling.py`` runs in ``orderflow worker`` processes.

Two apps, one per topic layout: ``noop`` reads the plain stream ``scale`` and ``noop6``
reads ``scale6``, a topic of 6 partitions (so under Cluster its streams spread over the
masters). Each body counts itself in (``INCR scaling:ready``) and waits for
``scaling:go`` before its first read, so every worker process is connected and idle when
the clock starts: process start-up is not measured, only consuming.
"""

from __future__ import annotations

import asyncio
from typing import Any

from orderflow.runtime import App, Record

GROUP = "scaling-group"
READY_KEY = "scaling:ready"
GO_KEY = "scaling:go"
PLAIN_TOPIC = "scale"
PARTITIONED_TOPIC = "scale6"
PARTITIONS = 6


class Tick(Record, event_type="bench.scaling.tick.v1"):
    n: int


def noop_app(name: str, topic: str, partitions: int) -> App:
    app = App(name)

    @app.agent(app.topic(topic, value_type=Tick, partitions=partitions), group=GROUP)
    async def consume(stream: Any) -> None:
        redis = await app.ensure_connected()
        await redis.incr(READY_KEY)
        while not await redis.exists(GO_KEY):  # noqa: ASYNC110 - a Redis key, not a local flag
            await asyncio.sleep(0.005)
        async for _tick in stream:
            pass  # no work: what is measured is the runtime's own cost per event

    return app


noop = noop_app("scaling-noop", PLAIN_TOPIC, 1)
noop6 = noop_app("scaling-noop6", PARTITIONED_TOPIC, PARTITIONS)

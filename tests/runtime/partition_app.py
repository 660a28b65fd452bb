"""The App the partition tests run in real worker processes (``orderflow worker
tests.runtime.partition_app:app``).

One agent (``concurrency=4``) on a topic of 3 partitions. Per event it appends
``<consumer>|<key>|<seq>`` to a list on the event's partition (``event.atomic()``, so
the append commits with the dedupe mark: a redelivery cannot append twice). The lists
show which process handled what, and in which order.
"""

from __future__ import annotations

from typing import Any

from orderflow.runtime import App, Record
from orderflow.runtime.keys import stream_key

TOPIC = "part-stream"
GROUP = "part-group"
PARTITIONS = 3


class Step(Record, event_type="partition.step.v1"):
    key: str
    seq: int


def log_key(stream: str) -> str:
    """The list of handled steps of one partition (same Cluster slot as its stream)."""
    return stream_key(stream, "handled")


app = App("partitioned", claim_idle_ms=5000, metrics_interval=1.0)
steps = app.topic(TOPIC, value_type=Step, partitions=PARTITIONS)


@app.agent(steps, group=GROUP, concurrency=4)
async def handle(stream: Any) -> None:
    async for step in stream:
        event = stream.current_event
        async with event.atomic() as pipe:
            pipe.rpush(log_key(event.stream), f"{app.consumer_name}|{step.key}|{step.seq}")

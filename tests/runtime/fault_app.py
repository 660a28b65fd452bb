"""The App the fault tests run in real worker processes (``orderflow worker
tests.runtime.fault_app:app``).

Its one agent makes a Redis-side effect per event — ``HINCRBY`` of the event's
``seq`` in a hash — inside ``event.atomic()``, so the effect commits together
with the event's dedupe mark. A lost event shows up as a missing ``seq``; a
double effect as a count of 2. Knobs (environment, read at import):

* ``FAULT_CLAIM_IDLE_MS`` / ``FAULT_CLAIM_INTERVAL``: how soon a worker takes over
  the pending entries of a dead one;
* ``FAULT_MAX_DELIVERIES``, ``FAULT_RETRY_BASE``: poison handling;
* ``FAULT_STALL_AT``: the handler stalls forever on this seq (to be SIGKILLed
  while provably in the middle of the run);
* ``FAULT_SHUTDOWN_TIMEOUT``.

A ``poison`` event fails until the key :data:`FIXED_KEY` exists ("the fix is
deployed"). A ``sleep`` event records itself in :data:`STARTED_KEY` and then
takes that long (an in-flight event for the SIGTERM test).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from orderflow.runtime import App, Record
from orderflow.runtime.keys import stream_key

STREAM = "fault-stream"
GROUP = "fault-group"
COUNTS_KEY = stream_key(STREAM, "counts")  # same Cluster slot as the stream and its marks
STARTED_KEY = "fault:started"
FIXED_KEY = "fault:fixed"


class Work(Record, event_type="fault.work.v1"):
    seq: int
    poison: bool = False
    sleep: float = 0.0


class PoisonError(RuntimeError):
    """What the unfixed handler raises on a poison event."""


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


STALL_AT = int(os.environ.get("FAULT_STALL_AT", "-1"))

app = App(
    "fault",
    claim_idle_ms=int(os.environ.get("FAULT_CLAIM_IDLE_MS", "500")),
    claim_interval=_env_float("FAULT_CLAIM_INTERVAL", 0.25),
    max_deliveries=int(os.environ.get("FAULT_MAX_DELIVERIES", "3")),
    retry_base=_env_float("FAULT_RETRY_BASE", 0.05),
    retry_cap=_env_float("FAULT_RETRY_CAP", 0.2),
    shutdown_timeout=_env_float("FAULT_SHUTDOWN_TIMEOUT", 10.0),
    metrics_interval=1.0,
)
work_topic = app.topic(STREAM, value_type=Work)


@app.agent(work_topic, group=GROUP)
async def work(stream: Any) -> None:
    async for value in stream:
        event = stream.current_event
        if value.seq == STALL_AT:
            await asyncio.Event().wait()  # never set: the process gets killed here
        if value.poison and not await app.redis.exists(FIXED_KEY):
            raise PoisonError(f"cannot handle seq {value.seq} yet")
        if value.sleep:
            await app.redis.hset(STARTED_KEY, str(value.seq), event.message_id)
            await asyncio.sleep(value.sleep)
        async with event.atomic() as pipe:
            pipe.hincrby(COUNTS_KEY, str(value.seq), 1)

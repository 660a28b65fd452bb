"""Consumer lag and pending counts per agent, polled for the metrics.

``XINFO GROUPS`` gives a group's ``lag`` (entries not yet delivered to it) and
``pending`` (delivered, not acked) in one command per stream; polling every
``metrics_interval`` seconds keeps that off the consumer's hot path. A failed poll is
logged at debug level and retried at the next tick: metrics never stop a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from orderflow.runtime import inspect as stream_inspect
from orderflow.runtime.agent import Agent

log = logging.getLogger("orderflow.app")


async def update_group_metrics(redis: Redis, agents: Sequence[Agent[Any]]) -> None:
    """Set ``orderflow_consumer_lag`` / ``_pending`` of each agent's group, per stream
    (one series per partition of a partitioned topic)."""
    for agent in agents:
        for consumer in agent.consumers:
            groups = await stream_inspect.group_infos(redis, consumer.stream, pending_details=False)
            for info in groups:
                if info.name == agent.group:
                    consumer.metrics.set_group_info(
                        consumer.stream, agent.group, info.lag, info.pending
                    )


async def poll_group_metrics(
    redis: Callable[[], Redis],
    agents: Sequence[Agent[Any]],
    stopping: asyncio.Event,
    interval: float,
) -> None:
    """Update the gauges every ``interval`` seconds until ``stopping`` is set."""
    while not stopping.is_set():
        try:
            await update_group_metrics(redis(), agents)
        except (RedisError, OSError) as exc:
            log.debug("metrics poll failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)

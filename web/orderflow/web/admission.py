"""Admission control of ``POST /api/v1/orders``: no new orders while the pipeline is behind.

Why: past its capacity (docs/benchmarks.md, the load curve's knee) a pipeline that
takes every order gets slower for everyone. Each new order's events queue behind the
backlog, so every accepted order is delivered later, and on a shared machine the API's
own requests take the CPU the workers need to catch up, so what is *carried* falls
(docs/benchmarks.md#admission-control has the measured curves). Refusing at the door
the orders the pipeline cannot carry keeps the accepted ones fast and the carried rate
at its plateau. A refused client gets 503 problem+json ``overloaded`` with
``Retry-After`` and can rely on nothing having happened: the check runs before the
order is looked at, so no stock is reserved and no order exists.

**The signal** is the backlog of the order pipeline's consumer groups: entries not yet
delivered to a group (``lag``) plus entries delivered and not acknowledged
(``pending``), summed over every group of the per-order streams (all partitions). One
task per API process reads it every ``ORDERFLOW_ADMISSION_POLL_INTERVAL_SECONDS`` with
``XINFO GROUPS`` (one command per stream, concurrently), never on a request's path. A
backlog of ``ORDERFLOW_ADMISSION_MAX_BACKLOG`` entries closes the door; it opens again
at half of it, so one reading either side of the bound does not flap it. 0 turns
admission control off.

**A stopped service does not close the door.** A group whose worker is down has a
backlog that grows with every order while nothing is overloaded: refusing orders for
it would turn one stopped service into an outage of ordering. So a group's backlog
counts only while the group is seen to move (its read counter, last delivered id or
pending count changed) within the last ``ORDERFLOW_ADMISSION_STALLED_AFTER_SECONDS``;
a group first seen with a backlog counts from its first move (an API process started
while a worker is down refuses nothing for it). One with a backlog and no move for that
long is logged as stalled and counted in ``orderflow_admission_stalled_groups``; its
events wait in Redis for the worker's return, which is what the streams are for.

**If Redis cannot be asked** the last reading stands for a few polls, then the door
opens (logged): an order placed while Redis is away is still committed with its outbox
and published when Redis is back, so failing closed would refuse customers for nothing
(the rate limit reasons the same way, :mod:`orderflow.web.rate_limit`).

``Retry-After`` is the time the groups would need, at the rate they were measured to
read at over the last readings, to bring the backlog down to where the door opens
again (at least 1 s, at most 30 s; 1 s before a rate is known).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sanic import HTTPResponse, Request, Sanic

from orderflow.agents.settings import Settings
from orderflow.agents.topics import PER_ORDER_STREAMS
from orderflow.runtime import inspect as stream_inspect
from orderflow.runtime.inspect import GroupInfo
from orderflow.runtime.partitions import partition_streams
from orderflow.web.metrics import (
    ADMISSION_BACKLOG,
    ADMISSION_CLOSED,
    ADMISSION_STALLED,
    ORDERS_REJECTED,
)
from orderflow.web.problems import problem, problem_type, request_ext

log = logging.getLogger("orderflow.http.admission")

ORDERS_PATH = "/api/v1/orders"
MIN_RETRY_AFTER_S = 1
MAX_RETRY_AFTER_S = 30
FAILED_POLLS_BEFORE_OPEN = 3
"""Polls that may fail in a row before the last reading is no longer believed."""


@dataclass
class _Progress:
    signature: tuple[int | None, str, int]
    first_seen: float  # monotonic times
    progressed_at: float | None  # the last reading that differed from the one before
    entries_read: int | None

    def moved_within(self, now: float, window: float) -> bool:
        return self.progressed_at is not None and now - self.progressed_at < window


class AdmissionGate:
    """Open or closed, from the readings it is given: pure bookkeeping, no I/O."""

    def __init__(self, max_backlog: int, stalled_after: float) -> None:
        if max_backlog < 1:
            raise ValueError("max_backlog must be >= 1 (0 means: do not install the gate)")
        self.max_backlog = max_backlog
        self.reopen_at = max_backlog // 2
        self.stalled_after = stalled_after
        self.closed = False
        self.backlog = 0
        self.stalled: list[str] = []
        self.read_rate: float | None = None  # entries/s the counted groups read, smoothed
        self._groups: dict[tuple[str, str], _Progress] = {}
        self._read_at: float | None = None

    def observe(self, readings: Iterable[tuple[str, GroupInfo]], now: float) -> None:
        """Take one reading of every group; close at ``max_backlog``, open at half."""
        backlog, stalled, read, seen = 0, [], 0, set()
        for stream, info in readings:
            key = (stream, info.name)
            seen.add(key)
            behind = info.pending + (info.lag or 0)
            signature = (info.entries_read, info.last_delivered_id, info.pending)
            last = self._groups.get(key)
            if last is None:  # no progress seen yet: not counted until it moves
                last = self._groups[key] = _Progress(signature, now, None, info.entries_read)
            elif last.signature != signature:
                if last.entries_read is not None and info.entries_read:
                    read += max(0, info.entries_read - last.entries_read)
                last.signature, last.progressed_at = signature, now
                last.entries_read = info.entries_read
            if behind and not last.moved_within(now, self.stalled_after):
                if now - last.first_seen >= self.stalled_after:
                    stalled.append(f"{info.name} on {stream}")
                continue
            backlog += behind
        for key in set(self._groups) - seen:  # a stream or group that is gone
            del self._groups[key]
        if self._read_at is not None and now > self._read_at:
            rate = read / (now - self._read_at)
            self.read_rate = rate if self.read_rate is None else 0.5 * (self.read_rate + rate)
        self._read_at = now
        if stalled != self.stalled and stalled:
            log.warning("left out of the admission backlog, no progress: %s", ", ".join(stalled))
        self.stalled, self.backlog = stalled, backlog
        if not self.closed and backlog >= self.max_backlog:
            self.closed = True
            log.warning(
                "refusing new orders: the pipeline is %d events behind (bound %d)",
                backlog, self.max_backlog,
            )  # fmt: skip
        elif self.closed and backlog <= self.reopen_at:
            self.closed = False
            log.warning("taking orders again: the pipeline is %d events behind", backlog)

    def forget(self) -> None:
        """No reading can be had: open the door (an order is still committed and relayed)."""
        if self.closed:
            log.warning("taking orders again: the backlog cannot be read")
        self.closed, self.backlog, self.stalled = False, 0, []
        self._groups.clear()
        self._read_at, self.read_rate = None, None

    def retry_after(self) -> int:
        """Whole seconds until the backlog is down to where the door opens, as measured."""
        if not self.read_rate:
            return MIN_RETRY_AFTER_S
        seconds = math.ceil((self.backlog - self.reopen_at) / self.read_rate)
        return min(MAX_RETRY_AFTER_S, max(MIN_RETRY_AFTER_S, seconds))


def pipeline_streams(partitions: int) -> tuple[str, ...]:
    """Every stream (partition) of the per-order topics."""
    return tuple(s for name in PER_ORDER_STREAMS for s in partition_streams(name, partitions))


async def read_groups(redis: Redis, streams: Sequence[str]) -> list[tuple[str, GroupInfo]]:
    """One ``XINFO GROUPS`` per stream, all at once; a stream not created yet has none."""
    replies = await asyncio.gather(
        *(stream_inspect.group_infos(redis, stream, pending_details=False) for stream in streams)
    )
    pairs = zip(streams, replies, strict=True)
    return [(stream, info) for stream, infos in pairs for info in infos]


async def poll(
    redis: Redis, streams: Sequence[str], gate: AdmissionGate, interval: float,
    stopping: asyncio.Event,
) -> None:  # fmt: skip
    """Read the groups every ``interval`` s into ``gate`` until ``stopping`` is set."""
    failures = 0
    while not stopping.is_set():
        try:
            readings = await read_groups(redis, streams)
        except (RedisError, OSError) as exc:
            failures += 1
            if failures == FAILED_POLLS_BEFORE_OPEN:
                log.warning("admission backlog not readable (%s)", type(exc).__name__)
                gate.forget()
        else:
            failures = 0
            gate.observe(readings, time.monotonic())
        ADMISSION_BACKLOG.set(gate.backlog)
        ADMISSION_CLOSED.set(int(gate.closed))
        ADMISSION_STALLED.set(len(gate.stalled))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)


def overloaded(request: Request, gate: AdmissionGate) -> HTTPResponse:
    seconds = gate.retry_after()
    return problem(
        503,
        "Too busy to take orders",
        f"The kitchen is {gate.backlog} events behind; nothing was ordered. "
        f"Try again in {seconds} s.",
        problem_type("overloaded"),
        headers={"Retry-After": str(seconds)},
        backlog=gate.backlog,
        **request_ext(request),
    )


def install(app: Sanic, settings: Settings) -> None:
    """Refuse ``POST /api/v1/orders`` while the gate is closed (off when the bound is 0)."""
    if settings.admission_max_backlog <= 0:
        return
    gate = AdmissionGate(settings.admission_max_backlog, settings.admission_stalled_after_seconds)
    app.ctx.admission = gate
    stopping = asyncio.Event()
    streams = pipeline_streams(settings.topic_partitions)

    async def start(app: Sanic) -> None:
        stopping.clear()
        app.ctx.admission_task = asyncio.get_running_loop().create_task(
            poll(app.ctx.redis, streams, gate, settings.admission_poll_interval_seconds, stopping)
        )

    async def stop(app: Sanic) -> None:
        stopping.set()
        task: asyncio.Task[None] | None = getattr(app.ctx, "admission_task", None)
        if task is not None:
            await task

    async def check(request: Request) -> HTTPResponse | None:
        if gate.closed and request.method == "POST" and request.path == ORDERS_PATH:
            ORDERS_REJECTED.labels(reason="overloaded").inc()
            return overloaded(request, gate)
        return None

    app.register_listener(start, "after_server_start")
    app.register_listener(stop, "before_server_stop")
    app.register_middleware(check, "request")

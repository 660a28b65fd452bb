"""One step of the load curve: open-loop arrivals at a fixed rate, and what they cost.

Open loop means a fixed schedule of send times (order ``i`` at ``start + i / rate``),
not a pool of clients that each wait for their answer before sending the next one:
a closed-loop client slows down with the server and so hides the overload it is
supposed to find. A send that is late (the client's own loop was busy) is still
sent, late, and counted in ``late_sends``; nothing is skipped. A send takes an idle
keep-alive connection or opens a new one (benchmarks/keepalive.py), never waits
for one: ``connections_opened`` counts those opened during the step; the time to
open one is part of that POST's latency.

Per step: the orders sent during a warm-up are not counted; the measured window is
the next ``seconds`` seconds. ``achieved_per_s`` counts ``delivered`` status updates
written to orders-stream within the window (every order, from the stream entry ids:
the server's clock), divided by its length; ``delivered_total`` counts them for the
whole step, drain included, next to ``accepted`` (201 answers). Every ``track_every``-th order is
followed over its WebSocket (``/ws/v1/order-tracking/<id>``) like a customer's page:
POST -> first status update and POST -> delivered; a few sockets, because
benchmarks/fanout.py measures many. At the end of the schedule the consumer
groups' lag (pending + not yet read) is read, then the step waits until every
answer, every followed order and every group is done: ``drain_s``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from benchmarks.keepalive import ConnectionPool, encode_request
from benchmarks.stack import order_id_of, percentile
from benchmarks.stage_trace import Scrape, busy_shares
from orderflow.agents.topics import ALL_STREAMS, DEAD_LETTERS_STREAM, ORDERS_STREAM

LATE_AFTER_S = 0.010  # a send more than 10 ms behind its schedule is counted as late
CARRIED_SHARE = 0.95  # the knee rule: achieved >= 95 % of offered ...
CARRIED_DELIVERED_P99_MS = 1000.0  # ... delivered p99 <= 1 s ... and no errors


@dataclass
class StepConfig:
    rate: float
    seconds: float
    warmup: float
    track_every: int
    order_timeout: float
    drain_timeout: float


@dataclass
class StepRecord:
    """What one step saw; ``summary()`` is its row of the curve."""

    config: StepConfig
    post_ms: list[float] = field(default_factory=list)
    first_update_ms: list[float] = field(default_factory=list)
    delivered_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    shed: int = 0  # 503 overloaded: refused by admission control, not an error of the stack
    late_sends: int = 0
    sent: int = 0
    measured_sent: int = 0
    tracked: int = 0
    accepted: int = 0
    delivered_in_window: int = 0
    delivered_total: int = 0
    lag_at_end: int = 0
    drain_s: float | None = None
    cpu_share: dict[str, float] = field(default_factory=dict)
    client_cpu_share: float = 0.0
    connections_opened: int = 0
    run_queue_wait_share: dict[str, float] = field(default_factory=dict)
    store_commit_share: dict[str, float] = field(default_factory=dict)
    store_lock_wait_share: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        def ms(values: list[float], pct: float) -> float | None:
            return round(percentile(values, pct), 1) if values else None

        cfg = self.config
        return {
            "offered_per_s": cfg.rate,
            "achieved_per_s": round(self.delivered_in_window / cfg.seconds, 2),
            "sent": self.sent,
            "measured_sent": self.measured_sent,
            "late_sends": self.late_sends,
            "post_p50_ms": ms(self.post_ms, 50),
            "post_p99_ms": ms(self.post_ms, 99),
            "first_update_p99_ms": ms(self.first_update_ms, 99),
            "delivered_p50_ms": ms(self.delivered_ms, 50),
            "delivered_p99_ms": ms(self.delivered_ms, 99),
            "accepted": self.accepted,
            "delivered_total": self.delivered_total,
            "tracked": self.tracked,
            "tracked_delivered": len(self.delivered_ms),
            "errors": dict(self.errors),
            "shed": self.shed,
            "lag_at_end": self.lag_at_end,
            "drain_s": None if self.drain_s is None else round(self.drain_s, 2),
            "cpu_share": {k: round(v, 2) for k, v in self.cpu_share.items()},
            "client_cpu_share": round(self.client_cpu_share, 2),
            "connections_opened": self.connections_opened,
            "run_queue_wait_share": {k: round(v, 2) for k, v in self.run_queue_wait_share.items()},
            "store_commit_share": self.store_commit_share,
            "store_lock_wait_share": self.store_lock_wait_share,
        }


def step_rates(args: Any) -> list[float]:
    """The rates of ``--rates`` (comma-separated orders/s, each > 0), once ``--seconds``
    (> 0) and ``--warmup`` (>= 0) are checked too; ValueError says what is wrong."""
    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        raise ValueError(f"--rates must be numbers separated by commas: {args.rates!r}") from None
    if not rates or min(rates) <= 0:
        raise ValueError(f"--rates must be numbers > 0, not {args.rates!r}")
    if args.seconds <= 0 or args.warmup < 0:
        raise ValueError("--seconds must be > 0 and --warmup >= 0")
    return rates


def carried(step: dict[str, Any]) -> bool:
    """The knee rule for one step: achieved >= 95 % of offered, delivered p99 <= 1 s
    (measured: a step whose followed orders never arrived is not carried), no errors and
    no order refused by admission control."""
    p99 = step.get("delivered_p99_ms")
    return (
        step["achieved_per_s"] >= CARRIED_SHARE * step["offered_per_s"]
        and p99 is not None
        and p99 <= CARRIED_DELIVERED_P99_MS
        and sum(step["errors"].values()) == 0
        and not step.get("shed")
    )


def knee(steps: list[dict[str, Any]]) -> float | None:
    """The highest offered rate of a carried step; None when no step was carried."""
    rates = [step["offered_per_s"] for step in steps if carried(step)]
    return max(rates) if rates else None


async def follow(ws_base: str, order_id: str, t0: float, record: StepRecord, within: float) -> None:
    """Follow one order's WebSocket until ``delivered``; times are from its POST's send."""
    from websockets.asyncio.client import connect

    deadline = time.monotonic() + within
    got_first = False
    try:
        async with connect(f"{ws_base}/ws/v1/order-tracking/{order_id}", open_timeout=30) as ws:
            snapshot = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
            if snapshot.get("status") == "delivered":
                now = (time.perf_counter() - t0) * 1000
                record.first_update_ms.append(now)
                record.delivered_ms.append(now)
                return
            while True:
                remaining = deadline - time.monotonic()
                raw = await asyncio.wait_for(ws.recv(), timeout=max(remaining, 0.001))
                message = json.loads(raw)
                if message.get("type") != "order.status":
                    continue
                now = (time.perf_counter() - t0) * 1000
                if not got_first:
                    got_first = True
                    record.first_update_ms.append(now)
                if message.get("status") == "delivered":
                    record.delivered_ms.append(now)
                    return
    except TimeoutError:
        record.errors["ws_not_delivered_in_time"] += 1
    except OSError as exc:
        record.errors[f"ws_{type(exc).__name__}"] += 1


async def stream_lag(redis: Any) -> int:
    """Entries the consumer groups hold unacked (pending) or have not read yet (lag)."""
    total = 0
    for stream in ALL_STREAMS:
        if stream == DEAD_LETTERS_STREAM or not await redis.exists(stream):
            continue
        for group in await redis.xinfo_groups(stream):
            total += int(group.get("pending") or 0) + int(group.get("lag") or 0)
    return total


async def delivered_between(redis: Any, start_ms: int, end_ms: int) -> int:
    """``delivered`` order status updates written to orders-stream in [start, end] (ms)."""
    count = 0
    cursor = str(start_ms)
    while True:
        batch = await redis.xrange(ORDERS_STREAM, min=cursor, max=str(end_ms), count=1000)
        for _, fields in batch:
            if fields.get(b"event_type") == b"order.status_updated.v1":
                payload = json.loads(fields.get(b"payload") or b"{}")
                count += payload.get("status") == "delivered"
        if len(batch) < 1000:
            return count
        cursor = "(" + batch[-1][0].decode()


def problem_kind(response: Any) -> str:
    """The slug of a problem+json answer's ``type`` (``urn:orderflow:problem:<slug>``), or ''."""
    try:
        problem_type = str(response.json().get("type", ""))
    except (ValueError, AttributeError):
        return ""
    return problem_type.rsplit(":", 1)[-1] if problem_type.startswith("urn:") else ""


async def post_order(
    pool: ConnectionPool, raw: bytes, record: StepRecord, measured: bool
) -> tuple[str | None, float]:
    """Send one order now; the order id (None on failure) and the send's perf_counter."""
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(30):
            response = await pool.request(raw)
    except TimeoutError:
        record.errors["post_timeout"] += 1
        return None, t0
    except OSError as exc:
        record.errors[f"post_{type(exc).__name__}"] += 1
        return None, t0
    if measured:
        record.post_ms.append((time.perf_counter() - t0) * 1000)
    if response.status != 201:
        kind = problem_kind(response)
        if kind == "overloaded":  # admission control refused it: nothing was ordered
            record.shed += 1
        else:
            record.errors[f"http_{response.status}" + (f"_{kind}" if kind else "")] += 1
        return None, t0
    record.accepted += 1
    return order_id_of(response.json()), t0


async def run_step(
    config: StepConfig,
    pool: ConnectionPool,
    redis: Any,
    ws_base: str,
    body: bytes,
    sample_cpu: Any,
    sample_wait: Any,
    sample_metrics: Callable[[], Coroutine[Any, Any, Scrape]] | None = None,
) -> StepRecord:
    """Send the schedule, read the lag at its end, wait for the drain; one step's record.

    ``sample_cpu()`` returns CPU seconds per stack process so far; the difference over
    the measured window becomes ``cpu_share`` (1.0 = one core busy the whole window);
    ``sample_wait()`` likewise gives ``run_queue_wait_share``: time runnable but
    waiting for a CPU (starved by other processes), per second of the window.
    ``sample_metrics()`` (the processes' histograms, scraped in a task of its own so that
    no send waits for it) gives ``store_commit_share``, the share of the window each
    process spent between ``BEGIN`` and ``COMMIT`` (with SQLite, one writer at a time:
    the total is how busy the file's write lock was), and ``store_lock_wait_share``, the
    time its writer waited for another process's (:func:`stage_trace.busy_shares`).
    """
    record = StepRecord(config)
    raw = encode_request("POST", "/api/v1/orders", f"{pool.host}:{pool.port}", body)
    opened_before = pool.opened
    dead_before = await redis.xlen(DEAD_LETTERS_STREAM)
    tasks: list[asyncio.Task[None]] = []
    total = int(config.rate * (config.warmup + config.seconds))
    warm = int(config.rate * config.warmup)
    step_start_ms = int(time.time() * 1000)
    start = time.perf_counter()
    measure_start_ms = 0
    cpu_before: dict[str, float] = {}
    wait_before: dict[str, float] = {}
    metrics_before: asyncio.Task[Scrape] | None = None

    async def one(index: int, measured: bool) -> None:
        order_id, t0 = await post_order(pool, raw, record, measured)
        if order_id is not None and measured and index % config.track_every == 0:
            record.tracked += 1
            await follow(ws_base, order_id, t0, record, config.order_timeout)

    for index in range(total):
        due = start + index / config.rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif -delay > LATE_AFTER_S:
            record.late_sends += 1
        if index == warm:
            measure_start_ms = int(time.time() * 1000)
            cpu_before, wait_before = sample_cpu(), sample_wait()
            if sample_metrics is not None:
                metrics_before = asyncio.create_task(sample_metrics())
        measured = index >= warm
        record.sent += 1
        record.measured_sent += measured
        tasks.append(asyncio.create_task(one(index, measured)))
    # The window ends when the last send is due (+1 interval), not when the loop did.
    end_due = start + total / config.rate
    if (delay := end_due - time.perf_counter()) > 0:
        await asyncio.sleep(delay)
    end_ms = int(time.time() * 1000)
    cpu_after, wait_after = sample_cpu(), sample_wait()
    window = config.seconds
    record.cpu_share = {
        name: (cpu_after[name] - cpu_before.get(name, 0.0)) / window for name in cpu_after
    }
    record.run_queue_wait_share = {
        name: (wait_after[name] - wait_before.get(name, 0.0)) / window for name in wait_after
    }
    record.client_cpu_share = record.cpu_share.get("load.py", 0.0)
    if sample_metrics is not None and metrics_before is not None:
        before, after = await metrics_before, await sample_metrics()
        for metric, shares in (
            ("orderflow_store_commit_seconds", record.store_commit_share),
            ("orderflow_store_lock_wait_seconds", record.store_lock_wait_share),
        ):
            shares.update(busy_shares(before, after, metric, window))
    record.lag_at_end = await stream_lag(redis)
    drain_start = time.perf_counter()
    drain_deadline = drain_start + config.drain_timeout
    await asyncio.wait(tasks, timeout=config.drain_timeout)
    while await stream_lag(redis) > 0 and time.perf_counter() < drain_deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)  # the lag is in the server: polled, with a deadline
    if all(task.done() for task in tasks) and await stream_lag(redis) == 0:
        record.drain_s = time.perf_counter() - drain_start
    else:
        record.errors["not_drained"] += 1
        for task in tasks:
            task.cancel()
    if dead := await redis.xlen(DEAD_LETTERS_STREAM) - dead_before:
        record.errors["dead_letters"] += dead
    record.connections_opened = pool.opened - opened_before
    record.delivered_in_window = await delivered_between(redis, measure_start_ms, end_ms)
    # Every order of the step (warm-up included) that reached delivered, drain included.
    record.delivered_total = await delivered_between(redis, step_start_ms, int(time.time() * 1000))
    return record

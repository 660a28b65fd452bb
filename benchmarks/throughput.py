"""Consumer throughput: orderflow's runtime against the practical limit and its peers.

Why this exists: the runtime claims that its guarantees (decoding, validation,
retries, dead letters, dedupe, metrics) cost little over a hand-written loop and
that it is much faster than FastStream's Redis stream subscriber. This script
measures both claims in one run, against one private server, on the same
pre-filled stream of ~200-byte JSON events in the orderflow envelope, so every
contestant reads identical entries. Each contestant gets its own consumer group
created at id 0, so each one consumes the whole stream from the start; after each
run the group itself is asked (XINFO GROUPS) how many entries it delivered and how
many are still unacked, so a contestant that skipped or failed to ack events shows.

Contestants:
1. raw: redis-py asyncio, ``XREADGROUP COUNT 100`` + one pipelined ``XACK`` per batch.
2. runtime: an orderflow no-op agent (``App`` + ``@app.agent``, default settings),
   whose handler still sees one event at a time.
3. faststream: ``@broker.subscriber(stream=StreamSub(..., group=..., consumer=...))``,
   one handler call (and one XACK) per message.
4. faststream_batch: FastStream's own batch mode, ``StreamSub(..., batch=True,
   max_records=100)`` (the same COUNT as ours): the handler gets a list per
   XREADGROUP and FastStream acks the whole batch with one XACK. The fairest peer
   for a batched reader, even though its handler is per batch and ours per event.
5. walrus: ``ConsumerGroup.read(count=100)`` + ``ack`` loop (synchronous client).
6. raw_dedupe (reference): the raw loop plus the Redis work the runtime's
   idempotency needs, done the plain way (HMGET check of each batch's event ids, HSET of marks),
   so "how close is the runtime to the limit *for the same guarantees*" is answered
   too. The server CPU each contestant used is reported next to its rate.

Plus publish -> handler latency (p50/p99) of the runtime at low load.

Usage::

    .venv/bin/python benchmarks/throughput.py --events 100000 [--json] [--server redis-server]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from orderflow.runtime.localserver import LocalRedisServer

if __package__ in (None, ""):  # run as `python benchmarks/throughput.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.throughput_contestants import (
    LATENCY_STREAM,
    LatencyProbe,
    Outcome,
    create_group,
    group_state,
    prefill,
    progress,
    run_faststream,
    run_raw,
    run_runtime,
    run_walrus,
)


async def measure_latency(url: str, count: int, spacing: float) -> tuple[float, float]:
    """Publish ``count`` events one by one, ``spacing`` s apart; p50/p99 publish->handler (ms)."""
    from orderflow.runtime import App

    app = App("bench-latency", broker=url)
    topic = app.topic(LATENCY_STREAM, value_type=LatencyProbe)
    latencies: list[float] = []
    done = asyncio.Event()

    @app.agent(topic, group="latency-group")
    async def probe(stream: Any) -> None:
        async for value in stream:
            latencies.append(time.perf_counter() - value.sent_at)
            if len(latencies) >= count:
                done.set()

    await app.connect()
    await app.start()
    try:
        await asyncio.sleep(0.2)  # let the group exist and the first XREADGROUP block
        for seq in range(count):
            await topic.send(value=LatencyProbe(seq=seq, sent_at=time.perf_counter()))
            await asyncio.sleep(spacing)
        await asyncio.wait_for(done.wait(), timeout=30)
    finally:
        await app.stop()
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    return p50, p99


# --------------------------------------------------------------------------- driver


def server_cpu_seconds(url: str) -> float:
    """CPU the server process has used so far (INFO cpu), to show who does the work."""
    client = redis.Redis.from_url(url)
    try:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    finally:
        client.close()


def pin_processes(server: LocalRedisServer) -> None:
    """Server on the last CPU, this process on the others: on a small machine the
    scheduler otherwise keeps putting the server on the consumer's CPU, and every
    loopback write then waits for the server to run (300-400 us per send measured
    on 2 cores, versus ~50 us pinned)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or server.process is None:
        progress("--pin needs at least 2 CPUs; running unpinned")
        return
    os.sched_setaffinity(server.process.pid, {cpus[-1]})
    os.sched_setaffinity(0, set(cpus[:-1]))
    progress(f"pinned: server on CPU {cpus[-1]}, consumers on CPU(s) {cpus[:-1]}")


Contestant = Callable[[str, str], Outcome]  # (server url, consumer group) -> outcome


def contestants(events: int) -> list[tuple[str, Contestant]]:
    """Every contestant by its JSON label, in the order each round runs them."""
    return [
        ("raw", lambda url, group: asyncio.run(run_raw(url, group, events))),
        ("raw_dedupe", lambda url, group: asyncio.run(run_raw(url, group, events, dedupe=True))),
        ("runtime", lambda url, group: asyncio.run(run_runtime(url, group, events))),
        ("faststream", lambda url, group: asyncio.run(run_faststream(url, group, events))),
        (
            "faststream_batch",
            lambda url, group: asyncio.run(run_faststream(url, group, events, batch=True)),
        ),
        ("walrus", lambda url, group: run_walrus(url, group, events)),
    ]


def run_once(url: str, label: str, run: Contestant) -> tuple[Outcome, float, dict[str, int]]:
    """One run in a fresh group: (outcome, server CPU seconds, what the group says
    it delivered and still holds unacked, next to what the contestant received)."""
    group = asyncio.run(create_group(url, label))
    cpu_before = server_cpu_seconds(url)
    outcome = run(url, group)
    cpu = server_cpu_seconds(url) - cpu_before
    delivered, pending = group_state(url, group)
    return outcome, cpu, {"received": outcome.received, "delivered": delivered, "pending": pending}


def measure(
    events: int, server_kind: str, repeat: int, latency_events: int, pin: bool = False
) -> dict[str, Any]:
    """Run every contestant ``repeat`` times, interleaved (so background noise on a
    shared machine hits all of them alike), and keep each one's best run."""
    entrants = contestants(events)
    best: dict[str, float] = {}
    runs: dict[str, list[float]] = {label: [] for label, _run in entrants}
    consumed: dict[str, list[dict[str, int]]] = {label: [] for label, _run in entrants}
    server_cpu: dict[str, float] = {}
    with LocalRedisServer(server_kind) as server:
        url = server.url
        if pin:
            pin_processes(server)
        progress(f"server: {server_kind} on {url}; pre-filling {events:,} events ...")
        payload_size = asyncio.run(prefill(url, events))
        progress(f"payload: {payload_size} bytes of JSON per event; warming up ...")
        warmup_group = asyncio.run(create_group(url, "warmup"))
        asyncio.run(run_raw(url, warmup_group, events))  # first reads of a fresh stream are slower
        progress("consuming:")
        for round_number in range(1, repeat + 1):
            for label, run in entrants:
                outcome, cpu, counts = run_once(url, label, run)
                runs[label].append(outcome.eps)
                consumed[label].append(counts)
                if outcome.eps > best.get(label, 0.0):
                    best[label] = outcome.eps
                    server_cpu[label] = cpu
                suffix = f"  (round {round_number}/{repeat})" if repeat > 1 else ""
                progress(
                    f"  {label:<16} {outcome.eps:>10,.0f} events/s   server CPU {cpu:5.2f} s"
                    f"   delivered {counts['delivered']:,} pending {counts['pending']}{suffix}"
                )
        progress(f"latency: {latency_events} events, one every 2 ms ...")
        p50, p99 = asyncio.run(measure_latency(url, latency_events, 0.002))
    raw, runtime = best["raw"], best["runtime"]
    return {
        "events": events,
        "server": server_kind,
        "pinned": pin,
        "payload_bytes": payload_size,
        "raw_eps": round(raw, 1),
        "runtime_eps": round(runtime, 1),
        "faststream_eps": round(best["faststream"], 1),
        "faststream_batch_eps": round(best["faststream_batch"], 1),
        "walrus_eps": round(best["walrus"], 1),
        "raw_dedupe_eps": round(best["raw_dedupe"], 1),
        "runtime_vs_raw": round(runtime / raw, 3),
        "runtime_vs_faststream": round(runtime / best["faststream"], 3),
        "runtime_vs_faststream_batch": round(runtime / best["faststream_batch"], 3),
        "runtime_vs_raw_dedupe": round(runtime / best["raw_dedupe"], 3),
        "latency_p50_ms": round(p50, 3),
        "latency_p99_ms": round(p99, 3),
        "server_cpu_seconds": {label: round(cpu, 3) for label, cpu in server_cpu.items()},
        "median_eps": {label: round(statistics.median(rates), 1) for label, rates in runs.items()},
        "consumed": consumed,
        "rounds": repeat,
    }


def consumption_problems(result: dict[str, Any]) -> list[str]:
    """Runs in which a contestant did not receive exactly every event, or its group
    did not deliver every entry or kept some unacked: their rate would not count."""
    events = result["events"]
    expected = {"received": events, "delivered": events, "pending": 0}
    return [
        f"{label} run {number}: {counts}"
        for label, per_run in result["consumed"].items()
        for number, counts in enumerate(per_run, 1)
        if counts != expected
    ]


def print_table(result: dict[str, Any]) -> None:
    raw = result["raw_eps"]
    cpu = result["server_cpu_seconds"]
    print(
        f"{result['events']:,} events, {result['payload_bytes']}-byte payloads, {result['server']}"
    )
    print(f"{'consumer':<34}{'events/s':>10}{'vs raw':>8}{'server CPU':>12}")
    rows = [
        ("raw redis-py loop", "raw_eps", "raw"),
        ("raw loop + dedupe marks/check", "raw_dedupe_eps", "raw_dedupe"),
        ("orderflow agent", "runtime_eps", "runtime"),
        ("FastStream StreamSub", "faststream_eps", "faststream"),
        ("FastStream StreamSub batch=True", "faststream_batch_eps", "faststream_batch"),
        ("walrus ConsumerGroup (sync)", "walrus_eps", "walrus"),
    ]
    for label, key, cpu_key in rows:
        eps = result[key]
        print(f"{label:<34}{eps:>10,.0f}{eps / raw:>8.2f}{cpu[cpu_key]:>11.2f}s")
    if result["rounds"] > 1:
        median = result["median_eps"]
        print(
            f"(best of {result['rounds']} interleaved rounds; medians: raw {median['raw']:,.0f},"
            f" runtime {median['runtime']:,.0f}, ratio {median['runtime'] / median['raw']:.2f})"
        )
    goals = [
        ("runtime_vs_raw", "(goal >= 0.85)"),
        ("runtime_vs_faststream", "(goal >= 3)"),
        ("runtime_vs_faststream_batch", "(goal >= 2.5)"),
        ("runtime_vs_raw_dedupe", "(same Redis work)"),
    ]
    for key, note in goals:
        print(f"{key:<29}{result[key]:.2f}  {note}")
    problems = consumption_problems(result)
    for problem in problems:
        print(f"NOT CONSUMED EXACTLY: {problem}")
    if not problems:
        print(
            f"every run: each contestant received {result['events']:,} events, its group"
            " delivered all of them and holds none unacked"
        )
    print(
        f"publish->handler latency at low load: p50 {result['latency_p50_ms']:.2f} ms,"
        f" p99 {result['latency_p99_ms']:.2f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per contestant")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--server", default="valkey", choices=("valkey", "redis-server"), help="server binary"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per contestant; best counts")
    parser.add_argument("--latency-events", type=int, default=500, help="events for latency")
    parser.add_argument(
        "--pin", action="store_true", help="pin the server and the consumers to separate CPUs"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = measure(args.events, args.server, args.repeat, args.latency_events, args.pin)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

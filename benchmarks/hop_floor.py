"""The latency floor of a chain of hops through Redis Streams on this machine.

Why: issue 13 asks for POST -> first WebSocket update p99 <= 10 ms. On that path an order
crosses three services (the simulator, the orders worker, the gateway), each woken by
Redis and writing back to it, after the POST's own commit and publish. This measures
what such hops cost with nothing in them: each hop only reads one event and appends it
to the next stream, no store, no models, one message at a time. What the real path
takes beyond this floor is the services' work; what the floor itself takes, no change to
the services can remove.

Three chains of ``--hops`` hops run side by side, the messages alternating between
them (and which goes first alternating too), so a change in the machine's load hits all
three alike:

* ``raw``: one process per hop, each a redis-py loop of ``XREAD BLOCK`` then ``XADD``
  (no group, no ack): the least a Python process woken by Redis can do;
* ``runtime``: one process per hop, each an ``orderflow.runtime`` App whose one agent
  (consumer group, acks, dedupe) sends what it reads to the next topic: the services'
  transport, as the ``split`` layout runs it;
* ``runtime-1proc``: the same agents, all in one process (the ``combined`` layout's
  shape: the hops without a process switch).

The driver appends to the chain's first stream and waits (``XREAD BLOCK``) for the
event on its last one: ``t0`` before the append, ``t1`` when the read returns.

    python benchmarks/hop_floor.py --messages 300 --hops 3 [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/hop_floor.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.procstat import load_average
from benchmarks.stack import StackError, log, run_benchmark
from orderflow.runtime import App, Envelope, Record, Stream

CHAINS = ("raw", "runtime", "runtime-1proc")
READY_TIMEOUT_S = 60.0
MESSAGE_TIMEOUT_S = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hop_floor.py",
        description=(
            "Latency of a chain of no-op hops through Redis Streams (raw redis-py, the "
            "runtime's agents one per process, and all in one process), side by side."
        ),
    )
    parser.add_argument("--messages", type=int, default=300, help="measured per chain (300)")
    parser.add_argument("--hops", type=int, default=3, help="hops per chain (3)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured first messages (20)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)  # kind url first last
    return parser


class Ping(Record, event_type="bench.floor.ping.v1"):
    """What the runtime chains carry."""

    n: int


def stream_name(chain: str, index: int) -> str:
    return f"floor-{chain}-{index}"


# ---------------------------------------------------------------------------- children


async def raw_hops(url: str, chain: str, first: int, last: int) -> None:
    """Hops ``first``..``last - 1`` of ``chain`` in this process: one task per hop, each
    ``XREAD BLOCK`` on its stream then ``XADD`` to the next."""
    import redis.asyncio as aioredis

    async def hop(index: int) -> None:
        client = aioredis.Redis.from_url(url)
        source, target, last_id = stream_name(chain, index), stream_name(chain, index + 1), "0"
        while True:
            reply: Any = await client.xread({source: last_id}, block=0)
            for _, entries in reply:
                for entry_id, fields in entries:
                    last_id = entry_id
                    await client.xadd(target, fields)

    await asyncio.gather(*(hop(index) for index in range(first, last)))


async def runtime_hops(url: str, chain: str, first: int, last: int) -> None:
    """Hops ``first``..``last - 1`` of ``chain`` as runtime agents in this process."""
    app = App(f"floor-{chain}-{first}", broker=url)
    for index in range(first, last):
        source = app.topic(stream_name(chain, index), value_type=Ping)
        target = app.topic(stream_name(chain, index + 1), value_type=Ping)

        async def forward(stream: Stream[Ping], target: Any = target) -> None:
            async for value in stream:
                await target.send(value=value)

        app.agent(source, group=f"floor-{index}", name=f"hop-{index}")(forward)
    await app.run()


def child_main(kind: str, url: str, chain: str, span: str) -> int:
    first, last = (int(part) for part in span.split(":"))
    run = raw_hops if kind == "raw" else runtime_hops
    asyncio.run(run(url, chain, first, last))
    return 0


# ---------------------------------------------------------------------------- driver


def start_children(url: str, hops: int, log_dir: Path) -> list[subprocess.Popen[bytes]]:
    """Every chain's processes: one per hop, but one for all of ``runtime-1proc``."""
    spans = {
        "raw": [(i, i + 1) for i in range(hops)],
        "runtime": [(i, i + 1) for i in range(hops)],
        "runtime-1proc": [(0, hops)],
    }
    children = []
    for chain, ranges in spans.items():
        kind = "raw" if chain == "raw" else "runtime"
        for first, last in ranges:
            argv = [sys.executable, __file__, "--child", kind, url, chain, f"{first}:{last}"]
            out = open(log_dir / f"{chain}-{first}.log", "wb")  # noqa: SIM115 (the child's)
            children.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT))
    return children


async def send_and_wait(
    client: Any, chain: str, hops: int, n: int, after: bytes, within: float = MESSAGE_TIMEOUT_S
) -> tuple[float, bytes]:
    """Append message ``n`` to the chain's first stream; seconds until it left the last
    hop, and the last stream's id read."""
    if chain == "raw":
        fields = {"n": str(n)}
    else:
        fields = Envelope.new(Ping(n=n), source="hop_floor").to_fields()
    last = stream_name(chain, hops)
    started = time.perf_counter()
    await client.xadd(stream_name(chain, 0), fields)
    while True:
        reply = await client.xread({last: after}, block=int(within * 1000))
        if not reply:
            raise StackError(f"{chain}: message {n} did not come out of {hops} hops in time")
        entry_id, _ = reply[0][1][-1]
        return time.perf_counter() - started, entry_id


def percentile(values: list[float], share: float) -> float:
    """Nearest rank, as latency.py's."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import redis.asyncio as aioredis

    from orderflow.runtime.localserver import LocalRedisServer

    if args.hops < 1 or args.messages < 1:
        raise StackError("--hops and --messages must be at least 1")
    load_at_start = load_average()
    work = Path(tempfile.mkdtemp(prefix="orderflow-floor-"))
    server = LocalRedisServer(data_dir=work / "valkey")
    await asyncio.to_thread(server.start)
    children = start_children(server.url, args.hops, work)
    client = aioredis.Redis.from_url(server.url)
    seconds: dict[str, list[float]] = {chain: [] for chain in CHAINS}
    after = dict.fromkeys(CHAINS, b"0")
    try:
        log(f"valkey on {server.url}; {len(children)} hop processes; warming up")
        for chain in CHAINS:  # the first message also waits for the processes to start
            try:
                _, after[chain] = await send_and_wait(
                    client, chain, args.hops, -1, after[chain], READY_TIMEOUT_S
                )
            except StackError:
                raise StackError(f"{chain}: the hop processes did not start (see {work})") from None
        total = args.warmup + args.messages
        for n in range(total):
            order = CHAINS if n % 2 == 0 else CHAINS[::-1]
            for chain in order:
                took, after[chain] = await send_and_wait(client, chain, args.hops, n, after[chain])
                if n >= args.warmup:
                    seconds[chain].append(took)
            if (n + 1) % 100 == 0:
                log(f"{n + 1}/{total} messages per chain")
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        await client.aclose()
        await asyncio.to_thread(server.stop)
    result: dict[str, Any] = {"hops": args.hops, "messages": args.messages, "chains": {}}
    for chain, values in seconds.items():
        ms = [1000 * v for v in values]
        result["chains"][chain] = {
            "received": len(ms),
            "p50_ms": round(percentile(ms, 0.50), 3),
            "p99_ms": round(percentile(ms, 0.99), 3),
            "max_ms": round(max(ms), 3),
            "per_hop_p50_ms": round(percentile(ms, 0.50) / args.hops, 3),
        }
    result["load_average_at_start"] = [round(x, 2) for x in load_at_start]
    result["load_average_at_end"] = [round(x, 2) for x in load_average()]
    return result


def report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    print(f"hop floor — {result['hops']} no-op hops, one message at a time (ms)")
    print(f"{'chain':<15}{'received':>10}{'p50':>10}{'p99':>10}{'max':>10}{'p50/hop':>10}")
    for chain, row in result["chains"].items():
        print(
            f"{chain:<15}{row['received']:>10}{row['p50_ms']:>10.3f}{row['p99_ms']:>10.3f}"
            f"{row['max_ms']:>10.3f}{row['per_hop_p50_ms']:>10.3f}"
        )
    start, end = result["load_average_at_start"][0], result["load_average_at_end"][0]
    print(f"load average {start} at start, {end} at end")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        return child_main(*args.child)
    return run_benchmark("hop_floor.py", run(args), lambda result: report(result, args.json))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

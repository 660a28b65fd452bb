"""One counted fault run on a private cluster: keyed events over a partitioned topic,
produced and consumed while a master is SIGKILLed or a partition's slot migrates.

Why a module of its own: the same run is the benchmark (``benchmarks/cluster_faults.py``,
10,000 events, a table) and the pytest proof (``tests/cluster/test_cluster_faults.py``,
fewer events, count assertions), so both measure exactly the same thing.

The agent's side effect is ``HINCRBY orderflow:{<partition>}:effects <event id> 1``
inside ``event.atomic()``: it commits in one ``MULTI`` with the event's dedupe mark on
the partition's master, so a redelivery after a lost ack finds the mark and skips, and
a failover that loses the mark loses the effect with it (same node, same replication
stream). At the end the effect hashes are the truth: an id counted twice was handled
twice with a side effect; an id acknowledged by ``XADD`` and absent from both the
stream and the effects was lost.

Producers re-send an envelope whose send failed with ``send_envelope(once=True)``
(the documented re-publish: its publish-once marker keeps a send that did land
from landing twice), until it is acknowledged. With ``replicas=1`` each send also
waits for the master's replica (``WAIT``; ``NotReplicated`` counts as a failed send).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.crc import key_slot
from redis.exceptions import RedisError

from orderflow.runtime import App, Record
from orderflow.runtime.envelope import Envelope
from orderflow.runtime.keys import stream_key
from orderflow.runtime.localcluster import LocalCluster
from orderflow.runtime.localserver import LocalRedisServer
from orderflow.runtime.testing import run_app
from orderflow.runtime.topic import Topic

TOPIC = "faults"
GROUP = "faults-group"
KEYS = 500  # distinct keys the events are spread over
PRODUCERS = 6  # concurrent producer tasks: one stuck on a dead shard does not stop the rest


class Tick(Record, event_type="cluster.fault.tick.v1"):
    n: int


@dataclass
class FaultCounts:
    """What one run counted (every figure is a count or a measured duration)."""

    fault: str  # "kill-master" or "migrate-slot"
    events: int  # events the producers were asked to send
    partitions: int
    replicas: int = 0  # each send waited for this many replicas (WAIT)
    sent: int = 0  # distinct events whose XADD was attempted
    acknowledged: int = 0  # distinct events an XADD (or its re-send) acknowledged
    send_retries: int = 0  # sends that failed and were re-sent
    handled: int = 0  # distinct events whose side effect is in the effects hashes
    handled_twice: int = 0  # events whose side effect was applied more than once
    in_streams: int = 0  # distinct events found in the partition streams at the end
    lost: int = 0  # acknowledged, then neither in a stream nor handled
    survived_unhandled: int = 0  # in a stream at the end but never handled
    dead_letters: int = 0
    affected_partitions: list[str] = field(default_factory=list)
    fault_at_s: float = 0.0  # seconds into the run
    writes_resumed_s: float | None = None  # fault -> first XADD acknowledged on them
    handling_resumed_s: float | None = None  # fault -> first effect committed on them
    fault_done_s: float | None = None  # fault -> promotion seen / migration finished
    rejoined_s: float | None = None  # kill -> the restarted node is a replica again
    produce_s: float = 0.0  # start -> the last event acknowledged
    moved_keys: int = 0  # keys MIGRATE moved (migrate-slot)
    group_moved: bool | None = None  # the consumer group came with the stream
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultRun:
    """Producers + one consuming App on ``cluster``; :meth:`run` injects ``fault``."""

    def __init__(
        self,
        cluster: LocalCluster,
        *,
        fault: str,
        events: int,
        partitions: int = 6,
        replicas: int = 0,
        progress: Callable[[str], None] = lambda line: None,
    ) -> None:
        if fault not in ("kill-master", "migrate-slot"):
            raise ValueError(f"unknown fault {fault!r}")
        self.cluster = cluster
        self.counts = FaultCounts(
            fault=fault, events=events, partitions=partitions, replicas=replicas
        )
        self.progress = progress
        # Short blocking reads and back-off so the run follows the cluster quickly;
        # deliveries enough to outlast a failover of a few seconds without dead letters.
        self.app = App(
            "cluster-faults", broker=cluster.url, block_ms=200, max_deliveries=10,
            retry_base=0.5, retry_cap=2.0, claim_idle_ms=5000, claim_interval=1.0,
        )  # fmt: skip
        self.topic: Topic[Tick] = self.app.topic(TOPIC, value_type=Tick, partitions=partitions)
        self.acked: set[str] = set()
        self.sent: set[str] = set()
        self.acked_at: dict[str, float] = {}  # partition -> first ack after the fault
        self.effect_at: dict[str, float] = {}  # partition -> first effect after the fault
        self.fault_time: float | None = None
        self._half_acknowledged = asyncio.Event()  # the fault is injected then
        self._numbers = itertools.count()
        self._add_agent()

    def _add_agent(self) -> None:
        @self.app.agent(self.topic, group=GROUP, name="fault-agent")
        async def handle(stream: Any) -> None:
            async for _tick in stream:
                event = stream.current_event
                begun = time.monotonic()
                async with event.atomic() as pipe:
                    pipe.hincrby(stream_key(event.stream, "effects"), event.event_id, 1)
                if self.fault_time is not None and begun > self.fault_time:
                    self.effect_at.setdefault(event.stream, time.monotonic())

    # ------------------------------------------------------------ producing
    async def _produce(self) -> None:
        total = self.counts.events
        while (n := next(self._numbers)) < total:
            envelope = self.topic.envelope(Tick(n=n), key=f"key-{n % KEYS}")
            self.sent.add(envelope.event_id)
            await self._send_until_acknowledged(envelope)

    async def _send_until_acknowledged(self, envelope: Envelope) -> None:
        stream = self.topic.stream_for(envelope)
        delay = 0.05
        while True:
            begun = time.monotonic()
            try:
                await self.topic.send_envelope(envelope, once=True, replicas=self.counts.replicas)
            except (RedisError, OSError):
                self.counts.send_retries += 1
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)
                continue
            self.acked.add(envelope.event_id)
            if len(self.acked) >= self.counts.events // 2:
                self._half_acknowledged.set()
            if self.fault_time is not None and begun > self.fault_time:
                self.acked_at.setdefault(stream, time.monotonic())
            return

    # --------------------------------------------------------------- faults
    def _owner(self, stream: str) -> LocalRedisServer:
        return self.cluster.master_of(key_slot(stream.encode()))

    async def _inject(self) -> None:
        await self._half_acknowledged.wait()
        streams = self.topic.streams
        if self.counts.fault == "kill-master":
            victim = self._owner(streams[0])
            self.counts.affected_partitions = [s for s in streams if self._owner(s) is victim]
            self.progress(f"SIGKILL master :{victim.port} (owns {self.counts.affected_partitions})")
            victim.kill()
            self.fault_time = time.monotonic()
            await asyncio.to_thread(self._wait_promoted, streams, victim)
            self.counts.fault_done_s = time.monotonic() - self.fault_time
            # As a supervisor would: the dead node starts again (same nodes.conf) and
            # rejoins as the replica of its promoted replica. Until then the new master
            # has no replica, and a send waiting for one (replicas=1) cannot return.
            await asyncio.to_thread(victim.start)
            await asyncio.to_thread(self.cluster.wait_ok, 60.0)
            self.counts.rejoined_s = round(time.monotonic() - self.fault_time, 3)
            self.progress(f"the killed node rejoined as a replica after {self.counts.rejoined_s}s")
        else:
            stream = streams[0]
            source = self._owner(stream)
            target = next(m for m in self.cluster.masters if m is not source)
            self.counts.affected_partitions = [stream]
            self.progress(f"migrating {stream}'s slot :{source.port} -> :{target.port}")
            self.fault_time = time.monotonic()
            slot = key_slot(stream.encode())
            self.counts.moved_keys = await asyncio.to_thread(
                self.cluster.migrate_slot, slot, target
            )
            self.counts.fault_done_s = time.monotonic() - self.fault_time
            with self.cluster.client(target) as client:
                self.counts.group_moved = any(
                    g["name"] == GROUP for g in client.xinfo_groups(stream)
                )
        self.progress(f"fault handled by the cluster after {self.counts.fault_done_s:.1f}s")

    def _wait_promoted(self, streams: tuple[str, ...], victim: LocalRedisServer) -> None:
        """Until a live node owns every slot the victim owned (its replica, promoted)."""
        slots = [key_slot(stream.encode()) for stream in streams]
        live = next(node for node in self.cluster.masters if node is not victim)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(RedisError, OSError), self.cluster.client(live) as client:
                owners = {
                    int(owner[1])
                    for first, last, owner, *_ in client.execute_command("CLUSTER", "SLOTS")
                    if any(first <= slot <= last for slot in slots)
                }
                if victim.port not in owners:
                    return
            time.sleep(0.1)
        raise TimeoutError("no replica was promoted within 60 s")

    # ------------------------------------------------------------- counting
    async def _settled(self) -> bool:
        """Every event in the streams has its effect and no group holds one pending."""
        redis = await self.app.ensure_connected()
        for stream in self.topic.streams:
            groups = await redis.xinfo_groups(stream)
            if not groups or groups[0]["pending"] or groups[0]["lag"]:
                return False
        in_streams, effects = await self._read_back()
        return in_streams <= set(effects)

    async def _read_back(self) -> tuple[set[str], dict[str, int]]:
        redis = await self.app.ensure_connected()
        in_streams: set[str] = set()
        effects: dict[str, int] = {}
        for stream in self.topic.streams:
            entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(stream)  # type: ignore[assignment]
            in_streams.update(fields[b"event_id"].decode() for _, fields in entries)
            counts: dict[bytes, bytes] = await redis.hgetall(stream_key(stream, "effects"))  # type: ignore[assignment]
            effects.update((eid.decode(), int(count)) for eid, count in counts.items())
        return in_streams, effects

    async def run(self, settle_timeout: float = 120.0) -> FaultCounts:
        started = time.monotonic()
        async with run_app(self.app):
            producers = [asyncio.create_task(self._produce()) for _ in range(PRODUCERS)]
            await self._inject()
            await asyncio.gather(*producers)
            self.counts.produce_s = round(time.monotonic() - started, 3)
            self.progress(f"{len(self.acked)} events acknowledged; waiting for the consumers")
            deadline = time.monotonic() + settle_timeout
            # Polls Redis (no in-process event to wait on); unsettled leftovers are counted.
            while not await self._settled() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            in_streams, effects = await self._read_back()
            redis = await self.app.ensure_connected()
            self.counts.dead_letters = await redis.xlen("dead-letters")
        self._count(started, in_streams, effects)
        return self.counts

    def _count(self, started: float, in_streams: set[str], effects: dict[str, int]) -> None:
        c = self.counts
        assert self.fault_time is not None
        c.sent, c.acknowledged = len(self.sent), len(self.acked)
        c.in_streams = len(in_streams & self.sent)
        c.handled = len(set(effects) & self.sent)
        c.handled_twice = sum(1 for count in effects.values() if count > 1)
        c.lost = len(self.acked - in_streams - set(effects))
        c.survived_unhandled = len(in_streams - set(effects))
        c.fault_at_s = self.fault_time - started
        acked = [self.acked_at[s] for s in c.affected_partitions if s in self.acked_at]
        if acked:
            c.writes_resumed_s = round(min(acked) - self.fault_time, 3)
        resumed = [self.effect_at[s] for s in c.affected_partitions if s in self.effect_at]
        if resumed:
            c.handling_resumed_s = round(min(resumed) - self.fault_time, 3)
        c.elapsed_s = round(time.monotonic() - started, 3)

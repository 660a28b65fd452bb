"""An agent: a user coroutine bound to a topic and a consumer group.

``concurrency=1`` (the default) runs the body directly on the consumer: no
queue, no task per event. ``concurrency=N`` runs N copies of the body, each on
its own stream fed by a dispatcher that partitions events by envelope key
(``crc32(key) % N``; the event id when there is no key), so events of one key (one
order) stay in order.
On a partitioned topic (``partitions=N``) the agent has one consumer per partition
stream (each on its own connection, to the node owning that stream under Cluster) and
one dispatcher per consumer feeding the same ``concurrency`` bodies, split the same
way: a key lives in one partition, so its events still reach one body, in order.
A body that raises is called again; the event it was on is retried or
dead-lettered by the consumer. Bodies never die on one bad event.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from orderflow.runtime.batch import Batch
from orderflow.runtime.consumer import Consumer
from orderflow.runtime.event import Event
from orderflow.runtime.protocols import AgentHost
from orderflow.runtime.records import Record
from orderflow.runtime.retry import RetryPolicy
from orderflow.runtime.stream import Stream, StreamEnded
from orderflow.runtime.topic import Topic

log = logging.getLogger("orderflow.agent")

T = TypeVar("T", bound=Record)
AgentFun = Callable[[Stream[T]], Any]


class _QueueSource:
    """Feeds one of N worker streams with its share of each batch (of every partition)."""

    def __init__(self, consumers: tuple[Consumer, ...], size: int) -> None:
        self.consumers = {consumer.stream: consumer for consumer in consumers}
        # Handler latencies go to the first consumer's list: every consumer observes
        # into the agent's one histogram, and that one drains it on each of its reads.
        self._latencies = consumers[0].latencies
        self.queue: asyncio.Queue[Batch | None] = asyncio.Queue(size)
        self.ended = False

    async def next_batch(self, max_wait: float | None = None) -> Batch | None:
        if self.ended:
            raise StreamEnded
        try:
            if max_wait is None:
                batch = await self.queue.get()
            else:
                batch = await asyncio.wait_for(self.queue.get(), max_wait)
        except TimeoutError:
            return None
        if batch is None:
            self.ended = True
            raise StreamEnded
        return batch

    @property
    def latencies(self) -> list[float]:
        return self._latencies

    async def failed(self, event: Event[Any], exc: BaseException) -> None:
        await self.consumers[event.stream].failed(event, exc)


class Agent(Generic[T]):
    """A coroutine bound to a topic and a consumer group (see the module docstring)."""

    def __init__(
        self,
        app: AgentHost,
        fun: AgentFun[T],
        topic: Topic[T],
        *,
        group: str,
        concurrency: int = 1,
        max_deliveries: int | None = None,
        name: str | None = None,
        start_id: str = "0",
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.app = app
        self.fun = fun
        self.topic = topic
        self.group = group
        self.concurrency = concurrency
        self.max_deliveries = max_deliveries
        self.name = name or f"{fun.__module__}.{fun.__qualname__}"
        self.start_id = start_id
        self.consumers: tuple[Consumer, ...] = ()  # one per stream of the topic, once started
        self._tasks: list[asyncio.Task[None]] = []
        self.restarts = 0

    def __call__(self, stream: Stream[T]) -> Any:
        return self.fun(stream)

    def __repr__(self) -> str:
        return f"<Agent {self.name} on {self.topic.name} group={self.group}>"

    async def send(
        self, *, value: T, key: str | None = None, delay: float | None = None
    ) -> str | None:
        """Send to this agent's topic (Faust's ``agent.send``)."""
        return await self.topic.send(value=value, key=key, delay=delay)

    # ------------------------------------------------------------ lifecycle
    def make_consumer(self, stream: str) -> Consumer:
        app = self.app
        policy = RetryPolicy(
            base=app.retry_base,
            cap=app.retry_cap,
            max_deliveries=self.max_deliveries or app.max_deliveries,
        )
        return Consumer(
            app.redis,
            stream=stream,
            group=self.group,
            name=app.consumer_name,
            agent=self.name,
            accepted=self.topic.accepted_types,
            policy=policy,
            read_count=app.read_count,
            block_ms=app.block_ms,
            claim_idle_ms=app.claim_idle_ms,
            claim_interval=app.claim_interval,
            dedupe_ttl=app.dedupe_ttl,
            start_id=self.start_id,
        )

    async def start(self) -> None:
        consumers = self.consumers = tuple(map(self.make_consumer, self.topic.streams))
        for consumer in consumers:
            try:
                await consumer.ensure_group()
            except Exception as exc:  # the loop retries (e.g. server not up yet)
                log.warning("agent %s: could not create group on %s yet: %s", self.name,
                            consumer.stream, exc)  # fmt: skip
        if self.concurrency == 1 and len(consumers) == 1:
            stream: Stream[T] = Stream(
                consumers[0], handler=self.handler_id, on_failure=self._failed_alone
            )
            self._tasks = [asyncio.create_task(self._run_body(stream), name=self.name)]
            return
        sources = [_QueueSource(consumers, 2) for _ in range(self.concurrency)]
        self._tasks = [
            asyncio.create_task(
                self._run_body(
                    Stream(source, handler=self.handler_id, on_failure=self._failed_alone)
                ),
                name=f"{self.name}[{index}]",
            )
            for index, source in enumerate(sources)
        ]
        self._tasks.append(
            asyncio.create_task(
                self._dispatch_all(consumers, sources), name=f"{self.name}:dispatch"
            )
        )

    def stop(self) -> None:
        """Stop reading; the bodies finish what was delivered, then end."""
        for consumer in self.consumers:
            consumer.stop()

    @property
    def stopping(self) -> bool:
        """Stop has begun (its consumers no longer read)."""
        return any(consumer.stopping for consumer in self.consumers)

    async def wait(self, max_wait: float | None = None) -> bool:
        """Wait for the bodies to finish; cancel them after ``max_wait``. True if clean."""
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(self._tasks, timeout=max_wait)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            log.warning("agent %s: %d task(s) cancelled after shutdown timeout", self.name,
                        len(pending))  # fmt: skip
        for consumer in self.consumers:
            await consumer.close()  # final acks, then its private connection
        return not pending

    @property
    def tasks(self) -> tuple[asyncio.Task[None], ...]:
        """The body tasks (and the dispatcher with ``concurrency`` > 1) while started."""
        return tuple(self._tasks)

    @property
    def handler_id(self) -> str:
        """``<group>/<agent name>``: what derived send ids are scoped to."""
        return f"{self.group}/{self.name}"

    # ---------------------------------------------------------------- bodies
    async def _run_body(self, stream: Stream[T]) -> None:
        while True:
            try:
                result = self.fun(stream)
                if inspect.isasyncgen(result):
                    async for _ in result:
                        pass
                elif isinstance(result, Awaitable):
                    await result
                stream.finish()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failed = await stream.fail_inflight(exc)
                held = len(failed)
                reported: list[Event[T] | None] = list(failed) or [None]
                for event in reported:
                    await self.app.report_error(exc, event)
                self.restarts += 1
                log.error("agent %s raised %s: %s (%d event(s) failed; restarting body)",
                          self.name, type(exc).__name__, exc, held, exc_info=held == 0)  # fmt: skip
                if held == 0:
                    await asyncio.sleep(min(5.0, 0.1 * self.restarts))  # a bug outside events
                continue
            if not self.stopping:
                log.warning("agent %s returned before shutdown; it will not run again", self.name)
            return

    async def _failed_alone(self, exc: BaseException, event: Event[T]) -> None:
        """The body failed one event of its list (``stream.fail``) and goes on."""
        await self.app.report_error(exc, event)
        log.error("agent %s: %s on event %s: %s (failed alone; the rest of its list goes on)",
                  self.name, type(exc).__name__, event.event_id, exc)  # fmt: skip

    async def _dispatch_all(
        self, consumers: tuple[Consumer, ...], sources: list[_QueueSource]
    ) -> None:
        """One dispatcher per consumer (per partition); the bodies end after the last."""
        await asyncio.gather(*(self._dispatch(consumer, sources) for consumer in consumers))
        for source in sources:
            await source.queue.put(None)

    async def _dispatch(self, consumer: Consumer, sources: list[_QueueSource]) -> None:
        """Read batches and hand each worker its share, partitioned by key."""
        workers = len(sources)
        while True:
            try:
                batch = await consumer.next_batch()
            except StreamEnded:
                break
            if batch is None:
                continue
            parts = batch.split(workers)
            consumer.replace_handed(batch, parts)
            for source, part in zip(sources, parts, strict=True):
                if len(part):
                    await source.queue.put(part)

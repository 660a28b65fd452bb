"""``App``: topics, agents, timers and hooks of one service, and their lifecycle.

``start()`` connects, runs the ``on_startup`` hooks, creates consumer groups and
starts every agent, every timer, the delayed-event scheduler and the lag/pending
metrics poller. ``stop()`` stops reading, lets agents finish (and ack) what they
were handed, cancels whatever is still running after ``shutdown_timeout``, then
runs the ``on_shutdown`` hooks (so a store a handler uses is closed only after the
last handler returned).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, overload

from redis.asyncio import Redis

from orderflow.runtime import lag
from orderflow.runtime.agent import Agent, AgentFun
from orderflow.runtime.background import BackgroundTasks
from orderflow.runtime.connection import connect_redis, default_consumer_name, is_cluster_url
from orderflow.runtime.context import serving
from orderflow.runtime.envelope import Envelope
from orderflow.runtime.follow import Follower
from orderflow.runtime.follow_multi import MultiFollower
from orderflow.runtime.follow_partitions import PartitionedFollower, TopicFollower
from orderflow.runtime.hooks import Hooks
from orderflow.runtime.publish_batch import PublishBatcher
from orderflow.runtime.records import Record
from orderflow.runtime.scheduler import Scheduler
from orderflow.runtime.settings import RuntimeSettings, get_runtime_settings
from orderflow.runtime.stop_signals import install_stop_signals
from orderflow.runtime.timer import Timer
from orderflow.runtime.topic import Topic, ValueType

log = logging.getLogger("orderflow.app")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T", bound=Record)


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


class App(Hooks):
    """One service: its topics, agents, timers and lifecycle hooks.

    Every keyword option defaults to the field of :class:`RuntimeSettings` named in
    brackets (environment variable ``ORDERFLOW_<FIELD>``); pass ``settings=`` to read
    another settings object (an application's subclass, or one built in a test).

    Args:
        name: service name; the default consumer group of its agents is ``<name>-group``,
            and it is the ``source`` of every envelope it sends.
        broker: Redis URL (``redis://host:port/db``, or ``redis+cluster://h1:p1,h2:p2`` for
            a Redis Cluster: docs/runtime.md, "Redis Cluster") [``redis_url``].
        read_count: entries per ``XREADGROUP`` [``read_count``].
        block_ms: longest wait of one read for new entries, ms [``read_block_ms``].
        claim_idle_ms: pending entries idle this long are taken over from a consumer
            presumed dead, ms [``claim_idle_ms``].
        claim_interval: seconds between two looks for such entries
            [``claim_interval_seconds``].
        max_deliveries: deliveries before an event is dead-lettered; an agent may set
            its own [``max_deliveries``].
        retry_base: first retry back-off, s; doubles per delivery [``retry_base_seconds``].
        retry_cap: longest retry back-off, s [``retry_cap_seconds``].
        dedupe_ttl: a processed event id is remembered this long (up to twice), s
            [``dedupe_ttl_seconds``].
        shutdown_timeout: on stop, how long in-flight handlers may finish, s
            [``shutdown_timeout_seconds``].
        consumer_name: this process's consumer name in every group (default
            ``<host>-<pid>``: unique per process, so a restart is a new consumer).
        stream_maxlen: approximate MAXLEN of topics without their own ``maxlen``;
            0 for none [``stream_maxlen``].
        scheduler_interval: seconds between checks for due delayed events
            [``scheduler_interval_seconds``].
        metrics_interval: seconds between polls of lag and pending counts
            [``metrics_interval_seconds``].
        pool_size: at most this many connections in the app's shared pool; a caller
            then waits (up to 10 s) for a free one instead of opening more (for a
            process that publishes from many concurrent requests). Default: no cap.
            Each consumer has a connection of its own besides.
        settings: where the defaults come from (default: the environment, read once).
    """

    def __init__(
        self,
        name: str,
        broker: str | None = None,
        *,
        read_count: int | None = None,
        block_ms: int | None = None,
        claim_idle_ms: int | None = None,
        claim_interval: float | None = None,
        max_deliveries: int | None = None,
        retry_base: float | None = None,
        retry_cap: float | None = None,
        dedupe_ttl: int | None = None,
        shutdown_timeout: float | None = None,
        consumer_name: str | None = None,
        stream_maxlen: int | None = None,
        scheduler_interval: float | None = None,
        metrics_interval: float | None = None,
        pool_size: int | None = None,
        settings: RuntimeSettings | None = None,
    ) -> None:
        s = settings or get_runtime_settings()
        self.name = name
        self.broker = broker
        self.settings = s
        self.read_count: int = _pick(read_count, s.read_count)
        self.block_ms: int = _pick(block_ms, s.read_block_ms)
        self.claim_idle_ms: int = _pick(claim_idle_ms, s.claim_idle_ms)
        self.claim_interval: float = _pick(claim_interval, s.claim_interval_seconds)
        self.max_deliveries: int = _pick(max_deliveries, s.max_deliveries)
        self.retry_base: float = _pick(retry_base, s.retry_base_seconds)
        self.retry_cap: float = _pick(retry_cap, s.retry_cap_seconds)
        self.dedupe_ttl: int = _pick(dedupe_ttl, s.dedupe_ttl_seconds)
        self.shutdown_timeout: float = _pick(shutdown_timeout, s.shutdown_timeout_seconds)
        self.consumer_name = consumer_name or default_consumer_name()
        self.settings_maxlen: int | None = _pick(stream_maxlen, s.stream_maxlen) or None
        self.scheduler_interval: float = _pick(scheduler_interval, s.scheduler_interval_seconds)
        self.metrics_interval: float = _pick(metrics_interval, s.metrics_interval_seconds)
        self.pool_size = pool_size
        self.topics: dict[str, Topic[Any]] = {}
        self.agents: list[Agent[Any]] = []
        self.timers: list[Timer] = []
        Hooks.__init__(self)
        self._redis: Redis | None = None
        self.publish_batcher = PublishBatcher()  # send_envelopes' shared round trips
        self._stopping = asyncio.Event()
        self._stop_requested = False
        self._stop_event: asyncio.Event | None = None
        self._background = BackgroundTasks(name)
        self.started = False
        self.scheduler: Scheduler | None = None

    # ----------------------------------------------------------- declaring
    @overload
    def topic(
        self,
        name: str,
        *,
        value_type: type[T],
        maxlen: int | None = None,
        partitions: int = 1,
    ) -> Topic[T]: ...

    @overload
    def topic(
        self,
        name: str,
        *,
        value_type: ValueType = None,
        maxlen: int | None = None,
        partitions: int = 1,
    ) -> Topic[Any]: ...

    def topic(
        self,
        name: str,
        *,
        value_type: ValueType = None,
        maxlen: int | None = None,
        partitions: int = 1,
    ) -> Topic[Any]:
        """Declare the stream ``name`` and what it carries (``value_type``: a Record class
        or a tuple of them; ``None``: any registered type). ``partitions=N`` (N > 1) makes
        it N streams ``name.p0`` .. ``name.p<N-1>``, picked by key
        (:mod:`orderflow.runtime.partitions`). Declaring the same name again returns the
        same topic; with other options it raises ``ValueError``."""
        topic: Topic[Any] = Topic(
            self, name, value_type=value_type, maxlen=maxlen, partitions=partitions
        )
        existing = self.topics.get(name)
        if existing is not None:
            if existing.options != topic.options:
                raise ValueError(
                    f"topic {name!r} is already declared with {existing.describe()}; "
                    f"declared again with {topic.describe()}"
                )
            return existing
        self.topics[name] = topic
        return topic

    def agent(
        self,
        topic: Topic[T] | str,
        *,
        group: str | None = None,
        concurrency: int = 1,
        max_deliveries: int | None = None,
        name: str | None = None,
        start_id: str = "0",
    ) -> Callable[[AgentFun[T]], Agent[T]]:
        """Decorator: run the coroutine on every event of ``topic`` for ``group``
        (default ``<app name>-group``). ``concurrency=N`` runs N copies of the body;
        events of one key stay in order. ``start_id`` is where a *new* group starts
        ("0": everything already in the stream, "$": only new entries)."""
        if isinstance(topic, str):
            resolved: Topic[Any] = self.topics.get(topic) or self.topic(topic)
        else:
            resolved = topic

        def decorate(fun: AgentFun[T]) -> Agent[T]:
            agent: Agent[T] = Agent(
                self,
                fun,
                resolved,
                group=group or f"{self.name}-group",
                concurrency=concurrency,
                max_deliveries=max_deliveries,
                name=name,
                start_id=start_id,
            )
            self.agents.append(agent)
            return agent

        return decorate

    def follow(
        self, topic: Topic[T], *, start: str = "$", min_read_interval: float = 0.0
    ) -> TopicFollower[T]:
        """A group-less reader: ``async for event in app.follow(topic)`` sees every entry
        after ``start`` (``"$"``: the last one when it first reads), whoever else reads the
        stream; for fan-out, not work (:mod:`orderflow.runtime.follow`; ``min_read_interval``
        paces its reads). Needs no start(). A partitioned topic gets a
        :class:`PartitionedFollower`: one reader per partition
        (:mod:`orderflow.runtime.follow_partitions`)."""
        follower = PartitionedFollower if topic.partitions > 1 else Follower
        return follower(topic, start=start, read_count=self.read_count, block_ms=self.block_ms,
                        min_read_interval=min_read_interval)  # fmt: skip

    def follow_many(self, topics: Sequence[Topic[Any]], *, start: str = "$") -> MultiFollower:
        """One group-less reader of every stream (and partition) of ``topics`` that yields
        their entries in the order the server appended them, with no wait: one ``XREAD``
        over all of them (:mod:`orderflow.runtime.follow_multi`). Single Redis server
        only (raises ``ValueError`` for a ``redis+cluster://`` app: use :meth:`follow`
        per topic there)."""
        if is_cluster_url(self.url):
            raise ValueError(
                "follow_many reads all streams with one XREAD: not on Redis Cluster "
                "(streams on different slots); follow each topic with app.follow()"
            )
        return MultiFollower(topics, start=start, read_count=self.read_count,
                             block_ms=self.block_ms)  # fmt: skip

    def timer(
        self, seconds: float, *, run_at_start: bool = False, name: str | None = None
    ) -> Callable[[F], F]:
        """Decorator: call the coroutine every ``seconds`` while the app runs
        (in every worker process; an exception is logged, the timer goes on)."""
        if seconds <= 0:
            raise ValueError("timer interval must be > 0")

        def decorate(fun: F) -> F:
            label = name or f"{fun.__module__}.{fun.__qualname__}"
            self.timers.append(Timer(fun, seconds, label, run_at_start))
            return fun

        return decorate

    # ---------------------------------------------------------- connection
    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise RuntimeError(f"app {self.name!r} is not connected: await app.connect() first")
        return self._redis

    @property
    def url(self) -> str:
        url = self.broker or self.settings.redis_url
        if not url:
            raise RuntimeError("no Redis URL: pass App(broker=...) or set ORDERFLOW_REDIS_URL")
        return url

    async def connect(self) -> Redis:
        if self._redis is None:
            self._redis = connect_redis(self.url, block_ms=self.block_ms, pool_size=self.pool_size)
        return self._redis

    async def ensure_connected(self) -> Redis:
        return self._redis if self._redis is not None else await self.connect()

    async def send_envelopes(
        self, items: Sequence[tuple[Topic[Any], Envelope]], *, once: bool = False
    ) -> list[str | None]:
        """Publish prebuilt envelopes to their topics in one round trip (shared with the
        calls made meanwhile: :mod:`~orderflow.runtime.publish_batch`), each capped at
        its topic's maxlen. ``once=True``: an event id already appended to that stream
        (within ``dedupe_ttl``) is not appended again (its result is ``None``)."""
        redis = await self.ensure_connected()
        publications = [
            (topic.stream_for(envelope), envelope, topic.effective_maxlen)
            for topic, envelope in items
        ]
        once_ttl = self.dedupe_ttl if once else None
        return await self.publish_batcher.publish(redis, publications, once_ttl=once_ttl)

    # ----------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self.started:
            return
        with serving(self.name):  # its tasks inherit the name: logs and spans name the App
            await self.connect()
            await self.run_startup_hooks()
            self._stopping = asyncio.Event()
            for agent in self.agents:
                await agent.start()
            spawn = self._background.spawn
            for timer in self.timers:
                spawn(timer.run(self._stopping, self.report_error), f"timer:{timer.name}")
            self.scheduler = Scheduler(
                lambda: self.redis,
                streams=lambda: [s for topic in self.topics.values() for s in topic.streams],
                interval=self.scheduler_interval,
            )
            spawn(self.scheduler.run(self._stopping), "scheduler")
            if self.agents:
                metrics = lag.poll_group_metrics(
                    lambda: self.redis, self.agents, self._stopping, self.metrics_interval
                )
                spawn(metrics, "metrics")
            self.started = True
            log.info("app %s started: %d agent(s), %d timer(s), consumer %s", self.name,
                     len(self.agents), len(self.timers), self.consumer_name)  # fmt: skip

    @property
    def stopping(self) -> bool:
        """Stop has begun: agents no longer read (readiness fails from here on)."""
        return self._stopping.is_set()

    @property
    def background_tasks(self) -> tuple[asyncio.Task[None], ...]:
        """Timers, the delayed-event scheduler and the metrics poller, while started."""
        return self._background.tasks

    async def stop(self) -> None:
        """Stop reading, finish in-flight events (acked), exit within shutdown_timeout,
        then run the shutdown hooks and close the connection."""
        with serving(self.name):
            if self.started:
                await self._stop_running()
            try:
                await self.run_shutdown_hooks()
            finally:
                if self._redis is not None:
                    await self._redis.aclose()
                    self._redis = None

    async def _stop_running(self) -> None:
        self._stopping.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_timeout
        for agent in self.agents:
            agent.stop()
        for agent in self.agents:
            await agent.wait(max(0.0, deadline - loop.time()))
        await self._background.stop(deadline)
        self.started = False
        log.info("app %s stopped", self.name)

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT (or :meth:`request_stop`), then stop gracefully.

        A :meth:`request_stop` made before ``run()`` is honoured: the app starts (its
        startup hooks run) and stops at once."""
        stop_event = self._stop_event = asyncio.Event()
        if self._stop_requested:
            stop_event.set()
        remove_stop_signals = install_stop_signals(stop_event.set)
        try:
            await self.start()
            await stop_event.wait()
            log.info("app %s: stop requested", self.name)
        finally:
            remove_stop_signals()
            self._stop_event = None
            self._stop_requested = False
            await self.stop()

    def request_stop(self) -> None:
        """Make :meth:`run` return (what SIGTERM does), also when called before it."""
        self._stop_requested = True
        if self._stop_event is not None:
            self._stop_event.set()

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def update_group_metrics(self) -> None:
        """Consumer lag and pending count per agent (XINFO GROUPS), for the metrics."""
        await lag.update_group_metrics(self.redis, self.agents)

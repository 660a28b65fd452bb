"""``App``: topics, agents and timers of one service, and their lifecycle.

``start()`` connects, creates consumer groups and starts every agent, every
timer, the delayed-event scheduler and the lag/pending metrics poller.
``stop()`` stops reading, lets agents finish (and ack) what they were handed,
and cancels whatever is still running after ``shutdown_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from orderflow.agents.settings import Settings, get_settings
from orderflow.runtime import inspect as stream_inspect
from orderflow.runtime.agent import Agent, AgentFun
from orderflow.runtime.scheduler import Scheduler
from orderflow.runtime.topic import Topic, ValueType

log = logging.getLogger("orderflow.app")

TimerFun = Callable[[], Awaitable[Any]]
F = TypeVar("F", bound=Callable[..., Any])


def default_consumer_name() -> str:
    """Stable for the life of the process, unique across hosts: ``<host>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def connect_redis(url: str, *, block_ms: int = 1000) -> Redis:
    """A client for the runtime: bytes replies, no hidden retries (the consumer
    handles reconnects itself and must *see* a lost reply), and a socket timeout
    longer than the longest blocking read."""
    return Redis.from_url(
        url,
        decode_responses=False,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=max(10.0, block_ms / 1000 + 10.0),
        socket_connect_timeout=5.0,
        socket_keepalive=True,
    )


class _Timer:
    def __init__(self, fun: TimerFun, interval: float, name: str, run_at_start: bool) -> None:
        self.fun = fun
        self.interval = interval
        self.name = name
        self.run_at_start = run_at_start

    async def run(self, stopping: asyncio.Event) -> None:
        first = True
        while not stopping.is_set():
            if not (first and self.run_at_start):
                try:
                    await asyncio.wait_for(stopping.wait(), self.interval)
                    return
                except TimeoutError:
                    pass
            first = False
            try:
                await self.fun()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("timer %s failed", self.name)


class App:
    def __init__(
        self,
        name: str,
        broker: str | None = None,
        *,
        read_count: int | None = None,
        block_ms: int | None = None,
        claim_idle_ms: int | None = None,
        claim_interval: float = 5.0,
        max_deliveries: int | None = None,
        retry_base: float | None = None,
        retry_cap: float | None = None,
        dedupe_ttl: int | None = None,
        shutdown_timeout: float | None = None,
        consumer_name: str | None = None,
        stream_maxlen: int | None = None,
        scheduler_interval: float = 0.1,
        metrics_interval: float = 5.0,
        settings: Settings | None = None,
    ) -> None:
        s = settings or get_settings()
        self.name = name
        self.broker = broker
        self.settings = s
        self.read_count = read_count if read_count is not None else s.read_count
        self.block_ms = block_ms if block_ms is not None else s.read_block_ms
        self.claim_idle_ms = claim_idle_ms if claim_idle_ms is not None else s.claim_idle_ms
        self.claim_interval = claim_interval
        self.max_deliveries = max_deliveries if max_deliveries is not None else s.max_deliveries
        self.retry_base = retry_base if retry_base is not None else s.retry_base_seconds
        self.retry_cap = retry_cap if retry_cap is not None else s.retry_cap_seconds
        self.dedupe_ttl = dedupe_ttl if dedupe_ttl is not None else s.dedupe_ttl_seconds
        self.shutdown_timeout = (
            shutdown_timeout if shutdown_timeout is not None else s.shutdown_timeout_seconds
        )
        self.consumer_name = consumer_name or default_consumer_name()
        self.settings_maxlen: int | None = (
            stream_maxlen if stream_maxlen is not None else s.stream_maxlen
        ) or None
        self.scheduler_interval = scheduler_interval
        self.metrics_interval = metrics_interval
        self.topics: dict[str, Topic] = {}
        self.agents: list[Agent] = []
        self.timers: list[_Timer] = []
        self._redis: Redis | None = None
        self._stopping = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self.started = False
        self.scheduler: Scheduler | None = None

    # ----------------------------------------------------------- declaring
    def topic(self, name: str, *, value_type: ValueType = None, maxlen: int | None = None) -> Topic:
        existing = self.topics.get(name)
        if existing is not None:
            return existing
        topic = Topic(self, name, value_type=value_type, maxlen=maxlen)
        self.topics[name] = topic
        return topic

    def agent(
        self,
        topic: Topic | str,
        *,
        group: str | None = None,
        concurrency: int = 1,
        max_deliveries: int | None = None,
        name: str | None = None,
        start_id: str = "0",
    ) -> Callable[[AgentFun], Agent]:
        """Decorator: run the coroutine on every event of ``topic`` for ``group``
        (default ``<app name>-group``). ``start_id`` is where a *new* group starts
        ("0": everything already in the stream, "$": only new entries)."""
        resolved = self.topic(topic) if isinstance(topic, str) else topic

        def decorate(fun: AgentFun) -> Agent:
            agent = Agent(
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

    def timer(
        self, seconds: float, *, run_at_start: bool = False, name: str | None = None
    ) -> Callable[[F], F]:
        """Decorator: call the coroutine every ``seconds`` while the app runs
        (in every worker process; an exception is logged, the timer goes on)."""
        if seconds <= 0:
            raise ValueError("timer interval must be > 0")

        def decorate(fun: F) -> F:
            self.timers.append(
                _Timer(fun, seconds, name or f"{fun.__module__}.{fun.__qualname__}", run_at_start)
            )
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
            self._redis = connect_redis(self.url, block_ms=self.block_ms)
        return self._redis

    async def ensure_connected(self) -> Redis:
        return self._redis if self._redis is not None else await self.connect()

    # ----------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self.started:
            return
        await self.connect()
        self._stopping = asyncio.Event()
        for agent in self.agents:
            await agent.start()
        for timer in self.timers:
            self._spawn(timer.run(self._stopping), f"timer:{timer.name}")
        self.scheduler = Scheduler(
            lambda: self.redis,
            streams=lambda: list(self.topics),
            interval=self.scheduler_interval,
        )
        self._spawn(self._run_scheduler(self.scheduler), "scheduler")
        if self.agents:
            self._spawn(self._poll_group_metrics(), "metrics")
        self.started = True
        log.info("app %s started: %d agent(s), %d timer(s), consumer %s", self.name,
                 len(self.agents), len(self.timers), self.consumer_name)  # fmt: skip

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        self._background.append(asyncio.ensure_future(coro))
        self._background[-1].set_name(f"{self.name}:{name}")

    async def _run_scheduler(self, scheduler: Scheduler) -> None:
        await scheduler.run(self._stopping)

    async def stop(self) -> None:
        """Stop reading, finish in-flight events (acked), exit within shutdown_timeout."""
        if not self.started:
            if self._redis is not None:
                await self._redis.aclose()
                self._redis = None
            return
        self._stopping.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_timeout
        for agent in self.agents:
            agent.stop()
        for agent in self.agents:
            await agent.wait(max(0.0, deadline - loop.time()))
        if self._background:
            _, pending = await asyncio.wait(
                self._background, timeout=max(0.1, deadline - loop.time())
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
        self._background = []
        self.started = False
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        log.info("app %s stopped", self.name)

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT (or :meth:`request_stop`), then stop gracefully."""
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        self._stop_requested = stop_requested
        installed: list[signal.Signals] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop_requested.set)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        try:
            await self.start()
            await stop_requested.wait()
            log.info("app %s: stop requested", self.name)
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self.stop()

    def request_stop(self) -> None:
        """Make :meth:`run` return (what SIGTERM does)."""
        event = getattr(self, "_stop_requested", None)
        if event is not None:
            event.set()

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------- metrics
    async def _poll_group_metrics(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.update_group_metrics()
            except (RedisError, OSError) as exc:
                log.debug("metrics poll failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.metrics_interval)

    async def update_group_metrics(self) -> None:
        """Consumer lag and pending count per agent (XINFO GROUPS)."""
        for agent in self.agents:
            groups = await stream_inspect.group_infos(
                self.redis, agent.topic.name, pending_details=False
            )
            for info in groups:
                if info.name == agent.group and agent.consumer is not None:
                    agent.consumer.metrics.set_group_info(
                        agent.topic.name, agent.group, info.lag, info.pending
                    )

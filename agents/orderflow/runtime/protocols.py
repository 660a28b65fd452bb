"""The small interfaces the runtime's parts see of each other.

Why: an :class:`~orderflow.runtime.event.Event` needs a few facts about the consumer
that delivered it, a :class:`~orderflow.runtime.topic.Topic` a few of its app, an
:class:`~orderflow.runtime.agent.Agent` a few of its app. Naming just those here
(instead of importing ``Consumer``/``App`` under ``TYPE_CHECKING``) removes the import
cycles, and lets ``Batch``, ``Event`` and ``Stream`` be built and tested without a
server or an App.
"""

from __future__ import annotations

from typing import Any, Protocol

from redis.asyncio import Redis

from orderflow.runtime.dedupe import DedupeMarks


class Delivery(Protocol):
    """The consumer an event came from: where, for which group, and its dedupe marks."""

    @property
    def stream(self) -> str: ...

    @property
    def group(self) -> str: ...

    @property
    def redis(self) -> Redis: ...

    @property
    def dedupe(self) -> DedupeMarks: ...


class TopicOwner(Protocol):
    """What a topic needs of its app to send: a name (the envelope's ``source``), a
    connection and the default stream cap."""

    @property
    def name(self) -> str: ...

    @property
    def settings_maxlen(self) -> int | None: ...

    @property
    def dedupe_ttl(self) -> int:
        """How long a once-only publish remembers an event id (seconds)."""
        ...

    async def ensure_connected(self) -> Redis: ...


class AgentHost(TopicOwner, Protocol):
    """What an agent needs of its app to build its consumer and report failures."""

    @property
    def redis(self) -> Redis: ...

    @property
    def consumer_name(self) -> str: ...

    read_count: int
    block_ms: int
    claim_idle_ms: int
    claim_interval: float
    max_deliveries: int
    retry_base: float
    retry_cap: float

    async def report_error(self, exc: BaseException, event: Any = None) -> None: ...

"""orderflow's agent runtime: Faust-style agents on Redis Streams.

The public API is what ``__all__`` lists (see docs/runtime.md)::

    from orderflow.runtime import App, Record, Stream

    app = App("billing", broker="redis://127.0.0.1:6379/0")

    class Charged(Record, event_type="billing.charged.v1"):
        order_id: str

    @app.agent(app.topic("charges", value_type=Charged))
    async def handle(stream: Stream[Charged]) -> None:
        async for charged in stream:
            ...

Submodules that are not re-exported here (``testing``, ``deadletter``, ``inspect``,
``localserver``, ``logs``, ``keys``) are public too, for tools and tests; everything
else is the machinery behind ``App``.
"""

from orderflow.runtime.agent import Agent
from orderflow.runtime.app import App
from orderflow.runtime.context import correlation, current_correlation_id
from orderflow.runtime.envelope import Envelope
from orderflow.runtime.event import Event
from orderflow.runtime.follow import Follower
from orderflow.runtime.follow_multi import MultiFollower
from orderflow.runtime.follow_partitions import PartitionedFollower, TopicFollower
from orderflow.runtime.publish import NotReplicated, publish_envelope
from orderflow.runtime.records import DecodeError, Record, registry
from orderflow.runtime.retry import RetryPolicy
from orderflow.runtime.settings import RuntimeSettings
from orderflow.runtime.stream import Stream
from orderflow.runtime.topic import Topic

__all__ = [
    "Agent",
    "App",
    "DecodeError",
    "Envelope",
    "Event",
    "Follower",
    "MultiFollower",
    "NotReplicated",
    "PartitionedFollower",
    "Record",
    "RetryPolicy",
    "RuntimeSettings",
    "Stream",
    "Topic",
    "TopicFollower",
    "correlation",
    "current_correlation_id",
    "publish_envelope",
    "registry",
]

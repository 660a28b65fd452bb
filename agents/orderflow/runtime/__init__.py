"""orderflow's agent runtime: Faust-style agents on Redis Streams.

Public API (see docs/runtime.md)::

    from orderflow.runtime import App, Record, Event, Envelope, Topic, correlation
"""

from orderflow.runtime.agent import Agent
from orderflow.runtime.app import App
from orderflow.runtime.context import correlation, current_correlation_id
from orderflow.runtime.envelope import Envelope
from orderflow.runtime.event import Event
from orderflow.runtime.records import DecodeError, Record, registry
from orderflow.runtime.retry import RetryPolicy
from orderflow.runtime.stream import Stream
from orderflow.runtime.topic import Topic, publish_envelope

__all__ = [
    "Agent",
    "App",
    "DecodeError",
    "Envelope",
    "Event",
    "Record",
    "RetryPolicy",
    "Stream",
    "Topic",
    "correlation",
    "current_correlation_id",
    "publish_envelope",
    "registry",
]

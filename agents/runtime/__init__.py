"""orderflow's agent runtime: Faust-style agents on Redis Streams.

Public API (see docs/runtime.md)::

    from agents.runtime import App, Record, Event, Envelope, Topic, correlation
"""

from agents.runtime.agent import Agent
from agents.runtime.app import App
from agents.runtime.context import correlation, current_correlation_id
from agents.runtime.envelope import Envelope
from agents.runtime.event import Event
from agents.runtime.records import DecodeError, Record, registry
from agents.runtime.retry import RetryPolicy
from agents.runtime.stream import Stream
from agents.runtime.topic import Topic, publish_envelope

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

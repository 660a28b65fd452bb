"""A named stream plus what may be sent to it (``app.topic(...)``).

``Topic.send`` wraps a record in an :class:`Envelope` (inheriting correlation
from the current handler) and appends it with ``XADD ... MAXLEN ~ n`` so every
stream stays capped, or parks it for later with ``delay=``. A topic of
``partitions=N`` is N streams; each envelope goes to the one its key picks
(:mod:`orderflow.runtime.partitions`).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from orderflow.runtime import keys
from orderflow.runtime.envelope import Envelope
from orderflow.runtime.partitions import partition_key, partition_of, partition_streams
from orderflow.runtime.protocols import TopicOwner
from orderflow.runtime.publish import publish_envelope
from orderflow.runtime.records import Record

ValueType = type[Record] | tuple[type[Record], ...] | None
T = TypeVar("T", bound=Record)


class Topic(Generic[T]):
    """A stream name with its value type(s) and MAXLEN cap.

    Generic in what it carries: ``app.topic("x", value_type=A)`` is a ``Topic[A]``, so an
    agent on it iterates ``A`` values without casts. A topic of several types is a
    ``Topic[Any]`` unless annotated (``Topic[A | B]``)."""

    def __init__(
        self,
        app: TopicOwner,
        name: str,
        *,
        value_type: ValueType = None,
        maxlen: int | None = None,
        partitions: int = 1,
    ) -> None:
        self.app = app
        self.name = keys.check_stream_name(name)
        self.partitions = partitions
        # Every stream of the topic: (name,) unless partitioned (name.p0 .. name.p<N-1>).
        self.streams: tuple[str, ...] = partition_streams(self.name, partitions)
        if value_type is None:
            self.value_types: tuple[type[Record], ...] = ()
        elif isinstance(value_type, tuple):
            self.value_types = value_type
        else:
            self.value_types = (value_type,)
        for cls in self.value_types:
            if not (isinstance(cls, type) and issubclass(cls, Record) and cls.event_type):
                raise TypeError(f"value_type must be Record subclasses with an event_type: {cls!r}")
        self.maxlen = maxlen

    @property
    def options(self) -> tuple[Any, ...]:
        """What a redeclaration must repeat: the value types, the maxlen, the partitions."""
        return (frozenset(self.value_types), self.maxlen, self.partitions)

    def describe(self) -> str:
        types = ", ".join(sorted(cls.__name__ for cls in self.value_types)) or "any type"
        return f"value_type=({types}), maxlen={self.maxlen}, partitions={self.partitions}"

    def stream_for(self, envelope: Envelope) -> str:
        """The stream ``envelope`` goes to: the topic's one stream, or the partition
        its key (its event id when keyless) hashes to."""
        if self.partitions == 1:
            return self.name
        return self.streams[partition_of(partition_key(envelope), self.partitions)]

    @property
    def accepted_types(self) -> dict[str, type[Record]] | None:
        """event_type -> class accepted by this topic; ``None`` = any registered type."""
        if not self.value_types:
            return None
        return {cls.event_type: cls for cls in self.value_types}

    def envelope(self, value: T, *, key: str | None = None) -> Envelope:
        if self.value_types and not isinstance(value, self.value_types):
            names = ", ".join(cls.__name__ for cls in self.value_types)
            raise TypeError(f"topic {self.name} takes {names}, not {type(value).__name__}")
        return Envelope.new(value, source=self.app.name, key=key)

    async def send(
        self, *, value: T, key: str | None = None, delay: float | None = None,
        replicas: int = 0, replicas_timeout_ms: int = 1000,
    ) -> str | None:  # fmt: skip
        """Publish ``value``; returns the stream entry id, or ``None`` when ``delay`` was given.
        ``replicas=N``: see :meth:`send_envelope`."""
        return await self.send_envelope(
            self.envelope(value, key=key), delay=delay, replicas=replicas,
            replicas_timeout_ms=replicas_timeout_ms,
        )  # fmt: skip

    async def send_envelope(
        self, envelope: Envelope, *, delay: float | None = None, once: bool = False,
        replicas: int = 0, replicas_timeout_ms: int = 1000,
    ) -> str | None:  # fmt: skip
        """Publish a prebuilt envelope as is (same ``event_id``: a re-publish).

        ``once=True`` appends it only if this event id was not appended to this stream
        within the app's ``dedupe_ttl`` (see :mod:`orderflow.runtime.publish`); returns
        ``None`` when it was. Not combinable with ``delay``.

        ``replicas=N`` returns only once N replicas have the entry (``WAIT``, up to
        ``replicas_timeout_ms``), so a failover that promotes one of them keeps it;
        fewer in time raises :class:`~orderflow.runtime.publish.NotReplicated` (the entry
        stays appended; re-send with ``once=True``). Not combinable with ``delay``."""
        if once and delay:
            raise ValueError("send_envelope(once=True) cannot be delayed")
        redis = await self.app.ensure_connected()
        return await publish_envelope(
            redis,
            self.stream_for(envelope),
            envelope,
            maxlen=self.effective_maxlen,
            delay=delay,
            once_ttl=self.app.dedupe_ttl if once else None,
            replicas=replicas,
            replicas_timeout_ms=replicas_timeout_ms,
        )

    @property
    def effective_maxlen(self) -> int | None:
        return self.maxlen if self.maxlen is not None else self.app.settings_maxlen

    def __repr__(self) -> str:
        if self.partitions == 1:
            return f"<Topic {self.name}>"
        return f"<Topic {self.name} partitions={self.partitions}>"

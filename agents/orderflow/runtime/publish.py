"""Appending envelopes to streams: at once, later (``delay``), or once per event id.

The one place the runtime writes events, so a topic's ``MAXLEN`` cap applies to
every event, whoever publishes it (agents, the outbox relay, an HTTP handler).

**Once per event id** (``once_ttl``): a Lua script sets a marker key
``orderflow:{<stream>}:published:<event_id>`` (``SET NX EX``) and appends the entry in
one atomic step; when the marker exists nothing is appended. That makes re-publishing
harmless — a transactional outbox re-sends whatever it is not sure went out, and a
group-less reader (the WebSocket gateway) has no dedupe of its own. The marker's hash
tag is the stream's name (a key without braces hashes its whole name), so marker and
stream share a Cluster slot, as one script needs. The marker lives ``once_ttl`` seconds
(the App passes its ``dedupe_ttl``).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

from redis.asyncio import Redis

from orderflow.runtime import keys, scheduler
from orderflow.runtime.envelope import Envelope
from orderflow.runtime.wire import text

# KEYS[1] stream, KEYS[2] marker; ARGV[1] marker TTL s, ARGV[2] approximate maxlen
# (0: no cap), ARGV[3..] flat field/value pairs of the envelope. Returns the entry id,
# or false when this event id was already published.
_PUBLISH_ONCE = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  return false
end
if tonumber(ARGV[2]) > 0 then
  return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
"""

Publication = tuple[str, Envelope, int | None]  # stream, envelope, maxlen (None: no cap)


def published_marker_key(stream: str, event_id: str) -> str:
    """Marker that ``event_id`` was appended to ``stream`` (same Cluster slot as it)."""
    return keys.stream_key(stream, f"published:{event_id}")


async def publish_envelope(
    redis: Redis,
    stream: str,
    envelope: Envelope,
    *,
    maxlen: int | None = None,
    delay: float | None = None,
    once_ttl: int | None = None,
) -> str | None:
    """Append ``envelope`` to ``stream`` (or park it ``delay`` seconds). Returns the entry
    id; ``None`` when delayed, or with ``once_ttl`` when the event id was already there."""
    fields = envelope.to_fields()
    if delay is not None and delay > 0:
        await scheduler.schedule(redis, stream, fields, delay, maxlen)
        return None
    if once_ttl is not None:
        [once] = await publish_envelopes(redis, [(stream, envelope, maxlen)], once_ttl=once_ttl)
        return once
    if maxlen:
        added = await redis.xadd(stream, fields, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
    else:
        added = await redis.xadd(stream, fields)  # type: ignore[arg-type]
    return text(added)


async def publish_envelopes(
    redis: Redis, items: Sequence[Publication], *, once_ttl: int | None = None
) -> list[str | None]:
    """Append several envelopes in one pipelined round trip (not atomic across them).
    With ``once_ttl`` each is appended once per event id (``None`` for one already
    there). A connection error propagates: the caller cannot know which went out, and
    re-publishing with ``once_ttl`` is the safe answer."""
    if not items:
        return []
    pipe = redis.pipeline(transaction=False)
    for stream, envelope, maxlen in items:
        fields = envelope.to_fields()
        if once_ttl is None:
            if maxlen:
                pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
            else:
                pipe.xadd(stream, fields)  # type: ignore[arg-type]
            continue
        marker = published_marker_key(stream, envelope.event_id)
        flat = chain.from_iterable(fields.items())
        pipe.eval(_PUBLISH_ONCE, 2, stream, marker, once_ttl, maxlen or 0, *flat)
    replies = await pipe.execute()
    return [text(reply) if reply else None for reply in replies]

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
(the App passes its ``dedupe_ttl``). Such an entry ends with the field ``once`` (value
``1``), which tells a consumer that no other publish-once entry of the stream carries
its event id, so its first delivery needs no dedupe check
(:mod:`orderflow.runtime.fresh_check`).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from orderflow.runtime import keys, scheduler
from orderflow.runtime.connection import is_cluster
from orderflow.runtime.envelope import Envelope
from orderflow.runtime.fresh_check import ONCE_FIELD
from orderflow.runtime.pipeline import Command, execute, run_commands
from orderflow.runtime.slot_transactions import slot_clients
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
    replicas: int = 0,
    replicas_timeout_ms: int = 1000,
) -> str | None:
    """Append ``envelope`` to ``stream`` (or park it ``delay`` seconds). Returns the entry
    id; ``None`` when delayed, or with ``once_ttl`` when the event id was already there.
    ``replicas=N``: then wait for N replicas (:func:`publish_replicated`)."""
    if replicas:
        if delay:
            raise ValueError("a send that waits for replicas cannot be delayed")
        return await publish_replicated(
            redis, stream, envelope, maxlen=maxlen, once_ttl=once_ttl, replicas=replicas,
            timeout_ms=replicas_timeout_ms,
        )  # fmt: skip
    if delay is not None and delay > 0:
        await scheduler.schedule(redis, stream, envelope.to_fields(), delay, maxlen)
        return None
    [added] = await publish_envelopes(redis, [(stream, envelope, maxlen)], once_ttl=once_ttl)
    return added


async def publish_envelopes(
    redis: Redis, items: Sequence[Publication], *, once_ttl: int | None = None
) -> list[str | None]:
    """Append several envelopes in one pipelined round trip (not atomic across them).
    With ``once_ttl`` each is appended once per event id (``None`` for one already
    there). A connection error propagates: the caller cannot know which went out, and
    re-publishing with ``once_ttl`` is the safe answer."""
    if not items:
        return []
    commands = [publication_command(*item, once_ttl) for item in items]
    replies = await run_commands(redis, commands)
    return [text(reply) if reply else None for reply in replies]


def publication_command(
    stream: str, envelope: Envelope, maxlen: int | None, once_ttl: int | None
) -> Command:
    """One append as a command: a capped ``XADD``, or with ``once_ttl`` the script that
    appends once per event id, with the ``once`` field last (its reply is then false
    for an event id already there)."""
    flat: list[str | bytes] = list(chain.from_iterable(envelope.to_fields().items()))
    if once_ttl is not None:
        marker = published_marker_key(stream, envelope.event_id)
        flat += (ONCE_FIELD, b"1")
        return ("EVAL", _PUBLISH_ONCE, 2, stream, marker, once_ttl, maxlen or 0, *flat)
    if maxlen:
        return ("XADD", stream, "MAXLEN", "~", maxlen, "*", *flat)
    return ("XADD", stream, "*", *flat)


class NotReplicated(RedisError):
    """The event was appended on the master, but fewer replicas than asked confirmed
    it within the timeout: it would be lost if that master failed now. The append is
    not undone; re-sending the envelope with ``send_envelope(once=True)`` is safe."""

    def __init__(self, stream: str, entry_id: str | None, wanted: int, confirmed: int) -> None:
        super().__init__(
            f"appended to {stream} as {entry_id or 'an earlier copy'}, but {confirmed} of "
            f"{wanted} replica(s) confirmed it in time"
        )
        self.stream, self.entry_id = stream, entry_id
        self.wanted, self.confirmed = wanted, confirmed


async def publish_replicated(
    redis: Redis, stream: str, envelope: Envelope, *, maxlen: int | None,
    once_ttl: int | None, replicas: int, timeout_ms: int,
) -> str | None:  # fmt: skip
    """Append, then ``WAIT replicas timeout_ms`` on the same connection, in one round trip.

    Why the same connection: ``WAIT`` counts the replicas that have every write *this
    connection* made, so it must follow the ``XADD`` on it. Under Cluster the command
    goes to the stream's master through a one-node client
    (:mod:`~orderflow.runtime.slot_transactions`): redis-py's cluster client would send
    a keyless ``WAIT`` to some node over some connection. Raises :class:`NotReplicated`
    when fewer replicas confirmed. Costs a replica round trip per send, and a send
    blocks up to ``timeout_ms`` while the replica is down."""
    cluster = cast(RedisCluster, redis) if is_cluster(redis) else None
    client = redis if cluster is None else await slot_clients(cluster).client_for(cluster, stream)
    pipe = client.pipeline(transaction=False)
    pipe.execute_command(*publication_command(stream, envelope, maxlen, once_ttl))
    pipe.execute_command("WAIT", replicas, timeout_ms)
    try:
        added, confirmed = await execute(pipe)
    except BaseException:
        if cluster is not None:  # the owner may have changed: reload the map next time
            await slot_clients(cluster).forget()
        raise
    entry_id = text(added) if added else None
    if int(confirmed) < replicas:
        raise NotReplicated(stream, entry_id, replicas, int(confirmed))
    return entry_id

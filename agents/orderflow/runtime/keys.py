"""Every Redis key orderflow uses, in one place (see docs/runtime.md, "Key scheme").

Cluster readiness: a Lua script or MULTI may only touch keys of one hash slot.
* The delayed-event script touches a target stream and its delayed set. The
  set is ``orderflow:{<stream>}:delayed``: its hash tag is the stream's full
  name, and a key without braces hashes its full name, so ``orders-stream`` and
  ``orderflow:{orders-stream}:delayed`` share a slot. (Stream names therefore
  must not contain ``{``/``}``.)
* Dedupe marks live in ``orderflow:{<stream>}:seen:<group>:<bucket>``: the same
  slot as the stream, because the consumer's one write per batch (a pipeline, not
  a script) acks entries, writes their marks and reads the next batch, and under
  Cluster that write goes to the one node that owns the slot. ``event.atomic()``
  puts user commands in a MULTI with the mark: under Cluster those keys must carry
  the same ``{<stream>}`` tag (build them with :func:`stream_key`).
* Everything else is single-key.
"""

from __future__ import annotations

PREFIX = "orderflow:"
DEAD_LETTERS = "dead-letters"
DELAYED_INDEX = PREFIX + "delayed:streams"  # set of streams that have a delayed set


def check_stream_name(stream: str) -> str:
    if not stream or "{" in stream or "}" in stream:
        raise ValueError(f"invalid stream name {stream!r} (no braces, not empty)")
    return stream


def delayed_key(stream: str) -> str:
    """Sorted set of events waiting to be appended to ``stream`` (score: due time, µs)."""
    return f"{PREFIX}{{{stream}}}:delayed"


def seen_key(stream: str, group: str, bucket: int) -> str:
    """Set of event ids ``group`` has processed from ``stream`` in one time bucket."""
    return f"{PREFIX}{{{stream}}}:seen:{group}:{bucket}"


def stream_key(stream: str, name: str) -> str:
    """A user key in the same Cluster slot as ``stream`` (for ``event.atomic()``)."""
    return f"{PREFIX}{{{stream}}}:{name}"


def group_key(group: str, name: str) -> str:
    """A user key named after a group (single-node deployments). Under Cluster,
    keys written inside ``event.atomic()`` must use :func:`stream_key` instead."""
    return f"{PREFIX}{{{group}}}:{name}"

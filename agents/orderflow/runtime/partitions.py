"""Which stream of a partitioned topic an event goes to (``app.topic(name, partitions=N)``).

Why a topic is split: one stream is served by one Redis master (one core). A topic of
N partitions is N streams, ``<name>.p0`` .. ``<name>.p<N-1>``, each its own key with no
braces, so each hashes to its own Cluster slot and the N streams spread over the
masters. ``partitions=1`` (the default) is the plain stream ``<name>``, as before.

The choice is a pure function of the envelope, the same in every process and every
Python version: ``zlib.crc32(key, UTF-8) % N`` (CRC-32 as in zip/PNG, unsigned), so all
events of one key land in one partition, in the order they were sent. An event without
a key is placed by its ``event_id`` the same way: spread evenly like a random choice,
yet a re-publish of the same envelope (an outbox re-send, ``send_envelope(once=True)``)
lands on the same partition, where the publish-once marker and the consumers' dedupe
marks (both per stream) recognise it.
"""

from __future__ import annotations

import zlib

from orderflow.runtime.envelope import Envelope

PARTITION_SEPARATOR = ".p"


def partition_streams(name: str, partitions: int) -> tuple[str, ...]:
    """The stream names of a topic: ``(name,)`` for one partition, else ``name.p<i>``."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, not {partitions}")
    if partitions == 1:
        return (name,)
    return tuple(f"{name}{PARTITION_SEPARATOR}{index}" for index in range(partitions))


def partition_of(key: str, partitions: int) -> int:
    """The partition index of ``key``: ``crc32(key as UTF-8) % partitions``."""
    return zlib.crc32(key.encode()) % partitions


def partition_key(envelope: Envelope) -> str:
    """What places an envelope: its key, or its event id when it has none."""
    return envelope.key or envelope.event_id


def in_topic(stream: str, name: str) -> bool:
    """Whether ``stream`` belongs to topic ``name``: the stream itself or one of its
    partitions ``name.p<i>``. Filters given a name (``orderflow streams NAME``, ``dlq
    --stream NAME``) use it, so a topic's name finds its partitions, whatever N is."""
    if stream == name:
        return True
    prefix = name + PARTITION_SEPARATOR
    return stream.startswith(prefix) and stream[len(prefix) :].isdigit()

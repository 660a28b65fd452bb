"""Stream entries -> events: the envelope-order check, the reply parser, the decoder.

CPU only, no I/O, so it is tested without a server. The decoder sorts each entry read
into exactly one of: *to handle* (decoded value), *trimmed* (deleted while pending),
*not accepted* (an event type this agent's topic does not declare; both are acked
without handling),
*invalid* (not an envelope, unknown type, payload that fails validation: dead-lettered
at once) or *exhausted* (delivered more than ``max_deliveries`` times, e.g. its
consumers kept dying: dead-lettered).

The fast path relies on the field order :meth:`Envelope.to_fields` writes (the
optional trace fields come after ``payload``, so they keep it); entries written by
other tools (fields in another order, or missing ones) take the slow path through a
dict and decode the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from orderflow.runtime.records import Record, registry
from orderflow.runtime.wire import field_map

DeadItem = tuple[bytes, Any, BaseException, int]  # entry id, fields, why, delivery count


def is_envelope_layout(flat: Any) -> bool:
    """Fields in the order :meth:`Envelope.to_fields` writes them: ``flat[1]`` is the
    event id, ``[3]`` the type, ``[5]`` the correlation id, ``[13]`` the key, ``[15]``
    the payload; fields after these (``traceparent``...) do not move them. The one place
    this order is checked."""
    return (
        isinstance(flat, list)
        and len(flat) >= 16
        and flat[0] == b"event_id"
        and flat[2] == b"event_type"
        and flat[4] == b"correlation_id"
        and flat[12] == b"key"
        and flat[14] == b"payload"
    )


def event_id_of(flat: Any) -> bytes | None:
    """The ``event_id`` field of an entry, whatever its layout (``None``: there is none)."""
    if is_envelope_layout(flat):
        value: bytes = flat[1]
        return value
    return field_map(flat).get(b"event_id") if flat else None


def stream_entries(reply: Any) -> list[Any]:
    """Entries of the single stream in an ``XREAD``/``XREADGROUP`` reply (RESP2 list of
    ``[stream, entries]`` or RESP3 map); ``[]`` for a nil (timed-out) reply."""
    if not reply:
        return []
    if isinstance(reply, dict):
        for entries in reply.values():
            return entries or []
        return []
    return reply[0][1] or []


@dataclass
class Decoded:
    """One read, sorted (see the module docstring). ``counts`` is ``None`` when every
    entry is on its first delivery (the fast path never asks Redis)."""

    entries: list[Any] = field(default_factory=list)
    values: list[Record] = field(default_factory=list)
    entry_ids: list[bytes] = field(default_factory=list)
    event_ids: list[bytes] = field(default_factory=list)
    counts: list[int] | None = None
    trimmed: list[bytes] = field(default_factory=list)
    not_accepted: list[tuple[bytes, bytes]] = field(default_factory=list)  # (entry id, type)
    invalid: list[DeadItem] = field(default_factory=list)
    exhausted: list[DeadItem] = field(default_factory=list)


class EntryDecoder:
    """Decodes entries for one agent: its accepted types and its delivery limit."""

    def __init__(self, accepted: dict[str, type[Record]] | None, max_deliveries: int) -> None:
        # event_type bytes -> class; unset (None) = accept every registered type.
        self._typed = accepted is not None
        self._classes: dict[bytes, type[Record]] = (
            {name.encode(): cls for name, cls in accepted.items()} if accepted else {}
        )
        self.max_deliveries = max_deliveries

    def decode(
        self,
        fresh: Sequence[Any],
        recovered: Sequence[Any] = (),
        counts: dict[bytes, int] | None = None,
    ) -> Decoded:
        """``fresh``: first deliveries (``>`` reads). ``recovered``: entries read again
        (own pending, claimed, retried) with Redis's delivery ``counts`` for them."""
        out = Decoded(counts=[] if recovered else None)
        if recovered:
            known = counts or {}
            for entry in recovered:
                count = known.get(entry[0], 0)
                if count:  # 0: no longer pending (someone acked it meanwhile)
                    self._one(out, entry, count)
        for entry in fresh:
            self._one(out, entry, 1)
        return out

    def _one(self, out: Decoded, entry: Any, count: int) -> None:
        entry_id, flat = entry[0], entry[1]
        if not flat:  # deleted (trimmed) while pending: nothing left to handle
            out.trimmed.append(entry_id)
            return
        if is_envelope_layout(flat):
            event_id, event_type, payload = flat[1], flat[3], flat[15]
        else:
            fields = field_map(flat)
            event_id = fields.get(b"event_id", b"")
            event_type = fields.get(b"event_type", b"")
            payload = fields.get(b"payload")
            if not event_id or not event_type or payload is None:
                why: BaseException = ValueError(
                    "not an orderflow envelope (needs event_id, event_type, payload)"
                )
                out.invalid.append((entry_id, flat, why, count))
                return
        cls = self._classes.get(event_type)
        if cls is None:
            if self._typed:
                out.not_accepted.append((entry_id, event_type))
                return
            name = event_type.decode(errors="replace")
            found = registry.get(name)
            if found is None:
                why = LookupError(f"unknown event_type {name!r}")
                out.invalid.append((entry_id, flat, why, count))
                return
            self._classes[event_type] = cls = found
        if count > self.max_deliveries:
            why = RuntimeError(
                f"delivered {count} times (max_deliveries={self.max_deliveries});"
                " a consumer probably died while handling it"
            )
            out.exhausted.append((entry_id, flat, why, count))
            return
        try:
            out.values.append(cls.__pydantic_validator__.validate_json(payload))
        except ValidationError as exc:
            out.invalid.append((entry_id, flat, exc, count))
            return
        out.entries.append(entry)
        out.entry_ids.append(entry_id)
        out.event_ids.append(event_id)
        if out.counts is not None:
            out.counts.append(count)

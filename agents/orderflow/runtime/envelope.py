"""The envelope every stream entry carries, and its flat stream-field form.

Why an envelope: consumers need to know *what* an entry is (``event_type``,
versioned), dedupe it (``event_id``), and trace it across services
(``correlation_id`` / ``causation_id``) without parsing the payload. On the
stream it is stored as flat fields with the payload as one JSON text field, so
``XRANGE`` output stays readable and the consumer can skip payload parsing for
event types it does not care about.

``traceparent`` / ``tracestate`` (W3C Trace Context) are optional: written only when
tracing is on (:mod:`orderflow.runtime.tracing`), after ``payload``, so entries without
them (tracing off, or written before it existed) decode as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import ujson
from pydantic import BaseModel, ConfigDict, ValidationError

from orderflow.runtime import tracing
from orderflow.runtime.context import current_scope
from orderflow.runtime.records import DecodeError, Record
from orderflow.runtime.wire import text

ENVELOPE_FIELDS = (
    "event_id",
    "event_type",
    "correlation_id",
    "causation_id",
    "source",
    "timestamp",
    "key",
    "payload",
)
TRACE_FIELDS = ("traceparent", "tracestate")  # optional, after the fields above


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat()


class Envelope(BaseModel):
    """Metadata + payload of one event (see docs/runtime.md, "Envelope")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str
    event_type: str
    correlation_id: str
    causation_id: str | None = None
    source: str
    timestamp: str
    key: str | None = None
    payload: dict[str, Any]
    traceparent: str | None = None
    tracestate: str | None = None

    @classmethod
    def new(
        cls,
        value: Record,
        *,
        source: str,
        key: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> Envelope:
        """Wrap a record. Correlation and causation default to the current scope:
        inside a handler that is the handled event (same correlation, caused by it),
        and the event id is then derived from it (:mod:`orderflow.runtime.send_ids`).
        With tracing on, the current span becomes the ``traceparent``."""
        if not value.event_type:
            raise TypeError(f"{type(value).__name__} has no event_type (class kwarg)")
        scope = current_scope.get()
        event_id = (scope.child_event_id() if scope is not None else None) or str(uuid.uuid4())
        if correlation_id is None and scope is not None:
            correlation_id = scope.correlation_id
        if causation_id is None and scope is not None:
            causation_id = scope.child_causation_id
        traceparent, tracestate = tracing.child_trace_headers()
        return cls.model_construct(
            event_id=event_id,
            event_type=value.event_type,
            correlation_id=correlation_id or event_id,
            causation_id=causation_id,
            source=source,
            timestamp=utc_now_iso(),
            key=key,
            payload=value.to_payload(),
            traceparent=traceparent,
            tracestate=tracestate,
        )

    def to_fields(self) -> dict[str, str]:
        """Flat stream-entry fields (``None`` becomes ``""``; payload as JSON text; the
        trace fields only when set)."""
        fields = {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id or "",
            "source": self.source,
            "timestamp": self.timestamp,
            "key": self.key or "",
            "payload": ujson.dumps(self.payload, ensure_ascii=False),
        }
        if self.traceparent:
            fields["traceparent"] = self.traceparent
            if self.tracestate:
                fields["tracestate"] = self.tracestate
        return fields

    @classmethod
    def from_fields(
        cls, fields: Mapping[bytes, bytes] | Mapping[str, str] | Mapping[Any, Any]
    ) -> Envelope:
        """Parse stream-entry fields; raises :class:`DecodeError` with the reason."""
        data = {text(k): text(v) for k, v in fields.items()}
        missing = [name for name in ENVELOPE_FIELDS if name not in data]
        if missing:
            raise DecodeError(f"not an orderflow envelope: missing field(s) {', '.join(missing)}")
        try:
            payload = ujson.loads(data["payload"])
        except ValueError as exc:
            raise DecodeError(f"payload is not JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise DecodeError("payload is not a JSON object")
        try:
            return cls(
                event_id=data["event_id"],
                event_type=data["event_type"],
                correlation_id=data["correlation_id"],
                causation_id=data["causation_id"] or None,
                source=data["source"],
                timestamp=data["timestamp"],
                key=data["key"] or None,
                payload=payload,
                traceparent=data.get("traceparent") or None,
                tracestate=data.get("tracestate") or None,
            )
        except ValidationError as exc:
            raise DecodeError(f"invalid envelope: {exc}") from exc

    def to_json(self) -> str:
        return self.model_dump_json()

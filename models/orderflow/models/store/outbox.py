"""Outbox rows: events written in the same transaction as the state they describe.

After the transaction commits, the caller publishes ``envelope`` to ``stream``
and marks the row published; a relay re-publishes rows that stayed pending (a
crash between commit and publish loses nothing; consumers de-duplicate on the
envelope's ``event_id``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from orderflow.runtime.envelope import Envelope


def _new_outbox_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxMessage:
    """One event waiting to be published to one stream."""

    stream: str
    envelope: Envelope
    id: str = field(default_factory=_new_outbox_id)

    def to_json(self) -> str:
        """The envelope as stored by the adapters (pydantic JSON, round-trips exactly)."""
        return self.envelope.model_dump_json()

    @classmethod
    def from_json(cls, *, id: str, stream: str, envelope_json: str | bytes) -> OutboxMessage:
        return cls(id=id, stream=stream, envelope=Envelope.model_validate_json(envelope_json))

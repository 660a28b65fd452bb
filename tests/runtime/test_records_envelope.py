"""Records, the envelope and correlation (no server needed)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from orderflow.runtime import Envelope, Record, correlation, current_correlation_id, registry
from orderflow.runtime.records import DecodeError


class Parcel(Record, event_type="rt.records.parcel.v1"):
    parcel_id: str
    weight: int


def test_record_registers_its_versioned_event_type_and_forbids_extra_fields():
    assert registry.get("rt.records.parcel.v1") is Parcel
    assert Parcel.event_type == "rt.records.parcel.v1"
    with pytest.raises(ValidationError):
        Parcel(parcel_id="p", weight=1, colour="red")  # type: ignore[call-arg]


def test_event_type_must_be_dotted_and_versioned():
    with pytest.raises(ValueError, match="version"):

        class Bad(Record, event_type="NoVersion"):
            x: int


def test_a_second_class_cannot_take_an_existing_event_type():
    with pytest.raises(ValueError, match="already registered"):

        class Impostor(Record, event_type="rt.records.parcel.v1"):
            other: str


def test_envelope_fields_round_trip():
    envelope = Envelope.new(Parcel(parcel_id="p-1", weight=3), source="tests", key="p-1")
    fields = envelope.to_fields()
    assert list(fields) == [
        "event_id", "event_type", "correlation_id", "causation_id",
        "source", "timestamp", "key", "payload",
    ]  # fmt: skip
    assert all(isinstance(value, str) for value in fields.values())
    uuid.UUID(envelope.event_id)
    assert datetime.fromisoformat(envelope.timestamp).utcoffset() == timedelta(0)
    back = Envelope.from_fields({k.encode(): v.encode() for k, v in fields.items()})
    assert back == envelope
    assert registry.decode(back) == Parcel(parcel_id="p-1", weight=3)
    assert envelope.correlation_id == envelope.event_id  # a new story starts with itself
    assert envelope.causation_id is None


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"event_id": "x"}, "missing field"),
        (
            {
                **Envelope.new(Parcel(parcel_id="p", weight=1), source="t").to_fields(),
                "payload": "{",
            },
            "not JSON",
        ),
    ],
)
def test_from_fields_says_why_it_cannot_decode(fields, reason):
    with pytest.raises(DecodeError, match=reason):
        Envelope.from_fields(fields)


def test_decode_rejects_unknown_types_and_invalid_payloads():
    good = Envelope.new(Parcel(parcel_id="p", weight=1), source="t")
    with pytest.raises(DecodeError, match="unknown event_type"):
        registry.decode(good.model_copy(update={"event_type": "rt.nobody.v1"}))
    with pytest.raises(DecodeError, match="invalid"):
        registry.decode(good.model_copy(update={"payload": {"parcel_id": "p"}}))


def test_envelopes_made_inside_a_correlation_inherit_it():
    assert current_correlation_id() is None
    with correlation("cid-123", causation_id="cause-9"):
        assert current_correlation_id() == "cid-123"
        envelope = Envelope.new(Parcel(parcel_id="p", weight=1), source="t")
    assert envelope.correlation_id == "cid-123"
    assert envelope.causation_id == "cause-9"
    assert current_correlation_id() is None

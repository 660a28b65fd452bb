"""Typed event payloads (``Record``) and the registry that maps event types to them.

A record class names its versioned event type once, at the class statement::

    class OrderCreated(Record, event_type="order.created.v1"):
        order_id: str

and is registered so that consumers can turn an envelope back into the right
class. Records forbid unknown fields: a producer that adds a field must bump
the version (``.v2``), which keeps old consumers honest.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

if TYPE_CHECKING:
    from orderflow.runtime.envelope import Envelope

EVENT_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*\.v[0-9]+$")


class DecodeError(ValueError):
    """An entry that cannot become an event: bad envelope, unknown type, invalid payload."""


class Record(BaseModel):
    """Base class of every event payload (pydantic v2 model, ``extra="forbid"``)."""

    model_config = ConfigDict(extra="forbid")

    event_type: ClassVar[str] = ""

    def __init_subclass__(cls, event_type: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if event_type is not None:
            if not EVENT_TYPE_PATTERN.match(event_type):
                raise ValueError(
                    f"event_type {event_type!r} must be dotted lower-case ending in a version,"
                    " e.g. 'order.created.v1'"
                )
            cls.event_type = event_type

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        # Called once pydantic has finished building the class: safe to register.
        super().__pydantic_init_subclass__(**kwargs)
        if kwargs.get("event_type"):
            registry.register(cls)

    def to_payload(self) -> dict[str, Any]:
        """The JSON-ready dict that goes into ``Envelope.payload``."""
        return self.model_dump(mode="json")


class RecordRegistry:
    """event_type -> Record class, filled by class definitions."""

    def __init__(self) -> None:
        self._types: dict[str, type[Record]] = {}

    def register(self, cls: type[Record]) -> None:
        existing = self._types.get(cls.event_type)
        if existing is not None and existing is not cls:
            same = (existing.__module__, existing.__qualname__) == (
                cls.__module__,
                cls.__qualname__,
            )
            if not same:
                raise ValueError(
                    f"event_type {cls.event_type!r} is already registered by "
                    f"{existing.__module__}.{existing.__qualname__}"
                )
        self._types[cls.event_type] = cls

    def get(self, event_type: str) -> type[Record] | None:
        return self._types.get(event_type)

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._types

    def event_types(self) -> list[str]:
        return sorted(self._types)

    def decode(self, envelope: Envelope) -> Record:
        """The envelope's payload as its Record class; raises :class:`DecodeError`."""
        cls = self._types.get(envelope.event_type)
        if cls is None:
            raise DecodeError(f"unknown event_type {envelope.event_type!r}")
        try:
            return cls.model_validate(envelope.payload)
        except ValidationError as exc:
            raise DecodeError(f"invalid {envelope.event_type} payload: {exc}") from exc


registry = RecordRegistry()

"""Logging: JSON lines (production) or a readable console format, both with the
correlation id of the event being handled (read from :mod:`orderflow.runtime.context`)."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import ujson

from orderflow.runtime.context import current_scope

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class ContextFilter(logging.Filter):
    """Copies service + correlation/event ids onto every record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        scope = current_scope.get()
        if scope is not None:
            record.correlation_id = scope.correlation_id
            record.event_id = scope.event_id
            record.event_type = scope.event_type
        else:
            record.correlation_id = getattr(record, "correlation_id", None)
            record.event_id = getattr(record, "event_id", None)
            record.event_type = getattr(record, "event_type", None)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": getattr(record, "service", None),
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", None),
            "event_type": getattr(record, "event_type", None),
            "event_id": getattr(record, "event_id", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in data:
                data[key] = value if isinstance(value, str | int | float | bool) else repr(value)
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return ujson.dumps(data, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        cid = getattr(record, "correlation_id", None)
        text = (
            f"{stamp} {record.levelname:<7} {getattr(record, 'service', '-')}"
            f"{' [' + cid[:8] + ']' if cid else ''} {record.name}: {record.getMessage()}"
        )
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(service: str, fmt: str = "json", level: str = "INFO") -> logging.Handler:
    """Replace the root handlers with one stderr handler in ``fmt`` ("json"|"console")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(ContextFilter(service))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler

"""Logging: JSON lines (production) or a readable console format, both with the
correlation id of the event being handled (read from :mod:`orderflow.runtime.context`).

Log lines carry text that came from outside (a request path, a header, an
exception message quoting input, a correlation id read from a stream). A raw
line feed in such text would start what looks like a log line of its own, and
an ANSI escape would repaint the operator's terminal, so both formats escape
control characters: the JSON format escapes C0 (JSON itself demands it), DEL,
C1 and the Unicode line/paragraph separators inside strings; the console format
escapes every control character in the record's line, and indents each line of
a traceback with ``CONTINUATION`` so that only a genuine record starts at
column 0.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import ujson

from orderflow.runtime.context import current_scope, current_service

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

# C0 controls (CR, LF, ESC, ...), DEL, C1 controls (0x9b is a one-byte CSI) and the
# Unicode line and paragraph separators, which some viewers break lines on.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# The same minus what ujson already escapes in strings (C0): what is left to do on its output.
_JSON_UNESCAPED = re.compile("[\x7f-\x9f\u2028\u2029]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
CONTINUATION = "    | "


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character written as a visible escape (``\\n``, ``\\x1b``)."""
    return _CONTROL.sub(_escape_one, text)


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def indent_continuation(text: str) -> str:
    """A multi-line block (a traceback) with its control characters escaped, except the
    line breaks, and every line prefixed so none can pass for a record of its own."""
    lines = text.split("\n")
    return "\n".join(CONTINUATION + escape_controls(line) for line in lines)


class ContextFilter(logging.Filter):
    """Copies service + correlation/event ids onto every record.

    The service is the one the logging code works for (``current_service``: the App
    whose task logs, in a worker that runs several), else ``service``, the process's."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = current_service.get() or self.service
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
        # ujson escapes C0 inside strings; DEL, C1 and U+2028/9 pass through raw. They can
        # only occur inside strings (JSON's own syntax is ASCII), so escaping them in the
        # output keeps the document valid and equal.
        return _JSON_UNESCAPED.sub(_json_escape, ujson.dumps(data, ensure_ascii=False))


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        cid = getattr(record, "correlation_id", None)
        text = escape_controls(
            f"{stamp} {record.levelname:<7} {getattr(record, 'service', '-')}"
            f"{' [' + str(cid)[:8] + ']' if cid else ''} {record.name}: {record.getMessage()}"
        )
        if record.exc_info:
            text += "\n" + indent_continuation(self.formatException(record.exc_info))
        if record.stack_info:
            text += "\n" + indent_continuation(self.formatStack(record.stack_info))
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

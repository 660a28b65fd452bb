"""Log forging (issue #9, point 7): text from outside never becomes a log line of its own.

Control characters are escaped in both log formats, tracebacks are indented so
only a genuine record starts at column 0, a raw line feed in the request line
is a 400 problem (not a dropped connection and an "uncaught" traceback), and an
``X-Correlation-ID`` with a trailing line feed is replaced, not written into
every envelope.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from orderflow.runtime.logs import CONTINUATION, ConsoleFormatter, ContextFilter, JsonFormatter
from orderflow.runtime.testing import stream_entries
from tests.hardening.conftest import CapturedLogs, raw_exchange
from tests.web.conftest import LiveApi

on_edge_api = pytest.mark.asyncio(loop_scope="module")

# A console record starts with "HH:MM:SS.mmm LEVEL"; a forged one would too.
RECORD_START = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} ")
HOSTILE = "ok\nFORGED 00:00:00.000 ERROR fake\r\x1b[2J\x1b]0;title\x07\x9b31m\x85\u2028end"


def record(message: str, *args: Any, exc: BaseException | None = None) -> logging.LogRecord:
    made = logging.LogRecord("hardening.test", logging.WARNING, __file__, 1, message, args, None)
    if exc is not None:
        made.exc_info = (type(exc), exc, exc.__traceback__)
    ContextFilter("svc").filter(made)
    return made


def raised(message: str) -> BaseException:
    try:
        raise ValueError(message)
    except ValueError as exc:
        return exc


def test_console_format_escapes_every_control_character() -> None:
    line = ConsoleFormatter().format(record("path %s", HOSTILE))

    assert "\n" not in line
    assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", line)
    assert (
        "ok\\nFORGED 00:00:00.000 ERROR fake\\r\\x1b[2J\\x1b]0;title\\x07\\x9b31m\\x85\\u2028end"
        in line
    )


def test_console_traceback_cannot_start_a_record() -> None:
    text = ConsoleFormatter().format(record("failed", exc=raised(HOSTILE)))

    lines = text.split("\n")
    assert RECORD_START.match(lines[0])
    assert len(lines) > 2  # the traceback is there, one frame per line
    assert all(line.startswith(CONTINUATION) for line in lines[1:])
    assert [line for line in lines if RECORD_START.match(line)] == lines[:1]
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]", text)


def test_json_format_escapes_c1_and_separators_and_stays_equal() -> None:
    line = JsonFormatter().format(record("path %s", HOSTILE, exc=raised(HOSTILE)))

    assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", line)
    data = json.loads(line)
    assert data["message"] == f"path {HOSTILE}"  # escaped, not altered
    assert HOSTILE in data["exc_info"]


def test_extra_fields_are_escaped_in_json() -> None:
    made = record("access")
    made.http_path = HOSTILE
    made.odd = {"k": HOSTILE}
    line = JsonFormatter().format(made)

    assert "\n" not in line and "\x1b" not in line
    assert json.loads(line)["http_path"] == HOSTILE


@on_edge_api
@pytest.mark.parametrize(
    ("target", "detail"),
    [
        # no space after the LF: Sanic's head parser accepts it, our guard refuses it
        (b"/x\nFORGED:00:00:00.000:ERROR:injected", "control characters"),
        (b"/x\r\x1b[2J\x85", "control characters"),
        # spaces after the LF: more than three words, Sanic's own 400
        (b"/x\nFORGED 00:00:00.000 ERROR injected", "Bad Request"),
    ],
    ids=["lf-one-word", "cr-and-escapes", "lf-with-spaces"],
)
async def test_line_feed_in_request_line_is_a_400_and_forges_nothing(
    edge_api: LiveApi, captured_logs: CapturedLogs, target: bytes, detail: str
) -> None:
    answer = await raw_exchange(
        edge_api.base_url, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    )

    assert answer.status == 400, answer.body
    problem = answer.problem()
    assert detail in problem["detail"]
    assert not re.search("[\x00-\x1f]", problem["instance"])  # the target, percent-encoded
    console = captured_logs.console_lines()
    assert console, "the request was logged"
    assert all(RECORD_START.match(line) for line in console)
    assert not any("uncaught" in line or "Traceback" in line for line in console)
    assert not captured_logs.at_least(logging.ERROR)
    access = [entry for entry in captured_logs.json_lines() if entry.get("http_status") == 400]
    assert [entry["correlation_id"] for entry in access] == [problem["correlation_id"]]


@on_edge_api
@pytest.mark.parametrize(
    "sent",
    ["abc\n", "abc\r", "abc\x1b[31m", "abc def", "a" * 129, "abc\u2028"],
    ids=["trailing-lf", "trailing-cr", "ansi", "space", "too-long", "line-separator"],
)
async def test_bad_correlation_id_is_replaced_in_answer_logs_and_envelopes(
    edge_api: LiveApi, captured_logs: CapturedLogs, sent: str
) -> None:
    body = b'{"lines": [{"item_id": "margherita", "quantity": 1}]}'
    raw = (
        b"POST /api/v1/orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        + b"X-Correlation-ID: "
        + sent.encode()
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )

    answer = await raw_exchange(edge_api.base_url, raw)

    assert answer.status == 201, answer.body
    order_id = json.loads(answer.body)["id"]
    fresh = answer.headers["x-correlation-id"]
    assert re.fullmatch("[0-9a-f]{32}", fresh)
    entries = await stream_entries(edge_api.app.ctx.redis, "orders-stream")
    mine = [fields for _, fields in entries if order_id.encode() in fields[b"payload"]]
    assert len(mine) == 1
    assert mine[0][b"correlation_id"].decode() == fresh
    logged = [getattr(r, "correlation_id", None) for r in captured_logs.records]
    assert fresh in logged
    assert sent not in logged


@on_edge_api
async def test_well_formed_correlation_id_is_kept(edge_api: LiveApi) -> None:
    response = await edge_api.client.get("/healthz", headers={"X-Correlation-ID": "trace:42.a-b_c"})
    assert response.headers["x-correlation-id"] == "trace:42.a-b_c"

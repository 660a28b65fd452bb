"""HTTP edges from the hardening issue (#9): static paths, short bodies, Sanic's own
errors, 405 ``Allow``, duplicate JSON keys and what ``/readyz`` tells a stranger.

Each answer must be a problem+json with the request's correlation id, nothing
may be logged as an ERROR or an uncaught traceback for what is a client's
mistake, and no stock may move.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orderflow.web.access import KNOWN_METHODS
from tests.hardening.conftest import (
    NEVER_ANSWERS,
    REQUEST_TIMEOUT_SECONDS,
    RESPONSE_TIMEOUT_SECONDS,
    CapturedLogs,
    raw_exchange,
)
from tests.web.conftest import LiveApi, free_port, make_settings, running_api, seeded_store

pytestmark = pytest.mark.asyncio(loop_scope="module")

ORDERS = "/api/v1/orders"
ORDER_ID = "0" * 32


def get(target: str, *headers: str) -> bytes:
    extra = "".join(f"{header}\r\n" for header in headers)
    return f"GET {target} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode("latin-1")


def post_order(body: bytes, content_length: int | None = None, *headers: str) -> bytes:
    length = len(body) if content_length is None else content_length
    extra = "".join(f"{header}\r\n" for header in headers)
    return (
        f"POST {ORDERS} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode() + body


def assert_no_error_logged(logs: CapturedLogs) -> None:
    errors = logs.at_least(logging.ERROR)
    assert not errors, [record.getMessage() for record in errors]
    assert "Traceback" not in logs.console.getvalue()


# --- static files ------------------------------------------------------------------

STATIC_NOT_FOUND = [
    "/static/",
    "/static/js/",
    "/static/.",
    "/static/..",
    "/static/js/.",
    "/static/js/..",
    "/static/js/app.js%00.txt",
    "/static/%00",
    "/static/..%2Fapp.py",
    "/static/%2e%2e/app.py",
    "/static/js/%2e%2e%2f%2e%2e%2fapp.py",
    "/static/js/../../app.py",
    "/static//etc/passwd",
    "/static/%2Fetc%2Fpasswd",
    "/static/js/app.js/",
    "/static/nothing.js",
]


@pytest.mark.parametrize("target", STATIC_NOT_FOUND)
async def test_bad_static_path_is_a_404_problem(
    edge_api: LiveApi, captured_logs: CapturedLogs, target: str
) -> None:
    answer = await raw_exchange(edge_api.base_url, get(target))

    assert answer.status == 404, answer.body
    answer.problem()
    assert_no_error_logged(captured_logs)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/js/app.js", "text/javascript; charset=utf-8"),
        ("/static/app.css", "text/css; charset=utf-8"),
        ("/static/index.html", "text/html; charset=utf-8"),
    ],
)
async def test_static_files_are_served_with_type_and_caching(
    edge_api: LiveApi, path: str, content_type: str
) -> None:
    response = await edge_api.client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == "no-cache"
    assert response.content  # the file itself
    last_modified = response.headers["last-modified"]

    again = await edge_api.client.get(path, headers={"If-Modified-Since": last_modified})
    assert again.status_code == 304
    assert again.content == b""

    # a date without a zone (Sanic's own check raised on these) is still understood
    naive = last_modified.replace("GMT", "-0000")
    assert (await edge_api.client.get(path, headers={"If-Modified-Since": naive})).status_code == (
        304
    )
    older = await edge_api.client.get(
        path, headers={"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}
    )
    assert older.status_code == 200 and older.content == response.content

    head = await edge_api.client.head(path)
    assert head.status_code == 200
    assert int(head.headers["content-length"]) == len(response.content)
    assert head.content == b""


# --- bodies and heads that never arrive, handlers that never answer ------------------


async def test_short_body_gets_a_prompt_408_problem_and_changes_nothing(
    edge_api: LiveApi, captured_logs: CapturedLogs
) -> None:
    stock_before = await edge_api.stock()
    orders_before = await edge_api.store.count_orders()
    body = b'{"lines": [{"item_id": "margherita", "quantity": 1}]}'
    started = time.monotonic()

    answer = await raw_exchange(
        edge_api.base_url,
        post_order(body[:10], len(body), "X-Correlation-ID: short-body-1"),
    )

    elapsed = time.monotonic() - started
    assert answer.status == 408, answer.body
    problem = answer.problem()
    assert problem["correlation_id"] == "short-body-1"
    assert "did not arrive" in problem["detail"]
    assert answer.closed_after  # the rest of the body will never be read
    # The property under test: answered by the request timeout (1 s here), not
    # by Sanic's response timeout; the bound is generous for a loaded machine.
    assert elapsed < RESPONSE_TIMEOUT_SECONDS + 10 * REQUEST_TIMEOUT_SECONDS
    assert_no_error_logged(captured_logs)
    warnings = [r for r in captured_logs.at_least(logging.WARNING) if "timeout" in r.getMessage()]
    assert [getattr(r, "correlation_id", None) for r in warnings] == ["short-body-1"]
    assert await edge_api.stock() == stock_before
    assert await edge_api.store.count_orders() == orders_before


async def test_unfinished_head_gets_a_408_problem(
    edge_api: LiveApi, captured_logs: CapturedLogs
) -> None:
    answer = await raw_exchange(edge_api.base_url, b"GET /healthz HTTP/1.1\r\nHost: t\r\n")

    assert answer.status == 408, answer.body
    assert answer.problem()["correlation_id"]
    assert_no_error_logged(captured_logs)


async def test_response_timeout_is_a_503_problem_with_correlation_id(
    edge_api: LiveApi, captured_logs: CapturedLogs
) -> None:
    answer = await raw_exchange(
        edge_api.base_url, get(NEVER_ANSWERS, "X-Correlation-ID: slow-handler-1")
    )

    assert answer.status == 503, answer.body
    assert answer.problem()["correlation_id"] == "slow-handler-1"
    errors = captured_logs.at_least(logging.ERROR)
    assert [getattr(record, "correlation_id", None) for record in errors] == ["slow-handler-1"]
    assert "Traceback" not in captured_logs.console.getvalue()  # a timeout, not a crash


# --- Sanic's own refusals ---------------------------------------------------------

SANIC_REFUSALS = [
    ("line-feed-in-target", b"GET /x\nFORGED HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("escape-in-target", b"GET /x\x1b[31m HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("null-in-target", b"GET /static/x\x00 HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("garbage-request-line", b"BLAH\r\n\r\n", 400),
    ("bad-content-length", post_order(b"", None).replace(b"Length: 0", b"Length: x"), 400),
    ("header-too-large", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: " + b"a" * 20_000 + b"\r\n\r\n", 413),
    ("body-too-large", post_order(b"[" + b" " * 20_000 + b"]"), 413),
    ("unknown-path", get("/nothing/here"), 404),
    ("unknown-method", b"BREW /api/v1/menu HTTP/1.1\r\nHost: t\r\n\r\n", 405),
]


@pytest.mark.parametrize(
    ("raw", "status"),
    [(raw, status) for _, raw, status in SANIC_REFUSALS],
    ids=[name for name, _, _ in SANIC_REFUSALS],
)
async def test_sanic_refusals_are_problems_with_correlation_id(
    edge_api: LiveApi, captured_logs: CapturedLogs, raw: bytes, status: int
) -> None:
    answer = await raw_exchange(edge_api.base_url, raw)

    assert answer.status == status, answer.body
    assert answer.problem()["correlation_id"]
    assert_no_error_logged(captured_logs)


# --- 405 carries Allow on every route ------------------------------------------------


def concrete_path(template: str) -> str:
    """A path matching a route template: each ``<param>`` becomes a valid order id."""
    parts = [ORDER_ID if part.startswith("<") else part for part in template.split("/")]
    path = "/".join(parts)
    return path if path.startswith("/") else "/" + path


async def test_every_route_answers_405_with_allow(edge_api: LiveApi) -> None:
    checked = 0
    for route in edge_api.app.router.routes:
        methods = set(route.methods)
        refused = next(m for m in ("PATCH", "DELETE", "PUT") if m not in methods)
        response = await edge_api.client.request(refused, concrete_path(route.path))
        assert response.status_code == 405, (route.path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        allow = set(response.headers["allow"].split(", "))
        assert methods & KNOWN_METHODS <= allow, (route.path, allow)
        assert refused not in allow
        checked += 1
    assert checked >= 10  # the REST, probe, metrics, docs, UI and WebSocket routes


async def test_405_on_order_path_names_its_methods(edge_api: LiveApi) -> None:
    response = await edge_api.client.request("PATCH", f"{ORDERS}/{ORDER_ID}")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, OPTIONS"
    assert "Allowed: GET, HEAD, OPTIONS." in response.json()["detail"]


# --- duplicate JSON keys -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"lines": [{"item_id": "margherita", "quantity": 1, "quantity": 5}]}', "quantity"),
        (b'{"lines": [{"item_id": "margherita", "quantity": 1}], "lines": []}', "lines"),
        (
            b'{"lines": [{"item_id": "tiramisu", "item_id": "margherita", "quantity": 1}]}',
            "item_id",
        ),
        # the same key spelt with an escape is still the same key
        (b'{"lines": [{"item_id": "margherita", "quantity": 1}], "\\u006cines": []}', "lines"),
    ],
)
async def test_duplicate_json_key_is_a_422_naming_it(
    edge_api: LiveApi, body: bytes, key: str
) -> None:
    stock_before = await edge_api.stock()
    orders_before = await edge_api.store.count_orders()

    response = await edge_api.client.post(
        ORDERS, content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["errors"][0]["type"] == "duplicate_key"
    assert f"'{key}' appears more than once" in problem["detail"]
    assert await edge_api.stock() == stock_before
    assert await edge_api.store.count_orders() == orders_before


async def test_body_without_duplicates_still_places_the_order(edge_api: LiveApi) -> None:
    body = {
        "lines": [{"item_id": "margherita", "quantity": 1}, {"item_id": "tiramisu", "quantity": 1}]
    }
    response = await edge_api.client.post(ORDERS, content=json.dumps(body))
    assert response.status_code == 415  # content type still checked first
    response = await edge_api.client.post(ORDERS, json=body)
    assert response.status_code == 201, response.text


# --- /readyz tells a stranger what is down, not where it lives -----------------------


@pytest.fixture
async def api_without_redis(tmp_path: Path) -> AsyncIterator[tuple[LiveApi, int]]:
    """The API pointed at a port where no Redis listens (the client connects lazily)."""
    port = free_port()
    settings = make_settings(f"redis://127.0.0.1:{port}/0", await seeded_store(tmp_path))
    async for live in running_api(settings):
        yield live, port


@pytest.mark.asyncio(loop_scope="function")
async def test_readyz_names_the_dependency_but_not_its_address(
    api_without_redis: tuple[LiveApi, int], captured_logs: CapturedLogs
) -> None:
    api, port = api_without_redis

    ready = await api.client.get("/readyz")

    assert ready.status_code == 503
    problem = ready.json()
    assert problem["checks"] == {"redis": "unreachable", "store": "ok"}
    assert problem["detail"] == "redis: unreachable"
    for leak in (str(port), "127.0.0.1", "Error", "redis://"):
        assert leak not in ready.text
    logged = [r.getMessage() for r in captured_logs.records if "readiness" in r.getMessage()]
    assert len(logged) == 1 and str(port) in logged[0]  # the operator still gets the detail

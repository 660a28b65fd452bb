"""Security headers on every response, and pages that live with a strict CSP.

Every kind of answer — the UI page, static files, JSON, problem+json from our routes
and from Sanic itself, the docs and the spec, health and metrics — carries the same
headers. The HTML the server sends has no inline script, inline style or event-handler
attribute, so the policy needs no ``'unsafe-inline'``; the browser test in
``test_pages_under_csp.py`` proves the pages work under it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orderflow.web.security_headers import CONTENT_SECURITY_POLICY, SECURITY_HEADERS
from orderflow.web.ui import STATIC_DIR
from tests.web.conftest import LiveApi, make_settings, running_api, seeded_store

TOKEN = "t" * 40


@pytest.fixture
async def app_all(redis_client: Any, redis_url: str, tmp_path: Path) -> AsyncIterator[LiveApi]:
    settings = make_settings(redis_url, await seeded_store(tmp_path), operator_token=TOKEN)
    async for live in running_api(settings, role="all"):
        yield live


REQUESTS = [
    ("GET", "/", 200),
    ("GET", "/static/app.css", 200),
    ("GET", "/static/js/app.js", 200),
    ("GET", "/static/no-such-file.js", 404),
    ("GET", "/api/v1/menu", 200),
    ("GET", "/api/v1/orders/" + "0" * 32, 404),
    ("POST", "/api/v1/orders", 415),  # no body, no content type
    ("DELETE", "/api/v1/menu", 405),
    ("GET", "/nowhere", 404),
    ("GET", "/docs", 200),
    ("GET", "/docs/openapi.json", 200),
    ("GET", "/docs/assets/swagger-ui-bundle.js", 200),
    ("GET", "/ops", 200),
    ("GET", "/api/v1/ops/streams", 401),
    ("GET", "/healthz", 200),
    ("GET", "/readyz", 200),
    ("GET", "/metrics", 200),
]


async def test_every_kind_of_answer_carries_the_security_headers(app_all: LiveApi) -> None:
    missing = {}
    for method, path, status in REQUESTS:
        response = await app_all.client.request(method, path)
        assert response.status_code == status, (method, path, response.text[:200])
        wrong = {
            name: response.headers.get(name)
            for name, value in SECURITY_HEADERS.items()
            if response.headers.get(name) != value
        }
        if wrong:
            missing[f"{method} {path}"] = wrong
    assert missing == {}


def test_the_policy_allows_no_inline_code_and_no_framing() -> None:
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "unsafe-eval" not in CONTENT_SECURITY_POLICY
    assert directives["frame-ancestors"] == "'none'"
    assert directives["script-src"] == directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'"


INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "an inline <script>"),
    (re.compile(r"<style\b", re.I), "a <style> element"),
    (re.compile(r"\sstyle\s*=", re.I), "a style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "an event-handler attribute"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
]


@pytest.mark.parametrize("page", sorted(p.name for p in STATIC_DIR.glob("*.html")))
def test_served_html_has_no_inline_code(page: str) -> None:
    text = (STATIC_DIR / page).read_text(encoding="utf-8")
    found = [what for pattern, what in INLINE if pattern.search(text)]
    assert found == [], f"{page} has {', '.join(found)}"


def test_scripts_build_no_markup_from_strings() -> None:
    """DOM built with textContent/createElement only: with no ``innerHTML`` of data there
    is nothing for an injected string to become (and Trusted Types could be turned on)."""
    offenders = [
        path.name
        for path in sorted(Path(STATIC_DIR / "js").glob("*.js"))
        if re.search(
            r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write", path.read_text()
        )
    ]
    assert offenders == []

"""Metric label flood (issue #9, point 4): no request can add a metric series.

The issue's attack: 200 invented methods took ``/metrics`` from 80 to 3,899
lines. Here every label value of every ``orderflow_*`` series the API and the
WebSocket gateway export must come from a fixed set, and a flood of invented
methods on known, unknown and parameterised paths must leave the set of series
exactly as a first, small round left it.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from orderflow.runtime.localserver import LocalRedisServer
from orderflow.web.access import KNOWN_METHODS, OTHER_METHOD, UNMATCHED, route_template
from orderflow.web.app import create_app
from tests.hardening.conftest import NEVER_ANSWERS
from tests.web.conftest import LiveApi, make_settings, running_api, seeded_store

pytestmark = pytest.mark.asyncio(loop_scope="module")

ORDER_ID = "0" * 32
Series = tuple[str, tuple[tuple[str, str], ...]]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["all", "gateway"])
async def role_api(
    request: pytest.FixtureRequest,
    redis_server: LocalRedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[LiveApi]:
    store_url = await seeded_store(tmp_path_factory.mktemp("labels"))
    async for live in running_api(make_settings(redis_server.url, store_url), role=request.param):
        yield live


def paths(api: LiveApi, rng: random.Random) -> list[str]:
    """Every route (parameters filled in), and paths that match none."""
    known = [
        re.sub(r"<[^>]+>", ORDER_ID, "/" + route.path.lstrip("/"))
        for route in api.app.router.routes
    ]
    unknown = ["/" + "".join(rng.choices(string.ascii_lowercase, k=12)) for _ in range(5)]
    return known + unknown + [f"/api/v1/orders/{rng.getrandbits(64):x}", "/static/../x"]


def invented_method(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 12)))


async def flood(api: LiveApi, rng: random.Random, methods: int) -> None:
    targets = paths(api, rng)
    for _ in range(methods):
        method = invented_method(rng)
        for path in rng.sample(targets, 3):
            response = await api.client.request(method, path)
            assert response.status_code in (404, 405), (method, path, response.status_code)
    for method in sorted(KNOWN_METHODS):
        for path in targets:
            # Only the answer's head: an event stream (`/api/v1/menu/events`) never ends.
            async with api.client.stream(method, path) as response:
                assert response.status_code < 500, (method, path, response.status_code)


async def scrape(api: LiveApi) -> tuple[set[Series], int]:
    text = (await api.client.get("/metrics")).text
    series = {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        if family.name.startswith("orderflow_")
        for sample in family.samples
    }
    return series, len(text.splitlines())


async def test_invented_methods_and_paths_add_no_series(role_api: LiveApi) -> None:
    rng = random.Random(9)
    await flood(role_api, rng, methods=20)
    series_before, lines_before = await scrape(role_api)

    await flood(role_api, rng, methods=200)
    series_after, lines_after = await scrape(role_api)

    assert series_after == series_before
    assert lines_after == lines_before

    # The registry is per process and shared by every test's app: every route of
    # role "all" (a superset of "gateway"'s), the operator console's and the benchmark
    # no-op route included (other tests' apps serve them), is a legitimate label value.
    with_console = role_api.app.ctx.settings.model_copy(
        update={"operator_token": SecretStr("any token"), "benchmark_noop_route": True}
    )
    every_route = create_app(with_console, role="all")
    every_route.router.finalize()
    templates = {route_template(route) for route in every_route.router.routes}
    templates |= {UNMATCHED, NEVER_ANSWERS}  # and the hardening suite's own test-only route
    allowed = {
        "method": KNOWN_METHODS | {OTHER_METHOD},
        "route": templates,
    }
    seen_methods: set[str] = set()
    for name, labels in series_after:
        for label, value in labels:
            if label in allowed:
                assert value in allowed[label], (name, label, value)
            elif label == "status":
                assert re.fullmatch("[1-5][0-9][0-9]", value), (name, value)
            if label == "method":
                seen_methods.add(value)
    assert OTHER_METHOD in seen_methods  # the flood was counted, under one value


async def test_requests_are_still_counted_per_route_and_method(role_api: LiveApi) -> None:
    def count(text: str) -> float:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "orderflow_http_requests_total" and labels == {
                    "route": "/healthz",
                    "method": "GET",
                    "status": "200",
                }:
                    return sample.value
        return 0.0

    async with httpx.AsyncClient(base_url=role_api.base_url) as client:
        before = count((await client.get("/metrics")).text)
        for _ in range(3):
            assert (await client.get("/healthz")).status_code == 200
        after = count((await client.get("/metrics")).text)
    assert after - before == 3

"""The buyers of the oversell benchmark: C POSTs released at the same instant.

Two clients: ``raw`` (default) opens one connection per buyer first and writes
every request when the buyers are released (``benchmarks/rawhttp.py``), so all
of them really are in flight together; ``httpx`` uses one ``httpx.AsyncClient``
(much slower at 1000 buyers, see docs/benchmarks.md). Either way the answers are
counted as 201 (sold), 409 (out of stock) or an error.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Any

import httpx

from benchmarks.rawhttp import OneShotConnection
from benchmarks.stack import log, order_id_of

ORDERS_PATH = "/api/v1/orders"


class Outcomes:
    """What the buyers got back: counts by outcome, the ids of placed orders, error samples."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.order_ids: list[str] = []
        self.samples: dict[str, str] = {}

    def answer(self, status: int, body: Any, text: str) -> None:
        if status == 201:
            self.counts["succeeded"] += 1
            order_id = order_id_of(body)
            if order_id:
                self.order_ids.append(order_id)
        elif status == 409:
            self.counts["rejected"] += 1
        else:
            self.counts["error"] += 1
            self.samples.setdefault(str(status), text[:300])

    def failure(self, exc: BaseException) -> None:
        self.counts["error"] += 1
        self.samples.setdefault(type(exc).__name__, repr(exc))


async def release(go: asyncio.Event, tasks: list[asyncio.Task[None]], who: str) -> float:
    """Let every task reach ``go.wait()``, then open the gate; seconds until all are done."""
    await asyncio.sleep(0.05)
    log(f"releasing {who}")
    started = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    return time.perf_counter() - started


async def fire_raw(
    base_url: str, body: dict[str, Any], buyers: int, request_timeout: float
) -> tuple[Outcomes, float]:
    """Open one connection per buyer, then send every request at the same instant."""
    url = httpx.URL(base_url)
    outcomes = Outcomes()
    connections = [OneShotConnection(url.host, url.port or 80) for _ in range(buyers)]
    opening = asyncio.Semaphore(100)  # stay inside the server's listen backlog while connecting

    async def connect(connection: OneShotConnection) -> None:
        async with opening:
            # a failed connect is retried (and counted if it fails again) at request time
            with contextlib.suppress(OSError):
                await connection.open()

    log(f"opening {buyers} connections")
    await asyncio.gather(*(connect(c) for c in connections))
    go = asyncio.Event()

    async def buyer(connection: OneShotConnection) -> None:
        await go.wait()
        try:
            async with asyncio.timeout(request_timeout):
                response = await connection.request("POST", ORDERS_PATH, body)
            text = response.body.decode(errors="replace")
            parsed = response.json() if response.status == 201 else None
            outcomes.answer(response.status, parsed, text)
        except (OSError, TimeoutError, ValueError) as exc:
            outcomes.failure(exc)
        finally:
            await connection.close()

    tasks = [asyncio.create_task(buyer(c)) for c in connections]
    return outcomes, await release(go, tasks, f"{buyers} buyers at once")


async def fire_httpx(
    base_url: str, body: dict[str, Any], buyers: int, request_timeout: float
) -> tuple[Outcomes, float]:
    """The same release with one httpx.AsyncClient and a pool of one connection per buyer."""
    limits = httpx.Limits(max_connections=buyers, max_keepalive_connections=buyers)
    timeouts = httpx.Timeout(request_timeout, connect=request_timeout, pool=request_timeout)
    outcomes = Outcomes()
    go = asyncio.Event()
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeouts) as client:

        async def buyer() -> None:
            await go.wait()
            try:
                response = await client.post(ORDERS_PATH, json=body)
            except httpx.HTTPError as exc:
                outcomes.failure(exc)
                return
            parsed = response.json() if response.status_code == 201 else None
            outcomes.answer(response.status_code, parsed, response.text)

        tasks = [asyncio.create_task(buyer()) for _ in range(buyers)]
        return outcomes, await release(go, tasks, f"{buyers} buyers at once (httpx client)")


async def fire(
    base_url: str, item_id: str, buyers: int, request_timeout: float, client: str = "raw"
) -> tuple[collections.Counter[str], list[str], float]:
    """Release ``buyers`` POSTs at once; return outcome counts, order ids and elapsed seconds."""
    body = {"lines": [{"item_id": item_id, "quantity": 1}]}
    shoot = fire_raw if client == "raw" else fire_httpx
    outcomes, elapsed = await shoot(base_url, body, buyers, request_timeout)
    for kind, sample in outcomes.samples.items():
        log(f"error sample ({kind}): {sample}")
    return outcomes.counts, outcomes.order_ids, elapsed

"""Per-client rate limit of ``POST /api/v1/orders``: a token bucket kept in Redis.

Why Redis: the API runs as several Sanic processes per pod and several pods; a limit
kept in one process's memory would let a client N times through by landing on N
processes. One bucket per client address lives in Redis and is updated by one Lua
script (atomic, one round trip, the server's clock): ``burst`` tokens, refilled at
``per_minute`` / 60 per second; an order takes one. An empty bucket is a 429
problem+json with ``Retry-After`` (whole seconds until a token is back), and the
order is not looked at.

The defaults (``ORDERFLOW_ORDER_RATE_LIMIT_BURST`` 10, ``_PER_MINUTE`` 30) are far
from what a person at a browser does and close to the first seconds of a script
firing hundreds of orders. ``ORDERFLOW_ORDER_RATE_LIMIT_PER_MINUTE=0`` turns the
limit off: the one setting benchmarks and load tests set, since they order from one
address on purpose. If Redis cannot be asked, the order is let through (logged and
counted): the limit protects the store, and an order that Redis cannot see is still
carried by the outbox, so failing closed would refuse customers for nothing.

Keys are ``orderflow:ratelimit:orders:<address>`` (one key per script call, so one
Cluster slot), expiring once the bucket would be full again.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sanic import HTTPResponse, Request, Sanic

from orderflow.agents.settings import Settings
from orderflow.runtime.scripts import LuaScript
from orderflow.web.client_address import Network, client_address, parse_networks
from orderflow.web.metrics import ORDERS_REJECTED
from orderflow.web.problems import problem, problem_type, request_ext

log = logging.getLogger("orderflow.http.ratelimit")

ORDERS_PATH = "/api/v1/orders"
KEY_PREFIX = "orderflow:ratelimit:orders:"

RATE_LIMIT_UNCHECKED = Counter(
    "orderflow_rate_limit_unchecked_total",
    "Orders let through without a rate-limit check because Redis did not answer.",
)

# KEYS[1] bucket; ARGV: tokens per ms, burst. Returns {allowed 0|1, ms until a token}.
TOKEN_BUCKET = LuaScript(
    """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate) + 1000)
return {allowed, wait}
"""
)


@dataclass(frozen=True)
class OrderRateLimit:
    per_minute: float
    burst: int
    proxies: tuple[Network, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> OrderRateLimit:
        return cls(
            settings.order_rate_limit_per_minute,
            settings.order_rate_limit_burst,
            parse_networks(settings.trusted_proxies),
        )

    async def wait_ms(self, redis: Redis, client: str) -> int:
        """0 when ``client`` may order now, else how long until it may (ms)."""
        allowed, wait = await TOKEN_BUCKET(
            redis, [KEY_PREFIX + client], [self.per_minute / 60_000, self.burst]
        )
        return 0 if int(allowed) else int(wait)


def too_many(request: Request, wait_ms: int) -> HTTPResponse:
    seconds = max(1, math.ceil(wait_ms / 1000))
    return problem(
        429,
        "Too many orders",
        f"This client has placed too many orders in a short time; try again in {seconds} s.",
        problem_type("rate-limited"),
        headers={"Retry-After": str(seconds)},
        **request_ext(request),
    )


def install(app: Sanic, settings: Settings) -> None:
    """Check the limit before ``POST /api/v1/orders`` runs (off when per_minute is 0)."""
    if settings.order_rate_limit_per_minute <= 0:
        return
    limit = OrderRateLimit.from_settings(settings)

    async def check(request: Request) -> HTTPResponse | None:
        if request.method != "POST" or request.path != ORDERS_PATH:
            return None
        client = client_address(
            request.remote_addr or request.ip, request.headers.get("x-forwarded-for"),
            limit.proxies,
        )  # fmt: skip
        try:
            wait = await limit.wait_ms(request.app.ctx.redis, client)
        except (RedisError, OSError) as exc:
            RATE_LIMIT_UNCHECKED.inc()
            log.warning("rate limit not checked (Redis: %s); order let through", type(exc).__name__)
            return None
        if wait:
            ORDERS_REJECTED.labels(reason="rate_limited").inc()
            log.info("rate limit: %s refused, next order in %d ms", client, wait)
            return too_many(request, wait)
        return None

    app.register_middleware(check, "request")

"""The latest known status of each order, kept in Redis for the WebSocket's first message.

One JSON document per order under ``orderflow:status:<order_id>`` with a TTL
(``ORDERFLOW_STATUS_TTL_SECONDS``, 24 h by default)::

    {"order_id": "...", "status": "preparing", "at": "2026-...Z",
     "delivery": {"delivery_id": "...", "status": "on_the_way", "at": "..."} | null}

The notifications service writes it from two streams (orders-stream and
deliveries-stream) that it reads independently, so updates can arrive out of
order. The merge runs as one Lua script that applies an update only when it
moves the order (or its delivery) forward in its lifecycle: a stale or repeated
event never overwrites a newer status, and the TTL is refreshed on every write.
``cancelled`` outranks every status (``ORDER_STATUS_RANKS``), so once merged nothing
replaces it, even an older update that arrives after it.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from orderflow.models.documents import DELIVERY_STATUSES, ORDER_STATUS_RANKS
from orderflow.runtime import keys
from orderflow.runtime.pipeline import QueuesScripts

STATUS_KEY_PREFIX = keys.PREFIX + "status:"


def status_key(order_id: str) -> str:
    return f"{STATUS_KEY_PREFIX}{order_id}"


def _lua_rank_table(ranks: dict[str, int]) -> str:
    return "{" + ", ".join(f"{status}={rank}" for status, rank in ranks.items()) + "}"


# KEYS[1] status key; ARGV: ttl, kind ("order"|"delivery"), order_id, status, at, delivery_id.
# Returns 1 when the document changed, 0 when the update was stale or repeated.
MERGE_STATUS_LUA = f"""
local order_rank = {_lua_rank_table(ORDER_STATUS_RANKS)}
local delivery_rank = {_lua_rank_table({s: r for r, s in enumerate(DELIVERY_STATUSES)})}
local raw = redis.call('GET', KEYS[1])
local doc
if raw then doc = cjson.decode(raw) else doc = {{order_id = ARGV[3], delivery = cjson.null}} end
local changed = 0
if ARGV[2] == 'order' then
  local current = doc.status
  if current == nil or current == cjson.null or order_rank[ARGV[4]] > order_rank[current] then
    doc.status = ARGV[4]
    doc.at = ARGV[5]
    changed = 1
  end
else
  local current = doc.delivery
  if current == nil or current == cjson.null
      or delivery_rank[ARGV[4]] > delivery_rank[current.status] then
    doc.delivery = {{delivery_id = ARGV[6], status = ARGV[4], at = ARGV[5]}}
    changed = 1
  end
end
redis.call('SET', KEYS[1], cjson.encode(doc), 'EX', tonumber(ARGV[1]))
return changed
"""


def merge_order_status(
    pipe: QueuesScripts, *, order_id: str, status: str, at: str, ttl_seconds: int
) -> None:
    """Queue an order-status merge on ``pipe`` (a ``CommandPipeline``, or a redis-py
    pipeline such as an ``event.atomic()`` one)."""
    pipe.eval(
        MERGE_STATUS_LUA, 1, status_key(order_id), ttl_seconds, "order", order_id, status, at, ""
    )


def merge_delivery_status(
    pipe: QueuesScripts,
    *,
    order_id: str,
    delivery_id: str,
    status: str,
    at: str,
    ttl_seconds: int,
) -> None:
    """Queue a delivery-status merge on ``pipe``."""
    pipe.eval(
        MERGE_STATUS_LUA,
        1,
        status_key(order_id),
        ttl_seconds,
        "delivery",
        order_id,
        status,
        at,
        delivery_id,
    )


async def read_latest_status(redis: aioredis.Redis, order_id: str) -> dict[str, Any] | None:
    """The cached document for ``order_id``, or None when nothing is cached (or it expired)."""
    raw = await redis.get(status_key(order_id))
    if raw is None:
        return None
    document: dict[str, Any] = json.loads(raw)
    if document.get("delivery") == {}:
        document["delivery"] = None  # cjson encodes an empty table as {}
    return document

"""The ``--redis-url`` option shared by the operator commands (dlq, streams, worker).

One definition so every command spells it, documents it and falls back to
``ORDERFLOW_REDIS_URL`` the same way, and fails with the same clear message when
neither is given (the operator commands never start a private server: pointing
them at an empty throw-away Redis would only show nothing).
"""

from __future__ import annotations

import argparse
import os
import sys

import redis.asyncio as aioredis

ENV_NAME = "ORDERFLOW_REDIS_URL"


class MissingRedisUrl(SystemExit):
    """Raised (exit code 2) when neither --redis-url nor ORDERFLOW_REDIS_URL is set."""


def add_redis_url_option(parser: argparse.ArgumentParser, *, nested: bool = False) -> None:
    """``nested=True`` for a sub-action's parser: its default must not overwrite a
    value given before the action (``orderflow dlq --redis-url X list``)."""
    parser.add_argument(
        "--redis-url",
        default=argparse.SUPPRESS if nested else None,
        metavar="URL",
        help=f"Redis/Valkey to talk to, e.g. redis://127.0.0.1:6379/0 (default: ${ENV_NAME})",
    )


def resolve_redis_url(args: argparse.Namespace) -> str:
    url: str = getattr(args, "redis_url", None) or os.environ.get(ENV_NAME, "")
    if not url:
        print(f"error: no Redis URL: pass --redis-url or set {ENV_NAME}", file=sys.stderr)
        raise MissingRedisUrl(2)
    return url


def connect(url: str) -> aioredis.Redis:
    """A bytes-mode client, as the runtime's own functions expect."""
    return aioredis.Redis.from_url(url, decode_responses=False)

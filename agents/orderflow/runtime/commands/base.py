"""What the runtime's commands share: the ``--redis-url`` option, a Redis client per
command, and :class:`CommandError`, which ends a command with one line.

One definition so that ``worker``, ``dlq`` and ``streams`` spell the option, document
it and fall back to ``ORDERFLOW_REDIS_URL`` (read through :class:`RuntimeSettings`) the
same way, and so that an operator who mistyped a URL or whose Redis is down reads one
line that says which server and why, never a traceback. The operator commands never
start a private server: pointing them at an empty throw-away Redis would only show
nothing.
"""

from __future__ import annotations

import argparse
import re
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeAlias
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orderflow.runtime.connection import (
    cluster_nodes,
    connect_redis,
    error_reason,
    is_cluster_url,
    redact_url,
)
from orderflow.runtime.settings import RuntimeSettings

ENV_NAME = "ORDERFLOW_REDIS_URL"
EXIT_FAILED = 1  # the command ran and something failed (server down, id not found)
EXIT_USAGE = 2  # the command cannot run as given (no or bad URL, bad app)

ENTRY_ID = re.compile(r"^\d+(-\d+)?$")

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Register: TypeAlias = Callable[[Subparsers], None]
"""What each command module exposes: ``register(subparsers)`` adds its parser."""


class CommandError(Exception):
    """Ends a command: the message is printed as one line on stderr, ``code`` is the
    exit status. Commands raise it; :func:`orderflow.runtime.cli.run` prints it."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def add_redis_url_option(parser: argparse.ArgumentParser, *, nested: bool = False) -> None:
    """``nested=True`` for a sub-action's parser: its default must not overwrite a
    value given before the action (``orderflow dlq --redis-url X list``)."""
    parser.add_argument(
        "--redis-url",
        default=argparse.SUPPRESS if nested else None,
        metavar="URL",
        help=f"Redis/Valkey to talk to, e.g. redis://127.0.0.1:6379/0 (default: ${ENV_NAME})",
    )


def check_redis_url(url: str) -> str:
    """``url`` if redis-py can use it, else a :class:`CommandError` saying why.

    redis-py only complains about a bad URL when the first command runs (and silently
    uses database 0 for ``/abc``); checking first turns a typo into a usage error."""
    try:
        if is_cluster_url(url):
            cluster_nodes(url)
            return url
        parse_url(url)
        database = urlsplit(url).path.strip("/")
    except ValueError as exc:
        raise CommandError(f"invalid Redis URL {redact_url(url)!r}: {exc}", EXIT_USAGE) from None
    if url.startswith(("redis://", "rediss://")) and database and not database.isdigit():
        message = f"invalid Redis URL {redact_url(url)!r}: the path must be a database number"
        raise CommandError(message, EXIT_USAGE)
    return url


def resolve_redis_url(args: argparse.Namespace) -> str:
    """``--redis-url``, else ``ORDERFLOW_REDIS_URL`` (read now: one process, one command)."""
    url: str = getattr(args, "redis_url", None) or RuntimeSettings().redis_url
    if not url:
        raise CommandError(f"no Redis URL: pass --redis-url or set {ENV_NAME}", EXIT_USAGE)
    return check_redis_url(url)


def describe_redis_error(url: str, exc: BaseException) -> str:
    """One line naming the server (password masked) and what it said or why it is out of reach."""
    where = redact_url(url)
    if isinstance(exc, AuthenticationError | AuthorizationError):
        return f"Redis at {where} refused the credentials: {error_reason(exc)}"
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError | RedisClusterException):
        return f"cannot reach Redis at {where}: {error_reason(exc)}"
    if isinstance(exc, ResponseError):
        return f"Redis at {where} answered: {error_reason(exc)}"
    return f"Redis at {where}: {type(exc).__name__}: {error_reason(exc)}"


@asynccontextmanager
async def redis_session(url: str) -> AsyncIterator[Redis]:
    """A bytes-mode client for one command (no hidden retries: a command against a
    server that is down should say so at once); Redis and socket errors leave as
    :class:`CommandError`."""
    client = connect_redis(url)
    try:
        yield client
    except (RedisError, RedisClusterException, OSError) as exc:
        raise CommandError(describe_redis_error(url, exc)) from exc
    finally:
        await client.aclose()


def entry_id(text: str) -> str:
    """argparse type of a stream entry id (``1700000000000-0``): a typo is a usage error,
    not a server error in the middle of a command."""
    if not ENTRY_ID.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an entry id (like 1700000000000-0)")
    return text


def describe_exception(exc: BaseException) -> str:
    """``Type: message (file.py:12)``: what and where, in one line. Where is the innermost
    frame outside Python's import machinery (for a SyntaxError: the offending line)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({Path(exc.filename).name}:{exc.lineno})"
    else:
        frames = [
            frame
            for frame in traceback.extract_tb(exc.__traceback__)
            if not frame.filename.startswith("<frozen")
        ]
        where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    message = exc.msg if isinstance(exc, SyntaxError) else error_reason(exc)
    return f"{type(exc).__name__}: {message}{where}"

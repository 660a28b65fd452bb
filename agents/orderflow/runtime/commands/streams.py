"""``orderflow streams``: one table of every stream, its groups, lag and pending entries.

The first questions during an incident are "is anyone behind?" and "is anything
stuck?". Lag (entries not yet delivered to a group) answers the first; pending
count and the age of the oldest pending entry answer the second (an old pending
entry means a consumer died holding it, or an event keeps failing). The numbers
come from :mod:`orderflow.runtime.inspect` (``XINFO GROUPS`` + ``XPENDING``), the
same source as the runtime's lag/pending metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence

from orderflow.runtime.commands.base import (
    Subparsers,
    add_redis_url_option,
    redis_session,
    resolve_redis_url,
)
from orderflow.runtime.inspect import StreamInfo, inspect_streams

COLUMNS = (
    ("STREAM", 26),
    ("LENGTH", 8),
    ("GROUP", 22),
    ("CONSUMERS", 9),
    ("LAG", 7),
    ("PENDING", 7),
    ("OLDEST PENDING", 14),
    ("IDLE", 8),
)


def human_ms(value: int | None) -> str:
    """``1234`` -> ``1.2s``, ``185000`` -> ``3m05s``, ``None`` -> ``-``."""
    if value is None:
        return "-"
    seconds = value / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def _row(cells: Sequence[str]) -> str:
    parts = []
    for (_title, width), cell in zip(COLUMNS, cells, strict=True):
        text = cell if len(cell) <= width else cell[: width - 1] + "…"
        parts.append(f"{text:<{width}}" if _title in ("STREAM", "GROUP") else f"{text:>{width}}")
    return "  ".join(parts).rstrip()


def format_table(streams: Sequence[StreamInfo]) -> str:
    lines = [_row([title for title, _width in COLUMNS])]
    for info in streams:
        if not info.groups:
            lines.append(_row([info.name, str(info.length), "-", "-", "-", "-", "-", "-"]))
            continue
        for index, group in enumerate(info.groups):
            lines.append(
                _row(
                    [
                        info.name if index == 0 else "",
                        str(info.length) if index == 0 else "",
                        group.name,
                        str(group.consumers),
                        "?" if group.lag is None else str(group.lag),
                        str(group.pending),
                        human_ms(group.oldest_pending_age_ms),
                        human_ms(group.oldest_pending_idle_ms),
                    ]
                )
            )
    return "\n".join(lines)


async def collect(url: str, names: list[str] | None) -> list[StreamInfo]:
    async with redis_session(url) as redis:
        return await inspect_streams(redis, names)


def run(args: argparse.Namespace) -> int:
    streams = asyncio.run(collect(resolve_redis_url(args), args.names or None))
    if args.json:
        print(json.dumps([info.to_dict() for info in streams]))
        return 0
    if not streams:
        print("no streams" + (f" named {', '.join(args.names)}" if args.names else ""))
        return 0
    print(format_table(streams))
    return 0


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "streams",
        help="length, groups, lag and pending entries of every stream",
        description=(
            "Show every Redis stream (or only the named ones): its length and, per "
            "consumer group, the number of consumers, the lag (entries not yet delivered "
            "to the group; '?' when the server cannot tell), the pending count (delivered, "
            "not acked), the age of the oldest pending entry (since it was added) and how "
            "long it has sat idle since its last delivery. A large idle time means a "
            "consumer died holding it or the event keeps failing."
        ),
    )
    parser.add_argument("names", nargs="*", metavar="STREAM", help="only these streams")
    parser.add_argument("--json", action="store_true", help="print a JSON array")
    add_redis_url_option(parser)
    parser.set_defaults(func=run)

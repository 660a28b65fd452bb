"""``orderflow dlq``: look at, replay and purge the ``dead-letters`` stream.

A dead letter is an event the runtime gave up on (the handler failed
``max_deliveries`` times, or the entry could not be decoded). Operators need to
see why it failed, put it back once the cause is fixed, or throw it away. This
module is a thin command-line layer over :mod:`orderflow.runtime.deadletter`; all
the Redis work lives there so the same functions serve tests and tools.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Sequence

from redis.asyncio import Redis

from orderflow.runtime import deadletter
from orderflow.runtime.commands.base import (
    EXIT_FAILED,
    EXIT_USAGE,
    CommandError,
    Subparsers,
    add_redis_url_option,
    entry_id,
    redis_session,
    resolve_redis_url,
)
from orderflow.runtime.deadletter import DeadLetter


def _cell(text: str, width: int) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(letters: Sequence[DeadLetter]) -> str:
    header = f"{'ID':<17} {'STREAM':<24} {'EVENT TYPE':<28} {'DELIV':>5}  {'FAILED AT':<20} ERROR"
    lines = [header]
    for letter in letters:
        error = f"{letter.error_type}: {letter.error_message}"
        lines.append(
            f"{letter.id:<17} {_cell(letter.stream, 24):<24} "
            f"{_cell(letter.event_type or '-', 28):<28} {letter.delivery_count:>5}  "
            f"{letter.failed_at[:19]:<20} {_cell(error, 60)}"
        )
    return "\n".join(lines)


def format_details(letter: DeadLetter) -> str:
    rows = [
        ("id", letter.id),
        ("stream", letter.stream),
        ("entry id", letter.entry_id),
        ("group", letter.group),
        ("consumer", letter.consumer),
        ("event id", letter.event_id or "-"),
        ("event type", letter.event_type or "-"),
        ("deliveries", str(letter.delivery_count)),
        ("failed at", letter.failed_at),
        ("error", f"{letter.error_type}: {letter.error_message}"),
    ]
    text = "\n".join(f"{name + ':':<12} {value}" for name, value in rows)
    raw = json.dumps(letter.raw, indent=2, ensure_ascii=False)
    text += f"\nraw entry:\n{raw}"
    if letter.traceback:
        text += f"\ntraceback:\n{letter.traceback.rstrip()}"
    return text


# --------------------------------------------------------------------------- actions


async def do_list(redis: Redis, args: argparse.Namespace) -> int:
    letters = await deadletter.list_dead_letters(redis, count=args.count, stream=args.stream)
    if args.json:
        print(json.dumps([letter.to_dict() for letter in letters], ensure_ascii=False))
        return 0
    total = await deadletter.count_dead_letters(redis)
    if not letters:
        print(f"no dead letters{' from ' + args.stream if args.stream else ''} ({total} in all)")
        return 0
    print(format_table(letters))
    print(f"\nshowing {len(letters)} (newest first) of {total} dead letter(s)")
    return 0


async def do_show(redis: Redis, args: argparse.Namespace) -> int:
    letter = await deadletter.get_dead_letter(redis, args.id)
    if letter is None:
        raise CommandError(f"no dead letter {args.id}")
    if args.json:
        print(json.dumps(letter.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(format_details(letter))
    return 0


def _ids_or_all(args: argparse.Namespace) -> None:
    if args.all == bool(args.ids):
        raise CommandError("give dead-letter ID(s) or --all (not both)", EXIT_USAGE)


async def _letters_to_replay(
    redis: Redis, args: argparse.Namespace
) -> AsyncIterator[DeadLetter | str]:
    """Each letter read once: ``--all`` walks the stream; a given id is looked up here
    (to name its stream) and the letter handed to ``replay``; an unknown id as itself."""
    if args.all:
        async for letter in deadletter.iter_dead_letters(redis, args.stream):
            yield letter
        return
    for dead_letter_id in args.ids:
        yield await deadletter.get_dead_letter(redis, dead_letter_id) or dead_letter_id


async def do_replay(redis: Redis, args: argparse.Namespace) -> int:
    _ids_or_all(args)
    replayed = failures = 0
    async for letter in _letters_to_replay(redis, args):
        if isinstance(letter, str):
            print(f"error: no dead letter {letter}", file=sys.stderr)
            failures += 1
            continue
        try:
            new_id = await deadletter.replay(redis, letter, delete=not args.keep)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
            continue
        replayed += 1
        print(f"replayed {letter.id} -> {letter.stream} {new_id}")
    print(f"{replayed} replayed, {failures} failed")
    return EXIT_FAILED if failures else 0


async def do_purge(redis: Redis, args: argparse.Namespace) -> int:
    _ids_or_all(args)
    if args.all:
        if not args.yes:
            raise CommandError("purge --all deletes every dead letter; add --yes", EXIT_USAGE)
        removed = await deadletter.purge(redis, all=True)
    else:
        removed = await deadletter.purge(redis, list(args.ids))
    print(f"purged {removed} dead letter(s)")
    if not args.all and removed < len(args.ids):
        raise CommandError(f"{len(args.ids) - removed} id(s) not found")
    return 0


ACTIONS = {"list": do_list, "show": do_show, "replay": do_replay, "purge": do_purge}


async def execute(args: argparse.Namespace) -> int:
    async with redis_session(resolve_redis_url(args)) as redis:
        return await ACTIONS[args.action](redis, args)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(execute(args))


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "dlq",
        help="list, show, replay or purge dead-lettered events",
        description=(
            "Inspect the 'dead-letters' stream: events an agent gave up on after "
            "max_deliveries failed attempts, or that could not be decoded. Each dead letter "
            "keeps the source stream, entry id, group, consumer, the raw entry, the error "
            "and a short traceback. 'replay' puts the original entry back on its source "
            "stream (same event_id, so an already processed event stays deduplicated) and "
            "removes the dead letter."
        ),
    )
    add_redis_url_option(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    list_parser = actions.add_parser(
        "list",
        help="newest dead letters first",
        description="List dead letters, newest first: id, source stream, type, error.",
    )
    list_parser.add_argument("--count", type=int, default=50, help="how many (default 50)")
    list_parser.add_argument("--stream", default=None, help="only those from this source stream")
    list_parser.add_argument("--json", action="store_true", help="print a JSON array")

    show_parser = actions.add_parser(
        "show",
        help="everything about one dead letter",
        description="Show one dead letter: metadata, the raw entry and the traceback.",
    )
    show_parser.add_argument(
        "id", type=entry_id, help="dead-letter id (first column of 'dlq list')"
    )
    show_parser.add_argument("--json", action="store_true", help="print a JSON object")

    replay_parser = actions.add_parser(
        "replay",
        help="put dead letters back on their source stream",
        description=(
            "Append the original entry of each dead letter to its source stream (the agent's "
            "group reads it as a new entry) and delete the dead letter. Fix the cause first."
        ),
    )
    replay_parser.add_argument(
        "ids", nargs="*", type=entry_id, metavar="ID", help="dead-letter id(s)"
    )
    replay_parser.add_argument("--all", action="store_true", help="replay every dead letter")
    replay_parser.add_argument(
        "--stream", default=None, help="with --all: only those from this source stream"
    )
    replay_parser.add_argument(
        "--keep", action="store_true", help="keep the dead letter after replaying it"
    )

    purge_parser = actions.add_parser(
        "purge",
        help="delete dead letters",
        description="Delete the given dead letters, or all of them with --all --yes.",
    )
    purge_parser.add_argument(
        "ids", nargs="*", type=entry_id, metavar="ID", help="dead-letter id(s)"
    )
    purge_parser.add_argument("--all", action="store_true", help="delete every dead letter")
    purge_parser.add_argument("--yes", action="store_true", help="confirm --all")

    for sub in (list_parser, show_parser, replay_parser, purge_parser):
        add_redis_url_option(sub, nested=True)
    parser.set_defaults(func=run)

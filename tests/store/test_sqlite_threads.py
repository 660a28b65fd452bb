"""The SQLite store's abandon-or-commit decision, on real threads and connections.

The caller gives up at the deadline unless the thread has claimed the commit; the
thread commits only after claiming it. These tests drive both orders of events.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from orderflow.models.store.deadline import DeadlineExceeded
from orderflow.models.store.sqlite_threads import Job, StoreThreads


def threads_on(tmp_path: Path) -> StoreThreads:
    path = str(tmp_path / "db.sqlite")

    def connect(job: Job) -> sqlite3.Connection:
        return sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    return StoreThreads(path, connect_writer=connect, connect_reader=connect, readers=1)


def test_a_claimed_commit_cannot_be_abandoned_and_an_abandoned_job_cannot_commit() -> None:
    claimed = Job(time.monotonic() + 60, "x")
    claimed.start(sqlite3.connect(":memory:", check_same_thread=False))
    claimed.claim_commit()
    assert claimed.abandon() is False and claimed.state == "committing"

    abandoned = Job(time.monotonic() + 60, "x")
    abandoned.start(sqlite3.connect(":memory:", check_same_thread=False))
    assert abandoned.abandon() is True
    with pytest.raises(DeadlineExceeded):
        abandoned.claim_commit()

    queued = Job(time.monotonic() + 60, "x")
    assert queued.abandon() is True
    with pytest.raises(DeadlineExceeded):
        queued.start(sqlite3.connect(":memory:", check_same_thread=False))

    late = Job(time.monotonic() - 0.001, "x")
    with pytest.raises(DeadlineExceeded):
        late.claim_commit()


async def test_a_caller_past_its_deadline_waits_for_a_claimed_commit(tmp_path: Path) -> None:
    threads = threads_on(tmp_path)
    release = threading.Event()

    def commits_slowly(conn: sqlite3.Connection, job: Job) -> str:
        job.claim_commit()
        release.wait(30)  # the commit takes longer than the deadline
        return "committed"

    threading.Timer(0.5, release.set).start()
    result = await threads.run(commits_slowly, write=True, deadline=time.monotonic() + 0.1)
    assert result == "committed"  # reported as done, because it was
    await threads.close()


async def test_a_caller_past_its_deadline_abandons_a_job_that_has_not_claimed(
    tmp_path: Path,
) -> None:
    threads = threads_on(tmp_path)
    outcome: list[str] = []
    release = threading.Event()

    def slow_then_commit(conn: sqlite3.Connection, job: Job) -> str:
        release.wait(30)
        try:
            job.claim_commit()
        except DeadlineExceeded:
            outcome.append("refused")
            raise
        outcome.append("committed")
        return "committed"

    with pytest.raises(DeadlineExceeded):
        await threads.run(slow_then_commit, write=True, deadline=time.monotonic() + 0.1)
    release.set()
    await threads.close()  # waits for the thread
    assert outcome == ["refused"]

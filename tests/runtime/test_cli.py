"""The operator commands (``orderflow dlq|streams|worker``) run for real against the test server.

The commands are the runtime's (``orderflow.runtime.commands``), called in-process
through ``orderflow.runtime.cli.main`` (fast, output via capsys); one test goes through
the installed ``orderflow`` console script (the application's command, which composes
them) to prove the entry point and ``--help`` texts. Dead letters are written with the
runtime's own writer, so the CLI reads exactly what a failing agent leaves.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from orderflow.runtime import deadletter
from orderflow.runtime.cli import main
from orderflow.runtime.envelope import Envelope
from orderflow.runtime.localserver import free_port
from tests.runtime.fault_app import COUNTS_KEY, GROUP, STREAM, Work
from tests.runtime.worker_process import ORDERFLOW, WorkerPool, publish_work, wait_until


def write_dead_letter(client: redis.Redis, stream: str, seq: int, error: str = "boom") -> str:
    """A dead letter exactly as the consumer writes it, for a real envelope."""
    raw = Envelope.new(Work(seq=seq), source="test").to_fields()
    fields = deadletter.dead_letter_fields(
        stream=stream,
        entry_id=f"{1000 + seq}-0",
        group="work-group",
        consumer="host-1",
        raw=raw,
        error_type="RuntimeError",
        error_message=error,
        traceback="Traceback (most recent call last):\n  ...\nRuntimeError: " + error,
        delivery_count=5,
    )
    entry_id = client.xadd(deadletter.DEAD_LETTERS, fields)  # type: ignore[arg-type]
    return str(entry_id, "ascii")  # type: ignore[arg-type]


def run_cli(redis_url: str, *args: str) -> int:
    return main([args[0], "--redis-url", redis_url, *args[1:]])


# --------------------------------------------------------------------------- dlq


def test_dlq_list_shows_newest_first_and_filters_by_stream(sync_redis, redis_url, capsys):
    first = write_dead_letter(sync_redis, "work-stream", 1, "first failure")
    second = write_dead_letter(sync_redis, "other-stream", 2, "second failure")

    assert run_cli(redis_url, "dlq", "list") == 0
    out = capsys.readouterr().out
    assert out.index(second) < out.index(first)
    assert "work-stream" in out and "first failure" in out
    assert "of 2 dead letter(s)" in out

    assert run_cli(redis_url, "dlq", "list", "--stream", "work-stream", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [item["id"] for item in listed] == [first]
    assert listed[0]["event_type"] == Work.event_type
    assert listed[0]["error_message"] == "first failure"


def test_dlq_show_prints_raw_entry_and_traceback(sync_redis, redis_url, capsys):
    letter_id = write_dead_letter(sync_redis, "work-stream", 7, "bad thing")

    assert run_cli(redis_url, "dlq", "show", letter_id) == 0
    out = capsys.readouterr().out
    assert "work-stream" in out and "1007-0" in out and "work-group" in out
    assert "RuntimeError: bad thing" in out
    assert '"seq": 7' in out.replace('\\"', '"') or '"seq":7' in out.replace('\\"', '"')
    assert "Traceback" in out

    assert run_cli(redis_url, "dlq", "show", "1-0") == 1
    assert "no dead letter 1-0" in capsys.readouterr().err


def test_dlq_replay_puts_original_event_back_and_removes_letter(sync_redis, redis_url, capsys):
    letter_id = write_dead_letter(sync_redis, "work-stream", 3)
    original = json.loads(sync_redis.xrange(deadletter.DEAD_LETTERS)[0][1][b"raw"])

    assert run_cli(redis_url, "dlq", "replay", letter_id) == 0
    assert f"replayed {letter_id} -> work-stream" in capsys.readouterr().out

    entries = sync_redis.xrange("work-stream")
    assert len(entries) == 1
    replayed = {k.decode(): v.decode() for k, v in entries[0][1].items()}
    assert replayed == original  # same event_id: dedupe still protects processed events
    assert sync_redis.xlen(deadletter.DEAD_LETTERS) == 0


def test_dlq_replay_all_only_from_one_stream(sync_redis, redis_url, capsys):
    for seq in range(3):
        write_dead_letter(sync_redis, "work-stream", seq)
    kept = write_dead_letter(sync_redis, "other-stream", 9)

    assert run_cli(redis_url, "dlq", "replay", "--all", "--stream", "work-stream") == 0
    assert "3 replayed, 0 failed" in capsys.readouterr().out
    assert sync_redis.xlen("work-stream") == 3
    assert [e[0].decode() for e in sync_redis.xrange(deadletter.DEAD_LETTERS)] == [kept]

    assert run_cli(redis_url, "dlq", "replay") == 2  # neither ids nor --all
    assert run_cli(redis_url, "dlq", "replay", "5-0") == 1  # unknown id
    capsys.readouterr()


def test_dlq_purge_ids_and_all_needs_yes(sync_redis, redis_url, capsys):
    ids = [write_dead_letter(sync_redis, "work-stream", seq) for seq in range(3)]

    assert run_cli(redis_url, "dlq", "purge", ids[0]) == 0
    assert "purged 1" in capsys.readouterr().out
    assert sync_redis.xlen(deadletter.DEAD_LETTERS) == 2

    assert run_cli(redis_url, "dlq", "purge", "--all") == 2
    assert "--yes" in capsys.readouterr().err
    assert sync_redis.xlen(deadletter.DEAD_LETTERS) == 2

    assert run_cli(redis_url, "dlq", "purge", "--all", "--yes") == 0
    assert "purged 2" in capsys.readouterr().out
    assert sync_redis.exists(deadletter.DEAD_LETTERS) == 0


def test_redis_url_comes_from_environment(sync_redis, redis_url, capsys, monkeypatch):
    write_dead_letter(sync_redis, "work-stream", 1)
    monkeypatch.setenv("ORDERFLOW_REDIS_URL", redis_url)
    assert main(["dlq", "list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1

    monkeypatch.delenv("ORDERFLOW_REDIS_URL")
    assert main(["dlq", "list"]) == 2
    assert "ORDERFLOW_REDIS_URL" in capsys.readouterr().err


# --------------------------------------------------------------------------- streams


def test_streams_shows_length_lag_pending_and_oldest_pending(sync_redis, redis_url, capsys):
    ids = [sync_redis.xadd("orders-stream", {"n": str(n)}).decode() for n in range(5)]
    sync_redis.xgroup_create("orders-stream", "busy-group", id="0")
    sync_redis.xgroup_create("orders-stream", "idle-group", id="0")
    sync_redis.xreadgroup("busy-group", "c1", {"orders-stream": ">"}, count=2)
    sync_redis.xadd("empty-stream", {"n": "0"})

    assert run_cli(redis_url, "streams", "--json") == 0
    infos = {info["name"]: info for info in json.loads(capsys.readouterr().out)}
    assert set(infos) == {"orders-stream", "empty-stream"}
    orders = infos["orders-stream"]
    assert orders["length"] == 5
    groups = {group["name"]: group for group in orders["groups"]}
    assert groups["busy-group"]["pending"] == 2
    assert groups["busy-group"]["lag"] == 3
    assert groups["busy-group"]["consumers"] == 1
    assert groups["busy-group"]["oldest_pending_id"] == ids[0]
    assert groups["busy-group"]["oldest_pending_age_ms"] >= 0
    assert groups["idle-group"]["pending"] == 0 and groups["idle-group"]["lag"] == 5
    assert infos["empty-stream"]["groups"] == []

    assert run_cli(redis_url, "streams") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["STREAM", "LENGTH", "GROUP", "CONSUMERS"]
    busy = next(line for line in lines if "busy-group" in line).split()
    assert busy[:6] == ["orders-stream", "5", "busy-group", "1", "3", "2"]
    assert busy[6].endswith("s")  # oldest pending age, e.g. "0.0s"

    assert run_cli(redis_url, "streams", "empty-stream", "--json") == 0
    assert [info["name"] for info in json.loads(capsys.readouterr().out)] == ["empty-stream"]


def test_streams_on_an_empty_server(sync_redis, redis_url, capsys):
    assert run_cli(redis_url, "streams") == 0
    assert "no streams" in capsys.readouterr().out


# --------------------------------------------------------------------------- worker


@pytest.fixture
def workers(redis_url: str, tmp_path: Path) -> Iterator[WorkerPool]:
    pool = WorkerPool(redis_url, tmp_path)
    try:
        yield pool
    finally:
        pool.close()


def read_metrics(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()
    except OSError:
        return ""


def test_worker_runs_app_serves_metrics_logs_json_and_stops_cleanly(sync_redis, workers):
    port = free_port()
    worker = workers.start(
        "--redis-url", workers.redis_url,  # the flag alone: the environment has no URL
        "--admin-port", str(port), "--admin-host", "127.0.0.1", "--concurrency", "2",
        env={"ORDERFLOW_REDIS_URL": ""},
    )  # fmt: skip
    publish_work(sync_redis, [Work(seq=n) for n in range(3)])

    wait_until(lambda: sync_redis.hlen(COUNTS_KEY) == 3, timeout=60, what="3 events processed")
    processed = 'orderflow_events_processed_total{agent="tests.runtime.fault_app.work"} 3.0'
    wait_until(lambda: processed in read_metrics(port), timeout=30, what="processed metric")

    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    assert sync_redis.xpending(STREAM, GROUP)["pending"] == 0
    lines = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    assert any(line["service"] == "fault" and "started" in line["message"] for line in lines)
    assert any("stopped" in line["message"] for line in lines)


def test_worker_with_an_unknown_app_exits_2(capsys):
    assert main(["worker", "tests.runtime.no_such_module:app"]) == 2
    assert "cannot load tests.runtime.no_such_module:app" in capsys.readouterr().err
    assert main(["worker", "tests.runtime.fault_app:STREAM"]) == 2
    assert "not an orderflow App" in capsys.readouterr().err


def test_worker_without_any_redis_url_exits_2():
    result = subprocess.run(
        [str(ORDERFLOW), "worker", "tests.runtime.fault_app:app"],
        capture_output=True,
        text=True,
        env={**os.environ, "ORDERFLOW_REDIS_URL": ""},
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "ORDERFLOW_REDIS_URL" in result.stderr


# --------------------------------------------------------------------------- entry point


def test_console_script_help_describes_every_operator_command():
    env = {**os.environ, "ORDERFLOW_REDIS_URL": ""}
    for command in (["worker"], ["dlq"], ["dlq", "replay"], ["streams"]):
        result = subprocess.run(
            [str(ORDERFLOW), *command, "--help"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "--redis-url" in result.stdout
        assert len(result.stdout.splitlines()) > 5

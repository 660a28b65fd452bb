"""README.md's "The runtime in one screen" runs as pasted.

The two Python blocks of that section are written to files in an empty folder (each
block names its file on its first line); ``orderflow worker greeter:app`` runs there as
a real process and ``python publish.py`` as another, against the test's private server.
Every published greeting must be handled exactly once. Reading the blocks from the
README (not a copy) is what keeps the section from drifting.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import redis

from orderflow.runtime.localserver import free_port
from tests.runtime.worker_process import REPO, WorkerPool, wait_until

SECTION = "## The runtime in one screen"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
FILE_NAME = re.compile(r"^# (\w+\.py):")
GREETING = re.compile(r"^hello, (\S+) \(entry ", re.MULTILINE)


def section_blocks() -> list[tuple[str, str]]:
    """(language, code) of each fenced block in the section, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    ends = [text.find(heading, start + 1) for heading in ("\n## ", "\n### ")]
    end = min([position for position in ends if position != -1] or [len(text)])
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text[start:end])]


def write_example(folder: Path) -> list[str]:
    """Write the section's Python blocks to their files; returns the shell block's lines."""
    blocks = section_blocks()
    written = []
    for language, code in blocks:
        match = FILE_NAME.match(code)
        if language == "python" and match:
            (folder / match.group(1)).write_text(code, encoding="utf-8")
            written.append(match.group(1))
    assert written == ["greeter.py", "publish.py"], written
    shell = [code for language, code in blocks if language == "sh"]
    assert len(shell) == 1
    return shell[0].splitlines()


def test_the_readme_example_runs_as_pasted(redis_url, sync_redis, tmp_path):
    folder = tmp_path / "example"
    folder.mkdir()
    shell = write_example(folder)
    assert any(line.startswith("orderflow worker greeter:app") for line in shell)
    assert any(line.startswith("python publish.py ") for line in shell)

    env = {"ORDERFLOW_REDIS_URL": redis_url, "ORDERFLOW_LOG_FORMAT": "console"}
    pool = WorkerPool(redis_url, tmp_path)
    try:
        worker = pool.start(app="greeter:app", cwd=folder, env=env)
        wait_until(
            lambda: "worker greeter running" in worker.output() or not worker.alive(),
            timeout=60,
            what="the greeter's start banner",
        )
        assert worker.alive(), worker.output()
        assert "agent greeter.greet: greetings -> greeters (concurrency 2)" in worker.output()
        assert "greeter is ready" in worker.output()

        names = [f"person{n}" for n in range(25)]
        published = subprocess.run(
            [sys.executable, "publish.py", *names],
            cwd=folder,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert published.returncode == 0, published.stderr
        assert f"published {len(names) + 1} greetings" in published.stdout

        expected = Counter([*names, "later"])  # "later" was sent with delay=1.0
        wait_until(
            lambda: len(GREETING.findall(worker.output())) >= len(expected),
            timeout=60,
            what=f"{len(expected)} greetings handled",
        )
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        assert Counter(GREETING.findall(worker.output())) == expected
        assert "failed on" not in worker.output()
        assert sync_redis.xpending("greetings", "greeters")["pending"] == 0
    finally:
        pool.close()


def test_the_readme_server_command_serves_until_sigterm(redis_server, tmp_path):
    """``python -m orderflow.runtime.localserver --port N``: ready line, PING, SIGTERM -> 0;
    a port already taken is a one-line error."""
    command = [sys.executable, "-m", "orderflow.runtime.localserver"]
    taken = subprocess.run(
        [*command, "--port", str(redis_server.port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert taken.returncode == 1
    assert taken.stderr.count("\n") == 1 and "is in use" in taken.stderr, taken.stderr

    port = free_port()
    out = tmp_path / "server.out"
    with out.open("wb") as sink:
        server = subprocess.Popen([*command, "--port", str(port)], stdout=sink, stderr=sink)
    try:
        wait_until(
            lambda: "serving" in out.read_text() or server.poll() is not None,
            timeout=60,
            what="the server's ready line",
        )
        assert f"serving redis://127.0.0.1:{port}/0" in out.read_text()
        with redis.Redis(port=port) as client:
            assert client.ping()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

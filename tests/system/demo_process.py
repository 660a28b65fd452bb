"""Run the real ``orderflow demo`` as a test would a user: a subprocess on a free port.

The demo's output is read by a thread into a queue, so a test can wait for a line
(the URL, the summary, a restart) without blocking on the pipe. The demo leads a
process group of its own, so a test can signal that group as ``timeout`` or a
closing terminal would; cleanup kills whatever the demo left, and only that.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from tests.ports import port_below_ephemeral_range
from tests.proctree import descendants

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90.0


def pump_lines(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def wait_for_line(lines: queue.Queue[str], needle: str, seen: list[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"no line with {needle!r} within {timeout}s; output:\n{''.join(seen)}")


def http_get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers.get("content-type", ""), response.read()


def http_post_json(url: str, body: Any) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:  # say what the server answered, not just the code
        raise AssertionError(f"POST {url}: {exc.code} {exc.read()[:2000]!r}") from exc


def http_port() -> int:
    """A free port for the demo's API below the ephemeral range: the demo binds it only
    after it has started its other servers (``--cluster``: six nodes whose bus ports
    are theirs + 10000), which could otherwise take it first (:mod:`tests.ports`)."""
    return port_below_ephemeral_range()


def demo_env(data_dir: Path, port: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without ORDERFLOW_* (the developer's own), plus the demo's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERFLOW_")}
    env.update(
        ORDERFLOW_PORT=str(port),
        ORDERFLOW_DATA_DIR=str(data_dir),
        ORDERFLOW_SIMULATOR_DELAY_MIN="0",
        ORDERFLOW_SIMULATOR_DELAY_MAX="0",
        PYTHONPATH=str(ROOT),
        # Tests may share one Redis and order from one address: the per-client order
        # rate limit is lifted (tests/hardening/test_rate_limit.py tests it).
        ORDERFLOW_ORDER_RATE_LIMIT_PER_MINUTE="0",
        **(extra or {}),
    )
    return env


class RunningDemo:
    """``orderflow demo [args]`` started in ``cwd``; :meth:`wait_started` until it prints
    its URL."""

    def __init__(
        self,
        cwd: Path,
        extra_env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.port = http_port()
        self.env = demo_env(cwd / ".data", self.port, extra_env)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orderflow.agents.cli", "demo", *args],
            cwd=cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, to signal as a whole
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert self.process.stdout is not None
        threading.Thread(
            target=pump_lines, args=(self.process.stdout, self.lines), daemon=True
        ).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_started(self) -> str:
        line = self.wait_for_line(f"http://127.0.0.1:{self.port}/", START_TIMEOUT)
        assert "orderflow is running" in line
        return line

    def wait_for_line(self, needle: str, timeout: float) -> str:
        return wait_for_line(self.lines, needle, self.seen, timeout)

    def output(self) -> str:
        return "".join(self.seen)

    def stop(self, timeout: float) -> None:
        """SIGTERM the demo and wait for it to exit (it stops its children first)."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout)

    def drain(self) -> list[str]:
        """After the demo exited: every line it printed, the ones not yet waited for too."""
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return self.seen

    def kill_everything(self) -> None:
        """After a failed test: SIGKILL the demo's own descendants, then the demo."""
        if self.process.poll() is None:
            for pid in descendants(self.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.kill()
        self.process.wait()

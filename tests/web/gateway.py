"""Start real gateway processes (``orderflow api``) for the realtime tests.

Each process is a separate OS process on its own free port, talking to the
test Redis and a SQLite file shared with the test, exactly as replicas of the
gateway share Redis and the store in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from orderflow.runtime.localserver import free_port

ORDERFLOW = str(Path(sys.executable).with_name("orderflow"))


class GatewayProcess:
    """One ``orderflow api`` process; ``url``/``ws_url`` point at it once started."""

    def __init__(
        self,
        *,
        redis_url: str,
        store_url: str,
        log_path: Path,
        extra_env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            "ORDERFLOW_HOST": "127.0.0.1",
            "ORDERFLOW_PORT": str(self.port),
            "ORDERFLOW_REDIS_URL": redis_url,
            "ORDERFLOW_STORE_URL": store_url,
            "ORDERFLOW_HTTP_WORKERS": "1",
            "ORDERFLOW_LOG_LEVEL": os.environ.get("ORDERFLOW_TEST_LOG_LEVEL", "WARNING"),
            **(extra_env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [ORDERFLOW, "api"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(
            f"gateway not healthy in {timeout}s:\n{self.log_path.read_text()[-3000:]}"
        )

    def stop(self, grace: float = 2.0) -> None:
        """SIGTERM; a second SIGTERM after ``grace``; SIGKILL to the group as a last resort.

        The second signal is a belt-and-braces guard for Sanic's start-up
        window (``orderflow api`` now handles a SIGTERM there itself, see
        ``tests/web/test_api_command.py``); Sanic answers a second signal with
        "Shutdown interrupted. Killing.".
        """
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for _ in range(2):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue
        os.killpg(process.pid, signal.SIGKILL)  # its own session: the workers go too
        process.wait()

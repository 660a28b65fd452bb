"""``orderflow api`` stops on SIGTERM at any moment, including during start-up.

Sanic's worker manager used to wait forever for its workers' start-up ack when
the signal arrived before it (see ``agents/orderflow/agents/commands/api.py``); a demo stopped
right after starting, or a pod killed while starting, hung.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from orderflow.agents.processes import ProcessSpec, ProcessTree, StillRunning, cli_argv
from orderflow.runtime.localserver import LocalRedisServer, free_port


@pytest.mark.parametrize("signal_after", [0.6, 0.9, 1.2, 2.5])
def test_sigterm_during_startup_stops_the_server(
    redis_server: LocalRedisServer, tmp_path: Path, signal_after: float
) -> None:
    env = {
        **os.environ,
        "ORDERFLOW_REDIS_URL": redis_server.url,
        "ORDERFLOW_STORE_URL": f"sqlite:///{tmp_path}/orderflow.db",
        "ORDERFLOW_PORT": str(free_port()),
        "ORDERFLOW_HTTP_WORKERS": "1",
    }
    with ProcessTree(grace=0) as tree:  # on the way out: SIGKILL to whatever is left
        api = tree.launch(
            ProcessSpec("api", cli_argv("api"), env=env, log_path=tmp_path / "api.log")
        )
        time.sleep(signal_after)
        api.signal(signal.SIGTERM)
        try:
            code = api.wait(60)  # generous: a loaded machine stops slowly; a hang is forever
        except StillRunning:
            pytest.fail(f"orderflow api ignored SIGTERM sent {signal_after}s after start")
    # Either Python's default handler (signal before Sanic installed its own) or
    # Sanic's clean shutdown ended it; what matters is that it ended.
    assert code in (0, -signal.SIGTERM)

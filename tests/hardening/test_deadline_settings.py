"""The store deadline must end before Sanic's response timeout, or nothing starts.

Otherwise Sanic's generic 503 ("The server failed...", no ``Retry-After``) can go out
while the store is still working on the order -- the first finding of issue 9.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from orderflow.agents.processes import cli_argv
from orderflow.agents.settings import RESPONSE_MARGIN_SECONDS, Settings, get_settings
from orderflow.agents.store_provider import StoreProvider
from orderflow.models.store.sqlite import SqliteStore
from orderflow.web.app import create_app


def test_the_default_deadline_is_well_below_the_response_timeout() -> None:
    settings = Settings()
    assert settings.store_deadline_seconds * 2 <= settings.http_response_timeout_seconds
    app = create_app(settings, role="api")
    assert settings.http_response_timeout_seconds == app.config.RESPONSE_TIMEOUT


@pytest.mark.parametrize(("deadline", "timeout"), [(60, 60), (59.5, 60), (90, 60), (10, 5)])
def test_a_deadline_not_below_the_response_timeout_is_refused(
    deadline: float, timeout: float
) -> None:
    with pytest.raises(ValidationError, match="ORDERFLOW_STORE_DEADLINE_SECONDS"):
        Settings(
            store_deadline_seconds=deadline,
            http_response_timeout_seconds=timeout,
            sse_heartbeat_seconds=1,
        )
    accepted = Settings(
        store_deadline_seconds=timeout - RESPONSE_MARGIN_SECONDS - 0.5,
        http_response_timeout_seconds=timeout,
        sse_heartbeat_seconds=1,  # so that only the deadline is at fault
    )
    assert accepted.store_deadline_seconds < timeout


def test_the_api_command_refuses_to_start_with_such_a_deadline() -> None:
    env = {
        **os.environ,
        "ORDERFLOW_STORE_DEADLINE_SECONDS": "60",
        "ORDERFLOW_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    done = subprocess.run(cli_argv("api"), env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "ORDERFLOW_STORE_DEADLINE_SECONDS (60) must be at least" in done.stderr


async def test_workers_wait_longer_than_the_api(tmp_path: Path) -> None:
    """No client waits for a worker: its store gets the long worker budget."""
    settings = get_settings()
    provider = StoreProvider(None, url=f"sqlite:///{tmp_path}/orderflow.db")
    store = await provider.get()
    try:
        assert isinstance(store, SqliteStore)
        assert store.deadline == settings.worker_store_deadline_seconds
        assert settings.worker_store_deadline_seconds > settings.store_deadline_seconds
    finally:
        await provider.close()

"""Importing the HTTP layer builds no worker App: routes depend on use cases, not workers."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import orderflow.web.app
import orderflow.web.routes.orders
workers = [m for m in ("orderflow.agents.orders", "orderflow.agents.delivery",
                       "orderflow.agents.notifications", "orderflow.agents.simulator")
           if m in sys.modules]
print(",".join(workers))
"""


def test_importing_the_web_app_imports_no_worker_module() -> None:
    """A worker module builds its App at import (``orderflow worker module:app``); the API
    process must not carry four worker Apps it never runs."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""

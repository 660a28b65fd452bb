"""Property-based fuzzing of the documented API with schemathesis: never a 5xx.

The app is served in this test's event loop; schemathesis's CLI runs as a
subprocess against ``/docs/openapi.json`` (loading the document is itself a
check that the spec is valid OpenAPI). Examples per operation are bounded
and the seed is fixed, so the run is short and repeatable.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from tests.web.conftest import LiveApi

MAX_EXAMPLES = 30
SEED = 20261124
# Server-Sent Events: a valid request's body never ends, which a fuzzer cannot read.
# Their bad inputs (400/404 problems) are tested in test_order_events.py.
STREAMING_OPERATIONS = ("orderEvents", "menuEvents")


async def test_no_server_errors_under_schemathesis(api: LiveApi, tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{api.base_url}/docs/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--no-color",
        *(arg for op in STREAMING_OPERATIONS for arg in ("--exclude-operation-id", op)),
        "--request-timeout",
        "30",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=240)
    text = output.decode(errors="replace")
    print(text)  # shown by pytest -s or on failure
    assert process.returncode == 0, text
    # every documented operation but the endless streams was exercised, and nothing failed
    selected = re.search(r"Selected: (\d+)/(\d+)", text)
    tested = re.search(r"Tested: (\d+)", text)
    assert selected and tested, text
    assert int(selected.group(1)) == int(tested.group(1)) >= 6, text
    assert int(selected.group(2)) - int(selected.group(1)) == len(STREAMING_OPERATIONS), text
    assert "No issues found" in text, text

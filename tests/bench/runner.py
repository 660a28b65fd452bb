"""How the benchmark smoke tests run a benchmark: exactly as a user does.

A subprocess of ``benchmarks/<script> ... --json`` with the repository as its working
directory and no ``ORDERFLOW_*`` variable of the test run (each benchmark starts its
own private stack and configures it itself); the one JSON line it prints is returned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


def run_benchmark(script: str, *args: str, timeout: float = 150.0) -> dict[str, Any]:
    """Run ``benchmarks/<script> ... --json``; return the JSON object it printed on stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERFLOW_")}
    completed = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, (
        f"{script} exited {completed.returncode}\nstdout:\n{completed.stdout}\n"
        f"stderr:\n{completed.stderr[-12000:]}"
    )
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1, f"--json must print exactly one line, got: {completed.stdout!r}"
    result = json.loads(lines[0])
    assert isinstance(result, dict)
    return result

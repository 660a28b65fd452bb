"""``benchmarks/pg_drivers.py`` runs, at a small size, and reports both drivers.

Like the other benchmark smoke tests it asserts the shape and the counts of the
output, never a timing: which driver is faster is the benchmark's answer, not
something a test on a busy machine could check.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from orderflow.models.store.localpostgres import LocalPostgres
from tests.bench.runner import BENCH, run_benchmark

pytestmark = pytest.mark.postgres


def test_pg_drivers_reports_both_drivers(postgres_server: LocalPostgres) -> None:
    # ``postgres_server`` only gates the test (skip, or fail in CI, without the binaries):
    # the benchmark starts a private server of its own.
    result = run_benchmark(
        "pg_drivers.py", "--orders", "20", "--concurrent", "20", "--repeat", "1", "--no-fsync"
    )
    assert result["settings"]["orders"] == 20
    rows = {row["driver"]: row for row in result["results"]}
    assert set(rows) == {"psycopg", "asyncpg"}
    for row in rows.values():
        assert 0 < row["seq_p50_ms"] <= row["seq_p99_ms"]
        assert row["concurrent_orders_per_s"] > 0 and row["hot_item_orders_per_s"] > 0


def test_pg_drivers_help() -> None:
    script = str(BENCH / "pg_drivers.py")
    shown = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "--no-fsync" in shown.stdout

"""The table of ``benchmarks/stall_probe``'s figures: one row per process and series.

Why a separate script: the probe runs inside every process of a stack and only
writes ``STALL_PROBE_DIR/<pid>.json``; the reading is done once the benchmark ends.

    mkdir /tmp/stalls
    STALL_PROBE_DIR=/tmp/stalls PYTHONPATH=benchmarks/stall_probe \\
        python benchmarks/load.py --rates 50
    python benchmarks/stall_report.py /tmp/stalls

``--since`` / ``--until`` (``HH:MM:SS``, UTC, as in the benchmarks' logs) also count
the slow events (>= 20 ms) inside that window only, e.g. one load step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

SERIES = ("lag", "gc0", "gc1", "gc2", "begin")


def clock(stamp: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(stamp))


def load_reports(directory: Path) -> list[dict[str, Any]]:
    """Every process's report that recorded anything, the API and workers first."""
    reports = []
    for path in sorted(directory.glob("*.json")):
        report = json.loads(path.read_text())
        if any(entry.get("n") for entry in report["series"].values()):
            report["pid"] = int(path.stem)
            reports.append(report)
    return reports


def process_name(argv: str, process: str) -> str:
    """A short name: the worker's app module, the API's main or Sanic worker, the script."""
    words = argv.split()
    for word in words:
        if word.startswith("orderflow.agents.") and word.endswith(":app"):
            return word.removeprefix("orderflow.agents.").removesuffix(":app")
    if "api" in words:  # a Sanic worker is spawned with its parent's argv, not its name
        return "api main" if process == "MainProcess" else "api worker"
    return Path(words[0]).name if words else "?"


def in_window(slow: list[list[float]], since: str | None, until: str | None) -> list[float]:
    return [
        ms
        for stamp, ms in slow
        if (since is None or clock(stamp) >= since) and (until is None or clock(stamp) <= until)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stall_report.py", description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path, help="the STALL_PROBE_DIR of the run")
    parser.add_argument("--since", help="HH:MM:SS (UTC): count slow events from then")
    parser.add_argument("--until", help="HH:MM:SS (UTC): count slow events until then")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    args = parser.parse_args(argv)
    reports = load_reports(args.directory)
    if args.json:
        print(json.dumps(reports))
        return 0
    header = (
        f"{'process':<14} {'series':<6} {'n':>6} {'total ms':>9} {'p99 ms':>7} {'max ms':>8} "
        f"{'>10ms':>6} {'>50ms':>6} {'window >=20ms (largest)':<30}"
    )
    print(header)
    print("-" * len(header))
    for report in reports:
        name = process_name(report["argv"], report.get("process", ""))
        for series in SERIES:
            entry = report["series"].get(series, {"n": 0})
            if not entry.get("n"):
                continue
            window = sorted(in_window(entry["slow"], args.since, args.until), reverse=True)
            print(
                f"{name:<14} {series:<6} {entry['n']:>6} {entry['total_ms']:>9.1f} "
                f"{entry['p99_ms']:>7.1f} {entry['max_ms']:>8.1f} {entry['over_10ms']:>6} "
                f"{entry['over_50ms']:>6} {len(window)} {window[:4]}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

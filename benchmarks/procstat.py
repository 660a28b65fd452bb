"""CPU time, run-queue wait and resident memory of the stack's processes, from ``/proc``.

Why: on two shared cores "the pipeline is slow" means nothing until it says which
process burnt the CPU during a load step, and "memory per connection" needs the
gateway's resident set before and after the clients connect. A stack process may
have children (``orderflow api`` runs its Sanic workers as child processes), so
both figures are summed over a process and all its descendants.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name, or None if it is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pid: int, include_descendants: bool = True) -> float:
    """User + system CPU seconds used so far by ``pid`` and its descendants.

    ``include_descendants=False`` for a process that started the stack itself (the
    benchmark): its descendants are the stack, not its own work."""
    total = 0
    for member in descendants(pid) if include_descendants else [pid]:
        fields = _stat_fields(member)
        if fields is not None:  # utime and stime are fields 14 and 15 of stat
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def run_queue_wait_seconds(pid: int, include_descendants: bool = True) -> float:
    """Seconds the threads of ``pid`` and its descendants were runnable but waiting for
    a CPU (``/proc/<pid>/task/<tid>/schedstat``, second field, ns). High next to a
    low CPU share means the process was starved by others, not busy itself."""
    total = 0
    for member in descendants(pid) if include_descendants else [pid]:
        try:
            tasks = list((PROC / str(member) / "task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                total += int((task / "schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return total / 1e9


def rss_kb(pid: int) -> int:
    """Resident set (KiB) of ``pid`` and its descendants."""
    total = 0
    for member in descendants(pid):
        try:
            pages = int((PROC / str(member) / "statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += pages * PAGE_KB
    return total


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages, reported next to every figure."""
    return os.getloadavg()

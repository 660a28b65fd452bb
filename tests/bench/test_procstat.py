"""benchmarks/procstat.py: a benchmark's own CPU is not its children's.

load.py starts the whole stack as its children; its ``client_cpu_share`` must
count the benchmark process alone, or the stack's CPU is reported as the
client's (it once was: "the client used 0.72 of a core" was client + stack).
"""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.procstat import cpu_seconds

# Burns 0.5 s of its own CPU, says so, then waits (alive, a descendant) for stdin to close.
BURNER = """
import sys, time
while time.process_time() < 0.5:
    pass
print("burnt", flush=True)
sys.stdin.read()
"""


def test_without_descendants_a_busy_child_is_not_counted() -> None:
    me = os.getpid()
    with subprocess.Popen(
        [sys.executable, "-c", BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "burnt"
        own, with_children = cpu_seconds(me, include_descendants=False), cpu_seconds(me)
        child_cpu = cpu_seconds(child.pid)
        child.stdin.close()
    # /proc counts whole clock ticks (10 ms), so allow for rounding below 0.5 s.
    assert child_cpu >= 0.45
    assert with_children - own >= 0.45

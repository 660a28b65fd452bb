"""``orderflow.agents.processes`` with real child processes (small Python scripts).

The demo, the benchmarks and the web/runtime tests rely on these behaviours;
here each is shown on its own: a stubborn child and its own child are both
SIGKILLed after the grace period, a child that dies during start fails the wait
at once with its exit code and log, a check that never passes names itself,
``watch`` reports the child that exited, and a restarted child's output is that
of its current run only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from orderflow.agents.processes import ChildExited, NotReady, ProcessSpec, ProcessTree
from orderflow.agents.readiness import HttpOk, LinePrinted
from orderflow.runtime.localserver import free_port

STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the grandchild too
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print("grandchild", grandchild.pid, flush=True)
time.sleep(60)
"""


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def gone(pid: int) -> bool:
    """No such process, or a zombie waiting for init to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_stop_kills_the_whole_group_of_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    spec = ProcessSpec(
        "stubborn",
        python(STUBBORN),
        log_path=tmp_path / "stubborn.log",
        ready=LinePrinted("grandchild "),
    )
    with ProcessTree([spec], grace=0.5) as tree:
        tree.start_ready(timeout=30)
        grandchild = int(tree["stubborn"].output().split()[1])
        assert not gone(grandchild)
        assert tree.stop() == {"stubborn": -9}
    deadline = time.monotonic() + 10
    while not gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(grandchild)


def test_a_child_dying_during_start_fails_the_wait_at_once(tmp_path: Path) -> None:
    crashing = ProcessSpec(
        "api",
        python("import sys; print('port taken', flush=True); sys.exit(3)"),
        log_path=tmp_path / "api.log",
        ready=HttpOk(f"http://127.0.0.1:{free_port()}/healthz"),
    )
    healthy = ProcessSpec("worker", python("import time; time.sleep(60)"))
    with ProcessTree([crashing, healthy], grace=5) as tree:
        started = time.monotonic()
        with pytest.raises(ChildExited) as failure:
            tree.start_ready(timeout=60)
        assert time.monotonic() - started < 30  # not the 60 s timeout
        assert failure.value.child.name == "api"
        assert "api exited during start (code 3)" in str(failure.value)
        assert "port taken" in str(failure.value)
        # start_ready stopped the rest: nothing half-started is left running.
        assert tree.returncodes() == {"api": 3, "worker": -15}


def test_a_check_that_never_passes_names_itself(tmp_path: Path) -> None:
    spec = ProcessSpec(
        "quiet",
        python("print('hello', flush=True); import time; time.sleep(60)"),
        log_path=tmp_path / "quiet.log",
        ready=LinePrinted("never printed"),
    )
    with ProcessTree([spec], grace=5) as tree:
        with pytest.raises(NotReady, match="quiet not ready within 1s: 'never printed' in"):
            tree.start_ready(timeout=1)
        assert tree["quiet"].returncode == -15


def test_watch_reports_the_child_that_exited_and_a_restart_reads_its_own_run(
    tmp_path: Path,
) -> None:
    short = ProcessSpec("short", python("print('run', flush=True)"), log_path=tmp_path / "s.log")
    long = ProcessSpec("long", python("import time; time.sleep(60)"))
    with ProcessTree([short, long], grace=5) as tree:
        tree.start()
        assert tree.watch(lambda: False) is tree["short"]
        assert tree.watch(lambda: True) is None  # a stop request wins
        assert tree["short"].wait(10) == 0 and tree["long"].alive()

        tree["short"].start()  # what a supervisor would do
        assert tree["short"].wait(10) == 0
        assert tree["short"].starts == 2
        assert tree["short"].output() == "run\n"
        assert (tmp_path / "s.log").read_text() == "run\nrun\n"
    assert tree.returncodes() == {"short": 0, "long": -15}

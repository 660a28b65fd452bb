"""Start, watch and stop a set of named child processes: the demo's, a benchmark's, a test's.

``orderflow demo``, the benchmarks' private stacks and the tests that run real
``orderflow api``/``orderflow worker`` processes need the same things, done the
same way everywhere:

* **Start** each child from a :class:`ProcessSpec`. By default a child leads its
  own process group, so a Ctrl-C in the terminal reaches only the parent (which
  stops the children in its own order) and one ``killpg`` also reaches the
  child's children (Sanic's workers); on Linux it gets SIGTERM when the parent
  dies (``PR_SET_PDEATHSIG``), so a SIGKILLed demo or test run leaves nothing.
* **Wait until ready**, with a timeout: an URL answers 200 (:class:`HttpOk`) or
  the log shows a line (:class:`LinePrinted`). A child that exits meanwhile
  fails the wait at once (:class:`ChildExited`: its name, exit code and log
  tail) instead of waiting out the timeout.
* **Watch**: :meth:`ProcessTree.watch` returns the first child that exits.
* **Stop**: SIGTERM (a worker drains, a Sanic main process stops its workers),
  SIGKILL to the group after a grace period, then to whatever is left in it.

It is synchronous (``Popen`` polled every 0.1 s), as tests and threads want;
asyncio callers use ``asyncio.to_thread``. Supervision (restart a dead child
with back-off) is :mod:`orderflow.agents.supervision`, on top of this:
:meth:`Child.start` restarts an exited child, appending to its log, and
:meth:`Child.output` reads only the current run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orderflow.agents.readiness import Readiness

log = logging.getLogger("orderflow.processes")

POLL_SECONDS = 0.1
TAIL_LINES = 30


def cli_argv(*args: str) -> list[str]:
    """``orderflow ARGS...`` run by this interpreter (no console script on PATH needed)."""
    return [sys.executable, "-m", "orderflow.agents.cli", *args]


class ProcessError(RuntimeError):
    """A child did not do what was expected; the message names it and shows its log's end."""


class ChildExited(ProcessError):
    """A child exited while it was expected to run (``child`` says which, and its code)."""

    def __init__(self, child: Child, when: str = "") -> None:
        self.child = child
        super().__init__(
            f"{child.name} exited{when} (code {child.returncode}){child.tail_for_message()}"
        )


class NotReady(ProcessError, TimeoutError):
    """Readiness checks still failing when the timeout ran out."""


class StillRunning(ProcessError, TimeoutError):
    """:meth:`Child.wait` timed out."""


@dataclass(frozen=True)
class ProcessSpec:
    """What to run. ``env`` None: this process's environment. ``log_path`` None: the
    child writes to our stdout/stderr (the demo's terminal); else both streams are
    appended to that file (not a pipe, which blocks the child once nobody reads it)."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    cwd: Path | str | None = None
    log_path: Path | None = None
    ready: Readiness | None = None


def parent_death_signal(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get ``sig`` when its parent dies (Linux only).

    libc is loaded here, in the parent: between fork and exec the child must not
    import anything (another thread may hold the import lock at fork time). The
    signal is tied to the *thread* that forks, so start children from a thread that
    lives as long as they should (the main thread). The ``getppid`` check covers a
    parent that died before ``prctl`` ran.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    parent = os.getpid()

    def set_parent_death_signal() -> None:
        libc.prctl(pr_set_pdeathsig, int(sig))
        if os.getppid() != parent:
            os._exit(1)

    return set_parent_death_signal


class Child:
    """One named child: its spec and, once started, its current process."""

    def __init__(self, spec: ProcessSpec, *, own_group: bool, die_with_parent: bool) -> None:
        self.spec = spec
        self.own_group = own_group
        self.die_with_parent = die_with_parent
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log_offset = 0
        self._group_left = False  # a group of ours may still hold the child's children

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def log_path(self) -> Path | None:
        return self.spec.log_path

    @property
    def returncode(self) -> int | None:
        """None while running (or never started); negative: killed by that signal."""
        return None if self.process is None else self.process.poll()

    def start(self) -> Child:
        """Start the process (again, if it has exited); a running child is left as it is."""
        if self.alive():
            return self
        with contextlib.ExitStack() as closing:
            output = None
            if self.spec.log_path is not None:
                self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
                output = closing.enter_context(self.spec.log_path.open("ab"))
                self._log_offset = output.tell()  # output() reads this run only
            self.process = subprocess.Popen(
                list(self.spec.argv),
                env=None if self.spec.env is None else dict(self.spec.env),
                cwd=self.spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=None if output is None else subprocess.STDOUT,
                start_new_session=self.own_group,
                preexec_fn=parent_death_signal() if self.die_with_parent else None,
            )
        self.starts += 1
        self._group_left = self.own_group
        log.info("started %s (pid %d)", self.name, self.process.pid)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: signal.Signals, *, group: bool = False) -> None:
        """Send ``sig`` to the process, or to its whole group (its own children too)."""
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group and self.own_group:
                os.killpg(self.process.pid, sig)
            else:
                os.kill(self.process.pid, sig)

    def wait(self, timeout: float) -> int:
        """The exit code; :class:`StillRunning` (with the log's end) after ``timeout`` s."""
        assert self.process is not None, f"{self.name} was never started"
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise StillRunning(
                f"{self.name} (pid {self.process.pid}) still running after {timeout:.0f}s"
                + self.tail_for_message()
            ) from None

    def wait_ready(self, timeout: float) -> None:
        """Until the spec's readiness check passes; :class:`ChildExited` or :class:`NotReady`."""
        wait_ready([self], [self], timeout)

    def output(self) -> str:
        """What the child wrote to its log since its last start ("" without a log)."""
        if self.spec.log_path is None:
            return ""
        try:
            with self.spec.log_path.open("rb") as handle:
                handle.seek(self._log_offset)
                return handle.read().decode(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = TAIL_LINES) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def tail_for_message(self) -> str:
        tail = self.tail()
        return f"; last lines of {self.spec.log_path}:\n{tail}" if tail else ""

    def kill_leftovers(self) -> None:
        """SIGKILL whatever is left in the child's group once the leader has exited.

        A Sanic main process normally stops its workers; after a SIGKILL it cannot.
        """
        if self.process is not None and self._group_left and self.process.poll() is not None:
            self._group_left = False  # once: later, the number may be another group's
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)


def wait_ready(
    children: Iterable[Child],
    watched: Iterable[Child],
    timeout: float,
    should_stop: Callable[[], bool] | None = None,
) -> bool:
    """Poll the children's readiness checks until all pass (True) or ``should_stop()`` (False).

    Raises :class:`ChildExited` as soon as one of ``watched`` exits, :class:`NotReady`
    after ``timeout`` seconds. A child without a check is ready once started.
    """
    watched = list(watched)
    waiting = [c for c in children if c.spec.ready is not None]
    deadline = time.monotonic() + timeout
    while True:
        for child in watched:
            if child.process is not None and child.returncode is not None:
                raise ChildExited(child, " during start")
        waiting = [c for c in waiting if not (c.spec.ready and c.spec.ready.check(c))]
        if not waiting:
            return True
        if should_stop is not None and should_stop():
            return False
        if time.monotonic() >= deadline:
            raise NotReady(
                "; ".join(
                    f"{c.name} not ready within {timeout:.0f}s: {c.spec.ready}"
                    f"{c.tail_for_message()}"
                    for c in waiting
                )
            )
        time.sleep(POLL_SECONDS)


class ProcessTree:
    """Named children started, watched and stopped together.

    ``grace`` is how long :meth:`stop` waits after SIGTERM before SIGKILL.
    ``own_groups`` and ``die_with_parent`` apply to every child (see the module).
    Used as a context manager, it stops every child on the way out.
    """

    def __init__(
        self,
        specs: Iterable[ProcessSpec] = (),
        *,
        grace: float = 10.0,
        own_groups: bool = True,
        die_with_parent: bool = True,
    ) -> None:
        self.grace = grace
        self.own_groups = own_groups
        self.die_with_parent = die_with_parent
        self.children: dict[str, Child] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: ProcessSpec) -> Child:
        if spec.name in self.children:
            raise ValueError(f"a child named {spec.name!r} is already in the tree")
        child = Child(spec, own_group=self.own_groups, die_with_parent=self.die_with_parent)
        self.children[spec.name] = child
        return child

    def launch(self, spec: ProcessSpec) -> Child:
        """Add ``spec`` and start it."""
        return self.add(spec).start()

    def __getitem__(self, name: str) -> Child:
        return self.children[name]

    def __iter__(self) -> Iterator[Child]:
        return iter(list(self.children.values()))

    def _select(self, names: Sequence[str]) -> list[Child]:
        return [self.children[n] for n in names] if names else list(self)

    def start(self, *names: str) -> list[Child]:
        """Start the named children (default: all) in order; none waits for another."""
        return [child.start() for child in self._select(names)]

    def start_ready(self, timeout: float) -> ProcessTree:
        """Start every child and wait until all are ready; if they are not, stop them all
        (no half-started tree is left behind) and raise as :meth:`wait_ready` does."""
        self.start()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def started(self) -> list[Child]:
        return [c for c in self if c.process is not None]

    def exited(self) -> list[Child]:
        """Started children whose process has exited (for any reason), in tree order."""
        return [c for c in self.started() if c.returncode is not None]

    def returncodes(self) -> dict[str, int | None]:
        return {c.name: c.returncode for c in self.started()}

    def wait_ready(
        self, timeout: float, *names: str, should_stop: Callable[[], bool] | None = None
    ) -> bool:
        """:func:`wait_ready` for the named children (default: all); any child exiting fails it."""
        return wait_ready(self._select(names), self, timeout, should_stop)

    def watch(self, should_stop: Callable[[], bool]) -> Child | None:
        """Block until a started child exits (returned) or ``should_stop()`` (None)."""
        while not should_stop():
            exited = self.exited()
            if exited:
                return exited[0]
            time.sleep(POLL_SECONDS)
        return None

    def stop(self, *names: str, grace: float | None = None) -> dict[str, int | None]:
        """SIGTERM the named children (default: all) together; SIGKILL the groups of those
        still running after ``grace`` seconds; then SIGKILL any leftovers in their groups.

        Returns each stopped child's exit code. Safe to call twice, and with children
        that never started or have already exited.
        """
        grace = self.grace if grace is None else grace
        children = [c for c in self._select(names) if c.process is not None]
        for child in children:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in children:
            assert child.process is not None
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs: killing it", child.name, grace)
                child.signal(signal.SIGKILL, group=True)
                child.process.wait()
            child.kill_leftovers()
        return {c.name: c.returncode for c in children}

    def kill(self) -> None:
        """SIGKILL every running child's group now (a second Ctrl-C); :meth:`stop` reaps them."""
        for child in self:
            child.signal(signal.SIGKILL, group=True)

    def __enter__(self) -> ProcessTree:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

"""Restart the children of a :class:`~orderflow.agents.processes.ProcessTree` that die.

``orderflow demo`` runs the whole system as one tree; one worker killed (by the
OOM killer, a bug, a person testing) must not take the stack down with it, as a
process manager would not. A child that exits on its own is restarted after a
back-off that doubles with each exit within ``window`` seconds (first delay,
then 2x, 4x, ... up to ``max_delay``); the others keep running meanwhile. A
child that exits more than ``max_restarts`` times within ``window`` is crash
looping: restarting it again would only repeat the failure, so the supervisor
gives up and says so (the demo then stops everything).

Before a restart, whatever is left in the dead child's process group is killed:
a SIGKILLed Sanic main process leaves its worker processes behind, still
holding the listening socket, and the new API could not bind its port.

:meth:`Supervisor.poll` does one round and never blocks; call it from the
thread that started the children (the parent-death signal of a child is tied
to the thread that forked it).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from orderflow.agents.processes import Child, ProcessTree

log = logging.getLogger("orderflow.supervision")


@dataclass(frozen=True)
class RestartPolicy:
    """How soon a dead child is restarted, and when to give up on it."""

    first_delay: float = 0.5
    max_delay: float = 8.0
    max_restarts: int = 5
    window: float = 60.0

    def delay(self, recent_exits: int) -> float:
        """Seconds before the restart that follows the ``recent_exits``-th exit in the window."""
        return float(min(self.max_delay, self.first_delay * 2 ** max(0, recent_exits - 1)))


@dataclass
class CrashLoop:
    """A child the supervisor gave up on: it exited too often within the window."""

    child: Child
    exits: int
    window: float

    def __str__(self) -> str:
        times = "time" if self.exits == 1 else "times"
        return (
            f"{self.child.name} exited {self.exits} {times} within {self.window:.0f}s"
            f" (last exit code {self.child.returncode}): giving up on it"
        )


@dataclass
class Supervisor:
    """Watches ``tree`` and restarts its exited children according to ``policy``."""

    tree: ProcessTree
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    clock: Callable[[], float] = time.monotonic
    restarts: dict[str, int] = field(default_factory=dict)
    _exits: dict[str, deque[float]] = field(default_factory=dict)
    _due: dict[str, float] = field(default_factory=dict)

    def poll(self) -> CrashLoop | None:
        """Note new exits, restart the children whose back-off is over; a crash loop ends it."""
        now = self.clock()
        for child in self.tree.exited():
            if child.name not in self._due:
                crash_loop = self._note_exit(child, now)
                if crash_loop is not None:
                    return crash_loop
        for name, due in list(self._due.items()):
            if now >= due:
                del self._due[name]
                child = self.tree[name].start()
                self.restarts[name] = self.restarts.get(name, 0) + 1
                assert child.process is not None
                log.warning("restarted %s (pid %d)", name, child.process.pid)
        return None

    def _note_exit(self, child: Child, now: float) -> CrashLoop | None:
        exits = self._exits.setdefault(child.name, deque())
        exits.append(now)
        while exits and exits[0] < now - self.policy.window:
            exits.popleft()
        child.kill_leftovers()
        if len(exits) > self.policy.max_restarts:
            return CrashLoop(child, len(exits), self.policy.window)
        delay = self.policy.delay(len(exits))
        self._due[child.name] = now + delay
        log.warning(
            "%s exited (code %s); next attempt in %.1fs (exit %d of at most %d within %.0fs)",
            child.name,
            child.returncode,
            delay,
            len(exits),
            self.policy.max_restarts,
            self.policy.window,
        )
        return None

    @property
    def waiting(self) -> list[str]:
        """Children that exited and wait for their restart."""
        return list(self._due)

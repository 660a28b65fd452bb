"""Sanic's worker manager, made to stop on SIGTERM/SIGINT at any moment of start-up.

``orderflow api`` runs Sanic's main process, which starts the worker processes and
stops them when it is signalled. Sanic 25.12's manager mishandles a signal that
lands while its workers are still starting, in four ways; a demo stopped right after
it was started, or a pod killed while starting, hit each of them. The class below
is looked up in ``sanic.mixins.startup`` when serving starts, so installing it is a
matter of replacing that name (:func:`stop_on_signal_during_startup`).
"""

from __future__ import annotations

import time

# How long the main process, once signalled, waits for a worker that has started its
# server to finish its start-up listeners before it signals that worker anyway (the
# fourth window below). Ours open Redis and store connections: well under a second
# when their servers answer.
SERVING_WAIT_SECONDS = 10.0


def stop_on_signal_during_startup() -> None:
    """Install :class:`ShutdownAwareManager` as the manager Sanic serves with.

    1. Sanic's manager keeps waiting for every worker's start-up acknowledgement even
       after a shutdown signal has terminated those workers, so a SIGTERM in the first
       second hangs the server forever. Ours stops waiting once shutdown has begun,
       and the normal shutdown path (join, clean-up) runs.
    2. A signal that lands while the manager is still starting its processes
       terminates only those already alive; the ones started after it would serve
       forever and ``join`` would wait for them forever (seen under load: SIGTERM 0.9 s
       after start). So before joining, ours terminates every process still alive once
       shutdown has begun (``terminate`` is a no-op for one already terminated).
    3. Sanic's signal handler terminates the workers itself, and terminating one
       writes its state through the ``multiprocessing`` manager's proxy. A signal
       handler runs between two bytecodes of the main thread, which may be half-way
       through its own call on that same proxy connection (the monitor loop reads every
       worker's state ten times a second): the two replies cross, the main thread gets
       the other call's answer (a ``str`` where a worker's state ``dict`` was due) and
       the server exits 1 with "'str' object has no attribute 'get'" (seen in the chart
       workload test: a gateway stopped with SIGTERM). Ours only marks the shutdown in
       the handler and wakes the monitor loop; the workers are terminated by ``join``,
       in the main thread, once that loop has ended.
    4. A worker acknowledges its start-up, starts listening (it answers ``/healthz``
       from then on), installs its signal handlers and runs its ``after_server_start``
       listeners inside ``loop.run_until_complete``. A SIGINT in that stretch calls
       ``app.stop``, whose ``loop.stop()`` ends only that start-up run; the next
       ``run_forever`` (the serving one) starts afresh, so the signal is lost. The
       main process then gave up on the worker after ten seconds and exited, leaving
       it to stop later by itself (seen in the demo test: SIGTERM 1 ms before "Worker
       ready"; the demo killed the API 15 s later and exited 1). Ours waits, before it
       terminates a worker, until every worker that has acknowledged reports that it
       serves (``set_serving(True)``, written just before the serving loop), at most
       :data:`SERVING_WAIT_SECONDS`.
    """
    from signal import Signals

    import sanic.mixins.startup as startup
    from sanic.log import logger as sanic_logger
    from sanic.worker.constants import ProcessState
    from sanic.worker.manager import WorkerManager

    if getattr(startup.WorkerManager, "stops_waiting_on_shutdown", False):
        return

    class ShutdownAwareManager(WorkerManager):
        stops_waiting_on_shutdown = True

        def shutdown_signal(self, signal: int, frame: object) -> None:
            if self._shutting_down:  # a second signal: Sanic kills (no proxy calls)
                super().shutdown_signal(signal, frame)
                return
            sanic_logger.info("Received signal %s. Shutting down.", Signals(signal).name)
            self._shutting_down = True
            self.monitor_publisher.send(None)  # ends the monitor loop; join terminates

        def _all_workers_ack(self) -> bool:
            return bool(self._shutting_down) or bool(super()._all_workers_ack())

        def _still_starting(self) -> list[str]:
            """Workers alive that have acknowledged but do not serve yet (window 4).

            Empty when the workers' state is gone with the ``multiprocessing`` manager
            process that holds it (a SIGTERM to the whole process group stops that process
            too): nothing can be known then, so nothing is waited for."""
            starting = []
            for process in self.processes:
                try:
                    state = self.worker_state.get(process.name) or {}
                except (OSError, EOFError):  # the manager process has exited
                    return []
                if (
                    process.is_alive()
                    and state.get("state") == ProcessState.ACKED.name
                    and not state.get("serving")
                ):
                    starting.append(process.name)
            return starting

        def join(self) -> None:
            if self._shutting_down:
                deadline = time.monotonic() + SERVING_WAIT_SECONDS
                while (starting := self._still_starting()) and time.monotonic() < deadline:
                    time.sleep(0.02)
                if starting:
                    sanic_logger.warning(
                        "%s still starting after %.0fs: signalling it anyway",
                        ", ".join(starting),
                        SERVING_WAIT_SECONDS,
                    )
                for process in self.processes:
                    if process.is_alive():
                        process.terminate()
            super().join()

    startup.WorkerManager = ShutdownAwareManager  # type: ignore[misc]

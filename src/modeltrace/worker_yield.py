"""Give a background worker thread its share of the GIL when the application starves it.

A model thread that releases and re-takes the GIL often (scikit-learn's
``predict`` does, on every call) can starve a Python worker thread almost
completely: CPython hands the GIL to a waiting thread only when the holder keeps
it for a whole switch interval, so the worker (encoding spans for export,
ingesting them for drift) never runs and its queue fills. ``WorkerYield`` is
called by the thread that fills the queue while the queue is above its
high-water mark: every ``every`` calls (more often as the queue grows: every
``every * mark / depth``) it sleeps for a moment if the worker is using CPU (it
needs the GIL), which hands the GIL over. A worker blocked on the
network uses no CPU, gets no yields (one probe per ``idle_probe`` seconds), so
the application never waits on a slow or dead endpoint. Without a thread CPU
clock (``time.pthread_getcpuclockid``, POSIX) it does nothing.

    gate = WorkerYield()
    gate.watch(worker_thread)
    ...
    if len(queue) > high_water_mark:
        gate.over_mark(len(queue), high_water_mark)
"""

from __future__ import annotations

import threading
import time

__all__ = ["WorkerYield"]


class WorkerYield:
    """Yields the GIL to one worker thread while it is CPU-bound and behind."""

    def __init__(self, every: int = 32, seconds: float = 0.0005, idle_probe: float = 0.1) -> None:
        # Each yield lets the worker run up to a switch interval (5 ms): about 50
        # spans of OTLP encoding, so one yield per 32 queued spans lets it catch up.
        self._every = every
        self._seconds = seconds
        self._idle_probe = idle_probe
        self._clock: int | None = None
        self._count = 0
        self._waits = False
        self._last_probe = 0.0
        self.yields = 0  # how often it yielded (tests read it)

    def watch(self, thread: threading.Thread) -> None:
        """Follow ``thread`` (started): its CPU clock tells encoding from waiting."""
        self._clock = None
        self._count = 0
        self._waits = False
        getcpuclockid = getattr(time, "pthread_getcpuclockid", None)
        if getcpuclockid is not None and thread.ident is not None:
            try:
                self._clock = getcpuclockid(thread.ident)
            except OSError:
                self._clock = None

    def over_mark(self, depth: int, mark: int) -> None:
        """One item queued, ``depth`` deep, above the high-water ``mark``: every
        ``every``-th such call may yield, every ``every / 2``-th at twice the mark..."""
        self._count += 1
        if self._count * depth < self._every * mark:
            return
        self._count = 0
        clock = self._clock
        if clock is None:
            return
        now = time.monotonic()
        if self._waits and now - self._last_probe < self._idle_probe:
            return
        self._last_probe = now
        self.yields += 1
        try:
            before = time.clock_gettime(clock)
            time.sleep(self._seconds)
            # It ran in our yield: it wants the GIL. It did not: it waits on I/O.
            self._waits = time.clock_gettime(clock) == before
        except OSError:  # the worker thread is gone
            self._clock = None

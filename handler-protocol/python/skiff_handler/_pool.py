"""The worker threads that run sync functions."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Deque, List, Optional

from ._task import log


class _WorkerPool:
    """Threads for sync functions, reused from task to task and woken sparingly.

    Jobs wait in one queue. While functions return fast, the thread that runs one takes the
    next itself (no hand-off, no GIL ping-pong) and holds its results until it takes the last
    queued job or finds none (``flush``, the last ``submit_many``'s, sends them). One idle
    thread watches meanwhile: when the oldest job has waited ``patience`` seconds (a function
    blocks), it flushes, takes that job and wakes idle threads for the others, and the next
    idle thread watches. While most functions take over ``_SLOW`` seconds (they block), every
    job wakes an idle thread at once and every result leaves at once. A thread is added only
    when none is idle: never more than the most jobs that ran at once (``capacity``, plus
    cancelled ones that had not returned yet) and a watcher.
    """

    def __init__(self, patience: float = 0.01) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._jobs: "Deque[tuple[float, Callable[[], None]]]" = deque()
        self._idle = 0  # threads waiting for a job (or starting)
        self._busy = 0  # threads running jobs
        self._watching = False
        self._summoned = False  # a thread was woken (or started) to watch
        self._slow = 0.0  # share of recent jobs that took over _SLOW (moving average)
        self.patience = patience  # above the GIL's switch interval: a fast job never waits it
        self.threads = 0
        self.flush: Optional[Callable[[], None]] = None

    def submit(self, job: Callable[[], None]) -> None:
        self.submit_many([job])

    def submit_many(self, jobs: "List[Callable[[], None]]",
                    flush: Optional[Callable[[], None]] = None) -> None:
        now = time.monotonic()
        with self._cond:
            if flush is not None:
                self.flush = flush
            self._jobs.extend([(now, job) for job in jobs])
            if self._slow > 0.5:  # blocking functions: a thread each, now
                self._wake(len(jobs))
            elif self._idle == 0:
                self._spawn()
            elif self._busy == 0 or not self._watching:
                self._cond.notify()

    def _wake(self, n: int) -> None:
        """Idle threads for ``n`` jobs, new ones for the rest (caller holds the lock)."""
        woken = min(n, self._idle)
        self._cond.notify(woken)
        for _ in range(n - woken):
            self._spawn()

    def _spawn(self) -> None:
        """A new thread (caller holds the lock); it counts as idle until it takes a job."""
        self.threads += 1
        self._idle += 1
        threading.Thread(target=self._work, name=f"skiff-worker-{self.threads}",
                         daemon=True).start()

    def _work(self) -> None:
        cond, jobs = self._cond, self._jobs
        with cond:
            while True:
                self._summoned = False  # whoever was summoned is here (or another thread)
                late = jobs and time.monotonic() - jobs[0][0] >= self.patience
                if jobs and (self._busy == 0 or self._slow > 0.5 or late):
                    if late and len(jobs) > 1:
                        self._wake(min(len(jobs) - 1, self._idle))  # the others are late too
                    self._idle -= 1
                    self._busy += 1
                    self._run_jobs()
                    self._busy -= 1
                    self._idle += 1
                elif jobs and self._busy and not self._watching:
                    self._watching = True
                    woken = cond.wait(self.patience)
                    self._watching = False
                    if not woken:
                        self._unlocked(self.flush)  # results a blocked thread held
                else:
                    cond.wait()

    def _run_jobs(self) -> None:
        """Run queued jobs until none is left (caller holds the lock, held again on return)."""
        jobs = self._jobs
        while jobs:
            job = jobs.popleft()[1]
            flush = None
            if not jobs:
                flush = self.flush  # what this thread held leaves before the last job runs
            elif not self._watching and not self._summoned:
                self._summoned = True  # the thread woken (or started) watches
                if self._idle:
                    self._cond.notify()
                else:
                    self._spawn()
            self._cond.release()
            try:
                if flush is not None:
                    flush()
                start = time.monotonic()
                job()
                slow = time.monotonic() - start > _SLOW
            except Exception:  # never let a worker die silently
                log.exception("a worker job failed")
                slow = False
            finally:
                self._cond.acquire()
            self._slow += (slow - self._slow) / 16
            if self._slow > 0.5:
                self._unlocked(self.flush)  # blocking functions: no result waits for the next
        self._unlocked(self.flush)

    def _unlocked(self, fn: Optional[Callable[[], None]]) -> None:
        """Call ``fn`` without the lock (caller holds it)."""
        if fn is None:
            return
        self._cond.release()
        try:
            fn()
        except Exception:
            log.exception("flushing results failed")
        finally:
            self._cond.acquire()


_SLOW = 0.001  # a job that takes longer blocks (a GIL wait rarely makes a fast one as slow)

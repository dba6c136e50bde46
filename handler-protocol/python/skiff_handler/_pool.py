"""The worker threads that run sync functions."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable, Deque, List, Optional

from ._task import log


class _WorkerPool:
    """Threads for sync functions, reused from task to task and woken sparingly.

    Jobs wait in one queue. While functions return fast, the thread that runs one takes the
    next itself (no hand-off, no GIL ping-pong). What jobs return is held and handed to
    ``finish`` (the last ``submit_many``'s) in one call: every ``_CHUNK`` jobs, before the
    last queued job runs, and when the queue is empty. One idle thread watches meanwhile: when
    the oldest job has waited ``patience`` seconds (a function blocks), it hands over what is
    held, takes that job and wakes idle threads for the others, and the next idle thread
    watches. While most jobs take over ``_SLOW`` seconds (they block), every job wakes an idle
    thread at once and what it returns is handed over at once. A thread is added only when
    none is idle: never more than the most jobs that ran at once (``capacity``, plus cancelled
    ones that had not returned yet) and a watcher.
    """

    def __init__(self, patience: float = 0.01) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._jobs: "Deque[tuple[float, Callable[[], Any]]]" = deque()
        self._held: List[Any] = []  # what jobs returned, not handed to finish yet
        self._idle = 0  # threads waiting for a job (or starting)
        self._busy = 0  # threads running jobs
        self._watching = False
        self._summoned = False  # a thread was woken (or started) to watch
        self._slow = 0.0  # share of recent jobs that took over _SLOW (moving average)
        self.patience = patience  # above the GIL's switch interval: a fast job never waits it
        self.threads = 0
        self.finish: Optional[Callable[[List[Any]], None]] = None

    def submit(self, job: Callable[[], Any]) -> None:
        self.submit_many([job])

    def submit_many(self, jobs: "List[Callable[[], Any]]",
                    finish: Optional[Callable[[List[Any]], None]] = None) -> None:
        """Queue jobs; ``finish`` takes the list of what they return (None left out)."""
        now = time.monotonic()
        with self._cond:
            if finish is not None:
                self.finish = finish
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
                        self._hand_over()  # what a blocked thread's earlier jobs returned
                else:
                    cond.wait()

    def _run_jobs(self) -> None:
        """Run queued jobs until none is left (caller holds the lock, held again on return)."""
        jobs, held = self._jobs, self._held
        while jobs:
            job = jobs.popleft()[1]
            if not jobs or len(held) >= _CHUNK:
                self._hand_over()  # nothing waits for this job (or enough waited)
            elif not self._watching and not self._summoned:
                self._summoned = True  # the thread woken (or started) watches
                if self._idle:
                    self._cond.notify()
                else:
                    self._spawn()
            self._cond.release()
            try:
                start = time.monotonic()
                out = job()
                slow = time.monotonic() - start > _SLOW
            except Exception:  # never let a worker die silently
                log.exception("a worker job failed")
                out, slow = None, False
            finally:
                self._cond.acquire()
            held = self._held
            if out is not None:
                held.append(out)
            self._slow += (slow - self._slow) / 16
            if self._slow > 0.5:
                self._hand_over()  # blocking functions: nothing waits for the next
        self._hand_over()

    def _hand_over(self) -> None:
        """Give what is held to ``finish``, without the lock (caller holds it)."""
        if not self._held or self.finish is None:
            return
        held, self._held = self._held, []
        finish = self.finish
        self._cond.release()
        try:
            finish(held)
        except Exception:
            log.exception("handing over results failed")
        finally:
            self._cond.acquire()


_SLOW = 0.001  # a job that takes longer blocks (a GIL wait rarely makes a fast one as slow)
_CHUNK = 16  # results handed over together at most while jobs are still queued

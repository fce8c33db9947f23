"""Latest request wins: one worker thread and a one-job waiting slot.

A render that arrives while another is running waits in the slot; a newer one replaces it and the replaced
request is answered `Superseded` at once. So a slider dragged through 100 values costs at most two renders
beyond the one running (the running one and the last value), and the queue can never grow.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError


class Superseded(Exception):
    """The job was replaced by a newer one before it started."""


def drop(future: Future) -> None:
    """Answer a waiting job Superseded (unless its requester already gave up and cancelled it)."""
    try:
        future.set_exception(Superseded())
    except InvalidStateError:
        pass


class LatestWins:
    def __init__(self, name: str = "explore-render"):
        self._cond = threading.Condition()
        self._slot: tuple[Callable[[], object], Future] | None = None
        self._closed = False
        self.completed = 0  # Jobs run (successfully or not).
        self.superseded = 0  # Jobs answered Superseded without running.
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], object]) -> Future:
        """Run fn on the worker when it is free, unless a newer submit comes first."""
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the render worker is shut down")
            if self._slot is not None:
                drop(self._slot[1])
                self.superseded += 1
            self._slot = (fn, future)
            self._cond.notify()
        return future

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._slot is None and not self._closed:
                    self._cond.wait()
                if self._slot is None:
                    return
                fn, future = self._slot
                self._slot = None
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as e:  # Handed to the waiting request, which turns it into a reply.
                future.set_exception(e)
            finally:
                with self._cond:
                    self.completed += 1

    def close(self, timeout: float | None = 5.0) -> None:
        with self._cond:
            self._closed = True
            if self._slot is not None:
                drop(self._slot[1])
                self._slot = None
            self._cond.notify_all()
        self._thread.join(timeout)

"""How many tutor requests the server takes at once: a bounded line, never an unbounded queue.

The tutor answers ``parallel`` requests at a time (their sequences decode together in llama.cpp's slots) and lets
``waiting`` more wait for a turn; the request after those gets 503 with a Retry-After header, so a classroom's
burst is told when to come back instead of piling up until every request times out.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from contextlib import contextmanager

from fastapi import HTTPException


class TutorBusy(HTTPException):
    """503: the line is full (the API answers it as JSON with Retry-After; the web UI shows the message)."""

    def __str__(self) -> str:
        return str(self.detail)


class TutorGate:
    def __init__(self, parallel: int, waiting: int):
        self.parallel, self.waiting = parallel, waiting
        self.active = 0
        self._lock = threading.Lock()
        self._seconds: deque[float] = deque(maxlen=20)  # the last answers' durations, for Retry-After

    @property
    def limit(self) -> int:
        return self.parallel + self.waiting

    def retry_after(self) -> int:
        """Seconds until a place in the line is likely free. The durations kept are each request's time in the line
        (waiting included), so by Little's law places free at ``active / typical`` a second: one frees in about
        ``typical / active`` seconds (a full line of 0.6 s answers said 13 s when waits were counted as turns)."""
        typical = sorted(self._seconds)[len(self._seconds) // 2] if self._seconds else 10.0
        return max(1, math.ceil(typical / max(self.active, 1)))

    def enter(self) -> float:
        """Take a place, or raise 503 (JSON body, Retry-After) when ``limit`` requests are already in."""
        with self._lock:
            if self.active >= self.limit:
                raise TutorBusy(status_code=503, headers={"Retry-After": str(self.retry_after())},
                                    detail=f"the tutor is busy: {self.active} requests are being answered or waiting "
                                           f"(limit {self.limit}); try again in {self.retry_after()} s")
            self.active += 1
        return time.perf_counter()

    def leave(self, started: float) -> None:
        with self._lock:
            self.active -= 1
            self._seconds.append(time.perf_counter() - started)

    @contextmanager
    def place(self):
        started = self.enter()
        try:
            yield
        finally:
            self.leave(started)

"""Teachers who ask the tutor the same thing share one answer.

A classroom works one worksheet: thirty students may ask the same problem within a minute. Every tutor answer the
server makes is deterministic by contract (greedy decoding; a vote's samples have fixed seeds), so the same
question, with the same context, solving settings and token budget, has one answer to give. ``SharedAnswers`` keeps
the last ``size`` finished answers, and a request for an answer still being made waits for that one instead of
making it again: it takes no place in the tutor's line and no decode slot.

An answer cut short is never kept: one stopped because everyone who asked for it went away, or a vote cut by its
time budget (asked again on a quieter server, it may finish). A generation stops early only when the last of the
requests waiting on it is gone; one teacher closing the page does not stop another's answer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Literal

Reuse = Literal["none", "cache", "joined"]
POLL_SECONDS = 0.05  # how often a waiting request looks at its own stop signal (its client gone)


def answer_key(question: str, context, solving, budget: int) -> str:
    """What makes two requests the same request: the prompt as solved, its retrieved context, the solving settings
    (mode, samples, seeds' base, time budget...) and the token budget."""
    settings = solving.model_dump(mode="json") if hasattr(solving, "model_dump") else solving
    text = json.dumps([question, repr(context), settings, budget], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class _Making:
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    stop: threading.Event = field(default_factory=threading.Event)
    waiters: int = 0


class SharedAnswers:
    def __init__(self, size: int = 256, keep: Callable[[object], bool] | None = None):
        self.size = size
        self.keep = keep or (lambda solution: not getattr(solution, "out_of_time", False))
        self._done: OrderedDict[str, object] = OrderedDict()
        self._making: dict[str, _Making] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.size > 0

    def __len__(self) -> int:
        return len(self._done)

    def clear(self) -> None:
        with self._lock:
            self._done.clear()

    def _finished(self, key: str, making: _Making, task: asyncio.Future) -> None:
        with self._lock:
            self._making.pop(key, None)
            if task.cancelled():
                making.future.cancel()
                return
            error = task.exception()
            if error is not None:
                making.future.set_exception(error)
                return
            solution = task.result()
            if not making.stop.is_set() and self.keep(solution):
                self._done[key] = solution
                self._done.move_to_end(key)
                while len(self._done) > self.size:
                    self._done.popitem(last=False)
        making.future.set_result(solution)

    async def answer(self, key: str, make: Callable[[threading.Event], Awaitable[object]],
                     stop: threading.Event | None = None) -> tuple[object, Reuse]:
        """The answer for ``key``: a finished one ("cache"), the one being made ("joined"), else ``make(stop)``'s
        ("none"), where the ``stop`` given to ``make`` is set once every request waiting on it has gone (each
        request's own ``stop``, or its cancellation)."""
        if not self.enabled:
            return await make(stop or threading.Event()), "none"
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                return self._done[key], "cache"
            making = self._making.get(key)
            reuse: Reuse = "joined" if making is not None else "none"
            if making is None:
                making = self._making[key] = _Making()
            making.waiters += 1
        if reuse == "none":
            task = asyncio.ensure_future(make(making.stop))
            task.add_done_callback(lambda t: self._finished(key, making, t))
        gone = False

        def leave() -> None:
            nonlocal gone
            if gone:
                return
            gone = True
            with self._lock:
                making.waiters -= 1
                if making.waiters <= 0 and not making.future.done():
                    making.stop.set()  # nobody is waiting for it any more: its sequences are freed at the next token

        waiting = asyncio.wrap_future(making.future)
        try:
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=POLL_SECONDS)
                if done:
                    return waiting.result(), reuse
                if stop is not None and stop.is_set():
                    leave()  # the asker is gone; what it gets back is read by nobody, but comes when the answer does
        finally:
            leave()

"""Teachers who ask the tutor the same thing at the same time share one answer.

A classroom works one worksheet: many students may ask the same problem at once. Every tutor answer the server
makes is deterministic by contract (greedy decoding; a vote's samples have fixed seeds), so the same question, with
the same context, solving settings and token budget, has one answer to give. A request for an answer still being
made waits for that one instead of making it again ("joined"): it uses no decode slot, though it still holds its
place in the tutor's line (the line's limit and its 503 stay what they say). ``SharedAnswers`` can also keep the
last ``size`` finished answers to give again at once ("cache"; off unless the server is told a size).

An answer cut short is never kept: one stopped because everyone who asked for it went away, or a vote cut by its
time budget (asked again on a quieter server, it may finish). A generation stops early only when the last of the
requests waiting on it is gone; one teacher closing the page does not stop another's answer.

Token streams are shared the same way (``stream``): a request that joins a stream being written gets every piece
written so far at once, then each new one as it comes; a kept stream is given again piece by piece at once. Only
deterministic streams are shared (greedy, or sampled with a given seed): the caller decides.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

Reuse = Literal["none", "cache", "joined"]
S = TypeVar("S", bound="_Shared")
POLL_SECONDS = 0.05  # how often a waiting request looks at its own stop signal (its client gone)


def answer_key(question: str, context, solving, budget: int, seed: int = 0) -> str:
    """What makes two requests the same request: the prompt as solved, its retrieved context, the solving settings
    (mode, samples, temperature, time budget...), the token budget and a vote's seed."""
    settings = solving.model_dump(mode="json") if hasattr(solving, "model_dump") else solving
    text = json.dumps([question, repr(context), settings, budget, seed], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class _Shared:
    """What is being made for the requests waiting on it: they set nothing but ``waiters``; the last to go sets
    ``stop`` (the maker may set it itself when it ends, so ``abandoned`` says why it was set)."""
    stop: threading.Event = field(default_factory=threading.Event)
    waiters: int = 0
    abandoned: bool = False

    @property
    def over(self) -> bool:
        raise NotImplementedError


@dataclass
class _Making(_Shared):
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)

    @property
    def over(self) -> bool:
        return self.future.done()


@dataclass
class _Streaming(_Shared):
    pieces: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    finished: bool = False
    error: BaseException | None = None

    @property
    def over(self) -> bool:
        return self.finished


@dataclass(frozen=True)
class _Stream:
    """A finished stream, kept: its pieces and what its writer said of it (``info``)."""
    pieces: tuple
    info: dict


class SharedAnswers:
    def __init__(self, size: int = 0, keep: Callable[[object], bool] | None = None, join: bool = True):
        self.size, self.join = size, join
        self.keep = keep or (lambda solution: not getattr(solution, "out_of_time", False))
        self._done: OrderedDict[str, object] = OrderedDict()
        self._making: dict[str, _Making] = {}
        self._streams: dict[str, _Streaming] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.join or self.size > 0

    def __len__(self) -> int:
        return len(self._done)

    def kept(self, key: str) -> bool:
        """Whether the answer or stream for ``key`` is kept: a request for it now is answered at once."""
        with self._lock:
            return key in self._done

    def clear(self) -> None:
        with self._lock:
            self._done.clear()

    def _enter(self, table: dict[str, S], key: str, new: Callable[[], S]) -> tuple[S, Reuse]:
        """Under the lock: the entry being made for ``key`` with one more waiter ("joined"), else a new one ("none"),
        which the next request for ``key`` joins when joining is on."""
        entry = table.get(key) if self.join else None
        reuse: Reuse = "joined" if entry is not None else "none"
        if entry is None:
            entry = new()
            if self.join:
                table[key] = entry
        entry.waiters += 1
        return entry, reuse

    def _leave(self, entry: _Shared) -> None:
        """A waiter has gone; the last one stops the making (its sequences are freed at the next token)."""
        with self._lock:
            entry.waiters -= 1
            if entry.waiters <= 0 and not entry.over:
                entry.abandoned = True
                entry.stop.set()

    def _ended(self, table: dict, key: str, entry: _Shared, value, keep: bool) -> None:
        """Under the lock: ``entry`` is made; ``value`` is kept (the oldest kept one going) when ``keep`` allows."""
        if table.get(key) is entry:
            table.pop(key)
        if keep and not entry.abandoned and self.size > 0:
            self._done[key] = value
            self._done.move_to_end(key)
            while len(self._done) > self.size:
                self._done.popitem(last=False)

    def _finished(self, key: str, making: _Making, task: asyncio.Future) -> None:
        with self._lock:
            if task.cancelled() or task.exception() is not None:
                self._ended(self._making, key, making, None, keep=False)
                if task.cancelled():
                    making.future.cancel()
                else:
                    making.future.set_exception(task.exception())
                return
            solution = task.result()
            self._ended(self._making, key, making, solution, keep=self.keep(solution))
        making.future.set_result(solution)

    async def answer(self, key: str, make: Callable[[threading.Event], Awaitable[object]],
                     stop: threading.Event | None = None) -> tuple[object, Reuse]:
        """The answer for ``key``: a finished one ("cache"), the one being made ("joined"), else ``make(stop)``'s
        ("none"), where the ``stop`` given to ``make`` is set once every request waiting on it has gone (each
        request's own ``stop``, or its cancellation)."""
        if not self.enabled:
            return await make(stop or threading.Event()), "none"
        with self._lock:
            if key in self._done and not isinstance(self._done[key], _Stream):
                self._done.move_to_end(key)
                return self._done[key], "cache"
            making, reuse = self._enter(self._making, key, _Making)
        if reuse == "none":
            task = asyncio.ensure_future(make(making.stop))
            task.add_done_callback(lambda t: self._finished(key, making, t))
        gone = False

        def leave() -> None:
            nonlocal gone
            if not gone:
                gone = True
                self._leave(making)

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

    async def stream(self, key: str, make: Callable[[threading.Event, dict], AsyncIterator[str]], info: dict,
                     cancel: threading.Event | None = None) -> AsyncIterator[str]:
        """The pieces of the stream for ``key``: kept ones, those of the stream being written (from its first piece),
        else ``make(cancel, info)``'s. At the end ``info`` holds what the writer said (``info["reused"]``: none,
        cache or joined). The writing stops at its next piece once every reader has gone (closed its iterator, or
        set its own ``cancel``); a stream stopped so, or one that failed, is not kept."""
        if not self.enabled:
            info["reused"] = "none"
            async for piece in make(cancel or threading.Event(), info):
                yield piece
            return
        with self._lock:
            kept = self._done.get(key)
            if isinstance(kept, _Stream):
                self._done.move_to_end(key)
            else:
                kept = None
                streaming, reuse = self._enter(self._streams, key, _Streaming)
        if kept is not None:
            for piece in kept.pieces:
                yield piece
            info.update(kept.info, reused="cache")
            return
        if reuse == "none":
            asyncio.ensure_future(self._write(key, streaming, make))
        gone = False

        def leave() -> None:
            nonlocal gone
            if not gone:
                gone = True
                self._leave(streaming)

        read = 0
        try:
            while True:
                finished = streaming.finished
                while read < len(streaming.pieces):
                    yield streaming.pieces[read]
                    read += 1
                if finished or (cancel is not None and cancel.is_set()):
                    break
                await asyncio.sleep(POLL_SECONDS / 2)
            if streaming.error is not None and not (cancel is not None and cancel.is_set()):
                raise streaming.error
            info.update(streaming.info, reused=reuse)
        finally:
            leave()

    async def _write(self, key: str, streaming: _Streaming, make) -> None:
        try:
            async for piece in make(streaming.stop, streaming.info):
                streaming.pieces.append(piece)
        except Exception as error:  # noqa: BLE001 - every reader raises it
            streaming.error = error
        finally:
            with self._lock:
                streaming.finished = True
                self._ended(self._streams, key, streaming, _Stream(tuple(streaming.pieces), dict(streaming.info)),
                            keep=streaming.error is None)

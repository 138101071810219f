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
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable, Literal

Reuse = Literal["none", "cache", "joined"]
POLL_SECONDS = 0.05  # how often a waiting request looks at its own stop signal (its client gone)


def answer_key(question: str, context, solving, budget: int, seed: int = 0) -> str:
    """What makes two requests the same request: the prompt as solved, its retrieved context, the solving settings
    (mode, samples, temperature, time budget...), the token budget and a vote's seed."""
    settings = solving.model_dump(mode="json") if hasattr(solving, "model_dump") else solving
    text = json.dumps([question, repr(context), settings, budget, seed], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class _Making:
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    stop: threading.Event = field(default_factory=threading.Event)
    waiters: int = 0
    abandoned: bool = False  # everyone waiting for it went away (the maker may set ``stop`` itself when it ends)


@dataclass
class _Streaming:
    pieces: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)
    readers: int = 0
    abandoned: bool = False  # every reader went away (the writer sets ``cancel`` itself when it ends)
    finished: bool = False
    error: BaseException | None = None


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

    def _finished(self, key: str, making: _Making, task: asyncio.Future) -> None:
        with self._lock:
            if self._making.get(key) is making:
                self._making.pop(key)
            if task.cancelled():
                making.future.cancel()
                return
            error = task.exception()
            if error is not None:
                making.future.set_exception(error)
                return
            solution = task.result()
            if not making.abandoned and self.size > 0 and self.keep(solution):
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
            if key in self._done and not isinstance(self._done[key], _Stream):
                self._done.move_to_end(key)
                return self._done[key], "cache"
            making = self._making.get(key) if self.join else None
            reuse: Reuse = "joined" if making is not None else "none"
            if making is None:
                making = _Making()
                if self.join:
                    self._making[key] = making
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
                    making.abandoned = True
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
                streaming = self._streams.get(key) if self.join else None
                reuse: Reuse = "joined" if streaming is not None else "none"
                if streaming is None:
                    streaming = _Streaming()
                    if self.join:
                        self._streams[key] = streaming
                streaming.readers += 1
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
                with self._lock:
                    streaming.readers -= 1
                    if streaming.readers <= 0 and not streaming.finished:
                        streaming.abandoned = True
                        streaming.cancel.set()

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
            async for piece in make(streaming.cancel, streaming.info):
                streaming.pieces.append(piece)
        except Exception as error:  # noqa: BLE001 - every reader raises it
            streaming.error = error
        finally:
            with self._lock:
                streaming.finished = True
                if self._streams.get(key) is streaming:
                    self._streams.pop(key)
                if streaming.error is None and not streaming.abandoned and self.size > 0:
                    self._done[key] = _Stream(tuple(streaming.pieces), dict(streaming.info))
                    self._done.move_to_end(key)
                    while len(self._done) > self.size:
                        self._done.popitem(last=False)

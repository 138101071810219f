"""Answers cut by the end of the server's graceful window (SIGTERM, then ``shutdown_grace_s``): uvicorn cancels
the requests still running, and without this a JSON client got a plain-text 500 and a stream ended with neither a
``done`` nor an ``error`` event. Streams end themselves just before the window closes (``Stopping``, set by the
server: ``until_stopped``) with their ``error`` event; the outermost middleware ends any other request that the
cancellation reaches as the API ends any failure: a JSON 503 with Retry-After."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncGenerator, AsyncIterator

import uvicorn

SHUTTING_DOWN = "the server is shutting down; ask again in a moment"


class Stopping:
    """Set when the server's graceful window is about to end (GracefulServer arms it on SIGTERM). A thread-safe
    flag, not an asyncio.Event: the app may serve from more than one event loop (a test client does)."""

    def __init__(self) -> None:
        self.flag = threading.Event()

    def is_set(self) -> bool:
        return self.flag.is_set()

    def arm(self, seconds: float) -> None:
        """Set in ``seconds`` (called on the server's event loop)."""
        asyncio.get_running_loop().call_later(max(seconds, 0.0), self.flag.set)


def stopped_event() -> str:
    return f"event: error\ndata: {json.dumps({'error': SHUTTING_DOWN})}\n\n"


async def until_stopped(events: AsyncGenerator[str, None], stopping: Stopping,
                        check_every: float = 0.25) -> AsyncIterator[str]:
    """``events`` until ``stopping`` is set, then the stream's ``error`` event and the end. Each next event is
    awaited in a task of its own, so a vote that sends nothing for a minute still sees the flag; stopping or a
    client gone cancels that task, which ends the generation behind it at its next token."""
    following = None
    try:
        while not stopping.is_set():
            following = asyncio.ensure_future(events.__anext__())
            while not following.done() and not stopping.is_set():
                await asyncio.wait({following}, timeout=check_every)
            if not following.done():
                break
            try:
                event = following.result()
            except StopAsyncIteration:
                return
            following = None
            yield event
        yield stopped_event()
    finally:
        if following is not None and not following.done():
            following.cancel()  # its task runs the generator's own clean-up (a place in the line, the cancel flag)
        else:
            await events.aclose()


class EndCutAnswers:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = {"started": False, "stream": False, "done": False}

        async def tracked(message):
            if message["type"] == "http.response.start":
                state["started"] = True
                content_type = dict(message.get("headers") or []).get(b"content-type", b"")
                state["stream"] = content_type.startswith(b"text/event-stream")
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["done"] = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if not state["done"]:
                await _end(send, state)
            raise


async def _end(send, state: dict) -> None:
    try:
        if not state["started"]:
            body = json.dumps({"error": SHUTTING_DOWN}).encode()
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", b"5"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
        elif state["stream"]:
            await send({"type": "http.response.body", "body": stopped_event().encode()})
    except Exception:  # noqa: BLE001 - the client may be gone already: nothing more to tell it
        pass


class GracefulServer(uvicorn.Server):
    """uvicorn's server that, on SIGTERM, has the tutor's streams end with their error event half a second before
    the graceful window closes, rather than be cut mid-event."""

    def __init__(self, config: uvicorn.Config, stopping: Stopping) -> None:
        super().__init__(config)
        self.stopping = stopping

    async def shutdown(self, sockets=None) -> None:
        self.stopping.arm((self.config.timeout_graceful_shutdown or 30) - 0.5)
        await super().shutdown(sockets)


"""Answers cut by the end of the server's graceful window (SIGTERM, then ``shutdown_grace_s``): uvicorn cancels
the requests still running, and without this a JSON client got a plain-text 500 and a stream ended with neither a
``done`` nor an ``error`` event. The outermost middleware ends each one as the API ends any failure: a JSON 503
with Retry-After, or the stream's ``error`` event."""

from __future__ import annotations

import asyncio
import json

SHUTTING_DOWN = "the server is shutting down; ask again in a moment"


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
            event = f"event: error\ndata: {json.dumps({'error': SHUTTING_DOWN})}\n\n".encode()
            await send({"type": "http.response.body", "body": event})
    except Exception:  # noqa: BLE001 - the client may be gone already: nothing more to tell it
        pass

"""Errors of the OpenAI-compatible routes in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

Every error the app makes is ``{"error": MESSAGE, "details"?: [...]}`` (serve/guards.py), whichever layer makes it
(the key check, the body guard, a route, the tutor's line); on /v1/chat/completions and /v1/models this middleware
rewrites it, so an OpenAI client reads every failure the way it reads OpenAI's. A request OpenAI would call invalid
(422 here) is 400 there.
"""

from __future__ import annotations

import json

OPENAI_PATHS = ("/v1/chat/completions", "/v1/models")
TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
         404: "not_found_error", 408: "invalid_request_error", 413: "invalid_request_error",
         429: "rate_limit_error", 503: "server_error"}
CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded", 503: "overloaded"}


def openai_error(status: int, body: dict) -> tuple[int, dict]:
    """The status and body an OpenAI client expects for ``body`` (mathtune's error)."""
    status = 400 if status == 422 else status
    error, listed = body.get("error"), body.get("details")
    message: str = error if isinstance(error, str) else json.dumps(body)[:500]
    details: list = listed if isinstance(listed, list) else []
    param = next((d.get("field") for d in details if isinstance(d, dict) and d.get("field")), None)
    code = "model_not_found" if status == 404 and "model" in message else CODES.get(status)
    return status, {"error": {"message": message, "type": TYPES.get(status, "server_error" if status >= 500 else
                                                                    "invalid_request_error"),
                              "param": param, "code": code}}


class OpenAIErrors:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(OPENAI_PATHS):
            return await self.app(scope, receive, send)
        held: dict = {}

        async def rewrite(message):
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held["start"], held["body"] = message, b""
                return
            if "start" not in held:
                return await send(message)
            held["body"] += message.get("body", b"")
            if message.get("more_body"):
                return
            try:
                status, body = openai_error(held["start"]["status"], json.loads(held["body"] or b"{}"))
                data = json.dumps(body).encode()
            except ValueError:  # not JSON: passed on as it is
                status, data = held["start"]["status"], held["body"]
            headers = [(k, v) for k, v in held["start"].get("headers", []) if k.lower() != b"content-length"]
            await send({**held["start"], "status": status, "headers": [*headers, (b"content-length",
                                                                                  str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": data})

        await self.app(scope, receive, rewrite)

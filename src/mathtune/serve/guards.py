"""Limits and access: API key, body size and deadline, batch size, text length; every error is JSON."""

from __future__ import annotations

import asyncio
import json
import logging
import re

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import MathtuneError, problem_text
from .settings import ServeSettings

log = logging.getLogger(__name__)


def error_body(status: int, message: str, details=None, headers: dict | None = None) -> JSONResponse:
    body = {"error": message}
    if details is not None:
        body["details"] = details
    return JSONResponse(status_code=status, content=body, headers=headers)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
def lone_surrogate_path(value, path: str = "body") -> str | None:
    """Where a decoded JSON value holds a lone surrogate (valid JSON, not valid Unicode), or None."""
    stack = [(value, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return where
        elif isinstance(node, dict):
            stack.extend((v, f"{where}.{k}") for k, v in node.items())
            stack.extend((k, f"{where} (a key)") for k in node if isinstance(k, str))
        elif isinstance(node, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(node))
    return None


class RequestGuard:
    """Bodies under control before any route sees them: the size limit counted as the body streams in (chunked
    bodies too), a deadline for the whole body (a client sending a byte every few seconds gets 408 and is dropped),
    and JSON text that is not valid Unicode (lone surrogates) answered with 422. The body is then replayed."""

    def __init__(self, app, settings: ServeSettings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        limit = self.settings.max_body_bytes
        if scope["path"].startswith("/ui/") and scope["path"].endswith("/upload"):
            limit = self.settings.max_upload_bytes  # the web UI's CSV files
        length = headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            return await error_body(413, f"request body of {length} bytes is over the limit of {limit}; send fewer "
                                         f"items per request")(scope, receive, send)
        chunks, size = [], 0
        deadline = asyncio.get_running_loop().time() + self.settings.body_timeout_s
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(remaining, 0.001))
            except asyncio.TimeoutError:
                return await error_body(408, f"the request body did not arrive within {self.settings.body_timeout_s:g} s; "
                                             f"send it at once", headers={"Connection": "close"})(scope, receive, send)
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return await error_body(413, f"request body is over the limit of {limit} bytes",
                                        headers={"Connection": "close"})(scope, receive, send)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        # only bodies that contain an escaped surrogate (\ud800-\udfff) are decoded here; the route parses the rest
        if "json" in headers.get("content-type", "") and _SURROGATE_ESCAPE.search(body):
            try:
                where = lone_surrogate_path(json.loads(body))
            except (ValueError, RecursionError):
                where = None  # malformed JSON: the route's own validation answers 422
            if where:
                return await error_body(422, f"{where} is not valid Unicode (a lone surrogate such as \\ud800); "
                                             f"send UTF-8 text")(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: disconnect notices (streamed answers stop on them)

        await self.app(scope, replay, send)


def check_batch(texts: list[str], settings: ServeSettings, field: str) -> None:
    if len(texts) > settings.max_batch:
        raise HTTPException(status_code=413, detail=f"{field}: {len(texts)} items is over the limit of {settings.max_batch} per request")
    for i, text in enumerate(texts):
        if not str(text).strip():
            raise HTTPException(status_code=422, detail=f"{field}[{i}] is empty; send the text to classify")
        if len(str(text)) > settings.max_text_chars:
            raise HTTPException(status_code=422, detail=f"{field}[{i}] has {len(str(text))} characters, over the limit of {settings.max_text_chars}")


def _detail(error: dict) -> dict:
    """One validation error as the 422 body lists it: the field and what is wrong with it."""
    if error.get("type") == "json_invalid":  # its location is a character offset into the body, not a field
        at = error["loc"][-1] if len(error["loc"]) > 1 else None
        why = (error.get("ctx") or {}).get("error") or error.get("msg", "")
        where = f" at character {at}" if isinstance(at, int) else ""
        return {"field": "", "problem": f"not valid JSON{where} ({why}); send a JSON object, with "
                                        "Content-Type: application/json"}
    return {"field": ".".join(str(p) for p in error["loc"] if p != "body"), "problem": problem_text(error)}


def install_error_handlers(app, internal: bool = True) -> None:
    """Errors as ``{"error": ...}``; ``internal``: also an unexpected exception as a JSON 500 (the outermost app;
    a mounted app's own failures reach it)."""
    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError):
        details = [_detail(e) for e in exc.errors()]
        message = "; ".join(f"{d['field'] or 'body'}: {d['problem']}" for d in details[:5])
        return error_body(422, f"invalid request: {message}", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.url.path}; see /docs for the API"
        return error_body(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(MathtuneError)
    async def user_error(request: Request, exc: MathtuneError):
        from ..models.openai_engine import EngineUnavailable

        if isinstance(exc, EngineUnavailable):  # the tutor's remote engine is down: not the request's fault
            return error_body(503, f"the tutor's engine is unavailable: {exc}", headers={"Retry-After": "10"})
        return error_body(422, str(exc))

    if not internal:
        return

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        # a bug, not bad input: logged with its traceback, answered as JSON without paths or internals
        request_id = getattr(request.state, "request_id", None)
        log.error("internal error on %s %s (request %s)", request.method, request.url.path, request_id, exc_info=exc)
        return error_body(500, f"internal error (request id {request_id}); the server log has the details")

"""Limits and access: API key, body size, batch size, text length; every error is JSON."""

from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware

from ..errors import MathtuneError
from .settings import ServeSettings


def error_body(status: int, message: str, details=None) -> JSONResponse:
    body = {"error": message}
    if details is not None:
        body["details"] = details
    return JSONResponse(status_code=status, content=body)


class BodyLimitMiddleware(BaseHTTPMiddleware):
    """413 for bodies over the limit, by Content-Length or by what actually arrives."""

    def __init__(self, app, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    async def dispatch(self, request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_bytes:
            return error_body(413, f"request body of {length} bytes is over the limit of {self.max_bytes}; send fewer items per request")
        if request.method in ("POST", "PUT") and not length:
            body = await request.body()
            if len(body) > self.max_bytes:
                return error_body(413, f"request body is over the limit of {self.max_bytes} bytes")
        return await call_next(request)


def require_api_key(settings: ServeSettings):
    def check(request: Request) -> None:
        if not settings.api_key:
            return
        header = request.headers.get("authorization", "")
        if header != f"Bearer {settings.api_key}":
            raise HTTPException(status_code=401, detail="missing or wrong API key: send 'Authorization: Bearer <key>'")
    return check


def check_batch(texts: list[str], settings: ServeSettings, field: str) -> None:
    if len(texts) > settings.max_batch:
        raise HTTPException(status_code=413, detail=f"{field}: {len(texts)} items is over the limit of {settings.max_batch} per request")
    for i, text in enumerate(texts):
        if not str(text).strip():
            raise HTTPException(status_code=422, detail=f"{field}[{i}] is empty; send the text to classify")
        if len(str(text)) > settings.max_text_chars:
            raise HTTPException(status_code=422, detail=f"{field}[{i}] has {len(str(text))} characters, over the limit of {settings.max_text_chars}")


def install_error_handlers(app) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError):
        details = [{"field": ".".join(str(p) for p in e["loc"] if p != "body"), "problem": e["msg"]} for e in exc.errors()]
        message = "; ".join(f"{d['field'] or 'body'}: {d['problem']}" for d in details[:5])
        return error_body(422, f"invalid request: {message}", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.url.path}; see /docs for the API"
        return error_body(exc.status_code, message)

    @app.exception_handler(MathtuneError)
    async def user_error(request: Request, exc: MathtuneError):
        return error_body(422, str(exc))

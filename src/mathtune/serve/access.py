"""Who may use the server: the API key (as a bearer token), the web UI's signed session, and a limit on wrong
keys per client. One middleware applies it to every route but the probes and the key page."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import defaultdict, deque
from urllib.parse import unquote

from fastapi.responses import RedirectResponse
from starlette.datastructures import Headers

from .guards import error_body
from .settings import ServeSettings

PUBLIC_PATHS = frozenset({"/livez", "/readyz", "/ui/login", "/favicon.ico"})  # the probes, and the page that asks for the key
SESSION_COOKIE = "mathtune_session"
SESSION_SECONDS = 12 * 3600


def key_matches(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison (hmac.compare_digest), so response times do not reveal the key."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def bearer_token(headers: Headers) -> str | None:
    value = headers.get("authorization", "")
    return value[7:].strip() if value[:7].lower() == "bearer " else None


def cookie(headers: Headers, name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return unquote(value)
    return None


def _signature(key: str, issued: int) -> str:
    return hmac.new(key.encode("utf-8", "surrogatepass"), f"mathtune-ui-session:{issued}".encode(),
                    hashlib.sha256).hexdigest()


def new_session(key: str, now: float | None = None) -> str:
    """The web UI's cookie after a right key: when it was issued and an HMAC of that under the key. It holds no key,
    ends after SESSION_SECONDS, and every session ends when the key is changed."""
    issued = int(now if now is not None else time.time())
    return f"{issued}.{_signature(key, issued)}"


def session_valid(value: str | None, key: str, now: float | None = None) -> bool:
    issued, _, signature = (value or "").partition(".")
    if not issued.isdigit() or not signature:
        return False
    age = (now if now is not None else time.time()) - int(issued)
    return 0 <= age <= SESSION_SECONDS and hmac.compare_digest(signature, _signature(key, int(issued)))


class WrongKeys:
    """Wrong keys per client (its address) in the last minute; past ``limit`` a client's key attempts are not even
    checked until the oldest failure is a minute old (a 429 with Retry-After), so a key cannot be guessed at speed.
    A signed UI session keeps working meanwhile."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def retry_after(self, client: str, now: float | None = None) -> int | None:
        now = now if now is not None else time.monotonic()
        with self._lock:
            failures = self._failures.get(client)
            while failures and now - failures[0] > self.window:
                failures.popleft()
            if failures is not None and not failures:
                del self._failures[client]
            if failures and len(failures) >= self.limit:
                return max(1, int(self.window - (now - failures[0])) + 1)
        return None

    def failed(self, client: str, now: float | None = None) -> None:
        now = now if now is not None else time.monotonic()
        with self._lock:
            if len(self._failures) >= 10_000:  # many addresses guessing once each: forget those a minute old
                for stale in [c for c, f in self._failures.items() if now - f[-1] > self.window]:
                    del self._failures[stale]
            self._failures[client].append(now)


def client_of(scope) -> str:
    return (scope.get("client") or ("unknown",))[0]


class ApiKeyMiddleware:
    """One auth rule for the whole app: with a key set, every route but the probes and the UI's key page needs it,
    as 'Authorization: Bearer <key>' or the UI's signed session cookie (HttpOnly, SameSite=Strict). /metrics also
    takes the scraper's own MATHTUNE_METRICS_KEY when that is set. Wrong keys are limited per client (WrongKeys)."""

    def __init__(self, app, settings: ServeSettings, wrong_keys: WrongKeys) -> None:
        self.app, self.settings, self.wrong_keys = app, settings, wrong_keys

    def _session(self, headers: Headers) -> bool:
        key = self.settings.api_key
        return key is not None and session_valid(cookie(headers, SESSION_COOKIE), key)

    def _key(self, path: str, token: str | None) -> bool:
        return key_matches(token, self.settings.api_key) or \
            path == "/metrics" and key_matches(token, self.settings.metrics_key)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.settings.api_key or scope["path"] in PUBLIC_PATHS:
            return await self.app(scope, receive, send)
        headers, path, client = Headers(scope=scope), scope["path"], client_of(scope)
        if self._session(headers):
            return await self.app(scope, receive, send)
        token = bearer_token(headers)
        wait = self.wrong_keys.retry_after(client) if token else None
        if wait is not None:
            response = error_body(429, f"too many wrong API keys from this client; try again in {wait} s",
                                  headers={"Retry-After": str(wait)})
        elif self._key(path, token):
            return await self.app(scope, receive, send)
        elif path in ("/", "/ui", "/ui/"):
            response = RedirectResponse("/ui/login", status_code=303)
        else:
            if token:
                self.wrong_keys.failed(client)
            response = error_body(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                                  headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)

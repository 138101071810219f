"""The server's HTTP connections (uvicorn's h11 protocol, two bounds added): a request's headers must arrive within
``header_timeout_s`` of the connection opening or of the previous response, and one client (an address) may hold
at most ``max_connections_per_client`` connections. Without them 1,030 connections each sending a header every 5 s
held every place uvicorn gives (``limit_concurrency``) and the probes answered 503 (issue #46)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class _Open:
    """Open connections per client address, shared by every connection of a server."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()


def guarded_protocol(header_timeout_s: float, max_connections_per_client: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the two bounds: pass it as ``uvicorn.run(..., http=...)``."""
    open_ = _Open()

    class GuardedH11Protocol(H11Protocol):
        _address: str | None = None
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            address = self.client[0] if self.client else "unknown"
            with open_.lock:
                if open_.counts[address] >= max_connections_per_client:
                    transport.close()  # before any request: nothing to answer
                    return
                open_.counts[address] += 1
            self._address = address
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            if self._address is not None:
                with open_.lock:
                    open_.counts[self._address] -= 1
                    if open_.counts[self._address] <= 0:
                        del open_.counts[self._address]
                self._address = None
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()  # the next request's headers get the same time

        def _arm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(header_timeout_s, self._headers_late)

        def _headers_late(self) -> None:
            # still waiting for a request's line and headers (h11 leaves IDLE once they are all in)
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol

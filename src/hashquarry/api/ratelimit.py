"""Per-key and per-IP token buckets: 429 with Retry-After past the limit.

The buckets are pure state (the clock is passed in); the middleware is plain ASGI, as
it runs on every request. A refusal is in the asking dialect's own error format, so a
client of one dialect never has to parse another's body: f2pool's `{"code": 42901,
"msg": "rate_limited: ..."}`, Bitminter's `{"error": ...}`, SiaMining's and the
read-only pages' `{"error": "rate_limited", "message": ...}`, FastAPI's `{"detail": ...}`
elsewhere. Every one carries Retry-After (whole seconds, at least 1).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.responses import JSONResponse, Response

from hashquarry.api import siamining
from hashquarry.api.bitminter_http import BitminterError
from hashquarry.api.bitminter_http import error_response as bitminter_error
from hashquarry.api.dialects import dialect_of
from hashquarry.api.f2pool.errors import RATE_LIMITED, F2PoolError
from hashquarry.api.pages.errors import error_response as page_error

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, now: float) -> float:
        """0 if allowed, else the seconds until a token is available."""
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.clear()  # a flood of distinct keys must not grow memory
            b = self._buckets[key] = _Bucket(self.burst, now)
        b.tokens = min(self.burst, b.tokens + (now - b.updated) * self.rate)
        b.updated = now
        if b.tokens >= 1:
            b.tokens -= 1
            return 0.0
        return (1 - b.tokens) / self.rate


KEY_HEADERS = (b"f2p-api-secret", b"authorization")
MESSAGE = "too many requests; slow down"


def rate_limited(path: str, retry_after: int) -> Response:
    """The 429 answer in the dialect of `path`."""
    headers = {"Retry-After": str(retry_after)}
    dialect = dialect_of(path)
    if dialect == "f2pool":
        return F2PoolError(RATE_LIMITED, MESSAGE).response(headers)
    if dialect == "bitminter":
        return bitminter_error(BitminterError(429, MESSAGE, headers=headers))
    if dialect == "siamining":
        return siamining.error_response(429, "rate_limited", MESSAGE, headers)
    if dialect == "pages":
        return page_error(429, "rate_limited", MESSAGE, headers)
    return JSONResponse({"detail": MESSAGE}, status_code=429, headers=headers)


def _key_of(scope: Scope) -> str | None:
    """The API key a request presents (header first, then Bitminter's ?key=)."""
    for name, value in scope["headers"]:
        if name in KEY_HEADERS and value:
            return value.decode("latin-1")
    query = scope.get("query_string", b"")
    if b"key=" in query:
        found = parse_qs(query.decode("latin-1")).get("key")
        return found[0] if found else None
    return None


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        per_ip: TokenBuckets,
        per_key: TokenBuckets,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.per_ip = per_ip
        self.per_key = per_key
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await self.app(scope, receive, send)
            return
        now = self.clock()
        client = scope.get("client")
        wait = self.per_ip.take(client[0] if client else "?", now)
        if not wait:
            key = _key_of(scope)
            if key:
                wait = self.per_key.take(key, now)
        if wait:
            response = rate_limited(scope["path"], max(1, math.ceil(wait)))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

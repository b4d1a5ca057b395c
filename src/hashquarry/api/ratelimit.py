"""Per-key and per-IP token buckets: 429 with Retry-After past the limit.

Pure state plus a small ASGI middleware; the clock is passed in for tests.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


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


KEY_HEADERS = ("f2p-api-secret", "authorization")


class RateLimitMiddleware(BaseHTTPMiddleware):
    def __init__(
        self,
        app: object,
        *,
        per_ip: TokenBuckets,
        per_key: TokenBuckets,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self.per_ip = per_ip
        self.per_key = per_key
        self.clock = clock

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.url.path == "/metrics":
            return await call_next(request)
        now = self.clock()
        ip = request.client.host if request.client else "?"
        wait = self.per_ip.take(ip, now)
        key = next((request.headers[h] for h in KEY_HEADERS if h in request.headers), None)
        key = key or request.query_params.get("key")
        if not wait and key:
            wait = self.per_key.take(key, now)
        if wait:
            return JSONResponse(
                {"code": 429, "msg": "rate_limited: too many requests; slow down"},
                status_code=429,
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return await call_next(request)

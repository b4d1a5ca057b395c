"""Prometheus /metrics and the API's request counters."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response

REQUESTS = Counter("hashquarry_api_requests_total", "API requests", ["dialect", "status"])
LATENCY = Histogram(
    "hashquarry_api_request_seconds",
    "API request latency",
    ["dialect"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)


def dialect_of(path: str) -> str:
    if path.startswith("/v2/"):
        return "f2pool"
    if path.startswith("/api/v1/"):
        return "siamining"
    if path.startswith(("/api/pool", "/api/users")):
        return "bitminter"
    return "other"


class MetricsMiddleware(BaseHTTPMiddleware):
    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        dialect = dialect_of(request.url.path)
        LATENCY.labels(dialect).observe(time.perf_counter() - started)
        REQUESTS.labels(dialect, str(response.status_code)).inc()
        return response


router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

"""The API server: every dialect on one FastAPI app, next to the pool."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, FastAPI

from hashquarry import __version__
from hashquarry.api import bitminter, f2pool, pages, siamining
from hashquarry.api.cache import ResponseCache
from hashquarry.api.cache_policy import CachePolicy
from hashquarry.api.context import ApiContext
from hashquarry.api.metrics import MetricsMiddleware
from hashquarry.api.metrics import router as metrics_router
from hashquarry.api.ratelimit import RateLimitMiddleware, TokenBuckets

log = logging.getLogger(__name__)

# Each dialect module exposes `router(ctx) -> APIRouter` and may expose `install(app)`:
# exception handlers in its own error format, scoped to its own path prefix.
DIALECTS = (bitminter, siamining, f2pool, pages)


def create_app(
    ctx: ApiContext, *, rate: float = 50.0, burst: float = 100.0, cache_ttl: float = 1.0
) -> FastAPI:
    app = FastAPI(
        title="hashquarry",
        version=__version__,
        description="Bitminter (/api/pool, /api/users), SiaMining (/api/v1) and f2pool v2 (/v2) "
        "APIs of one hashquarry pool, and its read-only pages (/mining-user-{currency}/{key}).",
    )
    app.state.ctx = ctx
    app.include_router(metrics_router)
    for module in DIALECTS:
        make: Callable[[ApiContext], APIRouter] = module.router
        app.include_router(make(ctx))
        install = getattr(module, "install", None)
        if install is not None:
            install(app)
    # Innermost: rate limits and metrics still see every request, hits included.
    if cache_ttl > 0:
        app.add_middleware(ResponseCache, policy=CachePolicy(ctx), ttl=cache_ttl)
    app.add_middleware(
        RateLimitMiddleware, per_ip=TokenBuckets(rate, burst), per_key=TokenBuckets(rate, burst)
    )
    app.add_middleware(MetricsMiddleware)
    return app


async def serve_api(app: FastAPI, host: str, port: int) -> None:
    """Run uvicorn in this event loop (the pool's), until cancelled."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        loop="none",
        access_log=False,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    log.info("API on http://%s:%d (OpenAPI at /openapi.json)", host, port)
    try:
        await server.serve()
    except SystemExit:
        # uvicorn exits when it cannot bind; the pool must keep mining regardless.
        log.error(
            "the API could not start on %s:%d (see above); the pool keeps running", host, port
        )

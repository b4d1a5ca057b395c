"""Which dialect a path belongs to, so shared layers answer in that dialect's words.

The rate limiter, the metrics and the catch-all error handlers sit in front of every
dialect; a client of one dialect must still get that dialect's error body, whatever layer
refused it. This module only knows the path prefixes; each dialect owns its error format.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

Dialect = Literal["f2pool", "siamining", "bitminter", "pages", "other"]

F2POOL_PREFIX = "/v2"
SIAMINING_PREFIX = "/api/v1"
BITMINTER_PREFIXES = ("/api/pool", "/api/users")
PAGES_PREFIX = "/mining-user-"


def under(path: str, prefix: str) -> bool:
    """`path` is `prefix` itself or below it (so /api/users matches, /api/usersx not)."""
    return path == prefix or path.startswith(prefix + "/")


def is_bitminter(path: str) -> bool:
    return any(under(path, p) for p in BITMINTER_PREFIXES)


def dialect_of(path: str) -> Dialect:
    if under(path, F2POOL_PREFIX):
        return "f2pool"
    if under(path, SIAMINING_PREFIX):
        return "siamining"
    if is_bitminter(path):
        return "bitminter"
    if path.startswith(PAGES_PREFIX):
        return "pages"
    return "other"


Handler = Callable[[Request, Any], Any]


def install_scoped(
    app: FastAPI,
    owns: Callable[[str], bool],
    on_http: Callable[[StarletteHTTPException], Response],
    on_invalid: Callable[[RequestValidationError], Response],
) -> None:
    """Framework errors (unknown path, wrong method, bad parameters) on paths `owns`
    accepts in one dialect's format; every other path keeps the handler installed before
    (another dialect's, or FastAPI's default), so the order of installs does not matter."""
    from fastapi.exception_handlers import (
        http_exception_handler,
        request_validation_exception_handler,
    )

    def scoped(kind: type[Exception], ours: Callable[[Any], Response], fallback: Handler) -> None:
        previous: Handler = app.exception_handlers.get(kind) or fallback

        async def handler(request: Request, exc: Any) -> Any:
            if owns(request.url.path):
                return ours(exc)
            answer = previous(request, exc)  # Starlette allows sync and async handlers
            return await answer if inspect.isawaitable(answer) else answer

        app.add_exception_handler(kind, handler)

    scoped(StarletteHTTPException, on_http, http_exception_handler)
    scoped(RequestValidationError, on_invalid, request_validation_exception_handler)

"""The read-only pages' error body: `{"error": kind, "message": reason}`.

Kinds: not_found (404: unknown or deleted key, another currency, no such section),
forbidden (403: the page's permissions do not include the section), method_not_allowed
(405), invalid_request (400) and rate_limited (429).
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

KINDS = {400: "invalid_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


class PageErrorBody(BaseModel):
    error: str = Field(description="not_found, forbidden, method_not_allowed, rate_limited")
    message: str = Field(description="what is wrong, for a person")


def error_response(
    status: int, kind: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": kind, "message": message}, status_code=status, headers=headers)


def from_http(exc: StarletteHTTPException) -> Response:
    message = str(exc.detail)
    if exc.status_code == 404:
        message = "no such read-only page or section (hashrate, workers, revenue, payments)"
    elif exc.status_code == 405:
        message = "read-only pages answer GET only"
    kind = KINDS.get(exc.status_code, "error")
    return error_response(exc.status_code, kind, message, exc.headers)


def from_validation(exc: RequestValidationError) -> Response:
    first = next(iter(exc.errors()), {})
    where = ".".join(str(p) for p in first.get("loc", ()))
    return error_response(400, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

"""HTTP plumbing of the Bitminter dialect: its error body, its route class, API keys.

Errors are `{"error": "...", "parameter": ...}`. Inside a route they come from this
dialect's own route class; framework errors outside a route (an unknown path under
/api/pool or /api/users, a method other than GET) from `install`, scoped to Bitminter's
paths, so the other dialects keep their formats.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPBasic
from starlette.exceptions import HTTPException as StarletteHTTPException

from hashquarry.api.bitminter_models import BitminterErrorBody as ErrorBody
from hashquarry.api.dialects import install_scoped, is_bitminter

MAX_OFFSET = 1_000_000_000
KEY_FORMS = "'Authorization: key=APIKEY', 'Authorization: Basic base64(key:APIKEY)' or ?key=APIKEY"


class BitminterError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        parameter: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.parameter = parameter
        self.headers = headers


def error_response(exc: BitminterError) -> JSONResponse:
    body: dict[str, Any] = {"error": exc.message}
    if exc.parameter is not None:
        body["parameter"] = exc.parameter
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


def _validation_message(exc: RequestValidationError) -> BitminterError:
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "header")]
    name = loc[0] if loc else "request"
    reason = str(first.get("msg", "is not valid"))
    given = first.get("input")
    shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
    return BitminterError(400, f"{name}: {reason}{shown}", name)


class BitminterRoute(APIRoute):
    """Turns this dialect's errors and bad parameters into its JSON error body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return error_response(_validation_message(exc))
            except BitminterError as exc:
                return error_response(exc)

        return handle


def _from_http(exc: StarletteHTTPException) -> Response:
    if exc.status_code == 404:
        message = "no such Bitminter endpoint (see /openapi.json for /api/pool and /api/users)"
    elif exc.status_code == 405:
        message = "method not allowed: Bitminter's API is read-only; use GET"
    else:
        message = str(exc.detail)
    return error_response(BitminterError(exc.status_code, message, headers=exc.headers))


def install(app: FastAPI) -> None:
    """Bitminter's error body for framework errors on /api/pool* and /api/users*."""
    install_scoped(
        app, is_bitminter, _from_http, lambda exc: error_response(_validation_message(exc))
    )


class _DocumentedBasic(HTTPBasic):
    """Basic auth in the OpenAPI document only; the header is parsed by `_secret_of`."""

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        return None


HEADER_KEY = APIKeyHeader(
    name="Authorization",
    scheme_name="BitminterKeyHeader",
    description="Authorization: key=APIKEY",
    auto_error=False,
)
BASIC = _DocumentedBasic(
    scheme_name="BitminterBasic", description="Basic base64 of key:APIKEY", auto_error=False
)
QUERY_KEY = APIKeyQuery(
    name="key", scheme_name="BitminterKeyQuery", description="?key=APIKEY", auto_error=False
)


def unauthorized(message: str) -> BitminterError:
    return BitminterError(401, message, headers={"WWW-Authenticate": 'Basic realm="hashquarry"'})


def secret_of(authorization: str | None, query_key: str | None) -> str:
    """The API key from the Authorization header or, failing that, the `key` parameter."""
    if authorization is not None:
        value = authorization.strip()
        if value[:4].lower() == "key=":
            return value[4:].strip()
        scheme, _, param = value.partition(" ")
        if scheme.lower() != "basic":
            raise unauthorized(f"the Authorization header is not understood; use {KEY_FORMS}")
        try:
            decoded = base64.b64decode(param.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise unauthorized("Basic credentials must be base64 of key:APIKEY") from None
        user, colon, secret = decoded.partition(":")
        if not colon or user.strip().lower() != "key":
            raise unauthorized("Basic credentials must be key:APIKEY (user name 'key')")
        return secret
    if query_key is not None:
        return query_key
    raise unauthorized(f"an API key is required for user data: {KEY_FORMS}")


MaxParam = Annotated[
    int, Query(alias="max", ge=1, le=50, description="Max entries to return, 1 to 50.")
]
OffsetParam = Annotated[
    int, Query(ge=0, le=MAX_OFFSET, description="Skip this many entries (older data).")
]
CommodityParam = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9]{1,16}$",
        description="Return only this commodity, e.g. BTC. Default all.",
    ),
]
NameParam = Annotated[str, Path(description="A mining user of the key's owner")]
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "A parameter is wrong"},
}
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    401: {"model": ErrorBody, "description": "No API key, or a wrong or revoked one"},
    403: {"model": ErrorBody, "description": "The key may not read this user"},
}

"""f2pool's error format and the stable code table of this dialect.

Every error under /v2 is `{"code": N, "msg": "error_type: description"}` with the HTTP
status of the table. The codes are part of the contract (clients switch on them), so they
never change meaning; new situations get new codes.

The route class `F2PoolRoute` turns everything a /v2 handler can raise (bad JSON, pydantic
validation, the services' AccountsError, a payout refusal, an unreachable node, a bug)
into that format, so no other dialect's error handlers are involved and none of ours leak
into theirs. `install_handlers` adds the last safety net: framework errors raised outside
a route (404 of an unknown path) on /v2 paths only, chained to whatever handler the app
had before.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hashquarry.accounting.stats import StatsError
from hashquarry.accounts.errors import AccountsError, ConflictError, NotFoundError
from hashquarry.chain.rpc import NodeError
from hashquarry.payouts.engine import PayoutError

log = logging.getLogger(__name__)

PREFIX = "/v2"
MAX_BODY_BYTES = 1 << 20

INVALID_JSON = 40001
INVALID_PARAMETER = 40002
MISSING_PARAMETER = 40003
UNSUPPORTED_CURRENCY = 40004
UNAUTHORIZED = 40101
INVALID_SECRET = 40102
FORBIDDEN = 40301
PERMISSION_DENIED = 40302
NOT_FOUND = 40401
RECORD_NOT_FOUND = 40402
METHOD_NOT_ALLOWED = 40501
CONFLICT = 40901
PAYOUT_REFUSED = 40902
PAYLOAD_TOO_LARGE = 41301
UNSUPPORTED_MEDIA_TYPE = 41501
RATE_LIMITED = 42901  # written by the shared rate-limit middleware (api/ratelimit.py)
INTERNAL_ERROR = 50001
UNAVAILABLE = 50301

# code -> (HTTP status, error_type, when). The README's table is generated from this.
ERROR_CODES: dict[int, tuple[int, str, str]] = {
    INVALID_JSON: (400, "invalid_json", "the body is not JSON, or not a JSON object"),
    INVALID_PARAMETER: (
        400,
        "invalid_parameter",
        "a field has the wrong JSON type or a value out of range (the message names it)",
    ),
    MISSING_PARAMETER: (400, "missing_parameter", "a required field is missing"),
    UNSUPPORTED_CURRENCY: (
        400,
        "unsupported_currency",
        "the currency is not one this pool runs (or not an f2pool currency name)",
    ),
    UNAUTHORIZED: (401, "unauthorized", "no F2P-API-SECRET header"),
    INVALID_SECRET: (
        401,
        "invalid_secret",
        "the API secret is unknown or revoked, or its owner is disabled",
    ),
    FORBIDDEN: (403, "forbidden", "the API key lacks the scope the endpoint needs"),
    PERMISSION_DENIED: (
        403,
        "permission_denied",
        "a mining user, address or distributor/recipient that is not the key owner's "
        "(missing ones are reported the same way)",
    ),
    NOT_FOUND: (404, "not_found", "no such /v2 endpoint"),
    RECORD_NOT_FOUND: (
        404,
        "record_not_found",
        "an order, revenue distribution, read-only page or worker of the key's users "
        "does not exist",
    ),
    METHOD_NOT_ALLOWED: (405, "method_not_allowed", "every /v2 endpoint takes POST only"),
    CONFLICT: (
        409,
        "conflict",
        "the request clashes with the current state (name taken, hashrate oversold, "
        "order already terminated, proportions above 1)",
    ),
    PAYOUT_REFUSED: (
        409,
        "payout_refused",
        "a withdrawal cannot be paid (nothing to withdraw, payments paused, no wallet "
        "address, the wallet refused); nothing was debited",
    ),
    PAYLOAD_TOO_LARGE: (413, "payload_too_large", "the body is over 1 MiB"),
    UNSUPPORTED_MEDIA_TYPE: (
        415,
        "unsupported_media_type",
        "a body that is not Content-Type: application/json",
    ),
    RATE_LIMITED: (429, "rate_limited", "too many requests (see Retry-After)"),
    INTERNAL_ERROR: (500, "internal_error", "a bug, logged by the pool (never expected)"),
    UNAVAILABLE: (
        503,
        "service_unavailable",
        "payouts are not enabled, or the coin node did not answer",
    ),
}

# Fields naming a mining user: an unknown one is a permission error, never "not found",
# so a key cannot tell another owner's users from missing ones.
USER_FIELDS = frozenset(
    {"mining_user_name", "mining_user_names", "distributor", "recipient", "address"}
)


class F2PoolError(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description

    @property
    def status(self) -> int:
        return ERROR_CODES[self.code][0]

    @property
    def msg(self) -> str:
        return f"{ERROR_CODES[self.code][1]}: {self.description}"

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(
            {"code": self.code, "msg": self.msg}, status_code=self.status, headers=headers
        )


def invalid(field: str, reason: str) -> F2PoolError:
    return F2PoolError(INVALID_PARAMETER, f"{field}: {reason}")


def from_accounts_error(exc: AccountsError) -> F2PoolError:
    """The services' errors (field, reason) in this dialect's codes."""
    text = f"{exc.field}: {exc.reason}"
    if isinstance(exc, NotFoundError):
        if exc.field.rsplit(".", 1)[-1] in USER_FIELDS:  # reqs[1].mining_user_name too
            return F2PoolError(PERMISSION_DENIED, f"{text} among this API key's mining users")
        if exc.field == "owner":  # the key's owner vanished between two statements
            return F2PoolError(INVALID_SECRET, "the API key's owner no longer exists")
        return F2PoolError(RECORD_NOT_FOUND, text)
    if isinstance(exc, ConflictError):
        return F2PoolError(CONFLICT, text)
    if exc.field == "currency":
        return F2PoolError(UNSUPPORTED_CURRENCY, text)
    return F2PoolError(INVALID_PARAMETER, text)


def _where(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def from_validation_error(errors: Sequence[Any]) -> F2PoolError:
    """pydantic's errors as one f2pool error: missing fields together, else the first
    problem (with how many more there are)."""
    if not errors:
        return F2PoolError(INVALID_PARAMETER, "the request is not valid")
    located = [(_where([p for p in e.get("loc", ()) if p != "body"]), e) for e in errors]
    if any(e.get("type") == "json_invalid" for _, e in located):
        return F2PoolError(INVALID_JSON, "the body is not valid JSON")
    missing = [where for where, e in located if e.get("type") == "missing"]
    if missing:
        if "" in missing:
            return F2PoolError(MISSING_PARAMETER, "a JSON object body is required")
        verb = "is" if len(missing) == 1 else "are"
        return F2PoolError(MISSING_PARAMETER, f"{', '.join(missing)} {verb} required")
    where, first = located[0]
    reason = str(first.get("msg", "is not valid")).removeprefix("Value error, ")
    if "input" in first and first.get("type") != "value_error":
        reason += f" (got {_shown(first['input'])})"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return F2PoolError(INVALID_PARAMETER, f"{where or 'body'}: {reason}{more}")


async def check_json_body(request: Request) -> None:
    """POST bodies are JSON objects sent as application/json, at most 1 MiB; an empty
    body is left to the endpoint (which then names its missing fields)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise F2PoolError(PAYLOAD_TOO_LARGE, f"the body is {length} bytes; at most 1 MiB")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise F2PoolError(PAYLOAD_TOO_LARGE, "the body is over 1 MiB")
    if not body.strip():
        return
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        shown = f"Content-Type {ctype!r}" if ctype else "no Content-Type"
        raise F2PoolError(
            UNSUPPORTED_MEDIA_TYPE, f"{shown}; send the body as Content-Type: application/json"
        )
    try:
        parsed = await request.json()  # cached on the request: FastAPI reuses it
    except (ValueError, UnicodeDecodeError):
        raise F2PoolError(INVALID_JSON, "the body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise F2PoolError(
            INVALID_JSON, f"the body must be a JSON object, not {type(parsed).__name__}"
        )


def _from_http(exc: StarletteHTTPException) -> F2PoolError:
    if exc.status_code == 405:
        return F2PoolError(METHOD_NOT_ALLOWED, "use POST")
    if exc.status_code == 404:
        return F2PoolError(NOT_FOUND, "no such endpoint")
    if exc.status_code == 413:
        return F2PoolError(PAYLOAD_TOO_LARGE, "the body is over 1 MiB")
    if exc.status_code in (400, 422):
        return F2PoolError(INVALID_JSON, str(exc.detail))
    return F2PoolError(INTERNAL_ERROR, f"HTTP {exc.status_code}: {exc.detail}")


def as_f2pool_error(exc: Exception) -> F2PoolError | None:
    """The f2pool error for an exception a handler may raise; None for a bug."""
    if isinstance(exc, F2PoolError):
        return exc
    if isinstance(exc, RequestValidationError):
        return from_validation_error(exc.errors())
    if isinstance(exc, AccountsError):
        return from_accounts_error(exc)
    if isinstance(exc, StatsError):
        return F2PoolError(INVALID_PARAMETER, str(exc))
    if isinstance(exc, PayoutError):
        return F2PoolError(PAYOUT_REFUSED, str(exc))
    if isinstance(exc, NodeError):
        return F2PoolError(UNAVAILABLE, f"the coin node did not answer: {exc}")
    if isinstance(exc, StarletteHTTPException):
        return _from_http(exc)
    return None


class F2PoolRoute(APIRoute):
    """A /v2 route: checks the JSON body first and answers every error in f2pool's
    format, whatever raised it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                await check_json_body(request)
                return await handler(request)
            except Exception as exc:
                known = as_f2pool_error(exc)
                if known is None:
                    log.exception("f2pool %s failed", request.url.path)
                    known = F2PoolError(INTERNAL_ERROR, "an internal error (logged by the pool)")
                return known.response()

        return guarded


Handler = Callable[[Request, Any], Any]


def _chained(previous: Handler | None, fallback: Handler) -> Handler:
    async def handle(request: Request, exc: Any) -> Response:
        if request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/"):
            known = as_f2pool_error(exc) or F2PoolError(INTERNAL_ERROR, "an internal error")
            return known.response(getattr(exc, "headers", None))
        chosen = previous or fallback
        result = chosen(request, exc)
        if isinstance(result, Awaitable):
            result = await result
        return result  # type: ignore[no-any-return]

    return handle


def install_handlers(app: FastAPI) -> None:
    """f2pool's format for framework errors on /v2 paths only; others go to whatever
    handled them before (another dialect's handler, or FastAPI's default)."""
    from fastapi.exception_handlers import (
        http_exception_handler,
        request_validation_exception_handler,
    )

    for kind, fallback in (
        (StarletteHTTPException, http_exception_handler),
        (RequestValidationError, request_validation_exception_handler),
    ):
        previous = app.exception_handlers.get(kind)
        app.add_exception_handler(kind, _chained(previous, fallback))

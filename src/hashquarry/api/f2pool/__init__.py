"""The f2pool v2 dialect: POST /v2/... with JSON bodies and the F2P-API-SECRET header.

`router(ctx)` serves every endpoint of f2pool's API v2 document; `install(app)` puts
f2pool's error format on framework errors of /v2 paths. Errors are
`{"code": N, "msg": "error_type: description"}` with the codes of `ERROR_CODES`.

Scopes of the key, per endpoint:

| scope | endpoints |
|---|---|
| manage_accounts | mining_user/get, add, list, wallet/update, read_only_page/add, delete; assets/settle_mode/switch |
| manage_payouts | mining_user/balance/withdraw, payment/pause, resume, threshold/update, update_value |
| read_revenue | assets/balance, assets/transactions/list (payouts also need read_payments), blocks/user |
| read_hashrate | hash_rate/info, info_list, history, worker/list, worker/history |
| manage_distributions | hash_rate/distribution/*, hash_rate/distribute, revenue/distribution/* |
| (any live key) | blocks/paging, blocks/date_range |
"""  # noqa: E501

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

from hashquarry.api.context import ApiContext
from hashquarry.api.f2pool import assets, blocks, distribution, hashrate, users
from hashquarry.api.f2pool.errors import (
    ERROR_CODES,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    PREFIX,
    F2PoolError,
    F2PoolRoute,
    install_handlers,
)
from hashquarry.api.f2pool.models import ErrorResp

__all__ = ["ERROR_CODES", "install", "router"]

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"]
_ERRORS = {
    status: {"model": ErrorResp, "description": description}
    for status, description in (
        (400, "invalid_json, invalid_parameter, missing_parameter, unsupported_currency"),
        (401, "unauthorized, invalid_secret"),
        (403, "forbidden (scope), permission_denied (not the key's user)"),
        (404, "record_not_found"),
        (409, "conflict, payout_refused"),
        (415, "unsupported_media_type"),
        (503, "service_unavailable"),
    )
}


def router(ctx: ApiContext) -> APIRouter:
    r = APIRouter(
        prefix=PREFIX,
        route_class=F2PoolRoute,
        tags=["f2pool v2"],
        responses=_ERRORS,  # type: ignore[arg-type]
    )
    for module in (users, assets, hashrate, distribution, blocks):
        module.register(r, ctx)
    known = {route.path for route in r.routes}  # type: ignore[attr-defined]

    async def unmatched(request: Request) -> JSONResponse:
        """Any other method or path under /v2: 405 for a known path, else 404."""
        path = request.url.path
        if path in known and request.method != "POST":
            error = F2PoolError(METHOD_NOT_ALLOWED, f"{request.method} {path}: use POST")
            return error.response({"Allow": "POST"})
        hint = f" (did you mean {path.rstrip('/')}?)" if path.rstrip("/") in known else ""
        return F2PoolError(NOT_FOUND, f"{path} is not an f2pool v2 endpoint{hint}").response()

    # Last, so a known path with another method lands here (a full match) and not in
    # Starlette's default 405, which is not in f2pool's format.
    r.add_route(PREFIX + "/{rest:path}", unmatched, methods=_METHODS, include_in_schema=False)
    return r


def install(app: FastAPI) -> None:
    install_handlers(app)

"""Read-only pages: GET /mining-user-{currency}/{key}, as f2pool's ReadOnlyPage names them.

A page key (`read_only_page/add`, or `hashquarry user page-add`) opens one mining user's
figures, within the page's permissions (a comma list):

| permission | sections |
|---|---|
| 1 | hashrate (10 min / 1 h / 24 h and a day of hourly points) and workers |
| 2 | revenue (balances, matured income) and payments (total paid, payouts) |
| 3 | revenue only, nothing about payments |

`/mining-user-{currency}/{key}` answers every section the page allows (the others are
absent); `/mining-user-{currency}/{key}/{hashrate,workers,revenue,payments}` answers one,
or 403 when the page's permissions do not include it. An unknown or deleted key, a
currency this pool does not run or an unknown section is a 404. Errors are
`{"error": kind, "message": reason}` (see `errors`). This is JSON for now; the web pages
will render the same `read.PageReader`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, FastAPI, Path
from starlette.responses import JSONResponse

from hashquarry.api.context import ApiContext
from hashquarry.api.dialects import PAGES_PREFIX, install_scoped
from hashquarry.api.pages import models as out
from hashquarry.api.pages.errors import PageErrorBody, error_response, from_http, from_validation
from hashquarry.api.pages.read import OpenPage, PageForbidden, PageNotFound, PageReader

__all__ = ["PageReader", "install", "router"]

T = TypeVar("T")
PREFIX = PAGES_PREFIX + "{currency}/{key}"
# No length limits here: any key that opens nothing (too long included) is a 404, as the
# page contract says, not a 400 that would tell a malformed key from a deleted one.
Currency = Annotated[str, Path(description="f2pool's name, e.g. bitcoin")]
Key = Annotated[str, Path(description="the ReadOnlyPage key")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": PageErrorBody, "description": "the page's permissions exclude this"},
    404: {"model": PageErrorBody, "description": "unknown or deleted key, or no such section"},
}


def router(ctx: ApiContext) -> APIRouter:
    r = APIRouter(tags=["read-only pages"], responses=_ERRORS)
    reader = PageReader(ctx)

    async def answer(
        currency: str, key: str, section: Callable[[OpenPage], Awaitable[T]]
    ) -> T | JSONResponse:
        try:
            return await section(await reader.open(currency, key))
        except PageNotFound as exc:
            return error_response(404, "not_found", str(exc))
        except PageForbidden as exc:
            return error_response(403, "forbidden", str(exc))

    @r.get(
        PREFIX,
        response_model=out.PageOut,
        response_model_exclude_unset=True,
        summary="A read-only page: every section its permissions allow",
    )
    async def page(currency: Currency, key: Key) -> Any:
        async def whole(p: OpenPage) -> out.PageOut:
            return out.page_out(await reader.whole(p))

        return await answer(currency, key, whole)

    @r.get(PREFIX + "/hashrate", response_model=out.HashrateOut, summary="Hashrate (perm. 1)")
    async def hashrate(currency: Currency, key: Key) -> Any:
        async def one(p: OpenPage) -> out.HashrateOut:
            return out.hashrate_out(await reader.hashrate(p))

        return await answer(currency, key, one)

    @r.get(PREFIX + "/workers", response_model=out.WorkersOut, summary="Workers (perm. 1)")
    async def workers(currency: Currency, key: Key) -> Any:
        async def one(p: OpenPage) -> out.WorkersOut:
            return out.WorkersOut(workers=[out.worker_out(w) for w in await reader.workers(p)])

        return await answer(currency, key, one)

    @r.get(PREFIX + "/revenue", response_model=out.RevenueOut, summary="Revenue (perm. 2 or 3)")
    async def revenue(currency: Currency, key: Key) -> Any:
        async def one(p: OpenPage) -> out.RevenueOut:
            return out.revenue_out(await reader.revenue(p))

        return await answer(currency, key, one)

    @r.get(PREFIX + "/payments", response_model=out.PaymentsOut, summary="Payments (perm. 2)")
    async def payments(currency: Currency, key: Key) -> Any:
        async def one(p: OpenPage) -> out.PaymentsOut:
            return out.payments_out(await reader.payments(p))

        return await answer(currency, key, one)

    return r


def install(app: FastAPI) -> None:
    """The pages' error body for framework errors (unknown section, wrong method)."""
    install_scoped(app, lambda path: path.startswith(PAGES_PREFIX), from_http, from_validation)

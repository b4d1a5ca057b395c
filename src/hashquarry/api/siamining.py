"""The SiaMining dialect: public, read-only, keyed by payout address, under /api/v1.

Contract: shared/seeds' SiaMining document. Same paths, field names and JSON types as its
sample responses; units: hashrates in H/s, balances and payout amounts as decimal strings
with the coin's full precision (8 decimals for bitcoin), rewards and prices as floats in
coins. Two fields need a word for a Bitcoin pool:

- `block_reward` is the next block's subsidy in whole coins, the document's unit (its
  sample, 236469, is siacoins). A subsidy of whole coins is a JSON integer as in the
  sample (50); after halvings that leave a fraction it is a JSON number (12.5), never
  rounded: the schema type is `number`.
- `difficulty` is Bitcoin's difficulty (as the node reports it) as a plain decimal
  string; `next_difficulty` estimates the next 2016-block retarget from the current
  period's timestamps. On a chain that never retargets (regtest) it is the same
  difficulty, `blocks_to_retarget` and `time_to_retarget` are 0 (nothing to wait for)
  and the extra field `retargets` is false.

Extra fields (the document allows them): `retargets` on /network, `immature_balance` on
a summary. Interval `rewards` are what the ledger booked in the interval (block credits
when the block was found, unless it went stale; PPS days and dividends when settled); a
worker's share of them is in proportion to its work in the same interval.

Addresses: an address is found only if a miner mined with it as its user name (address
mode); registered mining users' wallets are not public. A malformed address or one for
another network is a 400; a valid address this pool has never seen is a 404. Errors are
`{"error": kind, "message": reason}`; a missing price source or node is a 503.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, WithJsonSchema
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.exceptions import HTTPException as StarletteHTTPException

from hashquarry.api import siamining_queries as q
from hashquarry.api.context import ApiContext
from hashquarry.api.siamining_network import (
    COIN,
    NetworkReader,
    NetworkSnapshot,
    PriceFeed,
    Unavailable,
    coin_string,
    coins,
    decimal_string,
)
from hashquarry.chain.address import AddressError, address_to_script, network, script_to_address

PREFIX = "/api/v1"
ERROR_KINDS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}


# -- response models: the document's sample fields and JSON types --------------------------


class SiaErrorBody(BaseModel):
    error: str = Field(description="kind: invalid_address, not_found, unavailable, ...")
    message: str = Field(description="what is wrong, for a person")


class SiaNetwork(BaseModel):
    block_height: int
    block_reward: Annotated[
        int | float,
        WithJsonSchema({"type": "number", "description": "next block's subsidy, in coins"}),
    ]
    hash_rate: int = Field(description="network hashrate, H/s (the node's estimate)")
    difficulty: str = Field(description="current difficulty, plain decimal string")
    next_difficulty: float = Field(description="estimated difficulty after the retarget")
    blocks_to_retarget: int = Field(description="0 on chains that never retarget")
    time_to_retarget: int = Field(
        description="seconds, at the period's mean block spacing; 0 if it never retargets"
    )
    retargets: bool = Field(description="false on chains that never retarget (regtest)")


class SiaMarket(BaseModel):
    btc_price: float = Field(description="price of one coin in BTC")
    usd_price: float = Field(description="price of one coin in USD")


class SiaPool(BaseModel):
    hash_rate: int = Field(description="H/s over the last 10 minutes")
    active_addresses: int = Field(description="accounts with a share in the offline window")
    hashes: float = Field(description="hashes ever accepted (difficulty x 2^32)")
    blocks_found: int = Field(description="blocks on the main chain")
    pps_fee: float = Field(description="pool fee as a fraction")
    hash_price: float = Field(description="coins one hash earns, after the fee")


class SiaInterval(BaseModel):
    interval: int = Field(description="seconds")
    hash_rate: int = Field(description="H/s")
    valid_shares: int
    stale_shares: int
    invalid_shares: int
    rewards: float = Field(description="coins earned in the interval")


class SiaSummary(BaseModel):
    address: str
    hashes: float
    valid_shares: int
    stale_shares: int
    invalid_shares: int
    blocks_found: int
    balance: str = Field(description="matured, unpaid; decimal string, 8 decimals")
    paid: str
    last_share_time: int = Field(description="unix seconds; 0 if it never sent a share")
    intervals: list[SiaInterval]
    immature_balance: str = Field(description="credits of blocks not yet matured")


class SiaPayout(BaseModel):
    time: int
    amount: str = Field(description="what the address received; decimal string")
    txid: str


class SiaWorker(BaseModel):
    name: str
    last_share_time: int
    intervals: list[SiaInterval]


def whole_or_fraction(base_units: int) -> int | float:
    """Coins: an integer when whole (as the document's sample), else the exact double."""
    whole, rest = divmod(base_units, COIN)
    return whole if rest == 0 else coins(base_units)


# -- errors ---------------------------------------------------------------------------------


class SiaError(StarletteHTTPException):
    """An HTTPException, so even without `install` it stays a clear 4xx/503."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(status, message)
        self.kind = kind


def error_response(status: int, kind: str, message: str, headers: Any = None) -> JSONResponse:
    return JSONResponse({"error": kind, "message": message}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Errors under /api/v1 in this dialect's format; every other path keeps whatever
    handler was installed before (another dialect's, or FastAPI's default)."""

    def scoped(cls: type[Exception], ours: Callable[[Any], JSONResponse]) -> None:
        previous = app.exception_handlers.get(cls)

        async def handler(request: Request, exc: Any) -> Any:
            path = request.url.path
            if path == PREFIX or path.startswith(PREFIX + "/") or previous is None:
                return ours(exc)
            answer = previous(request, exc)  # Starlette allows sync and async handlers
            return await answer if inspect.isawaitable(answer) else answer

        app.add_exception_handler(cls, handler)

    def http_error(exc: StarletteHTTPException) -> JSONResponse:
        kind = getattr(exc, "kind", None) or ERROR_KINDS.get(exc.status_code, "error")
        message = str(exc.detail)
        if exc.status_code == 404 and not isinstance(exc, SiaError):
            message = "no such SiaMining endpoint (see /openapi.json)"
        return error_response(exc.status_code, kind, message, getattr(exc, "headers", None))

    def invalid(exc: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = next(iter(exc.errors()), {})
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(400, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    scoped(StarletteHTTPException, http_error)
    scoped(RequestValidationError, invalid)


def _spellings(address: str, net: str) -> tuple[str, list[str]]:
    """(canonical address, the account names it may have been mined under)."""
    try:
        canonical = script_to_address(address_to_script(address, net), net)
    except AddressError as exc:
        raise SiaError(400, "invalid_address", f"{exc}; this pool pays {net} addresses") from None
    names = {address, canonical}
    if canonical.startswith(network(net).hrp + "1"):
        names.add(canonical.upper())  # bech32 is case-insensitive
    return canonical, sorted(names)


def _intervals(sums: list[q.IntervalSums], rewards: list[float]) -> list[SiaInterval]:
    return [
        SiaInterval(
            interval=s.interval,
            hash_rate=round(s.hash_rate),
            valid_shares=s.valid,
            stale_shares=s.stale,
            invalid_shares=s.invalid,
            rewards=coins(r),
        )
        for s, r in zip(sums, rewards, strict=True)
    ]


def _empty(intervals: tuple[int, ...] = q.INTERVALS) -> list[q.IntervalSums]:
    return [q.IntervalSums(s, 0.0, 0, 0, 0, 0.0) for s in intervals]


# -- the endpoints --------------------------------------------------------------------------


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(prefix=PREFIX, tags=["SiaMining"])
    chain = NetworkReader(ctx.rpc)
    work = q.WorkTotal()
    feed = PriceFeed(ctx.settings.api.price_url, ctx.coin, clock=ctx.clock)
    net = ctx.settings.pool.network
    fee = ctx.settings.accounting.fee_bps / 10_000
    unavailable: dict[int | str, dict[str, Any]] = {503: {"model": SiaErrorBody}}
    by_address: dict[int | str, dict[str, Any]] = {
        400: {"model": SiaErrorBody, "description": "not a valid address on this pool's network"},
        404: {"model": SiaErrorBody, "description": "no miner has mined to this address here"},
    }

    async def snapshot() -> NetworkSnapshot:
        try:
            return await chain.snapshot()
        except Unavailable as exc:
            raise SiaError(503, "unavailable", str(exc)) from None

    async def accounts_of(conn: AsyncConnection, address: str) -> tuple[str, list[str]]:
        canonical, names = _spellings(address, net)
        accounts = await q.known_accounts(conn, ctx.coin, names)
        if not accounts:
            raise SiaError(
                404,
                "not_found",
                f"address {canonical} has not mined on this pool (only addresses used as "
                "the mining user name are shown)",
            )
        return canonical, accounts

    @api.get("/network", response_model=SiaNetwork, responses=unavailable)
    async def network_info() -> SiaNetwork:
        s = await snapshot()
        return SiaNetwork(
            block_height=s.height,
            block_reward=whole_or_fraction(s.block_reward),
            hash_rate=round(s.hash_rate),
            difficulty=decimal_string(s.difficulty),
            next_difficulty=s.retarget.next_difficulty,
            blocks_to_retarget=s.retarget.blocks_to_retarget,
            time_to_retarget=s.retarget.time_to_retarget,
            retargets=s.retarget.retargets,
        )

    @api.get("/market", response_model=SiaMarket, responses=unavailable)
    async def market() -> SiaMarket:
        try:
            p = await feed.prices()
        except Unavailable as exc:
            raise SiaError(503, "unavailable", str(exc)) from None
        return SiaMarket(btc_price=p.btc_price, usd_price=p.usd_price)

    @api.get("/pool", response_model=SiaPool, responses=unavailable)
    async def pool_info() -> SiaPool:
        try:
            s: NetworkSnapshot = await chain.snapshot()
        except Unavailable as exc:
            last = chain.last  # the last tip seen is good enough for a hash price
            if last is None:
                raise SiaError(503, "unavailable", str(exc)) from None
            s = last
        async with ctx.engine.connect() as conn:
            f = await q.pool_figures(
                conn, ctx.coin, ctx.clock(), work, active=ctx.settings.accounting.offline_after
            )
        per_block = s.hashes_per_block
        return SiaPool(
            hash_rate=round(f.hash_rate),
            active_addresses=f.active_accounts,
            hashes=f.accepted_diff * q.HASHES,
            blocks_found=f.blocks_found,
            pps_fee=fee,
            hash_price=coins(s.block_reward) * (1 - fee) / per_block if per_block > 0 else 0.0,
        )

    @api.get("/addresses/{address}/summary", response_model=SiaSummary, responses=by_address)
    async def summary(address: str) -> SiaSummary:
        now = ctx.clock()
        async with ctx.engine.connect() as conn:  # one read transaction: one snapshot
            canonical, accounts = await accounts_of(conn, address)
            t = await q.totals(conn, ctx.coin, accounts)
            money = await q.money(conn, ctx.coin, accounts)
            sums = (await q.interval_sums(conn, ctx.coin, accounts, now)).get("") or _empty()
            rewards = await q.interval_rewards(conn, ctx.coin, accounts, now)
        return SiaSummary(
            address=canonical,
            hashes=t.accepted_diff * q.HASHES,
            valid_shares=t.valid,
            stale_shares=t.stale,
            invalid_shares=t.invalid,
            blocks_found=t.blocks_found,
            balance=coin_string(money.balance),
            paid=coin_string(money.paid),
            last_share_time=int(t.last_share or 0),
            intervals=_intervals(sums, [float(r) for r in rewards]),
            immature_balance=coin_string(money.immature),
        )

    @api.get(
        "/addresses/{address}/hashrate-history",
        response_model=list[tuple[int, int]],
        responses=by_address,
        description="[bucket start (unix s), H/s] every 15 minutes over the last day, from "
        "the first bucket with shares; the current bucket over the seconds it has covered.",
    )
    async def hashrate_history(address: str) -> list[tuple[int, int]]:
        async with ctx.engine.connect() as conn:
            _, accounts = await accounts_of(conn, address)
            points = await q.history(conn, ctx.coin, accounts, ctx.clock())
        return [(ts, round(rate)) for ts, rate in points]

    @api.get("/addresses/{address}/payouts", response_model=list[SiaPayout], responses=by_address)
    async def payouts(address: str) -> list[SiaPayout]:
        async with ctx.engine.connect() as conn:
            _, accounts = await accounts_of(conn, address)
            rows = await q.payouts(conn, ctx.coin, accounts)
        return [
            SiaPayout(
                time=int(r["paid_time"] or 0), amount=coin_string(r["received"]), txid=r["tx_id"]
            )
            for r in rows
        ]

    @api.get(
        "/addresses/{address}/workers",
        response_model=list[SiaWorker],
        responses=by_address,
        description="Per-worker intervals; a worker's rewards are the address's rewards in "
        "the interval shared in proportion to the work each worker did in it.",
    )
    async def workers(address: str) -> list[SiaWorker]:
        now = ctx.clock()
        async with ctx.engine.connect() as conn:
            _, accounts = await accounts_of(conn, address)
            last = await q.worker_last_shares(conn, ctx.coin, accounts)
            per_worker = await q.interval_sums(conn, ctx.coin, accounts, now, per_worker=True)
            whole = (await q.interval_sums(conn, ctx.coin, accounts, now)).get("") or _empty()
            rewards = await q.interval_rewards(conn, ctx.coin, accounts, now)
        out = []
        for name in sorted(last):
            sums = per_worker.get(name) or _empty()
            shares = [
                r * s.accepted_diff / w.accepted_diff if w.accepted_diff > 0 else 0.0
                for s, w, r in zip(sums, whole, rewards, strict=True)
            ]
            out.append(
                SiaWorker(
                    name=name, last_share_time=int(last[name]), intervals=_intervals(sums, shares)
                )
            )
        return out

    return api

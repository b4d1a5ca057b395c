"""The Bitminter API dialect: public pool data under /api/pool, user data under /api/users.

Paths, parameters, field names and units follow Bitminter's API page (see
`bitminter_models`). Our coin is shown under its commodity code ("bitcoin" -> "BTC").

User data needs an API key with the read_hashrate and read_revenue scopes (Bitminter's
"Balance and worker summary"), given in any of the three documented forms:
`Authorization: key=KEY`, `Authorization: Basic base64("key:KEY")`, or `?key=KEY`.
`/api/users` describes the key's owner: all of its mining users together, workers named
`user.worker`; `/api/users/NAME` one mining user of that owner, or (when NAME is the
owner's own name and none of its users is so named) the same as `/api/users`, as a
Bitminter client that puts its own name in the path expects. Any other name is refused
with 403, whether it exists or not, so a key learns nothing about other owners' users.

Errors are `{"error": "...", "parameter": ...}` with 400 (bad parameter), 401 (no key, or
a wrong or revoked one), 403 (the key may not read this), 404 (no such path under
/api/pool or /api/users), 405 (not GET) or 429 (rate limited); see `bitminter_http`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Security

from hashquarry.accounting import stats
from hashquarry.accounts.errors import NotFoundError
from hashquarry.accounts.keys import Scope
from hashquarry.accounts.names import mining_user_name_problem
from hashquarry.api import bitminter_queries as q
from hashquarry.api.bitminter_http import (
    AUTH_ERRORS,
    BASIC,
    ERRORS,
    HEADER_KEY,
    QUERY_KEY,
    BitminterError,
    BitminterRoute,
    CommodityParam,
    MaxParam,
    NameParam,
    OffsetParam,
    install,
    secret_of,
    unauthorized,
)
from hashquarry.api.bitminter_models import GH, MH, coins, commodity_of
from hashquarry.api.bitminter_models import BitminterBlock as Block
from hashquarry.api.bitminter_models import BitminterChain as Chain
from hashquarry.api.bitminter_models import BitminterPoolStats as PoolStats
from hashquarry.api.bitminter_models import BitminterRound as Round
from hashquarry.api.bitminter_models import BitminterShift as Shift
from hashquarry.api.bitminter_models import BitminterUser as User
from hashquarry.api.bitminter_models import BitminterUserShift as UserShift
from hashquarry.api.bitminter_models import BitminterWorkData as WorkData
from hashquarry.api.bitminter_models import BitminterWorker as Worker
from hashquarry.api.context import ApiContext

__all__ = ["install", "router"]

SUMMARY_TTL = 1.0  # seconds the pool summary is reused: it is read far more than it changes
USER_SCOPES = frozenset({Scope.READ_HASHRATE, Scope.READ_REVENUE})


class _Summary:
    """The pool summary, computed at most once per SUMMARY_TTL (single flight)."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.value: q.PoolSummary | None = None
        self.expires = 0.0
        self.lock = asyncio.Lock()

    async def get(self) -> q.PoolSummary:
        if self.value is not None and time.monotonic() < self.expires:
            return self.value
        async with self.lock:
            if self.value is None or time.monotonic() >= self.expires:
                async with self.ctx.engine.connect() as conn:
                    self.value = await q.pool_summary(conn, self.ctx.coin, self.ctx.clock())
                self.expires = time.monotonic() + SUMMARY_TTL
        return self.value


def router(ctx: ApiContext) -> APIRouter:
    r = APIRouter(route_class=BitminterRoute, tags=["bitminter"])
    summary = _Summary(ctx)
    code = commodity_of(ctx.coin)
    coin = ctx.coin

    @r.get("/api/pool/stats", response_model=PoolStats, summary="General pool statistics")
    async def pool_stats() -> PoolStats:
        s = await summary.get()
        return PoolStats(
            hash_rate=s.hashrate / GH, active_workers=s.active_workers, active_users=s.active_users
        )

    @r.get("/api/pool/hashrate", response_model=float, summary="Pool hash rate in Ghps")
    async def pool_hashrate() -> float:
        return (await summary.get()).hashrate / GH

    @r.get("/api/pool/workers", response_model=int, summary="Number of active workers")
    async def pool_workers() -> int:
        return (await summary.get()).active_workers

    @r.get("/api/pool/users", response_model=int, summary="Number of active users")
    async def pool_users() -> int:
        return (await summary.get()).active_users

    @r.get("/api/pool/round", response_model=Round, summary="Status of current rounds")
    async def pool_round() -> Round:
        s = await summary.get()
        now = ctx.clock()
        async with ctx.engine.connect() as conn:
            rnd = await stats.current_round(conn, coin)
            shift = await q.open_shift(conn, coin)
            difficulty = (rnd or {}).get("network_difficulty") or await q.network_difficulty(
                conn, coin
            )
        chain = Chain(
            accepted=rnd["accepted"] if rnd else 0,
            rejected=rnd["rejected"] if rnd else 0,
            duration=int(max(now - rnd["started_at"], 0)) if rnd else 0,
            difficulty=difficulty,
        )
        return Round(
            hash_rate=s.hashrate / GH,
            active_workers=s.active_workers,
            active_users=s.active_users,
            shift_accepted=shift["accepted"] if shift else 0,
            shift_rejected=shift["rejected"] if shift else 0,
            shift_duration=int(max(now - shift["started_at"], 0)) if shift else 0,
            shift_score=shift["score"] if shift else 0.0,
            chains={code: chain},
        )

    @r.get(
        "/api/pool/blocks", response_model=list[Block], summary="Latest blocks", responses=ERRORS
    )
    async def pool_blocks(
        max_: MaxParam = 10, offset: OffsetParam = 0, commodity: CommodityParam = None
    ) -> list[Block]:
        if commodity is not None and commodity.upper() != code:
            return []  # a commodity this pool does not mine has no blocks here
        async with ctx.engine.connect() as conn:
            rows = await stats.blocks(conn, coin, limit=max_, offset=offset)
        return [
            Block(
                id=b["id"],
                chain=code,
                hash=b["hash"],
                height=b["height"],
                difficulty=b["difficulty"],
                income=coins(b["income"]),
                accepted=b["round_accepted"],
                rejected=b["round_rejected"],
                status=b["status"],
                confirmations_left=b["confirmations_left"],
                generator=b["finder_account"],
                generated=int(b["found_at"]),
                duration=round(b["round_duration"]),
            )
            for b in rows
        ]

    @r.get(
        "/api/pool/shifts", response_model=list[Shift], summary="Latest shifts", responses=ERRORS
    )
    async def pool_shifts(max_: MaxParam = 10, offset: OffsetParam = 0) -> list[Shift]:
        async with ctx.engine.connect() as conn:
            rows = await q.completed_shifts(conn, coin, max_, offset)
        return [
            Shift(
                id=s["id"],
                difficulty=s["network_difficulty"],
                accepted=s["accepted"],
                rejected=s["rejected"],
                score=s["score"],
                completed=int(s["ended_at"]),
                duration=round(s["ended_at"] - s["started_at"]),
            )
            for s in rows
        ]

    @r.get(
        "/api/pool/top50",
        response_model=dict[str, float],
        summary="Top 50 fastest users (user name to Mhps)",
    )
    async def pool_top50() -> dict[str, float]:
        async with ctx.engine.connect() as conn:
            per_user = await q.user_rates(conn, coin, ctx.clock())
        rates = {u: sum(w.hashrate for w in ws) for u, ws in per_user.items()}
        fastest = sorted((kv for kv in rates.items() if kv[1] > 0), key=lambda kv: -kv[1])[:50]
        return {user: rate / MH for user, rate in fastest}

    async def authorized(authorization: str | None, query_key: str | None) -> str:
        secret = secret_of(authorization, query_key)
        found = await ctx.accounts.authenticate(secret)
        if found is None:
            raise unauthorized("the API key is not valid (unknown or revoked)")
        missing = USER_SCOPES - found.scopes
        if missing:
            names = ", ".join(sorted(s.value for s in missing))
            raise BitminterError(403, f"this API key lacks the scope(s) user data needs: {names}")
        return found.owner

    async def user_view(name: str, accounts: list[str], *, owner_view: bool) -> User:
        now = ctx.clock()
        async with ctx.engine.connect() as conn:
            per_user = await q.user_rates(conn, coin, now, accounts)
            totals = await q.work_totals(conn, coin, accounts)
            rnd = await stats.current_round(conn, coin)
            shift = await q.open_shift(conn, coin)
            scores = await q.shift_accounts(conn, shift["id"], accounts) if shift else {}
            balances = await q.spendable_balances(conn, coin, accounts)
        workers = []
        for account in accounts:
            for w in per_user.get(account, []):
                accepted, rejected = totals.get((account, w.worker), (0, 0))
                shown = w.worker
                if owner_view:
                    shown = f"{account}.{w.worker}" if w.worker else account
                workers.append(
                    Worker(
                        name=shown,
                        hash_rate=w.hashrate / MH,
                        last_work=int(w.last_share),
                        alive=now - w.last_share <= q.ALIVE_SECONDS,
                        work={code: WorkData(total_accepted=accepted, total_rejected=rejected)},
                    )
                )
        mine = list(scores.values())
        return User(
            name=name,
            active_workers=sum(w.alive for w in workers),
            hash_rate=sum(w.hash_rate for w in workers),
            now=int(now),
            round_start={code: int(rnd["started_at"] if rnd else now)},
            shift=UserShift(
                start=int(shift["started_at"] if shift else now),
                accepted=sum(s[1] for s in mine),
                rejected=sum(s[2] for s in mine),
                user_score=sum(s[0] for s in mine),
                total_score=shift["score"] if shift else 0.0,
            ),
            balances={code: coins(sum(balances.get(a, 0) for a in accounts))},
            workers=workers,
        )

    @r.get(
        "/api/users",
        response_model=User,
        summary="Workers and balances of the API key's owner (all of its users)",
        responses=AUTH_ERRORS,
    )
    async def owner_summary(
        authorization: Annotated[str | None, Security(HEADER_KEY)] = None,
        _basic: Annotated[None, Security(BASIC)] = None,
        key: Annotated[str | None, Security(QUERY_KEY)] = None,
    ) -> User:
        owner = await authorized(authorization, key)
        users = [u.name for u in await ctx.accounts.list_mining_users(owner)]
        return await user_view(owner, users, owner_view=True)

    @r.get(
        "/api/users/{name}",
        response_model=User,
        summary="Workers and balances of one mining user",
        responses=AUTH_ERRORS,
    )
    async def user_summary(
        name: NameParam,
        authorization: Annotated[str | None, Security(HEADER_KEY)] = None,
        _basic: Annotated[None, Security(BASIC)] = None,
        key: Annotated[str | None, Security(QUERY_KEY)] = None,
    ) -> User:
        owner = await authorized(authorization, key)
        if name == owner:
            users = [u.name for u in await ctx.accounts.list_mining_users(owner)]
            if name not in users:
                return await user_view(owner, users, owner_view=True)
        problem = mining_user_name_problem(name)
        if problem is not None:
            raise BitminterError(400, f"name: {name!r} {problem}", "name")
        try:
            await ctx.accounts.get_mining_user(owner, name)
        except NotFoundError:
            raise BitminterError(
                403, f"this API key has no access to a user named {name!r}", "name"
            ) from None
        return await user_view(name, [name], owner_view=False)

    return r

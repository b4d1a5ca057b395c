"""Hashrate: /v2/hash_rate/info, info_list, history, worker/list and worker/history.

All figures are H/s from accepted share difficulty x 2^32 over the window (10 minutes for
`hash_rate`, 1 and 24 hours for the others). Stratum V1 miners report no hashrate of their
own, so the local (reported) figures are 0. Rewards in the history need the key's
read_revenue scope; without it they are 0. Scope: read_hashrate.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends
from starlette.responses import Response

from hashquarry.accounting import stats
from hashquarry.accounts.keys import Scope
from hashquarry.api.context import ApiContext
from hashquarry.api.f2pool import models as f
from hashquarry.api.f2pool import queries
from hashquarry.api.f2pool.access import Caller, account_of, accounts_of, coins, requires
from hashquarry.api.f2pool.errors import RECORD_NOT_FOUND, F2PoolError, invalid

BUCKET = 600  # history intervals are multiples of 10 minutes
DAY = 86_400
DEFAULT_DURATION = DAY


def info_out(name: str, w: queries.Windows | None) -> f.HashRateInfo:
    w = w or queries.Windows()
    return f.HashRateInfo(
        name=name,
        hash_rate=w.m10,
        h1_hash_rate=w.h1,
        h24_hash_rate=w.h24,
        h1_stale_hash_rate=w.stale_h1,
        h24_stale_hash_rate=w.stale_h24,
        h24_delay_hash_rate=w.delay_h24,
        local_hash_rate=0.0,
        h24_local_hash_rate=0.0,
    )


def worker_out(w: stats.WorkerInfo) -> dict[str, Any]:
    """One WorkerMiningInfo as JSON-ready data (floats stay floats, status its number)."""
    return {
        "hash_rate_info": {
            "name": w.worker,
            "hash_rate": float(w.hashrate),
            "h1_hash_rate": float(w.h1),
            "h24_hash_rate": float(w.h24),
            "h1_stale_hash_rate": float(w.stale_h1),
            "h24_stale_hash_rate": float(w.stale_h24),
            "h24_delay_hash_rate": 0.0,
            "local_hash_rate": 0.0,
            "h24_local_hash_rate": 0.0,
        },
        "last_share_at": int(w.last_share),
        "status": int(f.WorkerStatus[w.status.upper()]),
        "host": w.last_host,
    }


def history_range(body: f.HistoryReq, now: float, limit_days: int) -> tuple[float, float, int]:
    """(start, end, interval) of a history request: `duration` seconds back from now
    (default a day), or the extension start_time/end_time sent by some clients."""
    interval = body.interval or BUCKET
    if interval <= 0 or interval % BUCKET:
        raise invalid("interval", f"{interval} is not a positive multiple of {BUCKET} seconds")
    if not body.duration and body.start_time is not None and body.end_time is not None:
        start, end = float(body.start_time), float(min(body.end_time, int(now) + 1))
        if start < 0 or end <= start:
            raise invalid("end_time", "must be later than start_time, and not in the future")
        field = "end_time"
    else:
        duration = body.duration or DEFAULT_DURATION
        if duration <= 0:
            raise invalid("duration", f"{duration} is not a positive number of seconds")
        start, end, field = now - duration, now, "duration"
    if end - start > limit_days * DAY:
        raise invalid(field, f"the history may span at most {limit_days} days")
    return start, end, interval


def register(r: APIRouter, ctx: ApiContext) -> None:
    hashrate = Depends(requires(ctx, Scope.READ_HASHRATE))

    async def windows(accounts: list[str]) -> dict[str, queries.Windows]:
        async with ctx.engine.connect() as conn:
            return await queries.rate_windows(conn, ctx.coin, ctx.clock(), accounts)

    @r.post("/hash_rate/info", summary="Hashrate information")
    async def info(body: f.UserMiningReq, caller: Caller = hashrate) -> f.HashRateInfoResp:
        account = await account_of(ctx, caller, body.currency, body.mining_user_name, body.address)
        found = await windows([account])
        return f.HashRateInfoResp(
            info=info_out(account, found.get(account)), currency=body.currency
        )

    @r.post("/hash_rate/info_list", summary="Hashrate information of multiple account")
    async def info_list(body: f.InfoListReq, caller: Caller = hashrate) -> f.InfoListResp:
        accounts = await accounts_of(
            ctx,
            caller,
            [(r.currency, r.mining_user_name, r.address) for r in body.reqs],
            lambda i: f"reqs[{i}].",
        )
        found = await windows(accounts)
        return f.InfoListResp(info=[info_out(a, found.get(a)) for a in accounts])

    async def history_of(
        body: f.HistoryReq, caller: Caller, account: str, worker: str | None, days: int
    ) -> f.HistoryResp:
        now = ctx.clock()
        start, end, interval = history_range(body, now, days)
        rewards = caller.has(Scope.READ_REVENUE) and worker is None
        async with ctx.engine.connect() as conn:
            buckets = await stats.history(
                conn, ctx.coin, start=start, end=end, interval=interval,
                account=account, worker=worker,
            )  # fmt: skip
            first = int(start // interval) * interval
            online = await queries.online_per_bucket(
                conn, ctx.coin, account, first, end, interval, worker
            )
            earned = (
                await queries.rewards_per_bucket(conn, ctx.coin, account, first, end, interval)
                if rewards
                else {}
            )
        return f.HistoryResp(
            history=[
                f.MiningHistoryItem(
                    timestamp=int(b["timestamp"]),
                    hash_rate=b["hash_rate"],
                    stale_hash_rate=b["stale_hash_rate"],
                    delay_hash_rate=b["delay_hash_rate"],
                    local_hash_rate=0.0,
                    normal_reward=coins(earned.get(int(b["timestamp"]), 0)),
                    delay_reward=0.0,
                    online_miners=online.get(int(b["timestamp"]), 0),
                )
                for b in buckets
            ]
        )

    @r.post(
        "/hash_rate/history",
        summary="Hashrate historical data (time serial data)",
        description="interval: a multiple of 600 s (default 600); duration: up to 30 days "
        "back from now (default 86400).",
    )
    async def history(body: f.HistoryReq, caller: Caller = hashrate) -> f.HistoryResp:
        account = await account_of(ctx, caller, body.currency, body.mining_user_name, body.address)
        return await history_of(body, caller, account, None, 30)

    @r.post("/hash_rate/worker/list", summary="Worker list", response_model=f.WorkerListResp)
    async def worker_list(body: f.UserMiningReq, caller: Caller = hashrate) -> Response:
        account = await account_of(ctx, caller, body.currency, body.mining_user_name, body.address)
        async with ctx.engine.connect() as conn:
            found = await stats.workers(
                conn, ctx.coin, ctx.clock(), account, ctx.settings.accounting.offline_after
            )
        # A user may have thousands of workers: plain dicts straight to orjson, not a
        # pydantic model per worker validated again by FastAPI (about 10 ms per 1,000).
        # The shape is WorkerListResp's, which the contract tests hold it to.
        return Response(
            orjson.dumps({"workers": [worker_out(w) for w in found]}),
            media_type="application/json",
        )

    @r.post(
        "/hash_rate/worker/history",
        summary="Hashrate historical data (time serial data) of worker",
        description="As hash_rate/history for one worker, up to 3 days back.",
    )
    async def worker_history(body: f.WorkerHistoryReq, caller: Caller = hashrate) -> f.HistoryResp:
        account = await account_of(ctx, caller, body.currency, body.mining_user_name, body.address)
        async with ctx.engine.connect() as conn:
            known = await queries.worker_exists(conn, ctx.coin, account, body.worker_name)
        if not known:
            raise F2PoolError(
                RECORD_NOT_FOUND, f"worker_name: {account!r} has no worker {body.worker_name!r}"
            )
        return await history_of(body, caller, account, body.worker_name, 3)

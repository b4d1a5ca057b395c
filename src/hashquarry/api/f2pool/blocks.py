"""Pool information: /v2/blocks/paging, date_range and user.

The pool's blocks are those the node accepted onto its chain (unconfirmed or confirmed;
never stale or orphaned ones), newest first. Rewards are doubles of coins: total_reward
is the coinbase value, base_reward its subsidy part (without transaction fees). For
blocks/user they are the user's own credit from each block, split the same way. Pool
blocks need any live key; a user's rewards need read_revenue.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from hashquarry.accounting import stats
from hashquarry.accounts.keys import Scope
from hashquarry.api.context import ApiContext
from hashquarry.api.f2pool import models as f
from hashquarry.api.f2pool import queries
from hashquarry.api.f2pool.access import Caller, check_currency, coins, owned_user, requires
from hashquarry.api.f2pool.errors import invalid

DEFAULT_PAGESIZE = 20
MAX_PAGESIZE = 100
MAX_RANGE_PAGESIZE = 1000  # blocks/date_range: one answer stays small, however wide the range


def block_out(row: Any, total: int | None = None) -> f.Block:
    """A block; with `total`, rewards are that part of the block's (a user's credit)."""
    income = int(row.income)
    subsidy = income - int(row.tx_fees)
    if total is None:
        total_reward, base_reward = income, subsidy
    else:
        total_reward = total
        base_reward = total * subsidy // income if income else 0
    return f.Block(
        height=int(row.height),
        block_hash=row.hash,
        base_reward=coins(base_reward),
        total_reward=coins(total_reward),
        timestamp=int(row.found_at),
        # The tracker matures a block in the same step that marks it confirmed.
        settle_timestamp=int(row.updated_at) if row.status == "confirmed" else 0,
    )


def check_range(start: int | None, end: int | None) -> None:
    for field, value in (("start_time", start), ("end_time", end)):
        if value is not None and value < 0:
            raise invalid(field, f"{value} is not a Unix timestamp")
    if start is not None and end is not None and end <= start:
        raise invalid("end_time", f"must be later than start_time ({end} <= {start})")


def page_of(page: int, pagesize: int, default: int, most: int) -> tuple[int, int]:
    """(page from 1, page size) of a request; 0 is protobuf's "absent"."""
    if page < 0:
        raise invalid("page", f"{page} is not a page number (from 1)")
    if not 0 <= pagesize <= most:
        raise invalid("pagesize", f"{pagesize} is not between 1 and {most}")
    return page or 1, pagesize or default


def register(r: APIRouter, ctx: ApiContext) -> None:
    anyone = Depends(requires(ctx, None))
    revenue = Depends(requires(ctx, Scope.READ_REVENUE))

    async def lucky(conn: Any) -> dict[str, float]:
        return await stats.luck(conn, ctx.coin, ctx.clock())

    @r.post(
        "/blocks/paging",
        summary="Blocks list",
        description="page from 1, pagesize 1-100 (0 or absent: page 1, 20 blocks); sum is "
        "the number of the pool's blocks. lucky maps 24h/3d/7d/30d/90d to expected work / "
        "work done (above 1 is lucky).",
    )
    async def paging(body: f.BlocksPagingReq, caller: Caller = anyone) -> f.BlocksResp:
        check_currency(ctx, body.currency)
        page, size = page_of(body.page, body.pagesize, DEFAULT_PAGESIZE, MAX_PAGESIZE)
        async with ctx.engine.connect() as conn:
            rows, total = await queries.block_page(conn, ctx.coin, (page - 1) * size, size)
            luck = await lucky(conn)
        return f.BlocksResp(lucky=luck, blocklist=[block_out(b) for b in rows], sum=total)

    @r.post(
        "/blocks/date_range",
        summary="Blocks list",
        description="The pool's blocks found in [start_time, end_time), newest first, at "
        f"most {MAX_RANGE_PAGESIZE} per answer; sum is how many the range holds. The "
        "extension fields page (from 1) and pagesize (1-1000) reach the older ones.",
    )
    async def date_range(body: f.BlocksDateRangeReq, caller: Caller = anyone) -> f.BlocksResp:
        check_currency(ctx, body.currency)
        check_range(body.start_time, body.end_time)
        page, size = page_of(body.page, body.pagesize, MAX_RANGE_PAGESIZE, MAX_RANGE_PAGESIZE)
        async with ctx.engine.connect() as conn:
            rows, total = await queries.blocks_between(
                conn, ctx.coin, body.start_time, body.end_time, (page - 1) * size, size
            )
            luck = await lucky(conn)
        return f.BlocksResp(lucky=luck, blocklist=[block_out(b) for b in rows], sum=total)

    @r.post(
        "/blocks/user",
        summary="mining reward details of user pplns",
        description="The pool's blocks that credited the user (block schemes: PPLNS, PROP, "
        "SOLO) found in [start_time, end_time), with the user's credit as the rewards; "
        "mining_reward keeps only credits of at least that many base units.",
    )
    async def user(body: f.BlocksUserReq, caller: Caller = revenue) -> f.BlocksUserResp:
        name = await owned_user(ctx, caller, body.mining_user_name, "mining_user_name")
        check_currency(ctx, body.currency)
        check_range(body.start_time, body.end_time)
        if body.mining_reward < 0:
            raise invalid("mining_reward", f"{body.mining_reward} is negative")
        async with ctx.engine.connect() as conn:
            found = await queries.user_block_credits(
                conn, ctx.coin, name, body.start_time, body.end_time, body.mining_reward
            )
        return f.BlocksUserResp(blocklist=[block_out(b, credit) for b, credit in found])

"""The ledger: an append-only journal of integer amounts; balances are sums over it.

Every operation writes its entries under an idempotency `ref` (unique with the
account and bucket), so repeating an operation after a crash changes nothing.
Block rewards arrive as immature entries when the block is found, move to the
balance when it matures, and are reversed if it turns out stale or orphaned.
The pool's own fee and retained amounts are booked to POOL_ACCOUNT, so the
entries of a block always add up to its reward exactly.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hashquarry.accounting.aggregate import FoundBlock, utc_day
from hashquarry.accounting.schemes import (
    Credits,
    pplns_credits,
    pplns_window_weight,
    prop_credits,
    settle_nano,
    share_weight,
    solo_credits,
)
from hashquarry.store import models as m

POOL_ACCOUNT = "__pool__"
BLOCK_SCHEMES = ("pplns", "prop", "solo")
FETCH = 200_000


async def mode_resolver(conn: AsyncConnection, coin: str, default: str) -> Any:
    """(account, time) -> scheme, from the settle-mode history."""
    rows = (
        await conn.execute(
            select(m.settle_modes.c.account, m.settle_modes.c.mode, m.settle_modes.c.activate_at)
            .where(m.settle_modes.c.coin == coin)
            .order_by(m.settle_modes.c.activate_at, m.settle_modes.c.id)
        )
    ).all()
    history: dict[str, list[tuple[float, str]]] = {}
    for account, mode, at in rows:
        history.setdefault(account, []).append((at, mode))

    def mode_of(account: str, t: float) -> str:
        current = default
        for at, mode in history.get(account, ()):
            if at <= t:
                current = mode
            else:
                break
        return current

    return mode_of


_WINDOW_SQL = text(
    "SELECT seq, account, difficulty FROM shares WHERE coin = :coin AND seq < :before "
    "ORDER BY seq DESC LIMIT :limit"
)


async def _window_newest_first(
    conn: AsyncConnection, coin: str, upto_seq: int, window: int
) -> list[tuple[str, float]]:
    """(account, difficulty) newest first, at least covering the window (or all there is).

    Plain text SQL and whole batches: at a million shares, per-row ORM objects and
    per-row awaits would dominate the time.
    """
    out: list[tuple[str, float]] = []
    covered = 0
    before = upto_seq + 1
    weight_of: dict[float, int] = {}
    while covered < window:
        rows = (
            await conn.execute(_WINDOW_SQL, {"coin": coin, "before": before, "limit": FETCH})
        ).all()
        if not rows:
            break
        for _seq, account, difficulty in rows:
            out.append((account, difficulty))
            w = weight_of.get(difficulty)
            if w is None:
                w = weight_of[difficulty] = share_weight(difficulty)
            covered += w
            if covered >= window:
                break
        before = rows[-1][0]
    return out


async def block_credits(
    conn: AsyncConnection, b: FoundBlock, *, scheme: str, fee_bps: int, pplns_n: float
) -> Credits:
    mode_of = await mode_resolver(conn, b.coin, scheme)

    def eligible(account: str) -> bool:
        return mode_of(account, b.found_at) in BLOCK_SCHEMES

    if scheme == "solo":
        return solo_credits(b.account, b.income, fee_bps)
    if scheme == "prop":
        rows = (
            await conn.execute(
                select(m.round_accounts.c.account, m.round_accounts.c.accepted_diff).where(
                    m.round_accounts.c.round_id == b.round_id
                )
            )
        ).all()
        weights = {a: share_weight(d) for a, d in rows if d > 0}
        if not weights:
            return solo_credits(b.account, b.income, fee_bps)
        return prop_credits(weights, b.income, fee_bps, eligible)
    window = pplns_window_weight(pplns_n, b.network_difficulty)
    shares = await _window_newest_first(conn, b.coin, b.seq, window)
    if not shares:
        return solo_credits(b.account, b.income, fee_bps)
    return pplns_credits(shares, window, b.income, fee_bps, eligible)


async def credit_block(
    conn: AsyncConnection,
    b: FoundBlock,
    *,
    scheme: str,
    fee_bps: int,
    pplns_n: float,
    now: float,
) -> None:
    """Immature credits for a block just found (PPS/FPPS pools keep the block)."""
    if scheme in BLOCK_SCHEMES:
        credits = await block_credits(conn, b, scheme=scheme, fee_bps=fee_bps, pplns_n=pplns_n)
        entries = dict(credits.per_account)
        fee, retained = credits.fee, credits.retained
    else:
        entries, fee, retained = {}, 0, b.income
    ref = f"block:{b.coin}:{b.id}:credit"
    day = utc_day(b.found_at)
    rows = [
        _entry(b.coin, a, "revenue", "immature", amt, b.id, ref, now, day)
        for a, amt in sorted(entries.items())
        if amt
    ]
    pool_amount = fee + retained
    if pool_amount:
        # The pool's part: a row per kind would break the ref's uniqueness per bucket.
        rows.append(
            _entry(
                b.coin,
                POOL_ACCOUNT,
                "fee",
                "immature",
                pool_amount,
                b.id,
                ref,
                now,
                day,
                {"fee": fee, "retained": retained},
            )
        )
    if rows:
        await conn.execute(m.ledger.insert(), rows)


def _entry(
    coin: str,
    account: str,
    kind: str,
    bucket: str,
    amount: int,
    block_id: int | None,
    ref: str,
    now: float,
    day: str | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "coin": coin,
        "account": account,
        "kind": kind,
        "bucket": bucket,
        "amount": amount,
        "block_id": block_id,
        "ref": ref,
        "created_at": now,
        "mining_date": day,
        "extra": extra,
    }


async def _immature_of(conn: AsyncConnection, coin: str, block_id: int) -> list[Any]:
    return list(
        (
            await conn.execute(
                select(
                    m.ledger.c.account, m.ledger.c.kind, m.ledger.c.amount, m.ledger.c.mining_date
                ).where(
                    m.ledger.c.ref == f"block:{coin}:{block_id}:credit",
                    m.ledger.c.bucket == "immature",
                )
            )
        ).all()
    )


async def mature_block(conn: AsyncConnection, coin: str, block_id: int, now: float) -> None:
    ref = f"block:{coin}:{block_id}:mature"
    if await conn.scalar(select(func.count()).where(m.ledger.c.ref == ref)):
        return
    rows = []
    for account, kind, amount, day in await _immature_of(conn, coin, block_id):
        rows.append(_entry(coin, account, kind, "immature", -amount, block_id, ref, now, day))
        rows.append(_entry(coin, account, kind, "balance", amount, block_id, ref, now, day))
    if rows:
        await conn.execute(m.ledger.insert(), rows)


async def reverse_block(conn: AsyncConnection, coin: str, block_id: int, now: float) -> None:
    ref = f"block:{coin}:{block_id}:reverse"
    if await conn.scalar(select(func.count()).where(m.ledger.c.ref == ref)):
        return
    rows = [
        _entry(coin, account, kind, "immature", -amount, block_id, ref, now, day)
        for account, kind, amount, day in await _immature_of(conn, coin, block_id)
    ]
    if rows:
        await conn.execute(m.ledger.insert(), rows)


async def settle_pps(
    conn: AsyncConnection, coin: str, before_day: str, fee_bps: int, now: float
) -> int:
    """Settle every unsettled PPS/FPPS day before `before_day` into revenue entries.

    Sub-satoshi remainders carry into the next day, so nothing is lost or created.
    Returns the number of revenue entries written.
    """
    rows = (
        (
            await conn.execute(
                select(m.pps_accruals)
                .where(
                    m.pps_accruals.c.coin == coin,
                    m.pps_accruals.c.settled.is_(False),
                    m.pps_accruals.c.day < before_day,
                )
                .order_by(m.pps_accruals.c.account, m.pps_accruals.c.day)
            )
        )
        .mappings()
        .all()
    )
    settle_date = utc_day(now)
    written = 0
    for r in rows:
        # Re-read: settling the day before may have carried a remainder into this row.
        stored = (
            await conn.execute(
                select(m.pps_accruals.c.sats, m.pps_accruals.c.nano).where(
                    m.pps_accruals.c.coin == coin,
                    m.pps_accruals.c.account == r["account"],
                    m.pps_accruals.c.day == r["day"],
                )
            )
        ).one()
        r = {**r, "nano": int(stored.sats) * 10**9 + int(stored.nano)}
        paid, remainder = settle_nano(r["nano"])
        next_day = (dt.date.fromisoformat(r["day"]) + dt.timedelta(days=1)).isoformat()
        if paid:
            gross = r["nano"] + r["fee_nano"]
            extra = {
                "mining_date": r["day"],
                "settle_date": settle_date,
                "pps": paid,
                "pps_fee_rate": fee_bps / 10_000,
                "tx_fee": r["tx_fee_nano"] // 1_000_000_000,
                "tx_fee_rate": (r["tx_fee_nano"] / gross) if gross else 0.0,
                "hash_rate": r["accepted_diff"] * 2**32 / 86_400,
            }
            await conn.execute(
                m.ledger.insert(),
                [
                    _entry(
                        coin,
                        r["account"],
                        "revenue",
                        "balance",
                        paid,
                        None,
                        f"pps:{coin}:{r['day']}",
                        now,
                        r["day"],
                        extra,
                    )
                ],
            )
            written += 1
        await conn.execute(
            update(m.pps_accruals)
            .where(
                and_(
                    m.pps_accruals.c.coin == coin,
                    m.pps_accruals.c.account == r["account"],
                    m.pps_accruals.c.day == r["day"],
                )
            )
            .values(settled=True)
        )
        if remainder:
            from hashquarry.accounting.writer import upsert

            await upsert(
                conn,
                m.pps_accruals,
                [
                    {
                        "coin": coin,
                        "account": r["account"],
                        "day": next_day,
                        "sats": 0,
                        "nano": remainder,
                        "fee_nano": 0,
                        "tx_fee_nano": 0,
                        "accepted_diff": 0.0,
                        "settled": False,
                    }
                ],
                ["coin", "account", "day"],
                add=["nano"],  # a remainder is < 1e9: sats stay as they are
            )
    return written


@dataclass(frozen=True)
class Balance:
    balance: int
    immature_balance: int
    paid: int
    total_income: int
    yesterday_income: int
    estimated_today_income: int


async def balances(conn: AsyncConnection, coin: str, now: float) -> dict[str, Balance]:
    today = utc_day(now)
    yesterday = utc_day(now - 86_400)
    c = m.ledger.c
    income_kinds = ("revenue", "dividend", "reward")
    rows = (
        await conn.execute(
            select(
                c.account,
                func.sum(case((c.bucket == "balance", c.amount), else_=0)),
                func.sum(case((c.bucket == "immature", c.amount), else_=0)),
                func.sum(case((c.kind == "payout", -c.amount), else_=0)),
                func.sum(
                    case((and_(c.bucket == "balance", c.kind.in_(income_kinds)), c.amount), else_=0)
                ),
                func.sum(
                    case(
                        (
                            and_(
                                c.bucket == "balance",
                                c.kind.in_(income_kinds),
                                c.mining_date == yesterday,
                            ),
                            c.amount,
                        ),
                        else_=0,
                    )
                ),
            )
            .where(c.coin == coin)
            .group_by(c.account)
        )
    ).all()
    today_pps = dict(
        (
            await conn.execute(
                select(
                    m.pps_accruals.c.account,
                    func.sum(m.pps_accruals.c.sats) * 10**9 + func.sum(m.pps_accruals.c.nano),
                )
                .where(
                    m.pps_accruals.c.coin == coin,
                    m.pps_accruals.c.day == today,
                    m.pps_accruals.c.settled.is_(False),
                )
                .group_by(m.pps_accruals.c.account)
            )
        ).all()
    )
    out: dict[str, Balance] = {}
    for account, bal, imm, paid, total, yday in rows:
        out[account] = Balance(
            int(bal or 0),
            int(imm or 0),
            int(paid or 0),
            int(total or 0),
            int(yday or 0),
            int(today_pps.pop(account, 0) or 0) // 10**9,
        )
    for account, nano in today_pps.items():
        out[account] = Balance(0, 0, 0, 0, 0, int(nano or 0) // 10**9)
    return out

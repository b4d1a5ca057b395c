"""The ledger: an append-only journal of integer amounts; balances are sums over it.

Every operation writes its entries under an idempotency `ref` (unique with the
account and bucket), so repeating an operation after a crash changes nothing.
Block rewards arrive as immature entries when the block is found (split by
`accounting.split` over the settle modes of the shares behind it), move to the
balance when it matures, are reversed if it turns out stale or orphaned, and are
credited again, as immature, if a reorg brings it back onto the chain. The pool's
own fee and retained amounts are booked to POOL_ACCOUNT, so the entries of a block
always add up to its reward exactly (or to nothing while it is off the chain).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hashquarry.accounting.aggregate import FoundBlock, utc_day
from hashquarry.accounting.schemes import Credits, pplns_window_weight, settle_nano
from hashquarry.accounting.split import BLOCK_MODES, SHARE_MODES, basis_of, split_block
from hashquarry.accounting.window import ModeHistory, mode_history, round_weights, window_weights
from hashquarry.store import models as m

POOL_ACCOUNT = "__pool__"
BLOCK_SCHEMES = BLOCK_MODES


async def mode_resolver(conn: AsyncConnection, coin: str, default: str) -> ModeHistory:
    """(account, time) -> settle mode, from the switch history (see window.ModeHistory)."""
    return await mode_history(conn, coin, default)


async def block_credits(
    conn: AsyncConnection,
    b: FoundBlock,
    *,
    scheme: str,
    fee_bps: int,
    pplns_n: float,
    modes: ModeHistory | None = None,
) -> Credits:
    """What block `b` credits on a coin whose default scheme is `scheme` (split.py)."""
    if modes is None:
        modes = await mode_history(conn, b.coin, scheme)
    finder_mode = modes(b.account, b.found_at)
    if finder_mode in SHARE_MODES and not modes.switched:
        # Everyone is paid per share: the block is the pool's; no window to read.
        return Credits({}, 0, b.income)
    window: dict[tuple[str, str], int] = {}
    round_: dict[tuple[str, str], int] = {}
    if finder_mode != "solo":
        # Each measure is read only when a group needs it: the basis always, the
        # other one when some of the basis' work is in the mode that uses it.
        width = pplns_window_weight(pplns_n, b.network_difficulty)

        async def read_window() -> dict[tuple[str, str], int]:
            return await window_weights(conn, b.coin, b.seq, width, modes)

        async def read_round() -> dict[tuple[str, str], int]:
            return await round_weights(conn, b.coin, b.round_id, b.seq, modes, b.found_at)

        if basis_of(scheme) == "window":
            window = await read_window()
            if any(mode == "prop" for _, mode in window):
                round_ = await read_round()
        else:
            round_ = await read_round()
            if any(mode == "pplns" for _, mode in round_):
                window = await read_window()
    return split_block(
        b.income,
        fee_bps,
        finder=b.account,
        finder_mode=finder_mode,
        basis=basis_of(scheme),
        window=window,
        round_=round_,
    )


async def credit_block(
    conn: AsyncConnection,
    b: FoundBlock,
    *,
    scheme: str,
    fee_bps: int,
    pplns_n: float,
    now: float,
) -> None:
    """Immature credits for a block just found; the pool's part is its fee + retained."""
    credits = await block_credits(conn, b, scheme=scheme, fee_bps=fee_bps, pplns_n=pplns_n)
    entries, fee, retained = credits.per_account, credits.fee, credits.retained
    ref = _block_ref(b.coin, b.id, "credit")
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


def _block_ref(coin: str, block_id: int, op: str) -> str:
    return f"block:{coin}:{block_id}:{op}"


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


def _of_block(coin: str, block_id: int) -> Any:
    c = m.ledger.c
    return and_(c.coin == coin, c.block_id == block_id, c.ref.like(f"block:{coin}:{block_id}:%"))


async def _net_immature(conn: AsyncConnection, coin: str, block_id: int) -> list[Any]:
    """(account, kind, amount, mining_date) the block holds immature now, per account."""
    c = m.ledger.c
    return list(
        (
            await conn.execute(
                select(c.account, c.kind, func.sum(c.amount), func.max(c.mining_date))
                .where(_of_block(coin, block_id), c.bucket == "immature")
                .group_by(c.account, c.kind)
                .having(func.sum(c.amount) != 0)
                .order_by(c.account, c.kind)
            )
        ).all()
    )


async def _count_refs(conn: AsyncConnection, ref_like: str) -> int:
    return int(
        await conn.scalar(
            select(func.count(func.distinct(m.ledger.c.ref))).where(m.ledger.c.ref.like(ref_like))
        )
        or 0
    )


async def mature_block(conn: AsyncConnection, coin: str, block_id: int, now: float) -> int:
    """Move what the block holds immature to the balance, once. Returns rows written."""
    ref = _block_ref(coin, block_id, "mature")
    if await _count_refs(conn, ref):
        return 0
    rows = []
    for account, kind, amount, day in await _net_immature(conn, coin, block_id):
        rows.append(_entry(coin, account, kind, "immature", -amount, block_id, ref, now, day))
        rows.append(_entry(coin, account, kind, "balance", amount, block_id, ref, now, day))
    if rows:
        await conn.execute(m.ledger.insert(), rows)
    return len(rows)


async def reverse_block(conn: AsyncConnection, coin: str, block_id: int, now: float) -> int:
    """Take back what the block holds immature (it left the chain). A block can leave
    and return more than once, so each reversal has its own ref (reverse:1, :2, ...);
    a repeated call finds nothing immature and writes nothing."""
    held = await _net_immature(conn, coin, block_id)
    if not held:
        return 0
    n = await _count_refs(conn, _block_ref(coin, block_id, "reverse:%")) + 1
    ref = _block_ref(coin, block_id, f"reverse:{n}")
    rows = [
        _entry(coin, account, kind, "immature", -amount, block_id, ref, now, day)
        for account, kind, amount, day in held
    ]
    await conn.execute(m.ledger.insert(), rows)
    return len(rows)


async def recredit_block(conn: AsyncConnection, coin: str, block_id: int, now: float) -> int:
    """The block is back on the chain after a reorg: its original credits again, as
    immature (ref recredit:N after reverse:N). The split is the one made when it was
    found, not a new one: the shares behind it are the same. Idempotent: nothing is
    written while the block holds anything immature, or once it has matured."""
    if await _count_refs(conn, _block_ref(coin, block_id, "mature")):
        return 0
    if await _net_immature(conn, coin, block_id):
        return 0
    n = await _count_refs(conn, _block_ref(coin, block_id, "reverse:%"))
    if n == 0:
        return 0  # never reversed: the credit itself stands (or there was none)
    ref = _block_ref(coin, block_id, f"recredit:{n}")
    if await _count_refs(conn, ref):
        return 0
    c = m.ledger.c
    credit = (
        await conn.execute(
            select(c.account, c.kind, c.amount, c.mining_date, c.extra).where(
                c.ref == _block_ref(coin, block_id, "credit"), c.bucket == "immature"
            )
        )
    ).all()
    rows = [
        _entry(coin, account, kind, "immature", amount, block_id, ref, now, day, extra)
        for account, kind, amount, day, extra in credit
    ]
    if rows:
        await conn.execute(m.ledger.insert(), rows)
    return len(rows)


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

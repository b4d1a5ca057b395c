"""The ledger on every backend: block credits per scheme, maturing, reversing, PPS settling.

Every block's entries add up to its reward exactly, every operation is idempotent
(its `ref`), and balances are always the sums of the entries.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hashquarry.accounting.aggregate import FoundBlock
from hashquarry.accounting.ledger import (
    POOL_ACCOUNT,
    balances,
    credit_block,
    mature_block,
    reverse_block,
    settle_pps,
)
from hashquarry.accounting.writer import upsert
from hashquarry.store import models as m

from .builders import COIN, ND, NOW, TODAY, YESTERDAY, rows

INCOME = 625_012_347  # odd on purpose: splits leave remainders
FEE_BPS = 150


def block(
    block_id: int,
    *,
    seq: int,
    income: int = INCOME,
    found_at: float = NOW - 60,
    account: str = "alice",
    round_id: int = 1,
) -> FoundBlock:
    return FoundBlock(
        id=block_id,
        coin=COIN,
        seq=seq,
        height=900_000 + block_id,
        hash=f"{block_id:064x}",
        network_difficulty=ND,
        income=income,
        tx_fees=0,
        account=account,
        worker="rig1",
        found_at=found_at,
        round_id=round_id,
        round_started_at=found_at - 600,
        round_accepted=0,
        round_rejected=0,
        round_diff=0.0,
    )


async def seed(conn: AsyncConnection) -> None:
    """Shares for the PPLNS window, round weights for PROP, dave in PPS mode."""
    shares = [  # seq, account, difficulty
        (1, "alice", 1000.0),
        (2, "bob", 1000.0),
        (3, "carol", 2000.0),
        (4, "dave", 500.0),
        (5, "alice", 1000.0),
        (6, "bob", 3000.0),  # after the block at seq 5: never in its window
    ]
    await conn.execute(
        insert(m.shares),
        [
            {"seq": s, "coin": COIN, "time": NOW - 100 + s, "account": a, "worker": "rig1"}
            | {"difficulty": d}
            for s, a, d in shares
        ],
    )
    await conn.execute(
        insert(m.round_accounts),
        [
            {"round_id": 1, "account": a, "accepted_diff": d, "accepted": 1, "rejected": 0}
            for a, d in [("alice", 3000.0), ("bob", 1000.0), ("dave", 1000.0), ("erin", 0.0)]
        ],
    )
    await conn.execute(
        insert(m.settle_modes).values(
            coin=COIN, account="dave", mode="pps", activate_at=NOW - 86400, created_at=0.0
        )
    )


async def entries(conn: AsyncConnection, block_id: int | None = None) -> list[dict[str, Any]]:
    where = m.ledger.c.block_id == block_id if block_id is not None else None
    return await rows(conn, m.ledger, where=where)


async def count(conn: AsyncConnection) -> int:
    return int(await conn.scalar(select(func.count()).select_from(m.ledger)) or 0)


# --------------------------------------------------------------------------- crediting


@pytest.mark.parametrize(
    ("scheme", "pplns_n", "fee_bps", "expected"),
    [
        # window 0.25 x 10,000 = 2,500 newest first: alice 1000 (seq 5), dave 500,
        # carol 1000 of her 2000 (the edge share counts only for what fits).
        # dave is in PPS mode: his part is retained by the pool.
        ("pplns", 0.25, 0, {"alice": 250_004_939, "carol": 250_004_939}),
        ("pplns", 0.25, FEE_BPS, {"alice": 246_254_865, "carol": 246_254_865}),
        # a window longer than the log: every share up to the block (alice 2000,
        # bob 1000, carol 2000, dave 500)
        ("pplns", 5.0, 0, {"alice": 227_277_217, "bob": 113_638_609, "carol": 227_277_217}),
        # PROP: the round's weights alice 3000, bob 1000, dave 1000 (retained), erin 0.
        # Gross by the round: alice 375,007,408, bob 125,002,470 (the odd satoshi: the
        # larger remainder, tie to the smaller key), dave 125,002,469; the PROP pot
        # 500,009,878 (less the fee) is then split 3:1, its odd satoshi to alice.
        ("prop", 2.0, 0, {"alice": 375_007_409, "bob": 125_002_469}),
        ("prop", 2.0, FEE_BPS, {"alice": 369_382_298, "bob": 123_127_432}),
        # SOLO: the finder takes it all, less the fee
        ("solo", 2.0, 0, {"alice": INCOME}),
        ("solo", 2.0, FEE_BPS, {"alice": INCOME - INCOME * FEE_BPS // 10_000}),
        # PPS/FPPS pools paid per share already: the block is the pool's
        ("pps", 2.0, FEE_BPS, {}),
        ("fpps", 2.0, FEE_BPS, {}),
    ],
)
async def test_credit_block_adds_up_to_the_income(
    engine: AsyncEngine, scheme: str, pplns_n: float, fee_bps: int, expected: dict[str, int]
) -> None:
    async with engine.begin() as conn:
        await seed(conn)
        await credit_block(
            conn, block(1, seq=5), scheme=scheme, fee_bps=fee_bps, pplns_n=pplns_n, now=NOW
        )
    async with engine.connect() as conn:
        got = await entries(conn, 1)
    per_account = {r["account"]: r["amount"] for r in got if r["account"] != POOL_ACCOUNT}
    assert per_account == expected
    assert sum(r["amount"] for r in got) == INCOME  # to the satoshi
    assert all(r["amount"] > 0 for r in got)
    for r in got:
        assert (r["bucket"], r["ref"], r["mining_date"]) == (
            "immature",
            f"block:{COIN}:1:credit",
            TODAY,
        )
    pool = [r for r in got if r["account"] == POOL_ACCOUNT]
    if scheme == "solo" and fee_bps == 0:
        assert pool == []  # nothing for the pool: no zero-amount row
        return
    assert len(pool) == 1 and pool[0]["kind"] == "fee"
    extra = pool[0]["extra"]
    assert extra["fee"] + extra["retained"] == pool[0]["amount"]
    if scheme in ("pps", "fpps"):
        assert extra == {"fee": 0, "retained": INCOME}
    else:
        # The fee is on the part credited to block-mode work; dave's PPS part (retained)
        # was charged its fee per share already.
        assert extra["fee"] == (INCOME - extra["retained"]) * fee_bps // 10_000
        assert (extra["retained"] > 0) == (scheme != "solo")


async def test_every_scheme_adds_up_across_many_blocks(engine: AsyncEngine) -> None:
    """Rewards of every size (1 satoshi up), every scheme: each block sums to its income."""
    incomes = [1, 2, 3, 7, 99, 10_001, 312_500_000, 2_099_999_997_690_000]
    schemes = ["pplns", "prop", "solo", "pps", "fpps"]
    async with engine.begin() as conn:
        await seed(conn)
        block_id = 0
        for scheme in schemes:
            for income in incomes:
                block_id += 1
                await credit_block(
                    conn,
                    block(block_id, seq=5, income=income),
                    scheme=scheme,
                    fee_bps=FEE_BPS,
                    pplns_n=0.3,
                    now=NOW,
                )
    async with engine.connect() as conn:
        got = await entries(conn)
    sums: dict[int, int] = defaultdict(int)
    for r in got:
        assert r["amount"] > 0
        sums[r["block_id"]] += r["amount"]
    assert [sums[i + 1] for i in range(block_id)] == incomes * len(schemes)


# --------------------------------------------------------------------------- lifecycle


async def test_mature_and_reverse_are_idempotent(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await seed(conn)
        for block_id in (1, 2):
            await credit_block(
                conn, block(block_id, seq=5), scheme="pplns", fee_bps=FEE_BPS, pplns_n=5, now=NOW
            )
        credited = {r["account"]: r["amount"] for r in await entries(conn, 1)}
        n_credit = await count(conn)
    assert n_credit == 2 * len(credited)

    for _ in range(2):  # the tracker may repeat itself after a crash
        async with engine.begin() as conn:
            await mature_block(conn, COIN, 1, NOW)
            await reverse_block(conn, COIN, 2, NOW)
        async with engine.connect() as conn:
            # mature: -immature +balance per entry; reverse: -immature per entry
            assert await count(conn) == n_credit + 3 * len(credited)

    async with engine.connect() as conn:
        bal = await balances(conn, COIN, NOW)
        matured = await entries(conn, 1)
    assert {a: (b.balance, b.immature_balance) for a, b in bal.items()} == {
        a: (amount, 0) for a, amount in credited.items()
    }
    mature_rows = [r for r in matured if r["ref"] == f"block:{COIN}:1:mature"]
    assert sorted((r["account"], r["bucket"], r["amount"]) for r in mature_rows) == sorted(
        [(a, "balance", v) for a, v in credited.items()]
        + [(a, "immature", -v) for a, v in credited.items()]
    )
    # kinds are carried over: the pool's part stays a fee, miners' parts revenue
    assert {r["account"]: r["kind"] for r in mature_rows}[POOL_ACCOUNT] == "fee"


async def test_mature_or_reverse_of_an_uncredited_block_writes_nothing(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        await mature_block(conn, COIN, 99, NOW)
        await reverse_block(conn, COIN, 98, NOW)
        assert await count(conn) == 0


async def test_balances_are_the_sums_of_the_entries(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await seed(conn)
        # yesterday's block matured, today's immature, one orphaned
        await credit_block(
            conn,
            block(1, seq=5, found_at=NOW - 86400),
            scheme="pplns",
            fee_bps=FEE_BPS,
            pplns_n=5,
            now=NOW - 86400,
        )
        await mature_block(conn, COIN, 1, NOW - 3600)
        await credit_block(
            conn, block(2, seq=5), scheme="prop", fee_bps=FEE_BPS, pplns_n=5, now=NOW
        )
        await credit_block(
            conn, block(3, seq=5), scheme="solo", fee_bps=FEE_BPS, pplns_n=5, now=NOW
        )
        await reverse_block(conn, COIN, 3, NOW)
        # a payout of 100,000 to alice, and a dividend to bob
        await conn.execute(
            insert(m.ledger),
            [
                {
                    "coin": COIN,
                    "account": "alice",
                    "kind": "payout",
                    "bucket": "balance",
                    "amount": -100_000,
                    "ref": "payout:1",
                    "created_at": NOW,
                    "mining_date": None,
                },
                {
                    "coin": COIN,
                    "account": "bob",
                    "kind": "dividend",
                    "bucket": "balance",
                    "amount": 7,
                    "ref": "dividend:1",
                    "created_at": NOW,
                    "mining_date": YESTERDAY,
                },
            ],
        )
        # dave's PPS accrual of today: 2.5 satoshis so far
        await conn.execute(
            insert(m.pps_accruals).values(
                coin=COIN, account="dave", day=TODAY, nano=2_500_000_000, settled=False
            )
        )
        # and another coin's entries stay out of it
        await conn.execute(
            insert(m.ledger).values(
                coin="other",
                account="alice",
                kind="revenue",
                bucket="balance",
                amount=5,
                ref="x",
                created_at=NOW,
            )
        )
    async with engine.connect() as conn:
        got = await balances(conn, COIN, NOW)
        all_rows = await entries(conn)

    fields = [
        "balance",
        "immature_balance",
        "paid",
        "total_income",
        "yesterday_income",
        "estimated_today_income",
    ]
    expect: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(fields, 0))
    for r in all_rows:
        if r["coin"] != COIN:
            continue
        e = expect[r["account"]]
        e["balance"] += r["amount"] if r["bucket"] == "balance" else 0
        e["immature_balance"] += r["amount"] if r["bucket"] == "immature" else 0
        e["paid"] += -r["amount"] if r["kind"] == "payout" else 0
        income = r["bucket"] == "balance" and r["kind"] in ("revenue", "dividend", "reward")
        e["total_income"] += r["amount"] if income else 0
        e["yesterday_income"] += r["amount"] if income and r["mining_date"] == YESTERDAY else 0
    expect["dave"]["estimated_today_income"] = 2  # whole satoshis of today's accrual
    assert {a: {f: getattr(b, f) for f in fields} for a, b in got.items()} == expect
    assert got["alice"].paid == 100_000
    assert got["alice"].yesterday_income > 0 and got["alice"].immature_balance > 0
    assert got["bob"].yesterday_income == got["bob"].total_income  # all mined yesterday
    assert all(b.balance >= 0 and b.immature_balance >= 0 for b in got.values())


# --------------------------------------------------------------------------- PPS settlement


async def _accrue(conn: AsyncConnection, account: str, day: str, nano: int) -> None:
    await upsert(
        conn,
        m.pps_accruals,
        [
            {
                "coin": COIN,
                "account": account,
                "day": day,
                "nano": nano,
                "fee_nano": nano // 99,
                "tx_fee_nano": nano // 10,
                "accepted_diff": 1000.0,
                "settled": False,
            }
        ],
        ["coin", "account", "day"],
        add=["nano", "fee_nano", "tx_fee_nano", "accepted_diff"],
    )


async def test_settle_pps_carries_the_remainder_and_runs_once(engine: AsyncEngine) -> None:
    settle_at = NOW - 8 * 3600 + 5  # 2027-01-15 00:00:05 UTC
    async with engine.begin() as conn:
        await _accrue(conn, "carol", YESTERDAY, 1_500_000_000)  # 1.5 satoshis
        await _accrue(conn, "dave", YESTERDAY, 999_999_999)  # not a whole satoshi
        await _accrue(conn, "carol", TODAY, 100)  # today is not settled yet
        written = await settle_pps(conn, COIN, TODAY, FEE_BPS, settle_at)
    assert written == 1
    async with engine.connect() as conn:
        ledger = await entries(conn)
        acc = {(r["account"], r["day"]): r for r in await rows(conn, m.pps_accruals)}
    assert len(ledger) == 1
    e = ledger[0]
    assert (e["account"], e["kind"], e["bucket"], e["amount"], e["mining_date"]) == (
        "carol",
        "revenue",
        "balance",
        1,
        YESTERDAY,
    )
    assert e["ref"] == f"pps:{COIN}:{YESTERDAY}"
    assert e["extra"]["mining_date"] == YESTERDAY and e["extra"]["settle_date"] == TODAY
    assert e["extra"]["pps"] == 1 and e["extra"]["pps_fee_rate"] == FEE_BPS / 10_000
    assert e["extra"]["hash_rate"] == pytest.approx(1000.0 * 2**32 / 86400)
    assert acc["carol", YESTERDAY]["settled"] and acc["dave", YESTERDAY]["settled"]
    # the remainders carry into the next day, added to what is there
    assert (acc["carol", TODAY]["nano"], acc["carol", TODAY]["settled"]) == (
        500_000_100,
        False,
    )
    assert (acc["dave", TODAY]["nano"], acc["dave", TODAY]["settled"]) == (999_999_999, False)

    async with engine.begin() as conn:  # the same settlement again: nothing to do
        assert await settle_pps(conn, COIN, TODAY, FEE_BPS, settle_at + 60) == 0
    async with engine.connect() as conn:
        assert await entries(conn) == ledger
        again = {(r["account"], r["day"]): r for r in await rows(conn, m.pps_accruals)}
    assert again == acc

    # the next day: today's accruals plus the carry settle; value is conserved
    async with engine.begin() as conn:
        await _accrue(conn, "dave", TODAY, 1)
        # dave: 0.999999999 + 0.000000001 = 1 satoshi; carol: 0.5000001, carried again
        assert await settle_pps(conn, COIN, "2027-01-16", FEE_BPS, settle_at + 86400) == 1
    async with engine.connect() as conn:
        paid = {r["account"]: 0 for r in await entries(conn)}
        for r in await entries(conn):
            paid[r["account"]] += r["amount"]
        carry = {
            r["account"]: r["nano"] for r in await rows(conn, m.pps_accruals) if not r["settled"]
        }
    assert paid == {"carol": 1, "dave": 1}
    assert carry == {"carol": 500_000_100}  # now on 2027-01-16
    assert 1 * 10**9 + carry["carol"] == 1_500_000_000 + 100  # carol: nothing lost or made


async def test_settle_pps_over_several_days_conserves_value(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await _accrue(conn, "carol", "2027-01-13", 1_500_000_000)
        await _accrue(conn, "carol", YESTERDAY, 1_500_000_000)
        await settle_pps(conn, COIN, TODAY, FEE_BPS, NOW)
    async with engine.connect() as conn:
        paid = sum(r["amount"] for r in await entries(conn))
        carried = sum(r["nano"] for r in await rows(conn, m.pps_accruals) if not r["settled"])
    assert paid * 10**9 + carried == 3_000_000_000
    assert (paid, carried) == (3, 0)

"""Shared builders for the distribution store tests (this module holds no tests).

A `World` is a migrated store with two owners — acme (alice, amy, ann) and bolt (bob) —
the accounts and distribution services on one settable clock, and a real share pipeline:
`mine()` folds synthetic ShareEvents through the real Aggregator and `write_batch`, and
`settle_pps()` runs the ledger's real PPS settlement, so incomes, hashes and hashrates
come from the same rows production writes.

Figures are chosen to be exact: one share of difficulty 120 per minute is 2^33 H/s
(120 x 2^32 / 60), worth 74,250 base units under PPS at network difficulty 10^6
(120/10^6 of a 625,000,000 subsidy, less 1%), so a full day is 106,920,000. (A larger
day overflows `pps_accruals.nano`, a BigInteger of nano-units: 2^63 nano is 92 coins.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.accounting.aggregate import Aggregator, FoundBlock, utc_day
from hashquarry.accounting.ledger import credit_block, mature_block, settle_pps
from hashquarry.accounts.service import AccountsService
from hashquarry.distribution import queries
from hashquarry.distribution.service import DistributionService
from hashquarry.distribution.tables import DISTRIBUTION_TABLES
from hashquarry.store import models as m
from hashquarry.store.models import metadata

from .builders import COIN, FEE_BPS, aggregator, share, write

DAY = 86_400
D0 = 1_799_971_200.0  # 2027-01-15 00:00:00 UTC
NET_DIFF = 1_000_000.0
MINUTE_DIFF = 120.0  # one share a minute: 2^33 H/s
FULL_RATE = 2.0**33
HALF_RATE = 2.0**32
SHARE_VALUE = 74_250
DAY_INCOME = 1440 * SHARE_VALUE  # 106,920,000
BLOCK_INCOME = 625_012_347  # odd on purpose


@dataclass
class Clock:
    now: float = D0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    engine: AsyncEngine
    clock: Clock
    accounts: AccountsService
    dist: DistributionService
    agg: Aggregator = field(
        default_factory=lambda: aggregator(
            modes={u: "pps" for u in ("alice", "amy", "ann", "bob")}, round_started=D0 - DAY
        )
    )
    seq: int = 0
    ids: dict[str, int] = field(default_factory=dict)  # rows a test refers back to

    async def mine(
        self, account: str, start: float, end: float, difficulty: float = MINUTE_DIFF
    ) -> None:
        """One accepted share a minute, at start, start + 60, ... < end."""
        t = start
        while t < end:
            self.seq += 1
            ev = share(t, account, difficulty=difficulty, network_difficulty=NET_DIFF)
            self.agg.apply(self.seq, ev)
            t += 60
        async with self.engine.begin() as conn:
            await write(conn, self.agg.take())

    async def settle_pps(self, before: float) -> None:
        """Settle PPS days before the UTC day of `before`, at the clock's time."""
        async with self.engine.begin() as conn:
            await settle_pps(conn, COIN, utc_day(before), FEE_BPS, self.clock.now)

    async def solo_block(self, block_id: int, account: str, found_at: float) -> None:
        """An immature solo credit of BLOCK_INCOME (less the fee) dated `found_at`."""
        b = FoundBlock(
            id=block_id, coin=COIN, seq=10**6 + block_id, height=900_000 + block_id,
            hash=f"{block_id:064x}", network_difficulty=NET_DIFF, income=BLOCK_INCOME, tx_fees=0,
            account=account, worker="rig1", found_at=found_at, round_id=1,
            round_started_at=found_at - 600, round_accepted=0, round_rejected=0, round_diff=0.0,
        )  # fmt: skip
        async with self.engine.begin() as conn:
            await credit_block(conn, b, scheme="solo", fee_bps=FEE_BPS, pplns_n=1.0, now=found_at)

    async def mature(self, block_id: int) -> None:
        async with self.engine.begin() as conn:
            await mature_block(conn, COIN, block_id, self.clock.now)

    async def income(self, account: str, day_start: float) -> int:
        async with self.engine.connect() as conn:
            return await queries.revenue_of_day(conn, COIN, account, utc_day(day_start))

    async def balance(self, account: str) -> int:
        lg = m.ledger.c
        async with self.engine.connect() as conn:
            value = await conn.scalar(
                select(func.coalesce(func.sum(lg.amount), 0)).where(
                    lg.coin == COIN, lg.account == account, lg.bucket == "balance"
                )
            )
        return int(value or 0)

    async def dividends(self, account: str) -> int:
        lg = m.ledger.c
        async with self.engine.connect() as conn:
            value = await conn.scalar(
                select(func.coalesce(func.sum(lg.amount), 0)).where(
                    lg.coin == COIN, lg.account == account, lg.kind == "dividend"
                )
            )
        return int(value or 0)

    async def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, for "nothing changed" comparisons."""
        out = {}
        async with self.engine.connect() as conn:
            for table in metadata.sorted_tables:
                rows = await conn.execute(select(table).order_by(*table.primary_key.columns))
                out[table.name] = [tuple(r) for r in rows]
        return out


async def make_world(engine: AsyncEngine) -> World:
    # Until the Alembic migration has the distribution tables, create them after the
    # upgrade (checkfirst: a no-op once it does).
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: metadata.create_all(c, tables=list(DISTRIBUTION_TABLES)))
    clock = Clock()
    accounts = AccountsService(engine, {COIN: "regtest"}, clock=clock)
    await accounts.create_owner("acme")
    await accounts.create_owner("bolt")
    for user in ("alice", "amy", "ann"):
        await accounts.add_mining_user("acme", user)
    await accounts.add_mining_user("bolt", "bob")
    return World(engine, clock, accounts, DistributionService(engine, accounts, clock=clock))

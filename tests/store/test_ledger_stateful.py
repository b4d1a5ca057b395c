"""A hypothesis state machine over the ledger's operations, on every backend.

Rules: shares mined (under settle modes chosen at the start), blocks found and credited
under any coin scheme, matured, orphaned and brought back by a reorg, each of those
also repeated or applied in the wrong state (the tracker may repeat itself after a
crash); PPS accruals settled at 00:00 UTC; payouts debited as the payout engine does
(at most the balance, re-checked inside the write). After every step:

- no account's balance or immature balance is negative;
- `balances()` equals the sums over the entries, account by account;
- each block's entries add up to its reward while it is on the chain (immature
  until it matures, then balance) and to nothing while it is off it;
- all balances together are the matured rewards plus the settled PPS less the payouts.

Rules run synchronously on the machine's own event loop; one migrated database
serves every example, each with its own coin (and its own range of share seqs).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections import defaultdict
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
)
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.accounting.aggregate import FoundBlock
from hashquarry.accounting.ledger import (
    POOL_ACCOUNT,
    balances,
    credit_block,
    mature_block,
    recredit_block,
    reverse_block,
    settle_pps,
)
from hashquarry.accounting.split import MODES
from hashquarry.accounting.writer import upsert
from hashquarry.store import models as m
from hashquarry.store.engine import make_engine
from hashquarry.store.migrate import upgrade

from .conftest import PgServer

T = TypeVar("T")
ACCOUNTS = ["alice", "bob", "carol", "dave"]
T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC
DAY0 = dt.date(2027, 1, 15)
_ids = itertools.count(1)


class LedgerMachine(RuleBasedStateMachine):
    loop: asyncio.AbstractEventLoop
    engine: AsyncEngine

    blocks = Bundle("blocks")

    def __init__(self) -> None:
        super().__init__()
        self.k = next(_ids)
        self.coin = f"c{self.k}"
        self.seq = self.k * 10_000  # shares and rounds of this example only
        self.round_start = self.seq + 1
        self.t = T0
        self.income: dict[int, int] = {}
        self.state: dict[int, str] = {}  # block id -> immature | matured | off
        self.settled = 0  # whole satoshis credited by PPS settlement
        self.paid = 0
        self.accrued: dict[tuple[str, int], int] = defaultdict(int)  # (account, day) -> nano

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    @initialize(
        scheme=st.sampled_from(MODES),
        modes=st.dictionaries(st.sampled_from(ACCOUNTS), st.sampled_from(MODES)),
    )
    def setup(self, scheme: str, modes: dict[str, str]) -> None:
        self.scheme = scheme

        async def go() -> None:
            async with self.engine.begin() as conn:
                for account, mode in modes.items():
                    await conn.execute(
                        insert(m.settle_modes).values(
                            coin=self.coin, account=account, mode=mode, activate_at=0.0,
                            created_at=0.0,
                        )
                    )  # fmt: skip

        self.run(go())

    @rule(account=st.sampled_from(ACCOUNTS), difficulty=st.sampled_from([0.5, 1.0, 3.0]))
    def mine(self, account: str, difficulty: float) -> None:
        self.seq += 1
        self.t += 60

        async def go() -> None:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(m.shares).values(
                        seq=self.seq, coin=self.coin, time=self.t, account=account, worker="w",
                        difficulty=difficulty,
                    )
                )  # fmt: skip

        self.run(go())

    @rule(
        target=blocks,
        finder=st.sampled_from(ACCOUNTS),
        income=st.integers(0, 10**10),
        fee_bps=st.integers(0, 10_000),
        n=st.sampled_from([0.2, 1.0, 10.0]),
    )
    def find(self, finder: str, income: int, fee_bps: int, n: float) -> Any:
        self.seq += 1
        self.t += 60
        block_id = len(self.income) + 1
        round_id = self.seq  # unique across examples
        b = FoundBlock(
            id=block_id, coin=self.coin, seq=self.seq, height=block_id, hash=f"{block_id:064x}",
            network_difficulty=4.0, income=income, tx_fees=0, account=finder, worker="w",
            found_at=self.t, round_id=round_id, round_started_at=T0, round_accepted=0,
            round_rejected=0, round_diff=0.0,
        )  # fmt: skip

        async def go() -> None:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(m.shares).values(
                        seq=self.seq, coin=self.coin, time=self.t, account=finder, worker="w",
                        difficulty=1.0,
                    )
                )  # fmt: skip
                await conn.execute(
                    insert(m.rounds).values(
                        id=round_id, coin=self.coin, started_at=T0, start_seq=self.round_start
                    )
                )
                await credit_block(
                    conn, b, scheme=self.scheme, fee_bps=fee_bps, pplns_n=n, now=self.t
                )

        self.run(go())
        self.round_start = self.seq + 1
        self.income[block_id] = income
        self.state[block_id] = "immature"
        return multiple(block_id)

    def _op(self, op: Any, block_id: int) -> None:
        async def go() -> None:
            async with self.engine.begin() as conn:
                await op(conn, self.coin, block_id, self.t)

        self.run(go())

    @rule(block_id=blocks)
    def mature(self, block_id: int) -> None:
        self._op(mature_block, block_id)
        if self.state[block_id] == "immature":
            self.state[block_id] = "matured"

    @rule(block_id=blocks)
    def orphan(self, block_id: int) -> None:
        self._op(reverse_block, block_id)
        if self.state[block_id] == "immature":
            self.state[block_id] = "off"

    @rule(block_id=blocks)
    def back_on_chain(self, block_id: int) -> None:
        self._op(recredit_block, block_id)
        if self.state[block_id] == "off":
            self.state[block_id] = "immature"

    @rule(account=st.sampled_from(ACCOUNTS), day=st.integers(0, 3), nano=st.integers(1, 5 * 10**9))
    def accrue(self, account: str, day: int, nano: int) -> None:
        async def go() -> None:
            async with self.engine.begin() as conn:
                await upsert(
                    conn,
                    m.pps_accruals,
                    [
                        {"coin": self.coin, "account": account, "day": _day(day), "sats": 0}
                        | {"nano": nano, "fee_nano": 0, "tx_fee_nano": 0}
                        | {"accepted_diff": 1.0, "settled": False}
                    ],
                    ["coin", "account", "day"],
                    add=["nano"],
                )

        self.run(go())

    @rule(day=st.integers(0, 4))
    def settle(self, day: int) -> None:
        async def go() -> None:
            async with self.engine.begin() as conn:
                before = await _total(conn, self.coin)
                await settle_pps(conn, self.coin, _day(day), 100, self.t)
                self.settled += await _total(conn, self.coin) - before

        self.run(go())

    @rule(account=st.sampled_from([*ACCOUNTS, POOL_ACCOUNT]), share=st.fractions(0, 1))
    def payout(self, account: str, share: Any) -> None:
        async def go() -> None:
            async with self.engine.begin() as conn:
                bal = (await balances(conn, self.coin, self.t)).get(account)
                amount = int(bal.balance * share) if bal else 0
                if amount <= 0:
                    return
                await conn.execute(
                    insert(m.ledger).values(
                        coin=self.coin, account=account, kind="payout", bucket="balance",
                        amount=-amount, ref=f"payout:{self.coin}:{next(_ids)}",
                        created_at=self.t,
                    )
                )  # fmt: skip
                self.paid += amount

        self.run(go())

    @invariant()
    def books_balance(self) -> None:
        async def go() -> tuple[dict[str, Any], list[Any]]:
            async with self.engine.connect() as conn:
                bals = await balances(conn, self.coin, self.t)
                rows = (
                    await conn.execute(select(m.ledger).where(m.ledger.c.coin == self.coin))
                ).all()
            return bals, list(rows)

        bals, rows = self.run(go())
        sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        per_block: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for r in rows:
            sums[r.account][r.bucket == "immature"] += r.amount
            if r.block_id is not None:
                per_block[r.block_id][r.bucket == "immature"] += r.amount
        for account, b in bals.items():
            assert b.balance >= 0 and b.immature_balance >= 0, (account, b)
            assert [b.balance, b.immature_balance] == sums[account], account
        assert set(sums) <= set(bals)
        for block_id, income in self.income.items():
            state = self.state[block_id]
            expect = {"immature": [0, income], "matured": [income, 0], "off": [0, 0]}[state]
            assert per_block[block_id] == expect, (block_id, state)
        matured = sum(i for b, i in self.income.items() if self.state[b] == "matured")
        assert sum(b.balance for b in bals.values()) == matured + self.settled - self.paid


def _day(i: int) -> str:
    return (DAY0 + dt.timedelta(days=i)).isoformat()


async def _total(conn: Any, coin: str) -> int:
    c = m.ledger.c
    return int(
        await conn.scalar(select(func.coalesce(func.sum(c.amount), 0)).where(c.coin == coin))
    )


def test_ledger_operations_keep_the_books(
    backend: PgServer | None, store_url: str, tmp_path: Path
) -> None:
    upgrade(store_url)
    loop = asyncio.new_event_loop()
    engine = make_engine(store_url)
    LedgerMachine.loop, LedgerMachine.engine = loop, engine
    try:
        run = LedgerMachine.TestCase
        run.settings = settings(max_examples=30, stateful_step_count=30, deadline=None)
        run().runTest()
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()

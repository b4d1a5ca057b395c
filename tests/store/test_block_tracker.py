"""The block tracker against a scripted chain, on every backend: a block goes on the
chain, off it, back (a reorg), off again and back to maturity, and the ledger follows
at each step. The real node does the same in tests/e2e/test_accounting.py.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.accounting.aggregate import FoundBlock
from hashquarry.accounting.blocks import RECHECK_SECONDS, BlockTracker
from hashquarry.accounting.ledger import balances, credit_block
from hashquarry.chain.rpc import RpcError
from hashquarry.store import models as m

from .builders import COIN

MATURITY = 5
INCOME = 1_000_000


class ScriptedChain:
    """getblockheader as the node answers it: confirmations, -1 off the main chain,
    or error -5 for a block it never saw."""

    def __init__(self) -> None:
        self.confirmations: dict[str, int] = {}
        self.asked: list[str] = []

    async def call(self, method: str, *params: Any, retries: int = 0) -> Any:
        assert method == "getblockheader"
        block_hash = params[0]
        self.asked.append(block_hash)
        if block_hash not in self.confirmations:
            raise RpcError(method, -5, "Block not found")
        return {"hash": block_hash, "confirmations": self.confirmations[block_hash]}


async def _found(engine: AsyncEngine, block_id: int, found_at: float, status: str) -> str:
    block_hash = f"{block_id:064x}"
    b = FoundBlock(
        id=block_id, coin=COIN, seq=block_id, height=block_id, hash=block_hash,
        network_difficulty=1.0, income=INCOME, tx_fees=0, account="alice", worker="w",
        found_at=found_at, round_id=block_id, round_started_at=found_at, round_accepted=1,
        round_rejected=0, round_diff=1.0,
    )  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(
            insert(m.blocks).values(
                id=block_id, coin=COIN, height=block_id, hash=block_hash, difficulty=1.0,
                income=INCOME, tx_fees=0, finder_account="alice", finder_worker="w",
                found_at=found_at, seq=block_id, round_id=block_id, status=status,
                confirmations=0, confirmations_left=MATURITY, scheme="solo", credited=True,
                updated_at=found_at, submit_result="accepted",
            )
        )  # fmt: skip
        await credit_block(conn, b, scheme="solo", fee_bps=0, pplns_n=1.0, now=found_at)
    return block_hash


async def _state(engine: AsyncEngine, block_id: int) -> tuple[str, int, int, int, list[str]]:
    async with engine.connect() as conn:
        status, left = (
            await conn.execute(
                select(m.blocks.c.status, m.blocks.c.confirmations_left).where(
                    m.blocks.c.id == block_id
                )
            )
        ).one()
        alice = (await balances(conn, COIN, time.time()))["alice"]
        refs = list(
            (
                await conn.scalars(
                    select(m.ledger.c.ref)
                    .where(m.ledger.c.block_id == block_id, m.ledger.c.bucket == "immature")
                    .order_by(m.ledger.c.id)
                )
            ).all()
        )
    ops = [r.split(":", 3)[3] for r in refs]
    return status, left, alice.immature_balance, alice.balance, ops


BOTH_WAYS_TWICE = ["credit", "reverse:1", "recredit:1", "reverse:2"]


async def test_off_the_chain_and_back_twice_then_mature(engine: AsyncEngine) -> None:
    chain = ScriptedChain()
    tracker = BlockTracker(engine, chain, coin=COIN, maturity=MATURITY)  # type: ignore[arg-type]
    h = await _found(engine, 1, time.time() - 60, "processing")

    steps = [  # confirmations the node reports -> status, left, immature, balance, ledger ops
        (1, ("unconfirmed", 4, INCOME, 0, ["credit"])),
        (-1, ("orphan", -1, 0, 0, ["credit", "reverse:1"])),
        (-1, ("orphan", -1, 0, 0, ["credit", "reverse:1"])),  # asked again, nothing new
        (2, ("unconfirmed", 3, INCOME, 0, ["credit", "reverse:1", "recredit:1"])),
        (-1, ("orphan", -1, 0, 0, BOTH_WAYS_TWICE)),
        # back and already mature (the tracker was away): credited again and matured
        (MATURITY, ("confirmed", 0, 0, INCOME, [*BOTH_WAYS_TWICE, "recredit:2", "mature"])),
        (-1, ("confirmed", 0, 0, INCOME, None)),  # final: not asked any more
    ]
    for confirmations, expected in steps:
        chain.confirmations[h] = confirmations
        await tracker.update()
        await tracker.update()  # a repeat changes nothing
        got = await _state(engine, 1)
        if expected[4] is None:
            assert got[:4] == expected[:4]
        else:
            assert got == expected, confirmations
    # twice per step until it was confirmed, never after
    assert chain.asked.count(h) == 2 * (len(steps) - 2) + 1


async def test_old_orphans_are_left_alone(engine: AsyncEngine) -> None:
    chain = ScriptedChain()
    tracker = BlockTracker(engine, chain, coin=COIN, maturity=MATURITY)  # type: ignore[arg-type]
    old = await _found(engine, 1, time.time() - RECHECK_SECONDS - 60, "orphan")
    recent = await _found(engine, 2, time.time() - RECHECK_SECONDS + 600, "stale")
    chain.confirmations.update({old: 3, recent: 3})
    assert await tracker.update() == 1
    assert chain.asked == [recent]
    assert (await _state(engine, 2))[:2] == ("unconfirmed", 2)
    assert (await _state(engine, 1))[:2] == ("orphan", MATURITY)  # as it was

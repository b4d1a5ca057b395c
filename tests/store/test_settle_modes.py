"""Block credits when accounts are in different settle modes, on every backend.

Every (coin default x account mode) pair, through the real aggregator and writer: alice
and carol stay in the coin's default mode, bob switches to another (or the same) mode
before any share. The block is found once by alice (default mode) and once by bob.
The rule is accounting.split's docstring; the figures below are worked out by hand:

    seq  account  difficulty
     1   alice    1000        (written before: an earlier round)
     2   bob      1000
     3   carol    2000        <- round 2 starts
     4   bob/alice 1000
     5   alice/bob 1000       <- the block, found by the second named

Network difficulty 6,000 and N = 1: the window is exactly those 6,000 (alice, bob and
carol a third each, pool shares only); the round is carol 2/4, alice 1/4, bob 1/4.
Reward 1,200,000, fee 1% of what block-mode work is credited.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hashquarry.accounting.aggregate import Aggregator, FoundBlock, RoundState, ShiftState
from hashquarry.accounting.ledger import POOL_ACCOUNT, credit_block
from hashquarry.accounting.split import MODES
from hashquarry.accounting.window import mode_history
from hashquarry.store import models as m

from .builders import COIN, FEE_BPS, NOW, rows, share, write

R = 1_200_000
ND6 = 6000.0
T = NOW - 100  # share i is mined at T + i

EVEN = {"alice": 396_000, "bob": 396_000, "carol": 396_000}  # a third each of 1,188,000
BY_ROUND = {"alice": 297_000, "bob": 297_000, "carol": 594_000}  # 1/4, 1/4, 1/2
NO_BOB = {"alice": 396_000, "carol": 396_000}
NO_BOB_ROUND = {"alice": 297_000, "carol": 594_000}
ALL_TO = {a: ({a: 1_188_000}, 12_000, 0) for a in ("alice", "bob")}  # a SOLO finder
POOLS = ({}, 0, R)  # everyone paid per share: the block is the pool's
Expect = tuple[dict[str, int], int, int]  # credits, fee, retained

# (coin default, bob's mode) -> (found by alice, found by bob)
EXPECTED: dict[tuple[str, str], tuple[Expect, Expect]] = {}
EXPECTED.update(
    {
        ("pplns", "pplns"): ((EVEN, 12_000, 0),) * 2,
        # bob's third of the window is the PROP pot, split by round weight (bob alone)
        ("pplns", "prop"): ((EVEN, 12_000, 0),) * 2,
        ("pplns", "pps"): ((NO_BOB, 8_000, 400_000),) * 2,
        ("pplns", "fpps"): ((NO_BOB, 8_000, 400_000),) * 2,
        # bob's SOLO shares are not the pool's work: alice and carol share the block
        ("pplns", "solo"): (({"alice": 594_000, "carol": 594_000}, 12_000, 0), ALL_TO["bob"]),
        ("prop", "prop"): ((BY_ROUND, 12_000, 0),) * 2,
        # bob's quarter of the round is the PPLNS pot, split by window weight (bob alone)
        ("prop", "pplns"): ((BY_ROUND, 12_000, 0),) * 2,
        ("prop", "pps"): ((NO_BOB_ROUND, 9_000, 300_000),) * 2,
        ("prop", "fpps"): ((NO_BOB_ROUND, 9_000, 300_000),) * 2,
        ("prop", "solo"): (({"alice": 396_000, "carol": 792_000}, 12_000, 0), ALL_TO["bob"]),
        ("solo", "solo"): (ALL_TO["alice"], ALL_TO["bob"]),
        # bob is the only pool miner on a SOLO coin
        ("solo", "pplns"): (ALL_TO["alice"], ALL_TO["bob"]),
        ("solo", "prop"): (ALL_TO["alice"], ALL_TO["bob"]),
        # a PPS miner's block on a SOLO coin is the pool's: it paid him per share
        ("solo", "pps"): (ALL_TO["alice"], POOLS),
        ("solo", "fpps"): (ALL_TO["alice"], POOLS),
    }
)
for pps_coin in ("pps", "fpps"):
    EXPECTED.update(
        {
            (pps_coin, "pps"): (POOLS, POOLS),
            (pps_coin, "fpps"): (POOLS, POOLS),
            (pps_coin, "pplns"): (({"bob": 396_000}, 4_000, 800_000),) * 2,
            (pps_coin, "prop"): (({"bob": 396_000}, 4_000, 800_000),) * 2,
            (pps_coin, "solo"): (POOLS, ALL_TO["bob"]),
        }
    )


async def switch(conn: AsyncConnection, account: str, mode: str, at: float) -> None:
    await conn.execute(
        insert(m.settle_modes).values(
            coin=COIN, account=account, mode=mode, activate_at=at, created_at=at - 1
        )
    )


def event(i: int, account: str, difficulty: float = 1000.0, block: bool = False) -> Any:
    ev = share(T + i, account, difficulty=difficulty, block=block, network_difficulty=ND6)
    ev.block_reward, ev.tx_fees = R, 0
    return ev


async def mine(engine: AsyncEngine, default: str, finder: str) -> list[dict[str, Any]]:
    """Seq 1-2 as earlier rows, seq 3-5 through the aggregator and the writer."""
    other = "bob" if finder == "alice" else "alice"
    async with engine.begin() as conn:
        await conn.execute(
            insert(m.shares),
            [
                {"seq": 1, "coin": COIN, "time": T + 1, "account": "alice", "worker": "rig1"}
                | {"difficulty": 1000.0},
                {"seq": 2, "coin": COIN, "time": T + 2, "account": "bob", "worker": "rig1"}
                | {"difficulty": 1000.0},
            ],
        )
        modes = await mode_history(conn, COIN, default)
    agg = Aggregator(
        COIN,
        round_=RoundState(2, COIN, T + 2.5, 3),
        shift=ShiftState(1, COIN, T, 0.0),
        next_block_id=1,
        mode_of=lambda _coin, account, t: modes(account, t),
        fee_bps=FEE_BPS,
    )
    for seq, ev in [
        (3, event(3, "carol", 2000.0)),
        (4, event(4, other)),
        (5, event(5, finder, block=True)),
    ]:
        agg.apply(seq, ev)
    async with engine.begin() as conn:
        await write(conn, agg.take(), scheme=default, pplns_n=1.0)
        return await rows(conn, m.ledger)


@pytest.mark.parametrize("finder", ["alice", "bob"])
@pytest.mark.parametrize(("default", "mode"), list(itertools.product(MODES, MODES)))
async def test_every_default_and_mode(
    engine: AsyncEngine, default: str, mode: str, finder: str
) -> None:
    async with engine.begin() as conn:
        await switch(conn, "bob", mode, T - 86_400)
    ledger = await mine(engine, default, finder)
    credits, fee, retained = EXPECTED[default, mode][finder == "bob"]

    got = {r["account"]: r["amount"] for r in ledger if r["account"] != POOL_ACCOUNT}
    assert got == credits
    pool = [r for r in ledger if r["account"] == POOL_ACCOUNT]
    assert [r["extra"] for r in pool] == (
        [{"fee": fee, "retained": retained}] if fee + retained else []
    )
    assert sum(r["amount"] for r in ledger) == R  # credits + fee + pool remainder
    assert all(r["bucket"] == "immature" and r["amount"] > 0 for r in ledger)

    # Each account earns one way only: per share in PPS/FPPS mode, else from blocks.
    async with engine.connect() as conn:
        accrued = {r["account"] for r in await rows(conn, m.pps_accruals) if r["sats"] or r["nano"]}
    in_pps = {
        a
        for a, am in {"alice": default, "bob": mode, "carol": default}.items()
        if am in ("pps", "fpps")
    }
    assert accrued == in_pps
    assert not accrued & set(got)


def test_every_pair_is_worked_out() -> None:
    assert set(EXPECTED) == set(itertools.product(MODES, MODES))


@pytest.mark.parametrize(("before", "after"), [("pps", "pplns"), ("pplns", "pps")])
async def test_a_switch_inside_the_window_splits_bobs_work_at_the_switch(
    engine: AsyncEngine, before: str, after: str
) -> None:
    """bob's seq-2 share is under `before`, his seq-4 share under `after`: only the PPLNS
    one earns from the block (the PPS one was paid per share), whichever way he switched."""
    async with engine.begin() as conn:
        await switch(conn, "bob", before, T - 86_400)
        await switch(conn, "bob", after, T + 3)
    ledger = await mine(engine, "pplns", "alice")
    got = {r["account"]: r["amount"] for r in ledger if r["account"] != POOL_ACCOUNT}
    # gross by the window: alice 400,000, carol 400,000, bob 200,000 + 200,000;
    # the PPLNS pot 1,000,000 less 10,000 fee split 2000 : 2000 : 1000
    assert got == {"alice": 396_000, "bob": 198_000, "carol": 396_000}
    pool = next(r for r in ledger if r["account"] == POOL_ACCOUNT)
    assert pool["extra"] == {"fee": 10_000, "retained": 200_000}


# --------------------------------------------------------------------------- property

_example = itertools.count(1)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    default=st.sampled_from(MODES),
    switches=st.dictionaries(
        st.sampled_from(["a", "b", "c", "d"]),
        st.lists(st.tuples(st.integers(0, 30), st.sampled_from(MODES)), max_size=3),
    ),
    shares=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from([1.0, 2.5, 1000.0])),
        min_size=1,
        max_size=25,
    ),
    round_start=st.integers(0, 24),
    reward=st.integers(0, 5_000_000_000),
    fee_bps=st.integers(0, 10_000),
    n=st.sampled_from([0.0001, 0.3, 1.0, 50.0]),
)
async def test_every_block_adds_up_to_its_reward(
    engine: AsyncEngine,
    default: str,
    switches: dict[str, list[tuple[int, str]]],
    shares: list[tuple[str, float]],
    round_start: int,
    reward: int,
    fee_bps: int,
    n: float,
) -> None:
    """Any modes, switches at any share, any window and round: the block's entries sum to
    its reward (credits + fee + pool remainder), none is negative, only block-mode work
    is credited. One database for all examples: each gets its own coin and seq range."""
    k = next(_example)
    coin, base = f"p{k}", k * 1000
    finder = shares[-1][0]
    async with engine.begin() as conn:
        await conn.execute(
            insert(m.shares),
            [
                {"seq": base + i, "coin": coin, "time": T + i, "account": a, "worker": "w"}
                | {"difficulty": d}
                for i, (a, d) in enumerate(shares)
            ],
        )
        await conn.execute(
            insert(m.rounds).values(
                id=base, coin=coin, started_at=T, start_seq=base + min(round_start, len(shares) - 1)
            )
        )
        for account, history in switches.items():
            for at, mode in history:
                await conn.execute(
                    insert(m.settle_modes).values(
                        coin=coin, account=account, mode=mode, activate_at=T + at, created_at=0.0
                    )
                )
        b = FoundBlock(
            id=base, coin=coin, seq=base + len(shares) - 1, height=1, hash=f"{k:064x}",
            network_difficulty=10.0, income=reward, tx_fees=0, account=finder, worker="w",
            found_at=T + len(shares) - 1, round_id=base, round_started_at=T, round_accepted=0,
            round_rejected=0, round_diff=0.0,
        )  # fmt: skip
        await credit_block(conn, b, scheme=default, fee_bps=fee_bps, pplns_n=n, now=NOW)
        modes = await mode_history(conn, coin, default)
        ledger = await rows(conn, m.ledger, where=m.ledger.c.coin == coin)
    assert sum(r["amount"] for r in ledger) == reward
    assert all(r["amount"] > 0 for r in ledger)
    block_work = {a for i, (a, _) in enumerate(shares) if modes(a, T + i) in ("pplns", "prop")}
    credited = {r["account"] for r in ledger if r["account"] != POOL_ACCOUNT}
    if modes(finder, b.found_at) == "solo":
        assert credited <= {finder}
    else:
        assert credited <= block_work

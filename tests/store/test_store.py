"""The store on every backend: migrations, the start-up check, upserts, and a whole flush.

`test_write_batch` feeds a real Aggregator a realistic run of share events (accepted,
delayed, stale, invalid, duplicate, a block, an account in PPS mode) and checks every
row the flush leaves behind, worked out by hand.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.accounting.ledger import POOL_ACCOUNT
from hashquarry.accounting.writer import APPLIED_SEQ, get_state, set_state, upsert
from hashquarry.shares.events import ShareEvent, ShareResult
from hashquarry.store import models as m

try:  # every concern's tables on one MetaData, as the migrations' env.py sees them
    from hashquarry.store.schema import metadata as SCHEMA
except ImportError:  # pragma: no cover - before the schema module existed
    SCHEMA = m.metadata
from hashquarry.store.engine import make_engine
from hashquarry.store.migrate import (
    StoreNotMigrated,
    alembic_config,
    check_migrated,
    current_revision,
    head_revision,
    open_store,
    upgrade_async,
)

from .builders import (
    COIN,
    MATURITY,
    ND,
    NOW,
    REWARD,
    TODAY,
    TX_FEES,
    aggregator,
    keyed,
    rows,
    share,
    write,
)

# --------------------------------------------------------------------------- migrations


async def test_migrations_apply_and_check_passes(engine: AsyncEngine) -> None:
    await check_migrated(engine)
    assert await current_revision(engine) == head_revision()
    async with engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        # The migrations build exactly the schema the code is written against.
        diffs = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), SCHEMA)
        )
    assert diffs == [], "the migrations and the table definitions disagree"
    assert tables == set(SCHEMA.tables) | {"alembic_version"}


async def test_upgrade_is_repeatable_and_downgrade_reverses(store_url: str) -> None:
    await upgrade_async(store_url)
    await upgrade_async(store_url)  # already at head: nothing to do, no error
    await asyncio.to_thread(command.downgrade, alembic_config(store_url), "base")
    eng = make_engine(store_url)
    try:
        async with eng.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert tables <= {"alembic_version"}
        assert await current_revision(eng) is None
        with pytest.raises(StoreNotMigrated):
            await check_migrated(eng)
    finally:
        await eng.dispose()
    await upgrade_async(store_url)
    eng = await open_store(store_url)
    await eng.dispose()


async def test_open_store_refuses_an_unmigrated_store(store_url: str) -> None:
    with pytest.raises(StoreNotMigrated) as err:
        await open_store(store_url)
    msg = str(err.value)
    assert "hashquarry db upgrade" in msg
    assert head_revision() in msg and "none" in msg
    await upgrade_async(store_url)
    eng = await open_store(store_url)
    try:
        await check_migrated(eng)
    finally:
        await eng.dispose()


# --------------------------------------------------------------------------- upsert / state


def _worker(name: str, first: float, last: float, host: str, acc: int, inv: int) -> dict:
    return {
        "coin": COIN,
        "account": "alice",
        "worker": name,
        "first_seen": first,
        "last_share": last,
        "last_host": host,
        "accepted": acc,
        "invalid": inv,
    }


async def test_upsert_add_min_max_replace(engine: AsyncEngine) -> None:
    keys = ["coin", "account", "worker"]
    spec = {
        "add": ["accepted"],
        "least": ["first_seen"],
        "greatest": ["last_share"],
        "replace": ["last_host"],
    }  # `invalid` in none of them: an existing row keeps its value
    async with engine.begin() as conn:
        await upsert(conn, m.workers, [], keys, **spec)  # nothing to do
        await upsert(
            conn,
            m.workers,
            [_worker("a", 100.0, 200.0, "h1", 5, 1), _worker("b", 10.0, 20.0, "hb", 1, 0)],
            keys,
            **spec,
        )
        await upsert(
            conn,
            m.workers,
            [_worker("a", 50.0, 150.0, "h2", 3, 7), _worker("c", 1.0, 2.0, "hc", 4, 4)],
            keys,
            **spec,
        )
        await upsert(conn, m.workers, [_worker("a", 300.0, 400.0, "h3", 2, 9)], keys, **spec)
    async with engine.connect() as conn:
        got = keyed(await rows(conn, m.workers), lambda r: r["worker"])
    assert got["a"] == _worker("a", 50.0, 400.0, "h3", 10, 1)
    assert got["b"] == _worker("b", 10.0, 20.0, "hb", 1, 0)
    assert got["c"] == _worker("c", 1.0, 2.0, "hc", 4, 4)


async def test_state_get_set(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        assert await get_state(conn, APPLIED_SEQ) == 0
        assert await get_state(conn, APPLIED_SEQ, default=-1) == -1
        await set_state(conn, APPLIED_SEQ, 41)
        await set_state(conn, APPLIED_SEQ, 2**40)
        assert await get_state(conn, APPLIED_SEQ) == 2**40
    async with engine.connect() as conn:
        assert await get_state(conn, APPLIED_SEQ) == 2**40


# --------------------------------------------------------------------------- a whole flush

ACCOUNTING_TABLES = (
    m.state,
    m.share_minutes,
    m.account_minutes,
    m.workers,
    m.shares,
    m.share_spans,
    m.rounds,
    m.round_accounts,
    m.shifts,
    m.shift_accounts,
    m.blocks,
    m.ledger,
    m.pps_accruals,
    m.settle_modes,
)

T0 = NOW - 600  # minute-aligned
M0 = int(T0 // 60)
S, LOW, DUP = ShareResult.STALE, ShareResult.LOW_DIFFICULTY, ShareResult.DUPLICATE


def _run() -> list[ShareEvent]:
    """seq 1..9: carol mines in PPS mode, seq 7 (alice) is a block."""

    def ev(dt: float, account: str, worker: str, seq: int, **kw: object) -> ShareEvent:
        return share(T0 + dt, account, worker, remote=f"10.0.0.{seq}", **kw)  # type: ignore[arg-type]

    return [
        ev(0, "alice", "rig1", 1),
        ev(10, "alice", "rig1", 2, delayed=True),
        ev(20, "bob", "rig1", 3, result=S),
        ev(30, "bob", "rig1", 4, difficulty=2000.0),
        ev(70, "alice", "rig2", 5, result=LOW, difficulty=500.0),
        ev(80, "carol", "rig1", 6),
        ev(90, "alice", "rig1", 7, block=True, height=900_001),
        ev(130, "bob", "rig1", 8, difficulty=2000.0),
        ev(140, "bob", "rig1", 9, result=DUP, difficulty=2000.0),
    ]


def _minute(
    acc: int,
    acc_d: float,
    st: int,
    st_d: float,
    inv: int,
    inv_d: float,
    dly: float,
    first: float,
    last: float,
    nd: float,
) -> dict[str, float]:
    return {
        "accepted": acc,
        "accepted_diff": acc_d,
        "stale": st,
        "stale_diff": st_d,
        "invalid": inv,
        "invalid_diff": inv_d,
        "delayed_diff": dly,
        "first_share": first,
        "last_share": last,
        "network_difficulty": nd,
    }


EXPECTED_SHARE_MINUTES = {
    ("alice", "rig1", M0): _minute(2, 2000.0, 0, 0.0, 0, 0.0, 1000.0, T0, T0 + 10, ND),
    ("bob", "rig1", M0): _minute(1, 2000.0, 1, 1000.0, 0, 0.0, 0.0, T0 + 20, T0 + 30, ND),
    ("alice", "rig2", M0 + 1): _minute(0, 0.0, 0, 0.0, 1, 500.0, 0.0, T0 + 70, T0 + 70, 0.0),
    ("carol", "rig1", M0 + 1): _minute(1, 1000.0, 0, 0.0, 0, 0.0, 0.0, T0 + 80, T0 + 80, ND),
    ("alice", "rig1", M0 + 1): _minute(1, 1000.0, 0, 0.0, 0, 0.0, 0.0, T0 + 90, T0 + 90, ND),
    ("bob", "rig1", M0 + 2): _minute(1, 2000.0, 0, 0.0, 1, 2000.0, 0.0, T0 + 130, T0 + 140, ND),
}
EXPECTED_ACCOUNT_MINUTES = {
    ("alice", M0): _minute(2, 2000.0, 0, 0.0, 0, 0.0, 1000.0, T0, T0 + 10, ND),
    ("bob", M0): _minute(1, 2000.0, 1, 1000.0, 0, 0.0, 0.0, T0 + 20, T0 + 30, ND),
    ("alice", M0 + 1): _minute(1, 1000.0, 0, 0.0, 1, 500.0, 0.0, T0 + 70, T0 + 90, ND),
    ("carol", M0 + 1): _minute(1, 1000.0, 0, 0.0, 0, 0.0, 0.0, T0 + 80, T0 + 80, ND),
    ("bob", M0 + 2): _minute(1, 2000.0, 0, 0.0, 1, 2000.0, 0.0, T0 + 130, T0 + 140, ND),
}
# (first_seen, last_share, last_host, accepted, invalid); a stale share is not invalid
EXPECTED_WORKERS = {
    ("alice", "rig1"): (T0, T0 + 90, "10.0.0.7", 3, 0),
    ("alice", "rig2"): (T0 + 70, T0 + 70, "10.0.0.5", 0, 1),
    ("bob", "rig1"): (T0 + 20, T0 + 140, "10.0.0.9", 2, 1),
    ("carol", "rig1"): (T0 + 80, T0 + 80, "10.0.0.6", 1, 0),
}
EXPECTED_ROUNDS = [
    {
        "id": 1,
        "coin": COIN,
        "started_at": NOW - 3600,
        "ended_at": T0 + 90,
        "start_seq": 1,
        "end_seq": 7,
        "accepted": 5,
        "accepted_diff": 6000.0,
        "rejected": 2,
        "rejected_diff": 1500.0,
        "network_difficulty": ND,
        "block_id": 1,
    },
    {
        "id": 2,
        "coin": COIN,
        "started_at": T0 + 90,
        "ended_at": None,
        "start_seq": 8,
        "end_seq": None,
        "accepted": 1,
        "accepted_diff": 2000.0,
        "rejected": 1,
        "rejected_diff": 2000.0,
        "network_difficulty": ND,
        "block_id": None,
    },
]
# (round_id, account): (accepted_diff, accepted, rejected)
EXPECTED_ROUND_ACCOUNTS = {
    (1, "alice"): (3000.0, 3, 1),
    (1, "bob"): (2000.0, 1, 1),
    (1, "carol"): (1000.0, 1, 0),
    (2, "bob"): (2000.0, 1, 1),
}
# shift span 4000: shift 1 completes on seq 4, shift 2 on seq 8
EXPECTED_SHIFTS = [
    {
        "id": 1,
        "coin": COIN,
        "started_at": NOW - 3600,
        "ended_at": T0 + 30,
        "span": 4000.0,
        "accepted": 3,
        "accepted_diff": 4000.0,
        "rejected": 1,
        "score": 4000.0,
        "completed": True,
    },
    {
        "id": 2,
        "coin": COIN,
        "started_at": T0 + 30,
        "ended_at": T0 + 130,
        "span": 4000.0,
        "accepted": 3,
        "accepted_diff": 4000.0,
        "rejected": 1,
        "score": 4000.0,
        "completed": True,
    },
    {
        "id": 3,
        "coin": COIN,
        "started_at": T0 + 130,
        "ended_at": None,
        "span": 4000.0,
        "accepted": 0,
        "accepted_diff": 0.0,
        "rejected": 1,
        "score": 0.0,
        "completed": False,
    },
]
# (shift_id, account): (score, accepted, rejected)
EXPECTED_SHIFT_ACCOUNTS = {
    (1, "alice"): (2000.0, 2, 0),
    (1, "bob"): (2000.0, 1, 1),
    (2, "alice"): (1000.0, 1, 1),
    (2, "bob"): (2000.0, 1, 0),
    (2, "carol"): (1000.0, 1, 0),
    (3, "bob"): (0.0, 0, 1),
}
# PPLNS, N = 2: the window (20,000) holds every share up to the block: alice 3000,
# bob 2000, carol 1000 (PPS mode: her part is retained). 625,010,000 split 3:2:1 is
# 312,505,000, 208,336,667 (the odd satoshi: bob's larger remainder) and 104,168,333
# (carol's, retained); the fee is 1% of the PPLNS pot 520,841,667, and the pot less the
# fee, 515,633,251, splits 3:2 with its odd satoshi to alice.
FEE = 5_208_416
RETAINED = 104_168_333
EXPECTED_CREDITS = {
    "alice": 309_379_951,
    "bob": 206_253_300,
    POOL_ACCOUNT: FEE + RETAINED,
}
# carol's one PPS share: floor(1000 / 10000 x 625,000,000 x 0.99 x 1e9) nano-satoshis
PPS_NANO = 61_875_000 * 10**9
PPS_FEE_NANO = 625_000 * 10**9


@pytest.mark.parametrize("split", [None, 4, 7], ids=["one-flush", "flush-after-4", "after-7"])
async def test_write_batch(engine: AsyncEngine, split: int | None) -> None:
    """One flush, or two (the aggregates add up the same), leaves exactly these rows."""
    events = _run()
    agg = aggregator(modes={"carol": "pps"})
    async with engine.begin() as conn:
        # carol switched to PPS a day ago: the ledger reads modes from the store
        await conn.execute(
            insert(m.settle_modes).values(
                coin=COIN, account="carol", mode="pps", activate_at=NOW - 86400, created_at=0.0
            )
        )
    cuts = [0, split, len(events)] if split else [0, len(events)]
    for lo, hi in itertools.pairwise(cuts):
        for seq in range(lo + 1, hi + 1):
            agg.apply(seq, events[seq - 1])
        batch = agg.take()
        assert (batch.first_seq, batch.last_seq) == (lo + 1, hi)
        async with engine.begin() as conn:
            await write(conn, batch)
            assert await get_state(conn, APPLIED_SEQ) == hi

    async with engine.connect() as conn:
        sm = await rows(conn, m.share_minutes)
        am = await rows(conn, m.account_minutes)
        wk = await rows(conn, m.workers)
        sh = await rows(conn, m.shares)
        rd = await rows(conn, m.rounds)
        ra = await rows(conn, m.round_accounts)
        sf = await rows(conn, m.shifts)
        sa = await rows(conn, m.shift_accounts)
        bl = await rows(conn, m.blocks, skip=["updated_at"])
        lg = await rows(conn, m.ledger, skip=["id", "created_at"])
        pp = await rows(conn, m.pps_accruals)
        applied = await get_state(conn, APPLIED_SEQ)

    assert applied == 9
    assert {
        (r["account"], r["worker"], r["minute"]): {
            k: v for k, v in r.items() if k not in ("coin", "account", "worker", "minute")
        }
        for r in sm
    } == EXPECTED_SHARE_MINUTES
    assert {
        (r["account"], r["minute"]): {
            k: v for k, v in r.items() if k not in ("coin", "account", "minute")
        }
        for r in am
    } == EXPECTED_ACCOUNT_MINUTES
    assert {
        (r["account"], r["worker"]): (
            r["first_seen"],
            r["last_share"],
            r["last_host"],
            r["accepted"],
            r["invalid"],
        )
        for r in wk
    } == EXPECTED_WORKERS
    assert [(r["seq"], r["account"], r["worker"], r["difficulty"], r["time"]) for r in sh] == [
        (1, "alice", "rig1", 1000.0, T0),
        (2, "alice", "rig1", 1000.0, T0 + 10),
        (4, "bob", "rig1", 2000.0, T0 + 30),
        (6, "carol", "rig1", 1000.0, T0 + 80),
        (7, "alice", "rig1", 1000.0, T0 + 90),
        (8, "bob", "rig1", 2000.0, T0 + 130),
    ]
    assert rd == EXPECTED_ROUNDS
    assert {
        (r["round_id"], r["account"]): (r["accepted_diff"], r["accepted"], r["rejected"])
        for r in ra
    } == EXPECTED_ROUND_ACCOUNTS
    assert sf == EXPECTED_SHIFTS
    assert {
        (r["shift_id"], r["account"]): (r["score"], r["accepted"], r["rejected"]) for r in sa
    } == EXPECTED_SHIFT_ACCOUNTS

    assert bl == [
        {
            "id": 1,
            "coin": COIN,
            "height": 900_001,
            "hash": f"{int(T0 + 90):064x}",
            "difficulty": ND,
            "income": REWARD,
            "tx_fees": TX_FEES,
            "finder_account": "alice",
            "finder_worker": "rig1",
            "found_at": T0 + 90,
            "seq": 7,
            "round_id": 1,
            "round_duration": 3090.0,
            "round_accepted": 5,
            "round_rejected": 2,
            "round_diff": 6000.0,
            "effort": 0.6,
            "status": "processing",
            "confirmations": 0,
            "confirmations_left": MATURITY,
            "submit_result": None,
            "scheme": "pplns",
            "credited": True,
        }
    ]
    ref = f"block:{COIN}:1:credit"
    assert {r["account"]: r["amount"] for r in lg} == EXPECTED_CREDITS
    assert sum(r["amount"] for r in lg) == REWARD
    for r in lg:
        assert (r["coin"], r["bucket"], r["block_id"], r["ref"]) == (COIN, "immature", 1, ref)
        assert r["mining_date"] == TODAY
        assert r["kind"] == ("fee" if r["account"] == POOL_ACCOUNT else "revenue")
    pool = next(r for r in lg if r["account"] == POOL_ACCOUNT)
    assert pool["extra"] == {"fee": FEE, "retained": RETAINED}

    assert pp == [
        {
            "coin": COIN,
            "account": "carol",
            "day": TODAY,
            "sats": PPS_NANO // 10**9,
            "nano": PPS_NANO % 10**9,
            "fee_nano": PPS_FEE_NANO,
            "tx_fee_nano": 0,
            "accepted_diff": 1000.0,
            "settled": False,
        }
    ]


async def test_minute_network_difficulty_survives_a_rejected_only_flush(
    engine: AsyncEngine,
) -> None:
    agg = aggregator()
    agg.apply(1, share(T0 + 1, "alice"))
    async with engine.begin() as conn:
        await write(conn, agg.take())
    agg.apply(2, share(T0 + 2, "alice", result=S))  # same minute, next flush
    async with engine.begin() as conn:
        await write(conn, agg.take())
    async with engine.connect() as conn:
        nd = await conn.scalar(select(m.share_minutes.c.network_difficulty))
        and_ = await conn.scalar(select(m.account_minutes.c.network_difficulty))
    assert (nd, and_) == (ND, ND)

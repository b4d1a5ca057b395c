"""Read models on every backend: hashrates, history, workers, pool totals, luck, blocks.

One fixed data set (below), `now` passed in, so every figure is worked out by hand.
Hashrate = accepted difficulty x 2^32 / seconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import astuple
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.accounting import stats
from hashquarry.accounting.stats import StatsError
from hashquarry.shares.events import ShareEvent, ShareResult
from hashquarry.store import models as m

from .builders import COIN, D32, ND, NOW, aggregator, ingest, share

DAY = 86400


def _events() -> list[ShareEvent]:
    low = ShareResult.LOW_DIFFICULTY
    evs = [
        share(NOW - 90_000, "alice", difficulty=16000.0),  # older than 24 h
        share(NOW - 90_000, "carol", difficulty=1000.0),
        share(NOW - 7200, "alice", difficulty=8000.0),  # in 24 h
        share(NOW - 1800, "alice", difficulty=4000.0),  # in 1 h
        share(NOW - 1000, "bob", difficulty=2000.0),  # in 1 h, bob then goes quiet
        share(NOW - 250, "alice", difficulty=1000.0, delayed=True),  # in 10 min
        share(NOW - 200, "alice", difficulty=1000.0),
        share(NOW - 150, "alice", difficulty=500.0, result=ShareResult.STALE),
        share(NOW - 100, "alice", difficulty=1000.0, remote="10.1.0.9"),
    ]
    # dave: 12 shares in the last 10 minutes, 8 of them invalid
    evs += [
        share(
            NOW - 300 + 10 * i,
            "dave",
            difficulty=100.0,
            result=low if i % 3 else ShareResult.ACCEPTED,
        )
        for i in range(12)
    ]
    return sorted(evs, key=lambda e: e.time)


@pytest.fixture
async def store(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    async with engine.begin() as conn:
        await ingest(conn, _events(), agg=aggregator(shift_span=1e12))
    yield engine


def rate(diff: float, seconds: float) -> float:
    return diff * D32 / seconds


# --------------------------------------------------------------------------- rates


@pytest.mark.parametrize(
    ("seconds", "account", "worker", "expected"),
    [
        # (accepted diff, stale diff, delayed diff, invalid diff, accepted, stale, invalid)
        (600, None, None, (3400.0, 500.0, 1000.0, 800.0, 7, 1, 8)),
        (3600, None, None, (9400.0, 500.0, 1000.0, 800.0, 9, 1, 8)),
        (86400, None, None, (17400.0, 500.0, 1000.0, 800.0, 10, 1, 8)),
        (600, "alice", None, (3000.0, 500.0, 1000.0, 0.0, 3, 1, 0)),
        (86400, "alice", "rig1", (15000.0, 500.0, 1000.0, 0.0, 5, 1, 0)),
        (600, "dave", "rig1", (400.0, 0.0, 0.0, 800.0, 4, 0, 8)),
        (600, "bob", None, (0.0, 0.0, 0.0, 0.0, 0, 0, 0)),
        (600, "nobody", "rig1", (0.0, 0.0, 0.0, 0.0, 0, 0, 0)),
    ],
)
async def test_rates(
    store: AsyncEngine,
    seconds: int,
    account: str | None,
    worker: str | None,
    expected: tuple[float, float, float, float, int, int, int],
) -> None:
    async with store.connect() as conn:
        got = await stats.rates(conn, COIN, NOW, seconds, account, worker)
    acc, st, dly, inv, n_acc, n_st, n_inv = expected
    assert astuple(got) == pytest.approx(
        (
            rate(acc, seconds),
            rate(st, seconds),
            rate(dly, seconds),
            rate(inv, seconds),
            n_acc,
            n_st,
            n_inv,
        ),
        rel=1e-12,
    )
    assert (got.accepted, got.stale, got.invalid) == (n_acc, n_st, n_inv)


async def test_hashrate_of_a_steady_miner(engine: AsyncEngine) -> None:
    """One difficulty-600 share a minute is 10 x 2^32 H/s, whatever second `now` is at."""
    events = [share(NOW - 60 * k + 30, "alice", difficulty=600.0) for k in range(120, 0, -1)]
    async with engine.begin() as conn:
        await ingest(conn, events, agg=aggregator(shift_span=1e12))
    async with engine.connect() as conn:
        got = [(await stats.rates(conn, COIN, NOW, s)).hashrate for s in (600, 3600)]
    assert got == [pytest.approx(10 * D32, rel=0.01)] * 2


# --------------------------------------------------------------------------- history


def bucket(ts: float, acc: float, st: float, dly: float, interval: int) -> dict[str, Any]:
    return {
        "timestamp": int(ts),
        "hash_rate": pytest.approx(rate(acc, interval), rel=1e-12),
        "stale_hash_rate": pytest.approx(rate(st, interval), rel=1e-12),
        "delay_hash_rate": pytest.approx(rate(dly, interval), rel=1e-12),
    }


async def test_history_pool_and_account(store: AsyncEngine) -> None:
    async with store.connect() as conn:
        pool = await stats.history(conn, COIN, start=NOW - 3600, end=NOW, interval=600)
        unaligned = await stats.history(conn, COIN, start=NOW - 3500, end=NOW, interval=600)
        wide = await stats.history(conn, COIN, start=NOW - 3600, end=NOW, interval=1800)
        alice = await stats.history(
            conn, COIN, start=NOW - 3600, end=NOW, interval=600, account="alice"
        )
    assert pool == [
        bucket(NOW - 3600, 0, 0, 0, 600),
        bucket(NOW - 3000, 0, 0, 0, 600),
        bucket(NOW - 2400, 0, 0, 0, 600),
        bucket(NOW - 1800, 4000, 0, 0, 600),
        bucket(NOW - 1200, 2000, 0, 0, 600),
        bucket(NOW - 600, 3400, 500, 1000, 600),
    ]
    assert unaligned == pool  # buckets are aligned to the interval, not to `start`
    assert wide == [bucket(NOW - 3600, 0, 0, 0, 1800), bucket(NOW - 1800, 9400, 500, 1000, 1800)]
    assert [b["hash_rate"] for b in alice] == pytest.approx(
        [0, 0, 0, rate(4000, 600), 0, rate(3000, 600)], rel=1e-12
    )


async def test_history_worker(store: AsyncEngine) -> None:
    async with store.connect() as conn:
        rig = await stats.history(
            conn, COIN, start=NOW - 1800, end=NOW, interval=600, account="alice", worker="rig1"
        )
        days = await stats.history(
            conn,
            COIN,
            start=NOW - 3 * DAY,
            end=NOW,
            interval=DAY,
            account="alice",
            worker="rig1",
        )
    assert rig == [
        bucket(NOW - 1800, 4000, 0, 0, 600),
        bucket(NOW - 1200, 0, 0, 0, 600),
        bucket(NOW - 600, 3000, 500, 1000, 600),
    ]
    # day buckets are UTC days: NOW is 08:00, so the window starts at 00:00 three days back
    midnight = NOW - 8 * 3600
    assert [b["timestamp"] for b in days] == [midnight - 3 * DAY + i * DAY for i in range(4)]
    assert [b["hash_rate"] for b in days] == pytest.approx(
        [
            0.0,
            0.0,
            rate(16000, DAY),  # NOW - 90000 is 2027-01-14 07:00
            rate(8000 + 4000 + 3000, DAY),
        ],
        rel=1e-12,
    )


@pytest.mark.parametrize(
    ("start", "end", "interval", "worker", "message"),
    [
        (NOW - 3600, NOW, 300, None, "multiple of 600"),
        (NOW - 3600, NOW, 900, None, "multiple of 600"),
        (NOW - 3600, NOW, 0, None, "multiple of 600"),
        (NOW - 3600, NOW, -600, None, "multiple of 600"),
        (NOW, NOW, 600, None, "after start"),
        (NOW, NOW - 600, 600, None, "after start"),
        (NOW - 30 * DAY - 600, NOW, 600, None, "30 days"),
        (NOW - 3 * DAY - 600, NOW, 600, "rig1", "3 days"),
    ],
)
async def test_history_refuses_bad_requests(
    store: AsyncEngine,
    start: float,
    end: float,
    interval: int,
    worker: str | None,
    message: str,
) -> None:
    async with store.connect() as conn:
        with pytest.raises(StatsError, match=message):
            await stats.history(
                conn,
                COIN,
                start=start,
                end=end,
                interval=interval,
                account="alice",
                worker=worker,
            )


async def test_history_limits_are_inclusive(store: AsyncEngine) -> None:
    async with store.connect() as conn:
        month = await stats.history(conn, COIN, start=NOW - 30 * DAY, end=NOW, interval=DAY)
        rig = await stats.history(
            conn, COIN, start=NOW - 3 * DAY, end=NOW, interval=600, account="alice", worker="rig1"
        )
    assert len(month) == 31  # UTC-day buckets touching the 30 days
    assert len(rig) == 3 * 144
    assert sum(b["hash_rate"] for b in rig) == pytest.approx(rate(31000, 600))


# --------------------------------------------------------------------------- workers


async def test_workers_status_and_rates(store: AsyncEngine) -> None:
    async with store.connect() as conn:
        got = await stats.workers(conn, COIN, NOW)
        lenient = await stats.workers(conn, COIN, NOW, offline_after=1200)
        dave = await stats.workers(conn, COIN, NOW, account="dave")
        later = await stats.workers(conn, COIN, NOW + 3 * 3600)
    assert [(w.account, w.worker, w.status) for w in got] == [
        ("alice", "rig1", "online"),
        ("bob", "rig1", "offline"),  # last share 1000 s ago, offline after 600
        ("carol", "rig1", "offline"),
        ("dave", "rig1", "invalid"),  # 8 of 12 shares in the hour invalid
    ]
    alice = got[0]
    assert (alice.hashrate, alice.h1, alice.h24, alice.stale_h1, alice.stale_h24) == (
        pytest.approx(
            (
                rate(3000, 600),
                rate(7000, 3600),
                rate(15000, DAY),
                rate(500, 3600),
                rate(500, DAY),
            ),
            rel=1e-12,
        )
    )
    assert (alice.last_share, alice.last_host) == (NOW - 100, "10.1.0.9")
    assert (got[1].hashrate, got[1].h1, got[1].h24) == pytest.approx(
        (0.0, rate(2000, 3600), rate(2000, DAY)), rel=1e-12
    )
    assert (got[2].hashrate, got[2].h24, got[2].last_share) == (0.0, 0.0, NOW - 90_000)
    assert got[3].hashrate == pytest.approx(rate(400, 600), rel=1e-12)
    assert [w.status for w in lenient] == ["online", "online", "offline", "invalid"]
    assert dave == [got[3]]
    # three hours on, nobody is online and the hour's invalid shares have aged out
    assert [w.status for w in later] == ["offline"] * 4
    assert all(w.hashrate == 0.0 and w.h1 == 0.0 for w in later)


async def test_workers_of_an_empty_store(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert await stats.workers(conn, COIN, NOW) == []


# --------------------------------------------------------------------------- totals, luck, blocks


def block_row(
    block_id: int, *, found_at: float, difficulty: float, status: str, finder: str
) -> dict[str, Any]:
    return {
        "id": block_id,
        "coin": COIN,
        "height": 900_000 + block_id,
        "hash": f"{block_id:064x}",
        "difficulty": difficulty,
        "income": 625_000_000,
        "tx_fees": 0,
        "finder_account": finder,
        "finder_worker": "rig1",
        "found_at": found_at,
        "seq": block_id,
        "round_id": block_id,
        "round_duration": 600.0,
        "round_accepted": 1,
        "round_rejected": 0,
        "round_diff": difficulty,
        "effort": 1.0,
        "status": status,
        "confirmations": 0,
        "confirmations_left": {"confirmed": 0, "stale": -1, "orphan": -1}.get(status, 100),
        "scheme": "pplns",
        "credited": True,
        "updated_at": NOW,
    }


BLOCKS = [
    block_row(1, found_at=NOW - 10 * DAY, difficulty=7000.0, status="orphan", finder="alice"),
    block_row(2, found_at=NOW - 2 * DAY, difficulty=20000.0, status="confirmed", finder="bob"),
    block_row(3, found_at=NOW - 3600, difficulty=3000.0, status="stale", finder="alice"),
    block_row(4, found_at=NOW - 1200, difficulty=ND, status="unconfirmed", finder="bob"),
    block_row(5, found_at=NOW - 60, difficulty=ND, status="processing", finder="alice"),
]


@pytest.fixture
async def with_blocks(store: AsyncEngine) -> AsyncEngine:
    async with store.begin() as conn:
        await conn.execute(insert(m.blocks), BLOCKS)
    return store


async def test_pool_totals(with_blocks: AsyncEngine) -> None:
    async with with_blocks.connect() as conn:
        got = await stats.pool_totals(conn, COIN, NOW)
        wide = await stats.pool_totals(conn, COIN, NOW, offline_after=2000)
        other = await stats.pool_totals(conn, "other", NOW)
    all_work = 16000 + 1000 + 8000 + 4000 + 2000 + 3000 + 400
    assert got.hashrate == pytest.approx(rate(3400, 600), rel=1e-12)
    assert (got.workers_online, got.accounts_online, got.blocks_found) == (2, 2, 5)
    assert got.total_hashes == all_work * D32
    assert (wide.workers_online, wide.accounts_online) == (3, 3)  # bob too
    assert other == stats.PoolTotals(0.0, 0, 0, 0.0, 0)


LUCK_BLOCKS = [  # (found, network difficulty, work of its round, status)
    (NOW - 100 * DAY, 1000.0, 5000.0, "confirmed"),  # older than every period
    (NOW - 60 * DAY, 2000.0, 1000.0, "confirmed"),
    (NOW - 20 * DAY, 3000.0, 6000.0, "orphan"),  # work done, no block to show for it
    (NOW - 5 * DAY, 4000.0, 2000.0, "confirmed"),
    (NOW - 2 * DAY, 5000.0, 5000.0, "confirmed"),
    (NOW - 3600, 6000.0, 3000.0, "unconfirmed"),
    (NOW - 60, 6000.0, 1000.0, "stale"),
]


async def test_luck_is_expected_work_over_actual_work(engine: AsyncEngine) -> None:
    """Per period: network difficulty of the blocks on the chain found in it / work of
    every round that ended in it plus the round in progress (500)."""
    async with engine.begin() as conn:
        await conn.execute(
            insert(m.blocks),
            [
                block_row(i, found_at=t, difficulty=d, status=s, finder="alice") | {"round_diff": w}
                for i, (t, d, w, s) in enumerate(LUCK_BLOCKS, 1)
            ],
        )
        await conn.execute(
            insert(m.rounds),
            [
                {"id": 8, "coin": COIN, "started_at": NOW - 60, "start_seq": 8}
                | {"accepted_diff": 500.0},
                {"id": 9, "coin": "other", "started_at": NOW, "start_seq": 9}
                | {"accepted_diff": 7.0},
            ],
        )
    async with engine.connect() as conn:
        got = await stats.luck(conn, COIN, NOW)
        custom = await stats.luck(conn, COIN, NOW, {"1h": 3600.0, "1m": 59.0})
        other = await stats.luck(conn, "other", NOW)
        empty = await stats.luck(conn, "none", NOW)
    assert list(stats.LUCK_PERIODS) == ["24h", "3d", "7d", "30d", "90d"]
    assert got == {
        "24h": pytest.approx(6000 / (3000 + 1000 + 500)),
        "3d": pytest.approx(11000 / 9500),
        "7d": pytest.approx(15000 / 11500),
        "30d": pytest.approx(15000 / 17500),  # the orphan's round is work, not a block
        "90d": pytest.approx(17000 / 18500),
    }
    # the stale block at NOW - 60 is in the last hour, but not in the last 59 seconds
    assert custom == {"1h": pytest.approx(6000 / 4500), "1m": 0.0}
    assert other == dict.fromkeys(stats.LUCK_PERIODS, 0.0)  # work, no block: luck 0
    assert empty == {}  # no work at all: no figure


async def test_blocks_paging_and_filters(with_blocks: AsyncEngine) -> None:
    async with with_blocks.connect() as conn:

        async def ids(**kw: Any) -> list[int]:
            return [b["id"] for b in await stats.blocks(conn, COIN, **kw)]

        assert await ids() == [5, 4, 3, 2, 1]
        assert await ids(limit=2) == [5, 4]
        assert await ids(limit=2, offset=2) == [3, 2]
        assert await ids(limit=2, offset=4) == [1]
        assert await ids(limit=2, offset=6) == []
        assert await ids(status="stale") == [3]
        assert await ids(account="bob") == [4, 2]
        assert await ids(account="alice", status="processing") == [5]
        first = (await stats.blocks(conn, COIN, limit=1))[0]
        assert await stats.blocks(conn, "other") == []
    assert first == BLOCKS[4] | {"submit_result": None}

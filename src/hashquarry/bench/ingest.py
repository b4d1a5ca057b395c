"""`hashquarry bench ingest`: share-log + aggregate ingest rate, and PPLNS over 1M shares.

It drives the real pieces (ShareLog with group commit and fdatasync, the
Aggregator, the writer on a migrated SQLite store) in one process and reports
wall and CPU time, so the figures can be compared across machines as rates.
"""

from __future__ import annotations

import asyncio
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from hashquarry.accounting.aggregate import FoundBlock
from hashquarry.accounting.ledger import block_credits
from hashquarry.accounting.schemes import pplns_credits, pplns_window_weight, share_weight
from hashquarry.accounting.service import Accounting
from hashquarry.accounting.spans import BASE, SPAN, close_spans
from hashquarry.accounting.writer import set_state
from hashquarry.config import AccountingConfig
from hashquarry.shares.events import ShareEvent, ShareResult
from hashquarry.store import models as m
from hashquarry.store.engine import default_url, make_engine
from hashquarry.store.migrate import upgrade_async


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def synthetic_events(
    n: int, accounts: int = 100, workers: int = 10, seed: int = 1
) -> list[ShareEvent]:
    """Realistic shapes: many workers, 2% stale, 1% invalid, times over n/50k seconds."""
    rng = random.Random(seed)
    t0 = 1_800_000_000.0
    out = []
    for i in range(n):
        a = rng.randrange(accounts)
        r = rng.random()
        result = (
            ShareResult.STALE
            if r < 0.02
            else ShareResult.LOW_DIFFICULTY
            if r < 0.03
            else ShareResult.ACCEPTED
        )
        out.append(ShareEvent(
            time=t0 + i / 50_000, account=f"acct{a}", worker=f"w{rng.randrange(workers)}",
            job_id="1a", height=900_000, difficulty=65536.0, network_difficulty=1.2e14,
            result=result, reason="", hash_hex=f"{i:064x}", is_block=False, delayed=False,
            remote="127.0.0.1", session_id="00000001", actual_difficulty=70000.0,
            block_reward=312_500_000, tx_fees=12_000_000,
        ))  # fmt: skip
    return out


async def bench_ingest(n: int = 200_000, directory: Path | None = None) -> dict[str, Any]:
    work = directory or Path(tempfile.mkdtemp(prefix="hashquarry-bench-"))
    url = default_url(work)
    await upgrade_async(url)
    engine = make_engine(url)
    cfg = AccountingConfig(flush_interval=0.5)
    acc = Accounting(engine, cfg, coin="bitcoin", log_dir=work / "sharelog")
    await acc.start()
    events = synthetic_events(n)
    try:
        cpu0, t0 = _cpu(), time.perf_counter()
        futures = []
        chunk = 2_000
        for i in range(0, n, chunk):
            futures.extend(acc.record(ev) for ev in events[i : i + chunk])
            await asyncio.sleep(0)  # let group commits run, as a server's loop would
        await asyncio.gather(*futures)
        t_log = time.perf_counter() - t0
        await acc.flush()
        wall = time.perf_counter() - t0
        cpu = _cpu() - cpu0
    finally:
        await acc.stop()
        await engine.dispose()
    return {
        "shares": n,
        "log_batches": acc.share_log.batches,
        "durable_shares_per_s": n / t_log,
        "ingest_shares_per_s": n / wall,
        "cpu_us_per_share": cpu / n * 1e6,
        "cpu_shares_per_s": n / cpu,
        "flushes": acc.flushes,
    }


async def bench_pplns(n: int = 1_000_000, directory: Path | None = None) -> dict[str, Any]:
    rng = random.Random(2)
    accounts = [f"acct{i}" for i in range(1_000)]
    diffs = [16384.0, 65536.0, 131072.0, 262144.0]
    shares = [(rng.choice(accounts), rng.choice(diffs)) for _ in range(n)]
    total = sum(share_weight(d) for _, d in shares)
    network_difficulty = total / 2**32 / 2  # N = 2 covers the whole million
    window = pplns_window_weight(2.0, network_difficulty)

    t0 = time.perf_counter()
    credits = pplns_credits(reversed(shares), window, 312_500_000, 100)
    pure = time.perf_counter() - t0
    assert sum(credits.per_account.values()) + credits.fee + credits.retained == 312_500_000

    work = directory or Path(tempfile.mkdtemp(prefix="hashquarry-bench-"))
    url = default_url(work)
    await upgrade_async(url)
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            for i in range(0, n, 100_000):
                await conn.execute(
                    insert(m.shares),
                    [
                        {
                            "seq": j + 1,
                            "coin": "bitcoin",
                            "time": 1_800_000_000.0 + j,
                            "account": a,
                            "worker": "w",
                            "difficulty": d,
                        }
                        for j, (a, d) in enumerate(shares[i : i + 100_000], start=i)
                    ],
                )
            # In a pool the writer closes each span as a flush completes it; here all
            # of them at once, timed on its own.
            t0 = time.perf_counter()
            await close_spans(conn, n)
            spans_s = time.perf_counter() - t0
        block = FoundBlock(
            id=1, coin="bitcoin", seq=n, height=1, hash="00" * 32,
            network_difficulty=network_difficulty, income=312_500_000, tx_fees=0,
            account=shares[-1][0], worker="w", found_at=1_800_000_000.0 + n, round_id=1,
            round_started_at=1_800_000_000.0, round_accepted=n, round_rejected=0,
            round_diff=0.0,
        )  # fmt: skip
        async with engine.connect() as conn:
            t0 = time.perf_counter()
            from_store = await block_credits(conn, block, scheme="pplns", fee_bps=100, pplns_n=2.0)
            stored = time.perf_counter() - t0
        assert from_store.per_account == credits.per_account
        async with engine.begin() as conn:
            # The same window with the spans out of use: every row read.
            await set_state(conn, BASE, n // SPAN + 1)
            t0 = time.perf_counter()
            rows_only = await block_credits(conn, block, scheme="pplns", fee_bps=100, pplns_n=2.0)
            rows_s = time.perf_counter() - t0
            await conn.rollback()
        assert rows_only.per_account == credits.per_account
    finally:
        await engine.dispose()
    return {
        "window_shares": n,
        "pplns_compute_s": pure,
        "pplns_from_store_s": stored,
        "pplns_from_rows_only_s": rows_s,
        "close_spans_s": spans_s,
    }

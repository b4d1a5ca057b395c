"""Share spans give the same PPLNS windows and round weights as reading every share row.

The reference is schemes.pplns_window (and a plain sum) over the rows themselves. SPAN is
made small so that a few hundred shares cross many spans; the walk's reads per query
are made small too, so that chunk boundaries are crossed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hashquarry.accounting import spans, window
from hashquarry.accounting.schemes import pplns_window, share_weight
from hashquarry.accounting.split import Key
from hashquarry.accounting.window import ModeHistory, prune_shares, window_weights
from hashquarry.accounting.writer import get_state
from hashquarry.store import models as m
from hashquarry.store.engine import make_engine
from hashquarry.store.migrate import upgrade_async

from .builders import NOW, aggregator, rows, write
from .test_store import ACCOUNTING_TABLES, _run

Row = tuple[int, str, float, str, float]  # seq, coin, time, account, difficulty


@pytest.fixture
def small_spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(spans, "SPAN", 8)
    monkeypatch.setattr(spans, "_SPANS_PER_READ", 2)
    monkeypatch.setattr(window, "_SPANS_PER_READ", 3)
    monkeypatch.setattr(window, "FETCH", 7)
    yield 8


def make_rows(rng: random.Random, n: int) -> list[Row]:
    """Two coins interleaved (spans are cut by the global seq), gaps in seq (rejected
    shares are not stored), vardiff-like difficulties and some far past 2**63 in sum."""
    out: list[Row] = []
    seq = 0
    for i in range(n):
        seq += rng.choice((1, 1, 1, 2, 5))
        coin = "bitcoin" if rng.random() < 0.8 else "bitcoincash"
        account = rng.choice(("alice", "bob", "carol", "dave", "erin"))
        difficulty = rng.choice((1.0, 8.0, 512.0, 3.5, 2.0**33, 1e12))
        out.append((seq, coin, NOW + i, account, difficulty))
    return out


async def store(conn: AsyncConnection, new: list[Row]) -> None:
    await conn.execute(
        insert(m.shares),
        [
            {"seq": s, "coin": c, "time": t, "account": a, "worker": "w", "difficulty": d}
            for s, c, t, a, d in new
        ],
    )


def reference(
    all_rows: list[Row], coin: str, upto: int, width: int, modes: ModeHistory
) -> dict[Key, int]:
    key_of = modes.keyer()
    newest_first = (
        (key_of(a, t), d) for s, c, t, a, d in reversed(all_rows) if c == coin and s <= upto
    )
    return pplns_window(((k, d) for k, d in newest_first if k[1] != "solo"), width)


def reference_range(
    all_rows: list[Row], coin: str, first: int, upto: int, modes: ModeHistory
) -> dict[Key, int]:
    key_of = modes.keyer()
    out: dict[Key, int] = {}
    for s, c, t, a, d in all_rows:
        if c == coin and first <= s <= upto:
            k = key_of(a, t)
            if k[1] != "solo":
                out[k] = out.get(k, 0) + share_weight(d)
    return out


def last_in_span_times(rows_: list[Row], account: str, span: int) -> list[float]:
    """Times of `account`'s last share in each span where it has two or more."""
    by_span: dict[tuple[str, int], list[float]] = {}
    for s, c, t, a, _ in rows_:
        if a == account:
            by_span.setdefault((c, s // span), []).append(t)
    return sorted(ts[-1] for ts in by_span.values() if len(ts) > 1)


def mode_histories(rows_: list[Row]) -> list[ModeHistory]:
    t0, t1 = rows_[0][2], rows_[-1][2]
    at_last = last_in_span_times(rows_, "bob", spans.SPAN)
    mid = (t0 + t1) / 2
    return [
        ModeHistory("pplns", {}),
        # carol switches to PPS and back, inside spans; dave mines solo from the middle
        ModeHistory(
            "pplns",
            {"carol": [(t0 + 37.5, "pps"), (mid + 3.2, "pplns")], "dave": [(mid, "solo")]},
        ),
        # a switch before any share and one after all of them: spans stay whole
        ModeHistory("pps", {"alice": [(t0 - 100, "pplns")], "bob": [(t1 + 100, "solo")]}),
        # switches exactly at share times (a span's first and last among them), two at
        # one time (the later wins)
        ModeHistory(
            "pplns",
            {
                "alice": [(rows_[8][2], "solo"), (rows_[8][2], "pps"), (rows_[90][2], "pplns")],
                "erin": [(rows_[15][2], "pps"), (rows_[16][2], "pplns"), (rows_[31][2], "solo")],
                # at bob's last share in a span he mined more than once in
                "bob": [(at_last[1], "solo"), (at_last[4], "pplns"), (at_last[7], "pps")],
            },
        ),
    ]


async def test_windows_and_rounds_match_every_row_read(
    engine: AsyncEngine, small_spans: int
) -> None:
    rng = random.Random(7)
    all_rows = make_rows(rng, 400)
    async with engine.begin() as conn:
        # Stored and summarised in uneven steps, as flushes would.
        i = 0
        while i < len(all_rows):
            j = min(len(all_rows), i + rng.randint(1, 40))
            await store(conn, all_rows[i:j])
            # As the writer does (the batch's rows passed in), or all read back.
            fresh = [(s, c, t, a, "w", d) for s, c, t, a, d in all_rows[i:j]]
            await spans.close_spans(conn, all_rows[j - 1][0], fresh if i % 2 else ())
            i = j
        last_seq = all_rows[-1][0]
        assert await get_state(conn, spans.UPTO) == (last_seq + 1) // small_spans
        everything = sum(share_weight(d) for *_, d in all_rows)
        checked = 0
        for modes in mode_histories(all_rows):
            for coin in ("bitcoin", "bitcoincash"):
                for _ in range(25):
                    upto = rng.randint(0, last_seq + 3)
                    width = rng.choice(
                        (1, share_weight(512.0) * 7 + 5, (2**45), int(1e12 * 2**32 * 9) + 3,
                         everything * 2)
                    )  # fmt: skip
                    want = reference(all_rows, coin, upto, width, modes)
                    got = await window_weights(conn, coin, upto, width, modes)
                    assert got == want, (coin, upto, width)
                    first = rng.randint(0, upto)
                    got_range = await window._range_weights(conn, coin, first, upto, modes)
                    assert got_range == reference_range(all_rows, coin, first, upto, modes)
                    checked += 1
        assert checked == 200
        # spans were used: about one row per (span, coin, account)
        assert await conn.scalar(select(m.share_spans.c.span).limit(1)) is not None


async def test_sums_past_2_63_are_exact(engine: AsyncEngine, small_spans: int) -> None:
    big = [(s, "bitcoin", NOW + s, "alice", 1e12 + s) for s in range(1, 17)]
    async with engine.begin() as conn:
        await store(conn, big)
        assert await spans.close_spans(conn, 16) == 2
        got = (
            await conn.execute(
                select(m.share_spans.c.span, m.share_spans.c.weight).order_by(m.share_spans.c.span)
            )
        ).all()
    want0 = sum(share_weight(1e12 + s) for s in range(1, 8))
    assert got == [(0, str(want0)), (1, str(sum(share_weight(1e12 + s) for s in range(8, 16))))]
    assert want0 > 2**63


async def test_pruned_spans_are_read_row_by_row(engine: AsyncEngine, small_spans: int) -> None:
    rng = random.Random(3)
    old = [(s, "bitcoin", NOW - 30 * 86_400 + s, rng.choice("ab"), 1.0) for s in range(1, 61)]
    new = [(s, "bitcoin", NOW + s, rng.choice("ab"), 1.0) for s in range(61, 81)]
    modes = ModeHistory("pplns", {})
    async with engine.begin() as conn:
        await store(conn, old + new)
        await spans.close_spans(conn, 80)
        # a window of 33 shares back from seq 80 keeps seq 48 on; 1-47 go
        gone = await prune_shares(
            conn, "bitcoin", before_time=NOW - 86_400, window=33 * 2**32, modes=modes,
            keep_from_seq=10**9,
        )  # fmt: skip
        assert gone == 47
        # spans 0-5 (seq 0-47) had rows deleted: their sums are gone
        assert await get_state(conn, spans.from_key("bitcoin")) == 6
        kept = [r for r in old + new if r[0] >= 48]
        left = [s for (s,) in (await conn.execute(select(m.share_spans.c.span))).all()]
        assert min(left) == 6
        for width in (1, 5 * 2**32, 33 * 2**32, 40 * 2**32):
            for upto in (47, 50, 63, 64, 80):
                want = reference(kept, "bitcoin", upto, width, modes)
                assert await window_weights(conn, "bitcoin", upto, width, modes) == want


async def test_random_prunes_keep_every_window_they_promise(
    engine: AsyncEngine, small_spans: int
) -> None:
    """Prunes with windows ending inside spans, the open round's first share inside a
    span, SOLO shares: the newest window is what it was before, and every window and range
    over the rows left matches reading those rows; spans closed after a prune too."""
    rng = random.Random(11)
    day = 86_400.0
    all_rows = [
        (s, "bitcoin", NOW - 40 * day + s, rng.choice(("a", "b", "c")), rng.choice((1.0, 3.0)))
        for s in range(1, 301)
    ]
    modes = ModeHistory("pplns", {"c": [(NOW - 40 * day + 100.5, "solo")]})
    async with engine.begin() as conn:
        kept = list(all_rows)
        done = 0
        for step in range(6):
            batch = all_rows[done : done + 50]
            done += 50
            await store(conn, batch)
            await spans.close_spans(conn, batch[-1][0])
            newest = batch[-1][0]
            width = rng.randint(5, 60) * 2**32 + rng.choice((0, 2**31))
            keep_from = rng.randint(1, newest + 1)
            before = reference(kept, "bitcoin", newest, width, modes)
            await prune_shares(
                conn, "bitcoin", before_time=NOW, window=width, modes=modes,
                keep_from_seq=keep_from,
            )  # fmt: skip
            left = {s for (s,) in (await conn.execute(select(m.shares.c.seq))).all()}
            assert all(s in left for s, *_ in kept if s >= keep_from and s <= newest), step
            kept = [r for r in kept if r[0] in left or r[0] > newest]
            assert await window_weights(conn, "bitcoin", newest, width, modes) == before
            stored = [r for r in kept if r[0] <= newest]
            for _ in range(10):
                upto = rng.randint(1, newest)
                w = rng.randint(1, 80) * 2**32 + rng.randint(0, 2**32)
                want = reference(stored, "bitcoin", upto, w, modes)
                assert await window_weights(conn, "bitcoin", upto, w, modes) == want
                first = rng.randint(1, upto)
                got = await window._range_weights(conn, "bitcoin", first, upto, modes)
                assert got == reference_range(stored, "bitcoin", first, upto, modes)
        assert await get_state(conn, spans.from_key("bitcoin")) > 0


async def test_a_run_credited_through_spans_matches_one_without(
    engine: AsyncEngine, small_spans: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same run through the writer (flushes every third share) with spans of 2 and
    with no spans at all: every accounting table but the spans themselves (and their
    marks) is identical."""
    monkeypatch.setattr(spans, "SPAN", 2)

    async def run_once() -> dict[str, Any]:
        agg = aggregator(modes={"carol": "pps"})
        for seq, ev in enumerate(_run(), 1):
            agg.apply(seq, ev)
            if seq % 3 == 0:
                async with engine.begin() as conn:
                    await write(conn, agg.take(), pplns_n=0.5)
        async with engine.begin() as conn:
            await write(conn, agg.take(), pplns_n=0.5)
        async with engine.begin() as conn:
            out = {
                t.name: await rows(conn, t, skip=["updated_at", "created_at", "id"])
                for t in ACCOUNTING_TABLES
                if t is not m.share_spans
            }
            out["state"] = [r for r in out["state"] if not r["key"].startswith("share_spans")]
            spans_written = await conn.scalar(select(m.share_spans.c.span).limit(1))
            for t in ACCOUNTING_TABLES:
                keep = m.state.c.key.like("share_spans_%") if t is m.state else None
                await conn.execute(t.delete() if keep is None else t.delete().where(~keep))
            await conn.execute(text("UPDATE state SET value = 0 WHERE key LIKE 'share_spans_%'"))
        return {"tables": out, "spans": spans_written}

    with_spans = await run_once()
    assert with_spans["spans"] is not None and with_spans["tables"]["ledger"]
    monkeypatch.setattr(spans, "SPAN", 10**12)
    without = await run_once()
    assert without["spans"] is None
    for name, table in with_spans["tables"].items():
        assert table == without["tables"][name], name


async def test_migrating_a_store_with_shares_summarises_from_its_newest_span(
    store_url: str,
) -> None:
    """Shares stored before revision 0002: whole spans of them stay unsummarised, and
    windows reaching into them read their rows."""
    await upgrade_async(store_url, "0001")
    engine = make_engine(store_url)
    try:
        old = [(s, "bitcoin", NOW + s, "ab"[s % 2], float(s % 3 + 1)) for s in range(1, 40_000)]
        async with engine.begin() as conn:
            await store(conn, old)
        await upgrade_async(store_url)
        async with engine.begin() as conn:
            assert await get_state(conn, spans.BASE) == 40_000 // 16_384
            assert await get_state(conn, spans.UPTO) == 40_000 // 16_384
        new = [(s, "bitcoin", NOW + s, "c", 2.0) for s in range(40_000, 50_000)]
        modes = ModeHistory("pplns", {})
        async with engine.begin() as conn:
            await store(conn, new)
            assert await spans.close_spans(conn, 49_999) == 1  # span 2: 32768..49151
            rows_ = (
                await conn.execute(
                    select(m.share_spans.c.span, m.share_spans.c.account).order_by(
                        m.share_spans.c.span, m.share_spans.c.account
                    )
                )
            ).all()
            assert rows_ == [(2, "a"), (2, "b"), (2, "c")]
            for width in (10 * 2**32, 30_000 * 2**32, 10**9 * 2**32):
                want = reference(old + new, "bitcoin", 49_999, width, modes)
                assert await window_weights(conn, "bitcoin", 49_999, width, modes) == want
    finally:
        await engine.dispose()

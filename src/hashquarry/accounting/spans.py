"""Per-account sums of the share log in fixed spans of sequence numbers.

A PPLNS window of N blocks can hold millions of shares. Reading each of them for every
block found costs seconds, so the share log is also summarised: span s holds, per coin
and account, the summed weight of the accepted shares with seq in [s*SPAN, (s+1)*SPAN),
and the first and last share time (to tell whether a settle-mode switch fell inside).
A window then reads whole spans and only the rows at its two ends.

Spans are cut by the global share sequence, so a span is complete, for every coin at
once, when the writer has applied every seq below its end. State (in the `state` table,
moved in the same transaction as the rows it describes):
- `share_spans_upto`: spans below it are summarised (for every coin);
- `share_spans_base`: spans below it never were (a store that had shares before the
  span table existed);
- `share_spans_from:<coin>`: spans below it lost rows to pruning, so their sums were
  dropped and the rows left are read one by one.

SPAN is part of the stored data: changing it needs a migration that rebuilds the table.

A window walk reads the marks, the sums and the rows in several statements, so it must
not interleave with a prune or a flush of the same coin: all of them run on the
accounting writer under its lock (accounting/service.py), one at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from hashquarry.accounting.schemes import share_weight
from hashquarry.store import models as m

SPAN = 16_384
UPTO = "share_spans_upto"
BASE = "share_spans_base"
# Whole spans read back per query when closing many at once (a store migrated with a
# partial span, the bench): bounds the rows held in memory.
_SPANS_PER_READ = 8


def from_key(coin: str) -> str:
    return f"share_spans_from:{coin}"


@dataclass(slots=True)
class AccountSum:
    weight: int = 0
    first: float = float("inf")
    last: float = float("-inf")


@dataclass(slots=True)
class Span:
    """One coin's sums for one span: account -> its sum."""

    index: int
    accounts: dict[str, AccountSum] = field(default_factory=dict)


_SPAN_ROWS = text(
    "SELECT seq, coin, time, account, difficulty FROM shares "
    "WHERE seq >= :lo AND seq < :hi ORDER BY seq"
)


def summarise(rows: Iterable[Sequence[Any]], span: int) -> dict[tuple[str, int], Span]:
    """(seq, coin, time, account, difficulty) rows -> their sums per (coin, span)."""
    out: dict[tuple[str, int], Span] = {}
    weight_of: dict[float, int] = {}
    for seq, coin, t, account, difficulty in rows:
        index = seq // span
        s = out.get((coin, index))
        if s is None:
            s = out[(coin, index)] = Span(index)
        a = s.accounts.get(account)
        if a is None:
            a = s.accounts[account] = AccountSum()
        w = weight_of.get(difficulty)
        if w is None:
            w = weight_of[difficulty] = share_weight(difficulty)
        a.weight += w
        if t < a.first:
            a.first = t
        if t > a.last:
            a.last = t
    return out


async def close_spans(
    conn: AsyncConnection, applied_seq: int, fresh: Sequence[Sequence[Any]] = ()
) -> int:
    """Summarise every span that `applied_seq` (the last seq now in the store) completes.

    Call it in the transaction that stored the shares, after them. `fresh` is that
    batch's (seq, coin, time, account, worker, difficulty) rows in seq order, so that only
    the rows of earlier batches are read back; nothing is kept between calls, so a
    restart mid-span needs nothing rebuilt. Returns the spans closed."""
    from hashquarry.accounting.writer import get_state, set_state

    upto = await get_state(conn, UPTO)
    new_upto = (applied_seq + 1) // SPAN
    if new_upto <= upto:
        return 0
    if fresh and fresh[0][0] > fresh[-1][0]:
        raise ValueError("close_spans: fresh rows must be in seq order")
    first, hi = upto * SPAN, new_upto * SPAN
    # Rows from the first fresh one on are taken from `fresh`, not read back.
    stored_below = min(hi, fresh[0][0]) if fresh else hi
    lo, step = first, _SPANS_PER_READ * SPAN
    while stored_below - lo > step:  # whole spans, a bounded read at a time
        await _insert(conn, summarise(await _stored(conn, lo, lo + step), SPAN))
        lo += step
    tail = ((r[0], r[1], r[2], r[3], r[5]) for r in fresh if first <= r[0] < hi)
    rows = itertools.chain(await _stored(conn, lo, stored_below), tail)
    await _insert(conn, summarise(rows, SPAN))
    await set_state(conn, UPTO, new_upto)
    return new_upto - upto


async def _stored(conn: AsyncConnection, lo: int, hi: int) -> list[Any]:
    result = await conn.execute(_SPAN_ROWS, {"lo": lo, "hi": hi})
    return list(result.cursor.fetchall()) if result.cursor is not None else []


async def _insert(conn: AsyncConnection, spans: dict[tuple[str, int], Span]) -> None:
    values = [
        {
            "coin": coin,
            "span": index,
            "account": account,
            # Text: a span's weight passes 2**63 at mainnet share difficulties.
            "weight": str(a.weight),
            "first_time": a.first,
            "last_time": a.last,
        }
        for (coin, index), s in spans.items()
        for account, a in s.accounts.items()
    ]
    if values:
        await conn.execute(m.share_spans.insert(), values)


@dataclass(frozen=True, slots=True)
class Bounds:
    """Spans [lo, hi) of one coin are summarised."""

    lo: int
    hi: int


async def bounds(conn: AsyncConnection, coin: str) -> Bounds:
    from hashquarry.accounting.writer import get_state

    lo = max(await get_state(conn, BASE), await get_state(conn, from_key(coin)))
    return Bounds(lo, max(lo, await get_state(conn, UPTO)))


_READ_SPANS = text(
    "SELECT span, account, weight, first_time, last_time FROM share_spans "
    "WHERE coin = :coin AND span >= :lo AND span < :hi"
)


async def read_spans(conn: AsyncConnection, coin: str, lo: int, hi: int) -> dict[int, Span]:
    """The summarised spans in [lo, hi) that hold any share of `coin` (others are empty)."""
    result = await conn.execute(_READ_SPANS, {"coin": coin, "lo": lo, "hi": hi})
    rows = result.cursor.fetchall() if result.cursor is not None else []
    out: dict[int, Span] = {}
    for index, account, weight, first, last in rows:
        s = out.get(index)
        if s is None:
            s = out[index] = Span(index)
        s.accounts[account] = AccountSum(int(weight), float(first), float(last))
    return out


async def drop_pruned(conn: AsyncConnection, coin: str, below_seq: int) -> None:
    """Share rows below `below_seq` are gone: the sums of the spans they were in no longer
    match the rows left, so they are dropped and those spans are read row by row."""
    from hashquarry.accounting.writer import get_state, set_state

    first_whole = -(-below_seq // SPAN)
    # Also when the mark does not move: a prune into the span still open leaves `from`
    # above `upto`, and close_spans later writes sums there that are never read.
    await conn.execute(
        m.share_spans.delete().where(
            (m.share_spans.c.coin == coin) & (m.share_spans.c.span < first_whole)
        )
    )
    if first_whole > await get_state(conn, from_key(coin)):
        await set_state(conn, from_key(coin), first_whole)

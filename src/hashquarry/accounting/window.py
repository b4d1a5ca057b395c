"""The work a block is split by, read from the store: per-share modes, the PPLNS window,
the round, and how far back share rows must be kept for them.

Shares are read as plain tuples in large batches: at a million shares per window,
per-row ORM objects and per-row awaits would dominate the time.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import CursorResult, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from hashquarry.accounting import spans
from hashquarry.accounting.schemes import share_weight
from hashquarry.accounting.split import Key
from hashquarry.store import models as m

log = logging.getLogger(__name__)

FETCH = 200_000


class ModeHistory:
    """(account, time) -> the settle mode in force then, from the switch history.

    A switch applies from its activation time on; of two at the same time, the later
    row wins. Accounts that never switched are in the coin's default mode."""

    def __init__(self, default: str, history: dict[str, list[tuple[float, str]]]) -> None:
        self.default = default
        self._at = {a: [at for at, _ in h] for a, h in history.items()}
        self._mode = {a: [mode for _, mode in h] for a, h in history.items()}

    @property
    def switched(self) -> frozenset[str]:
        """Accounts with any switch (for the others every share is in the default mode)."""
        return frozenset(self._at)

    def __call__(self, account: str, t: float) -> str:
        ats = self._at.get(account)
        if ats is None:
            return self.default
        i = bisect.bisect_right(ats, t)
        return self._mode[account][i - 1] if i else self.default

    def constant(self, account: str, first: float, last: float) -> bool:
        """One mode covers (account, t) for every first <= t <= last."""
        # No switch took effect inside (first, last]: the mode at `first` covers them all.
        ats = self._at.get(account)
        return ats is None or bisect.bisect_right(ats, first) == bisect.bisect_right(ats, last)

    def keyer(self) -> _Keyer:
        return _Keyer(self)


class _Keyer:
    """(account, share time) -> (account, mode) without a call or a tuple per share for
    the accounts that never switched (nearly all of them, nearly always)."""

    def __init__(self, modes: ModeHistory) -> None:
        self.modes = modes
        self.switched = modes.switched
        self.fixed: dict[str, Key] = {}

    def __call__(self, account: str, t: float) -> Key:
        if account in self.switched:
            return (account, self.modes(account, t))
        key = self.fixed.get(account)
        if key is None:
            key = self.fixed[account] = (account, self.modes.default)
        return key


async def mode_history(conn: AsyncConnection, coin: str, default: str) -> ModeHistory:
    rows = (
        await conn.execute(
            select(m.settle_modes.c.account, m.settle_modes.c.mode, m.settle_modes.c.activate_at)
            .where(m.settle_modes.c.coin == coin)
            .order_by(m.settle_modes.c.activate_at, m.settle_modes.c.id)
        )
    ).all()
    history: dict[str, list[tuple[float, str]]] = {}
    for account, mode, at in rows:
        history.setdefault(account, []).append((float(at), str(mode)))
    return ModeHistory(default, history)


_NEWEST_FIRST = text(
    "SELECT seq, account, time, difficulty FROM shares "
    "WHERE coin = :coin AND seq < :before AND seq >= :floor ORDER BY seq DESC LIMIT :limit"
)
_ASCENDING = text(
    "SELECT seq, account, time, difficulty FROM shares "
    "WHERE coin = :coin AND seq >= :after AND seq <= :upto ORDER BY seq LIMIT :limit"
)
# Spans read per query by a window walk: about this many times the active accounts rows.
_SPANS_PER_READ = 16


def _plain_rows(result: CursorResult[Any]) -> list[Any]:
    """The driver's own rows (tuples, or asyncpg records), already fetched by the async
    adapter: wrapping a million of them in Row objects took longer than the query."""
    return list(result.cursor.fetchall()) if result.cursor is not None else []


class _Fill:
    """schemes.pplns_window's walk, fed share by share or a whole span at a time: a span
    is taken whole only when all of it fits, so the result is the same to the hash."""

    def __init__(self, window: int) -> None:
        self.acc: dict[Key, int] = {}
        self.remaining = window
        self._weight_of: dict[float, int] = {}

    @property
    def full(self) -> bool:
        return self.remaining == 0

    def share(self, key: Key, difficulty: float) -> bool:
        w = self._weight_of.get(difficulty)
        if w is None:
            w = self._weight_of[difficulty] = share_weight(difficulty)
        if w >= self.remaining:
            w = self.remaining
        self.acc[key] = self.acc.get(key, 0) + w
        self.remaining -= w
        return self.remaining == 0

    def whole(self, weights: dict[Key, int], total: int) -> None:
        for key, w in weights.items():
            self.acc[key] = self.acc.get(key, 0) + w
        self.remaining -= total


def _span_weights(span: spans.Span, modes: ModeHistory, key_of: _Keyer) -> dict[Key, int] | None:
    """Weight per (account, mode) of a summarised span's pool (not SOLO) shares, or None
    when a switch took effect inside it for some account (its rows must then be read)."""
    out: dict[Key, int] = {}
    for account, a in span.accounts.items():
        if not modes.constant(account, a.first, a.last):
            return None
        key = key_of(account, a.first)
        if key[1] != "solo":
            out[key] = out.get(key, 0) + a.weight
    return out


async def _rows_newest_first(
    conn: AsyncConnection,
    coin: str,
    fill: _Fill,
    key_of: _Keyer,
    before: int,
    floor: int,
) -> int | None:
    """Feed `fill` the pool shares with floor <= seq < before, newest first, until full.
    Returns the seq of the oldest share counted (None if none was)."""
    oldest: int | None = None
    while not fill.full:
        rows = _plain_rows(
            await conn.execute(
                _NEWEST_FIRST, {"coin": coin, "before": before, "floor": floor, "limit": FETCH}
            )
        )
        for seq, account, t, difficulty in rows:
            key = key_of(account, t)
            if key[1] == "solo":
                continue
            oldest = seq
            if fill.share(key, difficulty):
                break
        if len(rows) < FETCH:
            break
        before = rows[-1][0]
    return oldest


async def _walk_window(
    conn: AsyncConnection, coin: str, upto_seq: int, window: int, modes: ModeHistory
) -> tuple[dict[Key, int], int | None]:
    """Weight per (account, mode) of the last `window` hashes of pool work up to and
    including `upto_seq`, and the lowest seq the result depends on.

    Newest first: the rows after the last whole summarised span, then whole spans while
    they fit, the rows of the span the window ends in, and rows below the summarised
    spans (shares older than the span table, or spans pruning cut into)."""
    fill = _Fill(window)
    key_of = modes.keyer()
    span = spans.SPAN
    b = await spans.bounds(conn, coin)
    top = max(min(b.hi, (upto_seq + 1) // span), 0)
    lo = min(b.lo, top)
    oldest = await _rows_newest_first(conn, coin, fill, key_of, upto_seq + 1, top * span)
    hi = top
    while hi > lo and not fill.full:
        first = max(lo, hi - _SPANS_PER_READ)
        read = await spans.read_spans(conn, coin, first, hi)
        for index in sorted(read, reverse=True):
            weights = _span_weights(read[index], modes, key_of)
            total = sum(weights.values()) if weights is not None else 0
            if weights is not None and total <= fill.remaining:
                fill.whole(weights, total)
                if total:
                    oldest = index * span
            else:
                # The span the window ends in, or one a mode switch cuts: row by row.
                edge = await _rows_newest_first(
                    conn, coin, fill, key_of, (index + 1) * span, index * span
                )
                oldest = edge if edge is not None else oldest
            if fill.full:
                break
        hi = first
    if not fill.full:
        older = await _rows_newest_first(conn, coin, fill, key_of, lo * span, 0)
        oldest = older if older is not None else oldest
    return fill.acc, oldest


async def window_weights(
    conn: AsyncConnection, coin: str, upto_seq: int, window: int, modes: ModeHistory
) -> dict[Key, int]:
    """Weight per (account, mode) of the last `window` hashes of pool work up to and
    including `upto_seq` (the edge share counts only for the part that fits)."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int (hashes), got {window!r}")
    weights, _ = await _walk_window(conn, coin, upto_seq, window, modes)
    return weights


def _pruned_key(coin: str) -> str:
    return f"shares_pruned_below:{coin}"


async def _pruned(conn: AsyncConnection, coin: str) -> int:
    # Imported here: the writer imports the ledger, which imports this module.
    from hashquarry.accounting.writer import get_state

    return await get_state(conn, _pruned_key(coin))


async def round_weights(
    conn: AsyncConnection,
    coin: str,
    round_id: int,
    upto_seq: int,
    modes: ModeHistory,
    found_at: float,
) -> dict[Key, int]:
    """Weight per (account, mode) of the pool shares of a round, up to `upto_seq`.

    From the share rows, so an account that switched mode inside the round is split at
    the switch. Should they be gone (a round older than any pruning allows), from the
    round's per-account totals under each account's mode at `found_at`, with a warning:
    right unless someone switched inside that round."""
    start = await conn.scalar(select(m.rounds.c.start_seq).where(m.rounds.c.id == round_id))
    pruned_below = await _pruned(conn, coin)
    if start is not None and int(start) >= pruned_below:
        return await _range_weights(conn, coin, int(start), upto_seq, modes)
    log.warning(
        "round %s of %s: share rows gone; splitting by its per-account totals", round_id, coin
    )
    rows = (
        await conn.execute(
            select(m.round_accounts.c.account, m.round_accounts.c.accepted_diff).where(
                m.round_accounts.c.round_id == round_id
            )
        )
    ).all()
    out: dict[Key, int] = {}
    for account, diff in rows:
        mode = modes(account, found_at)
        if diff > 0 and mode != "solo":
            out[(account, mode)] = share_weight(diff)
    return out


async def _range_weights(
    conn: AsyncConnection, coin: str, first: int, upto: int, modes: ModeHistory
) -> dict[Key, int]:
    """Weight per (account, mode) of the pool shares with first <= seq <= upto: whole
    summarised spans from their sums, the rows at both ends (and in spans a mode switch
    cuts) one by one."""
    span = spans.SPAN
    b = await spans.bounds(conn, coin)
    lo = max(b.lo, -(-first // span))
    hi = min(b.hi, (upto + 1) // span)
    if lo >= hi:
        return _sum_weights(await _ascending(conn, coin, first, upto), modes)
    key_of = modes.keyer()
    rows = await _ascending(conn, coin, first, lo * span - 1)
    rows += await _ascending(conn, coin, hi * span, upto)
    out = _sum_weights(rows, modes)
    for index, s in (await spans.read_spans(conn, coin, lo, hi)).items():
        weights = _span_weights(s, modes, key_of)
        if weights is None:
            weights = _sum_weights(
                await _ascending(conn, coin, index * span, (index + 1) * span - 1), modes
            )
        for key, w in weights.items():
            out[key] = out.get(key, 0) + w
    return out


async def _ascending(
    conn: AsyncConnection, coin: str, first: int, upto: int
) -> list[tuple[str, float, float]]:
    out: list[tuple[str, float, float]] = []
    after = first
    while after <= upto:
        rows = _plain_rows(
            await conn.execute(
                _ASCENDING, {"coin": coin, "after": after, "upto": upto, "limit": FETCH}
            )
        )
        out.extend((a, t, d) for _seq, a, t, d in rows)
        if len(rows) < FETCH:
            return out
        after = rows[-1][0] + 1
    return out


def _sum_weights(shares: Iterable[tuple[str, float, float]], modes: ModeHistory) -> dict[Key, int]:
    key_of = modes.keyer()
    weight_of: dict[float, int] = {}
    out: dict[Key, int] = {}
    for account, t, difficulty in shares:
        key = key_of(account, t)
        if key[1] == "solo":
            continue
        w = weight_of.get(difficulty)
        if w is None:
            w = weight_of[difficulty] = share_weight(difficulty)
        out[key] = out.get(key, 0) + w
    return out


async def prune_shares(
    conn: AsyncConnection,
    coin: str,
    *,
    before_time: float,
    window: int,
    modes: ModeHistory,
    keep_from_seq: int,
) -> int:
    """Delete share rows older than `before_time`, except those a block can still need:
    the PPLNS window of `window` hashes back from the newest share, and every share
    from `keep_from_seq` (the open round's first) on. Returns the rows deleted.

    Without this limit a window longer than the time kept (a small pool, a large N)
    would silently shrink, and its older shares' part would go to the newer ones."""
    c = m.shares.c
    # Nothing old enough (a pool younger than the retention, the usual case between two
    # prunes): answered from the (coin, seq) index, without walking the window.
    oldest_time = await conn.scalar(select(c.time).where(c.coin == coin).order_by(c.seq).limit(1))
    if oldest_time is None or oldest_time >= before_time:
        return 0
    newest = await conn.scalar(select(func.max(c.seq)).where(c.coin == coin))
    if newest is None:
        return 0
    _, oldest_needed = await _walk_window(conn, coin, int(newest), window, modes)
    limit = min(keep_from_seq, oldest_needed if oldest_needed is not None else keep_from_seq)
    doomed = (c.coin == coin) & (c.time < before_time) & (c.seq < limit)
    last = await conn.scalar(select(func.max(c.seq)).where(doomed))
    if last is None:
        return 0
    held = await conn.scalar(
        select(func.count()).where(c.coin == coin, c.time < before_time, c.seq >= limit)
    )
    if held:
        log.info(
            "%s: keeping %d share rows past the retention time; the PPLNS window or the "
            "open round still needs them",
            coin,
            held,
        )
    result = await conn.execute(m.shares.delete().where(doomed))
    await spans.drop_pruned(conn, coin, int(last) + 1)
    from hashquarry.accounting.writer import set_state

    # Rounds reaching below this mark can no longer be read from share rows.
    await set_state(conn, _pruned_key(coin), max(int(last) + 1, await _pruned(conn, coin)))
    return int(result.rowcount or 0)

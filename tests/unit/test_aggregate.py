"""The aggregator (pure): replay is idempotent, batching does not change the sums,
blocks close rounds, shifts complete at their span, PPS accrues only for PPS accounts.

Share difficulties in the properties are powers of two, so float sums are exact in any
order and "the same" means equal, not approximately equal.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashquarry.accounting.aggregate import (
    Aggregator,
    FlushBatch,
    FoundBlock,
    MinuteAgg,
    PpsAgg,
    RoundState,
    ShiftState,
    WorkerAgg,
    utc_day,
)
from hashquarry.accounting.schemes import fpps_share_value_nano, pps_share_value_nano
from hashquarry.shares.events import ShareEvent, ShareResult

COIN = "bitcoin"
NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
MIDNIGHT = NOW - 8 * 3600
ND = 1024.0
SUBSIDY = 312_500_000
TX_FEES = 20_000
MODES = {"alice": "pplns", "bob": "pps", "carol": "fpps", "dave": "prop"}
FEE_BPS = 200


def share(
    t: float,
    account: str = "alice",
    worker: str = "rig1",
    *,
    difficulty: float = 1.0,
    result: ShareResult = ShareResult.ACCEPTED,
    delayed: bool = False,
    block: bool = False,
    network_difficulty: float = ND,
    remote: str = "192.0.2.1",
    block_reward: int = SUBSIDY + TX_FEES,
) -> ShareEvent:
    return ShareEvent(
        time=t,
        account=account,
        worker=worker,
        job_id="1",
        height=800_000,
        difficulty=difficulty,
        network_difficulty=network_difficulty,
        result=result,
        reason="",
        hash_hex=f"{int(t * 1000):064x}" if block else None,
        is_block=block,
        delayed=delayed,
        remote=remote,
        session_id="s",
        block_reward=block_reward,
        tx_fees=TX_FEES,
        coin=COIN,
    )


def fresh(
    *,
    shift_span: float = 8.0,
    modes: dict[str, str] | None = None,
    round_id: int = 1,
    shift_id: int = 1,
    next_block_id: int = 1,
) -> Aggregator:
    table = MODES if modes is None else modes
    mode_of: Callable[[str, str, float], str] = lambda _c, a, _t: table.get(a, "pplns")  # noqa: E731
    return Aggregator(
        COIN,
        round_=RoundState(round_id, COIN, NOW - 86400, 1),
        shift=ShiftState(shift_id, COIN, NOW - 86400, shift_span),
        next_block_id=next_block_id,
        mode_of=mode_of,
        fee_bps=FEE_BPS,
        shift_span=shift_span,
    )


def run(agg: Aggregator, records: list[tuple[int, ShareEvent]]) -> FlushBatch:
    for seq, ev in records:
        agg.apply(seq, ev)
    return agg.take()


# --------------------------------------------------------------------------- strategies

results = st.sampled_from(
    [ShareResult.ACCEPTED] * 4
    + [ShareResult.STALE, ShareResult.DUPLICATE, ShareResult.LOW_DIFFICULTY, ShareResult.INVALID]
)


@st.composite
def share_runs(draw: st.DrawFn, max_size: int = 60) -> list[tuple[int, ShareEvent]]:
    """A run of records in seq order with non-decreasing times, maybe across midnight."""
    n = draw(st.integers(min_value=1, max_value=max_size))
    t = draw(st.sampled_from([NOW - 600, MIDNIGHT - 300]))
    out = []
    for seq in range(1, n + 1):
        t += draw(st.integers(min_value=0, max_value=45))
        result = draw(results)
        accepted = result is ShareResult.ACCEPTED
        ev = share(
            t,
            draw(st.sampled_from(sorted(MODES))),
            draw(st.sampled_from(["rig1", "rig2"])),
            difficulty=draw(st.sampled_from([0.5, 1.0, 2.0, 4.0, 64.0])),
            result=result,
            delayed=accepted and draw(st.booleans()),
            block=accepted and draw(st.integers(0, 15)) == 0,
            network_difficulty=draw(st.sampled_from([ND, 2 * ND])),
            remote=f"192.0.2.{seq}",
        )
        out.append((seq, ev))
    return out


# --------------------------------------------------------------------------- merging batches


def merge_minute(a: MinuteAgg, b: MinuteAgg) -> MinuteAgg:
    """What the writer's upsert makes of two flushes of the same minute."""
    return MinuteAgg(
        a.accepted + b.accepted,
        a.accepted_diff + b.accepted_diff,
        a.stale + b.stale,
        a.stale_diff + b.stale_diff,
        a.invalid + b.invalid,
        a.invalid_diff + b.invalid_diff,
        a.delayed_diff + b.delayed_diff,
        min(a.first_share, b.first_share),
        max(a.last_share, b.last_share),
        b.network_difficulty or a.network_difficulty,  # the latest known
    )


@dataclass
class Totals:
    """Batches folded together the way the store folds flushes."""

    minutes: dict = field(default_factory=dict)
    account_minutes: dict = field(default_factory=dict)
    workers: dict = field(default_factory=dict)
    shares: list = field(default_factory=list)
    rounds: dict = field(default_factory=dict)
    shifts: dict = field(default_factory=dict)
    blocks: list = field(default_factory=list)
    pps: dict = field(default_factory=dict)
    first_seq: int = 0
    last_seq: int = 0

    def add(self, b: FlushBatch) -> Totals:
        if b.empty:
            return self
        self.first_seq = self.first_seq or b.first_seq
        self.last_seq = b.last_seq
        for src, dst in ((b.minutes, self.minutes), (b.account_minutes, self.account_minutes)):
            for k, v in src.items():
                dst[k] = merge_minute(dst[k], v) if k in dst else copy.copy(v)
        for k, w in b.workers.items():
            o = self.workers.get(k)
            self.workers[k] = (
                copy.copy(w)
                if o is None
                else WorkerAgg(
                    min(o.first_seen, w.first_seen),
                    max(o.last_share, w.last_share),
                    w.last_host,
                    o.accepted + w.accepted,
                    o.invalid + w.invalid,
                )
            )
        self.shares += b.shares
        self.blocks += b.blocks
        for k, p in b.pps.items():
            o = self.pps.setdefault(k, PpsAgg())
            o.nano += p.nano
            o.fee_nano += p.fee_nano
            o.tx_fee_nano += p.tx_fee_nano
            o.accepted_diff += p.accepted_diff
        for r in b.rounds.values():
            o = self.rounds.get(r.id)
            if o is None:
                self.rounds[r.id] = copy.deepcopy(r)
                continue
            o.accepted += r.accepted
            o.accepted_diff += r.accepted_diff
            o.rejected += r.rejected
            o.rejected_diff += r.rejected_diff
            o.network_difficulty = r.network_difficulty  # replaced
            if r.ended_at is not None:
                o.ended_at, o.end_seq, o.block_id = r.ended_at, r.end_seq, r.block_id
            for a, v in r.accounts.items():
                acc = o.accounts.setdefault(a, [0.0, 0, 0])
                for i in range(3):
                    acc[i] += v[i]
        for s in b.shifts.values():
            o = self.shifts.get(s.id)
            if o is None:
                self.shifts[s.id] = copy.deepcopy(s)
                continue
            o.accepted += s.accepted
            o.accepted_diff += s.accepted_diff
            o.rejected += s.rejected
            if s.completed:
                o.ended_at, o.completed = s.ended_at, True
            for a, v in s.accounts.items():
                acc = o.accounts.setdefault(a, [0.0, 0, 0])
                for i in range(3):
                    acc[i] += v[i]
        return self


def totals(*batches: FlushBatch) -> Totals:
    t = Totals()
    for b in batches:
        t.add(b)
    return t


# --------------------------------------------------------------------------- properties


@settings(max_examples=100, deadline=None)
@given(share_runs(), st.data())
def test_applying_records_again_changes_nothing(
    records: list[tuple[int, ShareEvent]], data: st.DataObject
) -> None:
    agg = fresh()
    first = run(agg, records)
    assert (first.first_seq, first.last_seq) == (1, len(records))
    state = copy.deepcopy((agg.round, agg.shift, agg.next_block_id, agg.applied_seq))
    # the whole run again, then any earlier part of it again: all already applied
    again = run(agg, records)
    k = data.draw(st.integers(min_value=0, max_value=len(records)))
    again_part = run(agg, records[:k])
    assert again == FlushBatch() and again_part == FlushBatch()
    assert again.empty and again_part.empty
    assert (agg.round, agg.shift, agg.next_block_id, agg.applied_seq) == state
    # a restarted aggregator told how far the store got applies only the rest
    restarted = fresh()
    restarted.applied_seq = k
    rest = run(restarted, records)
    assert [s[0] for s in rest.shares] == [s[0] for s in first.shares if s[0] > k]


@settings(max_examples=100, deadline=None)
@given(share_runs(), st.data())
def test_batches_sum_to_one_big_batch(
    records: list[tuple[int, ShareEvent]], data: st.DataObject
) -> None:
    one = run(fresh(), records)
    cuts = sorted(
        data.draw(st.sets(st.integers(min_value=1, max_value=max(1, len(records) - 1)), max_size=6))
    )
    agg = fresh()
    bounds = [0, *cuts, len(records)]
    batches = [run(agg, records[lo:hi]) for lo, hi in itertools.pairwise(bounds)]
    assert [b.first_seq for b in batches if not b.empty] == [
        lo + 1 for lo, hi in itertools.pairwise(bounds) if hi > lo
    ]
    merged, whole = totals(*batches), totals(one)
    assert merged.minutes == whole.minutes
    assert merged.account_minutes == whole.account_minutes
    assert merged.workers == whole.workers
    assert merged.shares == whole.shares
    assert merged.blocks == whole.blocks
    assert merged.pps == whole.pps
    assert merged.rounds == whole.rounds
    assert merged.shifts == whole.shifts
    assert (merged.first_seq, merged.last_seq) == (1, len(records))
    # and the sums are the events'
    accepted = [ev for _, ev in records if ev.accepted]
    assert sum(m.accepted for m in merged.minutes.values()) == len(accepted)
    assert sum(m.accepted_diff for m in merged.account_minutes.values()) == sum(
        ev.difficulty for ev in accepted
    )
    assert [s[0] for s in merged.shares] == [seq for seq, ev in records if ev.accepted]


@settings(max_examples=100, deadline=None)
@given(share_runs())
def test_pps_accrues_only_for_pps_and_fpps_accounts(
    records: list[tuple[int, ShareEvent]],
) -> None:
    batch = run(fresh(), records)
    expected: dict[tuple[str, str, str], PpsAgg] = {}
    for _, ev in records:
        mode = MODES[ev.account]
        if not ev.accepted or mode not in ("pps", "fpps"):
            continue
        subsidy = ev.block_reward - ev.tx_fees
        d, nd = ev.difficulty, ev.network_difficulty
        if mode == "pps":
            value = pps_share_value_nano(d, nd, subsidy, FEE_BPS)
            gross = pps_share_value_nano(d, nd, subsidy, 0)
            tx = 0
        else:
            value = fpps_share_value_nano(d, nd, subsidy, TX_FEES, FEE_BPS)
            gross = fpps_share_value_nano(d, nd, subsidy, TX_FEES, 0)
            tx = value - pps_share_value_nano(d, nd, subsidy, FEE_BPS)
        p = expected.setdefault((COIN, ev.account, utc_day(ev.time)), PpsAgg())
        p.nano += value
        p.fee_nano += gross - value
        p.tx_fee_nano += tx
        p.accepted_diff += d
    assert batch.pps == expected
    assert {k[1] for k in batch.pps} <= {"bob", "carol"}


# --------------------------------------------------------------------------- examples


def test_minute_and_worker_aggregates() -> None:
    s, low, dup = ShareResult.STALE, ShareResult.LOW_DIFFICULTY, ShareResult.DUPLICATE
    t = NOW - 120  # minute-aligned
    batch = run(
        fresh(),
        [
            (1, share(t + 5, difficulty=2.0, remote="a")),
            (2, share(t + 1, difficulty=4.0, delayed=True, remote="b")),  # earlier time
            (3, share(t + 9, result=s, difficulty=8.0, remote="c")),
            (4, share(t + 7, result=low, difficulty=16.0, remote="d")),
            (5, share(t + 8, result=dup, remote="e", network_difficulty=0.0)),
            (6, share(t + 61, "bob", "x", difficulty=2.0, network_difficulty=2 * ND)),
        ],
    )
    m0 = int(t // 60)
    assert batch.minutes == {
        (COIN, "alice", "rig1", m0): MinuteAgg(2, 6.0, 1, 8.0, 2, 17.0, 4.0, t + 1, t + 9, ND),
        (COIN, "bob", "x", m0 + 1): MinuteAgg(1, 2.0, 0, 0, 0, 0, 0, t + 61, t + 61, 2 * ND),
    }
    assert batch.account_minutes == {
        (COIN, "alice", m0): batch.minutes[COIN, "alice", "rig1", m0],
        (COIN, "bob", m0 + 1): batch.minutes[COIN, "bob", "x", m0 + 1],
    }
    # stale shares are neither accepted nor invalid for a worker; the last host is the
    # last record's, whatever its time
    alice = batch.workers[COIN, "alice", "rig1"]
    assert (alice.last_share, alice.last_host, alice.accepted, alice.invalid) == (t + 9, "e", 2, 2)
    assert batch.workers[COIN, "bob", "x"] == WorkerAgg(t + 61, t + 61, "192.0.2.1", 1, 0)
    assert len(batch.workers) == 2
    assert batch.shares == [
        (1, COIN, t + 5, "alice", "rig1", 2.0),
        (2, COIN, t + 1, "alice", "rig1", 4.0),
        (6, COIN, t + 61, "bob", "x", 2.0),
    ]
    r = batch.rounds[1]
    assert (r.accepted, r.accepted_diff, r.rejected, r.rejected_diff) == (3, 8.0, 3, 25.0)
    assert r.accounts == {"alice": [6.0, 2, 3], "bob": [2.0, 1, 0]}
    assert r.network_difficulty == 2 * ND


def test_worker_first_seen_is_the_earliest_share() -> None:
    batch = run(fresh(), [(1, share(NOW + 5)), (2, share(NOW + 1))])
    assert batch.workers[COIN, "alice", "rig1"].first_seen == NOW + 1


def test_a_block_closes_the_round_and_opens_the_next() -> None:
    agg = fresh(round_id=7, next_block_id=3)
    agg.round.accepted, agg.round.accepted_diff = 10, 10.0  # from earlier flushes
    batch = run(
        agg,
        [
            (41, share(NOW + 1, "alice", difficulty=2.0)),
            (42, share(NOW + 2, "bob", result=ShareResult.STALE)),
            (43, share(NOW + 3, "carol", difficulty=4.0, block=True)),
            (44, share(NOW + 4, "bob", difficulty=1.0)),
        ],
    )
    (b,) = batch.blocks
    assert b == FoundBlock(
        id=3,
        coin=COIN,
        seq=43,
        height=800_000,
        hash=f"{int((NOW + 3) * 1000):064x}",
        network_difficulty=ND,
        income=SUBSIDY + TX_FEES,
        tx_fees=TX_FEES,
        account="carol",
        worker="rig1",
        found_at=NOW + 3,
        round_id=7,
        round_started_at=NOW - 86400,
        round_accepted=12,  # the winning share counts in its round
        round_rejected=1,
        round_diff=16.0,
    )
    closed, opened = batch.rounds[7], batch.rounds[8]
    assert (closed.ended_at, closed.end_seq, closed.block_id) == (NOW + 3, 43, 3)
    assert (closed.accepted, closed.accepted_diff, closed.rejected) == (2, 6.0, 1)
    assert (opened.started_at, opened.start_seq, opened.ended_at) == (NOW + 3, 44, None)
    assert (opened.accepted, opened.accepted_diff, opened.accounts) == (
        1,
        1.0,
        {"bob": [1.0, 1, 0]},
    )
    assert (agg.round.id, agg.round.start_seq, agg.round.accepted) == (8, 44, 1)
    assert agg.next_block_id == 4


@pytest.mark.parametrize(
    ("ev_kw", "why"),
    [
        ({"result": ShareResult.STALE}, "a stale share is no block"),
        ({"result": ShareResult.LOW_DIFFICULTY}, "an invalid share is no block"),
        ({"block": False}, "not a block"),
    ],
)
def test_only_an_accepted_block_share_is_a_block(ev_kw: dict[str, object], why: str) -> None:
    ev = share(NOW, **({"block": True} | ev_kw))  # type: ignore[arg-type]
    assert ev.hash_hex is not None or not ev.is_block
    batch = run(fresh(), [(1, ev)])
    assert batch.blocks == [], why
    assert batch.rounds[1].ended_at is None and list(batch.rounds) == [1]


def test_a_block_share_without_a_hash_is_no_block() -> None:
    batch = run(fresh(), [(1, replace(share(NOW, block=True), hash_hex=None))])
    assert batch.blocks == []


def test_two_blocks_in_one_batch() -> None:
    agg = fresh()
    batch = run(
        agg,
        [
            (1, share(NOW + 1, block=True)),
            (2, share(NOW + 2, "bob")),
            (3, share(NOW + 3, "bob", block=True)),
        ],
    )
    assert [(b.id, b.seq, b.round_id, b.round_accepted) for b in batch.blocks] == [
        (1, 1, 1, 1),
        (2, 3, 2, 2),
    ]
    assert [(r.id, r.start_seq, r.end_seq, r.block_id) for r in batch.rounds.values()] == [
        (1, 1, 1, 1),
        (2, 2, 3, 2),
        (3, 4, None, None),
    ]


def test_shift_completes_at_the_configured_span() -> None:
    agg = fresh(shift_span=3.0)
    batch = run(
        agg,
        [
            (1, share(NOW + 1, "alice")),
            (2, share(NOW + 2, "bob", result=ShareResult.STALE)),
            (3, share(NOW + 3, "bob")),
            (4, share(NOW + 4, "alice")),  # 3.0: the shift is complete
            (5, share(NOW + 5, "bob", difficulty=2.0)),
        ],
    )
    s1, s2 = batch.shifts[1], batch.shifts[2]
    assert (s1.completed, s1.ended_at, s1.accepted, s1.accepted_diff, s1.rejected) == (
        True,
        NOW + 4,
        3,
        3.0,
        1,
    )
    assert s1.accounts == {"alice": [2.0, 2, 0], "bob": [1.0, 1, 1]}
    assert (s2.completed, s2.started_at, s2.span, s2.accepted_diff) == (False, NOW + 4, 3.0, 2.0)
    assert s2.accounts == {"bob": [2.0, 1, 0]}
    assert (agg.shift.id, agg.shift.accepted_diff) == (2, 2.0)


def test_shift_span_defaults_to_the_network_difficulty() -> None:
    agg = fresh(shift_span=0.0)
    records = [(i, share(NOW + i, difficulty=256.0)) for i in range(1, 6)]  # ND = 1024
    batch = run(agg, records)
    assert batch.shifts[1].completed and batch.shifts[1].ended_at == NOW + 4
    assert not batch.shifts[2].completed and batch.shifts[2].accepted_diff == 256.0


def test_pps_follows_the_mode_at_the_share_time() -> None:
    """An account that switches to PPS at noon accrues from noon on, per UTC day."""
    switch = MIDNIGHT + 12 * 3600

    def mode_of(_coin: str, account: str, t: float) -> str:
        return "pps" if account == "alice" and t >= switch else "pplns"

    agg = fresh()
    agg.mode_of = mode_of
    batch = run(
        agg,
        [
            (1, share(switch - 1)),
            (2, share(switch)),
            (3, share(switch + 13 * 3600)),  # tomorrow, UTC
            (4, share(switch + 1, network_difficulty=0.0)),  # no price: no accrual
            (5, share(switch + 2, block_reward=0)),
            (6, share(switch + 3, result=ShareResult.STALE)),
        ],
    )
    one = pps_share_value_nano(1.0, ND, SUBSIDY, FEE_BPS)
    assert one == (1 * SUBSIDY * (10_000 - FEE_BPS) * 10**9) // (1024 * 10_000)
    assert {k: (p.nano, p.accepted_diff) for k, p in batch.pps.items()} == {
        (COIN, "alice", "2027-01-15"): (one, 1.0),
        (COIN, "alice", "2027-01-16"): (one, 1.0),
    }
    fee = pps_share_value_nano(1.0, ND, SUBSIDY, 0) - one
    assert batch.pps[COIN, "alice", "2027-01-15"].fee_nano == fee


def test_fpps_prices_the_fees_too() -> None:
    batch = run(fresh(), [(1, share(NOW, "carol", difficulty=4.0))])
    p = batch.pps[COIN, "carol", "2027-01-15"]
    assert p.nano == fpps_share_value_nano(4.0, ND, SUBSIDY, TX_FEES, FEE_BPS)
    assert p.tx_fee_nano == p.nano - pps_share_value_nano(4.0, ND, SUBSIDY, FEE_BPS) > 0
    assert p.fee_nano == fpps_share_value_nano(4.0, ND, SUBSIDY, TX_FEES, 0) - p.nano

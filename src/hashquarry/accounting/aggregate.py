"""Folding share events into what the store keeps: pure, no I/O, no clock.

The aggregator turns a run of (seq, ShareEvent) into one FlushBatch: per-minute
sums per worker and per account, worker last-seen data, the accepted shares the
PPLNS window needs, round and shift progress, blocks found, and PPS accruals.
Round, shift and block ids are assigned here (the accounting writer is the only
writer), so replaying the same records yields the same batch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from hashquarry.accounting.schemes import fpps_share_value_nano, pps_share_value_nano
from hashquarry.shares.events import ShareEvent, ShareResult

PPS_MODES = ("pps", "fpps")


def utc_day(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d")


@dataclass(slots=True)
class MinuteAgg:
    accepted: int = 0
    accepted_diff: float = 0.0
    stale: int = 0
    stale_diff: float = 0.0
    invalid: int = 0
    invalid_diff: float = 0.0
    delayed_diff: float = 0.0
    first_share: float = 0.0
    last_share: float = 0.0
    network_difficulty: float = 0.0

    def add(self, ev: ShareEvent) -> None:
        if not self.first_share or ev.time < self.first_share:
            self.first_share = ev.time
        if ev.time > self.last_share:
            self.last_share = ev.time
        if ev.result is ShareResult.ACCEPTED:
            self.accepted += 1
            self.accepted_diff += ev.difficulty
            if ev.delayed:
                self.delayed_diff += ev.difficulty
            if ev.network_difficulty:
                self.network_difficulty = ev.network_difficulty
        elif ev.result is ShareResult.STALE:
            self.stale += 1
            self.stale_diff += ev.difficulty
        else:
            self.invalid += 1
            self.invalid_diff += ev.difficulty


@dataclass(slots=True)
class WorkerAgg:
    first_seen: float
    last_share: float
    last_host: str
    accepted: int = 0
    invalid: int = 0


@dataclass(slots=True)
class RoundState:
    id: int
    coin: str
    started_at: float
    start_seq: int
    accepted: int = 0
    accepted_diff: float = 0.0
    rejected: int = 0
    rejected_diff: float = 0.0
    network_difficulty: float = 0.0
    ended_at: float | None = None
    end_seq: int | None = None
    block_id: int | None = None
    accounts: dict[str, list[float]] = field(default_factory=dict)  # [diff, accepted, rejected]


@dataclass(slots=True)
class ShiftState:
    id: int
    coin: str
    started_at: float
    span: float
    accepted: int = 0
    accepted_diff: float = 0.0
    rejected: int = 0
    ended_at: float | None = None
    completed: bool = False
    accounts: dict[str, list[float]] = field(default_factory=dict)  # [score, acc, rej]


@dataclass(frozen=True, slots=True)
class FoundBlock:
    id: int
    coin: str
    seq: int
    height: int
    hash: str
    network_difficulty: float
    income: int
    tx_fees: int
    account: str
    worker: str
    found_at: float
    round_id: int
    round_started_at: float
    round_accepted: int
    round_rejected: int
    round_diff: float


@dataclass(slots=True)
class PpsAgg:
    nano: int = 0
    fee_nano: int = 0
    tx_fee_nano: int = 0
    accepted_diff: float = 0.0


@dataclass
class FlushBatch:
    first_seq: int = 0
    last_seq: int = 0
    minutes: dict[tuple[str, str, str, int], MinuteAgg] = field(default_factory=dict)
    account_minutes: dict[tuple[str, str, int], MinuteAgg] = field(default_factory=dict)
    workers: dict[tuple[str, str, str], WorkerAgg] = field(default_factory=dict)
    shares: list[tuple[int, str, float, str, str, float]] = field(default_factory=list)
    rounds: dict[int, RoundState] = field(default_factory=dict)  # touched rounds (deltas)
    shifts: dict[int, ShiftState] = field(default_factory=dict)
    blocks: list[FoundBlock] = field(default_factory=list)
    pps: dict[tuple[str, str, str], PpsAgg] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.last_seq == 0


ModeOf = Callable[[str, str, float], str]  # (coin, account, time) -> scheme


class Aggregator:
    """Holds the open round and shift; produces FlushBatches of deltas."""

    def __init__(
        self,
        coin: str,
        *,
        round_: RoundState,
        shift: ShiftState,
        next_block_id: int,
        mode_of: ModeOf,
        fee_bps: int,
        shift_span: float = 0.0,
    ) -> None:
        self.coin = coin
        self.round = round_
        self.shift = shift
        self.next_block_id = next_block_id
        self.mode_of = mode_of
        self.fee_bps = fee_bps
        self.shift_span = shift_span
        self.batch = FlushBatch()
        self.applied_seq = 0

    def take(self) -> FlushBatch:
        batch, self.batch = self.batch, FlushBatch()
        return batch

    def _round_delta(self) -> RoundState:
        r = self.batch.rounds.get(self.round.id)
        if r is None:
            r = RoundState(
                self.round.id,
                self.coin,
                self.round.started_at,
                self.round.start_seq,
                network_difficulty=self.round.network_difficulty,
            )
            self.batch.rounds[r.id] = r
        return r

    def _shift_delta(self) -> ShiftState:
        s = self.batch.shifts.get(self.shift.id)
        if s is None:
            s = ShiftState(self.shift.id, self.coin, self.shift.started_at, self.shift.span)
            self.batch.shifts[s.id] = s
        return s

    def apply(self, seq: int, ev: ShareEvent) -> None:
        if seq <= self.applied_seq:
            return  # already in the store: replay is idempotent
        self.applied_seq = seq
        b = self.batch
        if not b.first_seq:
            b.first_seq = seq
        b.last_seq = seq
        minute = int(ev.time // 60)
        key = (self.coin, ev.account, ev.worker, minute)
        agg = b.minutes.get(key)
        if agg is None:
            agg = b.minutes[key] = MinuteAgg()
        agg.add(ev)
        akey = (self.coin, ev.account, minute)
        aagg = b.account_minutes.get(akey)
        if aagg is None:
            aagg = b.account_minutes[akey] = MinuteAgg()
        aagg.add(ev)

        accepted = ev.result is ShareResult.ACCEPTED
        if ev.account:
            wkey = (self.coin, ev.account, ev.worker)
            w = b.workers.get(wkey)
            if w is None:
                w = b.workers[wkey] = WorkerAgg(ev.time, ev.time, ev.remote)
            w.first_seen = min(w.first_seen, ev.time)
            w.last_share = max(w.last_share, ev.time)
            w.last_host = ev.remote
            if accepted:
                w.accepted += 1
            elif ev.result is not ShareResult.STALE:
                w.invalid += 1

        rd = self._round_delta()
        sd = self._shift_delta()
        racct = rd.accounts.setdefault(ev.account, [0.0, 0, 0])
        sacct = sd.accounts.setdefault(ev.account, [0.0, 0, 0])
        if accepted:
            b.shares.append((seq, self.coin, ev.time, ev.account, ev.worker, ev.difficulty))
            rd.accepted += 1
            rd.accepted_diff += ev.difficulty
            rd.network_difficulty = ev.network_difficulty or rd.network_difficulty
            racct[0] += ev.difficulty
            racct[1] += 1
            sd.accepted += 1
            sd.accepted_diff += ev.difficulty
            sacct[0] += ev.difficulty
            sacct[1] += 1
            self.round.accepted += 1
            self.round.accepted_diff += ev.difficulty
            self.round.network_difficulty = ev.network_difficulty or self.round.network_difficulty
            self.shift.accepted_diff += ev.difficulty
            self._accrue_pps(ev)
        else:
            rd.rejected += 1
            rd.rejected_diff += ev.difficulty
            racct[2] += 1
            sd.rejected += 1
            sacct[2] += 1
            self.round.rejected += 1
            self.round.rejected_diff += ev.difficulty

        if accepted and ev.is_block and ev.hash_hex:
            self._block(seq, ev)
        span = self.shift.span or ev.network_difficulty
        if span and self.shift.accepted_diff >= span:
            self._next_shift(ev.time)

    def _accrue_pps(self, ev: ShareEvent) -> None:
        mode = self.mode_of(self.coin, ev.account, ev.time)
        if mode not in PPS_MODES or not ev.network_difficulty or not ev.block_reward:
            return
        subsidy = ev.block_reward - ev.tx_fees
        if mode == "pps":
            value = pps_share_value_nano(
                ev.difficulty, ev.network_difficulty, subsidy, self.fee_bps
            )
            gross = pps_share_value_nano(ev.difficulty, ev.network_difficulty, subsidy, 0)
            tx_part = 0
        else:
            value = fpps_share_value_nano(
                ev.difficulty, ev.network_difficulty, subsidy, ev.tx_fees, self.fee_bps
            )
            gross = fpps_share_value_nano(
                ev.difficulty, ev.network_difficulty, subsidy, ev.tx_fees, 0
            )
            tx_part = value - pps_share_value_nano(
                ev.difficulty, ev.network_difficulty, subsidy, self.fee_bps
            )
        key = (self.coin, ev.account, utc_day(ev.time))
        p = self.batch.pps.get(key)
        if p is None:
            p = self.batch.pps[key] = PpsAgg()
        p.nano += value
        p.fee_nano += gross - value
        p.tx_fee_nano += tx_part
        p.accepted_diff += ev.difficulty

    def _block(self, seq: int, ev: ShareEvent) -> None:
        r = self.round
        block = FoundBlock(
            id=self.next_block_id, coin=self.coin, seq=seq, height=ev.height,
            hash=ev.hash_hex or "", network_difficulty=ev.network_difficulty,
            income=ev.block_reward, tx_fees=ev.tx_fees, account=ev.account, worker=ev.worker,
            found_at=ev.time, round_id=r.id, round_started_at=r.started_at,
            round_accepted=r.accepted, round_rejected=r.rejected, round_diff=r.accepted_diff,
        )  # fmt: skip
        self.next_block_id += 1
        self.batch.blocks.append(block)
        rd = self._round_delta()
        rd.ended_at, rd.end_seq, rd.block_id = ev.time, seq, block.id
        self.round = RoundState(r.id + 1, self.coin, ev.time, seq + 1)
        self._round_delta()

    def _next_shift(self, now: float) -> None:
        sd = self._shift_delta()
        sd.ended_at, sd.completed = now, True
        s = self.shift
        self.shift = ShiftState(s.id + 1, self.coin, now, self.shift_span)
        self._shift_delta()

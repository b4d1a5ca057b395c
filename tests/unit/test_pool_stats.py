"""Live pool counters: bounded memory, and Prometheus counters moved in bulk."""

from __future__ import annotations

from hashquarry import metrics
from hashquarry.pool import HASHRATE_WINDOW, PoolStats
from hashquarry.shares.events import ShareEvent, ShareResult


def _event(t: float, result: ShareResult = ShareResult.ACCEPTED, diff: float = 2.0) -> ShareEvent:
    return ShareEvent(
        time=t,
        account="alice",
        worker="rig",
        job_id="1",
        height=1,
        difficulty=diff,
        network_difficulty=1.0,
        result=result,
        reason="",
        hash_hex=None,
        is_block=False,
        delayed=False,
        remote="127.0.0.1",
        session_id="00000001",
    )


def _value(counter: object) -> float:
    return counter._value.get()  # type: ignore[attr-defined]


def test_recent_work_is_bounded_by_the_window() -> None:
    stats = PoolStats(started=0.0)
    # Ten shares a second for an hour: only the last window's seconds are kept.
    for i in range(36_000):
        stats.record(_event(1_000.0 + i / 10))
    assert len(stats._recent) <= HASHRATE_WINDOW + 2
    now = 1_000.0 + 3_600
    expected = 10 * 2.0 * HASHRATE_WINDOW * 2**32 / HASHRATE_WINDOW
    assert abs(stats.hashrate(now) - expected) / expected < 0.02


def test_publish_moves_exact_deltas_into_prometheus() -> None:
    stats = PoolStats()
    acc0 = _value(metrics.SHARES_BY_RESULT["accepted"])
    stale0 = _value(metrics.SHARES_BY_RESULT["stale"])
    diff0 = _value(metrics.SHARE_DIFFICULTY)
    for _ in range(5):
        stats.record(_event(10.0))
    stats.record(_event(10.0, ShareResult.STALE))
    assert _value(metrics.SHARES_BY_RESULT["accepted"]) == acc0  # not per share
    stats.publish_metrics()
    assert _value(metrics.SHARES_BY_RESULT["accepted"]) == acc0 + 5
    assert _value(metrics.SHARES_BY_RESULT["stale"]) == stale0 + 1
    assert _value(metrics.SHARE_DIFFICULTY) == diff0 + 10.0
    stats.publish_metrics()  # nothing new: nothing moves
    assert _value(metrics.SHARES_BY_RESULT["accepted"]) == acc0 + 5
    stats.record(_event(11.0))
    stats.publish_metrics()
    assert _value(metrics.SHARES_BY_RESULT["accepted"]) == acc0 + 6
    assert _value(metrics.SHARE_DIFFICULTY) == diff0 + 12.0

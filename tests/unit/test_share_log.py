"""The durable share log on real files: group commit, reopen, torn tails, rotation, prune.

A record is `u32 length, u32 CRC-32(seq + payload), u64 seq, payload`; the tests damage
files byte by byte the way a crash (or a bad disk) would, and check that what comes back
is exactly the records that were whole, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashquarry.shares.events import ShareEvent, ShareResult
from hashquarry.shares.log import (
    HEADER,
    SEGMENT_GLOB,
    ShareLog,
    decode_event,
    encode_event,
    iter_records,
)

NOW = 1_800_000_000.0


def ev(i: int, **kw: object) -> ShareEvent:
    fields: dict[str, object] = {
        "time": NOW + i,  # every record of these tests has the same length
        "account": f"acct{i % 3}",
        "worker": f"rig{i % 2}",
        "job_id": f"{i:04x}",
        "height": 900_000 + i,
        "difficulty": 65536.0,
        "network_difficulty": 1.2e14,
        "result": ShareResult.ACCEPTED,
        "reason": "",
        "hash_hex": f"{i:064x}",
        "is_block": False,
        "delayed": False,
        "remote": "192.0.2.7",
        "session_id": "s1",
        "actual_difficulty": 70000.5,
        "block_reward": 312_500_000,
        "tx_fees": 12_345,
        "coin": "bitcoin",
    }
    fields.update(kw)
    return ShareEvent(**fields)  # type: ignore[arg-type]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob(SEGMENT_GLOB))


def offsets(path: Path) -> list[int]:
    """Byte offset of every record in a segment (and the end)."""
    data = path.read_bytes()
    out, pos = [], 0
    while pos + HEADER.size <= len(data):
        length, _, _ = HEADER.unpack_from(data, pos)
        out.append(pos)
        pos += HEADER.size + length
    return [*out, pos]


def seqs(directory: Path, after: int = 0) -> list[int]:
    return [seq for seq, _ in iter_records(directory, after)]


@contextlib.asynccontextmanager
async def opened(directory: Path, **kw: object) -> AsyncIterator[ShareLog]:
    kw.setdefault("commit_interval", 0.001)
    lg = ShareLog(directory, **kw)  # type: ignore[arg-type]
    lg.open()
    try:
        yield lg
    finally:
        await close(lg)


async def close(lg: ShareLog, timeout: float = 5.0) -> None:
    """Close, failing (not hanging) if the writer task does not finish."""
    closing = asyncio.ensure_future(lg.close())
    done, _ = await asyncio.wait({closing}, timeout=timeout)
    if not done:
        assert lg._task is not None
        lg._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closing
        pytest.fail("ShareLog.close() did not return")


async def write(directory: Path, events: list[ShareEvent], **kw: object) -> list[int]:
    async with opened(directory, **kw) as lg:
        return list(await asyncio.gather(*(lg.append(e) for e in events)))


# --------------------------------------------------------------------------- append / commit


async def test_append_resolves_only_once_the_batch_is_on_disk(tmp_path: Path) -> None:
    committed: list[list[int]] = []
    on_disk_at_ack: dict[int, list[int]] = {}
    async with opened(
        tmp_path,
        commit_interval=0.02,
        on_commit=lambda recs: committed.append([s for s, _ in recs]),
    ) as lg:
        futs = [lg.append(ev(i)) for i in range(5)]
        for f in futs:
            f.add_done_callback(lambda f: on_disk_at_ack.setdefault(f.result(), seqs(tmp_path)))
        await asyncio.sleep(0)
        assert not any(f.done() for f in futs)
        assert [p.stat().st_size for p in segments(tmp_path)] == [0]  # nothing written yet
        assert await asyncio.gather(*futs) == [1, 2, 3, 4, 5]
        assert lg.batches == 1  # one write + fdatasync for the whole group
        assert committed == [[1, 2, 3, 4, 5]]
        for seq, seen in on_disk_at_ack.items():
            assert seq in seen
        more = await asyncio.gather(*(lg.append(ev(i)) for i in range(5, 8)))
        assert more == [6, 7, 8] and lg.batches == 2
        assert committed == [[1, 2, 3, 4, 5], [6, 7, 8]]
    assert seqs(tmp_path) == list(range(1, 9))
    assert [decode_event(p) for _, p in iter_records(tmp_path)] == [ev(i) for i in range(8)]


async def test_append_after_close_is_refused(tmp_path: Path) -> None:
    async with opened(tmp_path) as lg:
        await lg.append(ev(0))
    with pytest.raises(RuntimeError, match="closed"):
        lg.append(ev(1))


async def test_reopen_finds_the_last_seq_and_continues(tmp_path: Path) -> None:
    assert await write(tmp_path, [ev(i) for i in range(5)]) == [1, 2, 3, 4, 5]
    lg = ShareLog(tmp_path, commit_interval=0.001)
    assert lg.open() == 5 and lg.last_seq == 5
    try:
        assert await lg.append(ev(5)) == 6
    finally:
        await lg.close()
    assert [(s, e) for s, e in lg.replay(0)] == [(i + 1, ev(i)) for i in range(6)]
    assert len(segments(tmp_path)) == 1


async def test_an_empty_directory_starts_at_one(tmp_path: Path) -> None:
    d = tmp_path / "new" / "log"
    assert await write(d, [ev(0)]) == [1]


# --------------------------------------------------------------------------- damage


def _truncate(path: Path, n: int) -> None:
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size - n)


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as fh:
        fh.write(data)


@pytest.mark.parametrize(
    ("damage", "survivors"),
    [
        (lambda p: _truncate(p, 3), 4),  # the last record's payload cut short
        (lambda p: _truncate(p, offsets(p)[-1] - offsets(p)[-2] - 5), 4),  # half a header
        (lambda p: _append(p, b"\x00" * 4096), 5),  # zeros: pre-allocated blocks
        (lambda p: _append(p, bytes(range(37))), 5),  # garbage
        (lambda p: _append(p, b"\xff" * 16), 5),  # a huge length
        (lambda p: _append(p, HEADER.pack(4, 0, 6) + b"abcd"), 5),  # a whole record, bad CRC
    ],
    ids=["payload-cut", "header-cut", "zeros", "garbage", "huge-length", "bad-crc-record"],
)
async def test_a_torn_tail_is_cut_off_at_open(
    tmp_path: Path, damage: Callable[[Path], None], survivors: int
) -> None:
    await write(tmp_path, [ev(i) for i in range(5)])
    (seg,) = segments(tmp_path)
    good_end = offsets(seg)[survivors]
    damage(seg)
    assert seqs(tmp_path) == list(range(1, survivors + 1))  # replay stops at the damage
    lg = ShareLog(tmp_path, commit_interval=0.001)
    assert lg.open() == survivors
    try:
        assert seg.stat().st_size == good_end  # cut at open
        assert await lg.append(ev(99)) == survivors + 1
    finally:
        await lg.close()
    assert [(s, e) for s, e in lg.replay(0)] == [
        *((i + 1, ev(i)) for i in range(survivors)),
        (survivors + 1, ev(99)),
    ]


async def test_a_bad_crc_in_the_middle_stops_replay_there(tmp_path: Path) -> None:
    await write(tmp_path, [ev(i) for i in range(10)])
    (seg,) = segments(tmp_path)
    data = bytearray(seg.read_bytes())
    data[offsets(seg)[3] + HEADER.size + 2] ^= 0x01  # one bit of record 4's payload
    seg.write_bytes(bytes(data))
    assert seqs(tmp_path) == [1, 2, 3]
    assert seqs(tmp_path, after=2) == [3]
    assert seqs(tmp_path, after=5) == []  # nothing past a bad record is trusted
    lg = ShareLog(tmp_path, commit_interval=0.001)
    assert lg.open() == 3
    await lg.close()
    assert seg.stat().st_size == offsets(seg)[3]


async def test_a_bad_seq_fails_the_crc(tmp_path: Path) -> None:
    """The CRC covers the seq: a flipped seq bit is damage, not a different record."""
    await write(tmp_path, [ev(i) for i in range(3)])
    (seg,) = segments(tmp_path)
    data = bytearray(seg.read_bytes())
    data[offsets(seg)[1] + 8] ^= 0x04  # seq 2 -> 6
    seg.write_bytes(bytes(data))
    assert seqs(tmp_path) == [1]


# --------------------------------------------------------------------------- rotation / replay


async def _rotated(directory: Path, batches: int = 6, per_batch: int = 3) -> list[ShareEvent]:
    """Batches of records in a log that rotates after every ~2 batches."""
    events = [ev(i) for i in range(batches * per_batch)]
    size = len(encode_event(events[0])) + HEADER.size
    async with opened(directory, segment_bytes=2 * per_batch * size - 1) as lg:
        for b in range(batches):
            chunk = events[b * per_batch : (b + 1) * per_batch]
            await asyncio.gather(*(lg.append(e) for e in chunk))
    return events


def _first_seq(path: Path) -> int | None:
    data = path.read_bytes()
    return HEADER.unpack_from(data, 0)[2] if data else None


async def test_rotation_makes_segments_named_by_their_first_seq(tmp_path: Path) -> None:
    events = await _rotated(tmp_path)
    segs = segments(tmp_path)
    assert [p.name for p in segs] == [
        "shares-0000000000000001.log",
        "shares-0000000000000007.log",
        "shares-0000000000000013.log",
        "shares-0000000000000019.log",  # opened by the last rotation, still empty
    ]
    assert [_first_seq(p) for p in segs] == [1, 7, 13, None]
    lg = ShareLog(tmp_path)
    assert [(s, e) for s, e in lg.replay(0)] == list(enumerate(events, 1))


async def test_replay_after_seq_yields_exactly_the_rest(tmp_path: Path) -> None:
    events = await _rotated(tmp_path)
    lg = ShareLog(tmp_path)
    n = len(events)
    for after in range(n + 2):
        got = list(lg.replay(after))
        assert [s for s, _ in got] == list(range(after + 1, n + 1))
        assert [e for _, e in got] == events[after:]


async def test_reopen_after_rotation_continues_in_the_last_segment(tmp_path: Path) -> None:
    await _rotated(tmp_path)
    lg = ShareLog(tmp_path, commit_interval=0.001)
    assert lg.open() == 18  # the newest segment is empty: its name says where it starts
    try:
        assert await lg.append(ev(100)) == 19
    finally:
        await lg.close()
    assert _first_seq(segments(tmp_path)[-1]) == 19
    assert seqs(tmp_path, after=17) == [18, 19]


async def test_rotation_with_appends_in_flight_names_the_segment_right(tmp_path: Path) -> None:
    pending: list[asyncio.Future[int]] = []
    all_written = asyncio.Event()

    def arrived_during_the_write(records: list[tuple[int, ShareEvent]]) -> None:
        if len(pending) < 2:  # a share acknowledged by nobody yet, queued mid-commit
            pending.append(lg.append(ev(50 + len(pending))))
        else:
            all_written.set()

    async with opened(tmp_path, segment_bytes=1, on_commit=arrived_during_the_write) as lg:
        await lg.append(ev(0))
        await asyncio.wait_for(all_written.wait(), 5)
    firsts = {int(p.stem.split("-")[1]): _first_seq(p) for p in segments(tmp_path)}
    assert all(first in (name, None) for name, first in firsts.items()), firsts


# --------------------------------------------------------------------------- prune


async def test_prune_removes_only_old_fully_applied_closed_segments(tmp_path: Path) -> None:
    await _rotated(tmp_path)
    segs = segments(tmp_path)  # starts 1, 7, 13, 19 (current)
    lg = ShareLog(tmp_path, retention_seconds=3600)
    old, recent = NOW - 7200, NOW - 60
    for p in segs:
        os.utime(p, (old, old))
    # nothing is applied past segment 1's end: nothing goes
    assert lg.prune(applied_seq=5, now=NOW) == 0
    assert segments(tmp_path) == segs
    # segment 1 fully applied and old: it goes; segment 7 is not fully applied
    assert lg.prune(applied_seq=11, now=NOW) == 1
    assert segments(tmp_path) == segs[1:]
    # segment 7 fully applied but recent (inside the retention): it stays
    os.utime(segs[1], (recent, recent))
    assert lg.prune(applied_seq=18, now=NOW) == 0
    assert segments(tmp_path) == segs[1:]
    # old again: 7 and 13 go; the current segment never does, however old and applied
    os.utime(segs[1], (old, old))
    assert lg.prune(applied_seq=10**9, now=NOW) == 2
    assert segments(tmp_path) == segs[3:]
    assert lg.prune(applied_seq=10**9, now=NOW + 10**9) == 0
    # after pruning, the log still opens where it was
    lg2 = ShareLog(tmp_path, commit_interval=0.001)
    assert lg2.open() == 18
    await lg2.close()


# --------------------------------------------------------------------------- failures


async def test_close_while_a_batch_is_gathering_returns(tmp_path: Path) -> None:
    lg = ShareLog(tmp_path, commit_interval=0.05)
    lg.open()
    await asyncio.sleep(0)  # the writer task is waiting for work
    fut = lg.append(ev(0))
    await asyncio.sleep(0.01)  # ...and now in its group-commit sleep
    closing = asyncio.ensure_future(lg.close())
    done, _ = await asyncio.wait({closing}, timeout=0.5)
    try:
        assert closing in done, "close() did not return"
        assert fut.result() == 1
    finally:
        if closing not in done:  # unstick it for the next test
            assert lg._task is not None
            lg._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await closing


async def test_a_failed_write_loses_no_later_acknowledged_record(tmp_path: Path) -> None:
    async with opened(tmp_path) as lg:
        assert await lg.append(ev(0)) == 1
        real = lg._write_sync

        def disk_full(data: bytes) -> None:
            assert lg._fd is not None
            os.write(lg._fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        lg._write_sync = disk_full  # type: ignore[method-assign]
        with pytest.raises(OSError, match="No space"):
            await lg.append(ev(1))
        lg._write_sync = real  # type: ignore[method-assign]
        assert await lg.append(ev(2)) == 3  # acknowledged to the miner
    lg2 = ShareLog(tmp_path, commit_interval=0.001)
    assert lg2.open() == 3
    await lg2.close()
    assert [s for s, _ in lg2.replay(0)] == [1, 3]


# --------------------------------------------------------------------------- encoding

texts = st.text(max_size=40)
finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(
    st.builds(
        ShareEvent,
        time=st.floats(min_value=0, max_value=4e9, allow_nan=False),
        account=texts,
        worker=texts,
        job_id=texts,
        height=st.integers(min_value=0, max_value=2**31),
        difficulty=finite,
        network_difficulty=finite,
        result=st.sampled_from(list(ShareResult)),
        reason=texts,
        hash_hex=st.none() | st.text("0123456789abcdef", min_size=64, max_size=64),
        is_block=st.booleans(),
        delayed=st.booleans(),
        remote=texts,
        session_id=texts,
        actual_difficulty=finite,
        block_reward=st.integers(min_value=0, max_value=21_000_000 * 10**8),
        tx_fees=st.integers(min_value=0, max_value=21_000_000 * 10**8),
        coin=texts,
    )
)
def test_encode_decode_round_trip(event: ShareEvent) -> None:
    back = decode_event(encode_event(event))
    assert back == event
    assert back.result is event.result
    for name in ("time", "difficulty", "network_difficulty", "actual_difficulty"):
        assert repr(getattr(back, name)) == repr(getattr(event, name))  # -0.0 stays -0.0

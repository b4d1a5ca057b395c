"""The durable share log: append-only segment files, group commit, replay.

A share is acknowledged to the miner only after its record is fsynced here.
Records are written in batches every few milliseconds (one fdatasync per batch,
not per share) and carry a sequence number, so replay into the aggregates is
idempotent: the store remembers the last sequence it applied.

Record layout: u32 payload length, u32 CRC-32 of (seq + payload), u64 seq, then
the payload (orjson array). A torn tail from a crash fails its length or CRC
check and is cut off at open; nothing after it was ever acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from hashquarry.shares.events import ShareEvent, ShareResult

log = logging.getLogger(__name__)

HEADER = struct.Struct("<IIQ")
MAX_PAYLOAD = 1 << 20
SEGMENT_GLOB = "shares-*.log"

Committed = Callable[[list[tuple[int, ShareEvent]]], None]

_RESULTS = {r.value: r for r in ShareResult}


def encode_event(ev: ShareEvent) -> bytes:
    return orjson.dumps([
        ev.time, ev.account, ev.worker, ev.job_id, ev.height, ev.difficulty,
        ev.network_difficulty, ev.result.value, ev.reason, ev.hash_hex, ev.is_block,
        ev.delayed, ev.remote, ev.session_id, ev.actual_difficulty, ev.block_reward,
        ev.tx_fees, ev.coin,
    ])  # fmt: skip


def decode_event(payload: bytes) -> ShareEvent:
    f = orjson.loads(payload)
    return ShareEvent(
        time=f[0], account=f[1], worker=f[2], job_id=f[3], height=f[4], difficulty=f[5],
        network_difficulty=f[6], result=_RESULTS[f[7]], reason=f[8], hash_hex=f[9],
        is_block=f[10], delayed=f[11], remote=f[12], session_id=f[13], actual_difficulty=f[14],
        block_reward=f[15], tx_fees=f[16], coin=f[17],
    )  # fmt: skip


def _segment_name(first_seq: int) -> str:
    return f"shares-{first_seq:016d}.log"


def _segment_start(path: Path) -> int:
    return int(path.stem.split("-", 1)[1])


def _records(data: bytes) -> Iterator[tuple[int, bytes, int]]:
    """(seq, payload, end offset) of each intact record, stopping at the first bad one."""
    pos = 0
    while pos + HEADER.size <= len(data):
        length, crc, seq = HEADER.unpack_from(data, pos)
        end = pos + HEADER.size + length
        if length > MAX_PAYLOAD or end > len(data):
            return
        payload = data[pos + HEADER.size : end]
        if zlib.crc32(payload, zlib.crc32(seq.to_bytes(8, "little"))) != crc:
            return
        yield seq, payload, end
        pos = end


def _scan(path: Path) -> tuple[int, int]:
    """(last valid seq or -1, byte offset where valid data ends) of one segment."""
    last, good = -1, 0
    for seq, _, end in _records(path.read_bytes()):
        last, good = seq, end
    return last, good


def iter_records(directory: Path, after_seq: int = 0) -> Iterator[tuple[int, bytes]]:
    """Every (seq, payload) with seq > after_seq, in order, across segments."""
    segments = sorted(directory.glob(SEGMENT_GLOB), key=_segment_start)
    for i, path in enumerate(segments):
        nxt = _segment_start(segments[i + 1]) if i + 1 < len(segments) else None
        if nxt is not None and nxt <= after_seq + 1:
            continue  # wholly before the point we need
        for seq, payload, _ in _records(path.read_bytes()):
            if seq > after_seq:
                yield seq, payload


class ShareLog:
    def __init__(
        self,
        directory: Path,
        *,
        commit_interval: float = 0.002,
        segment_bytes: int = 64 << 20,
        retention_seconds: float = 30 * 86400,
        on_commit: Committed | None = None,
    ) -> None:
        self.directory = directory
        self.commit_interval = commit_interval
        self.segment_bytes = segment_bytes
        self.retention_seconds = retention_seconds
        self.on_commit = on_commit
        self.last_seq = 0
        self._fd: int | None = None
        self._segment_size = 0
        self._buf = bytearray()
        self._pending: list[tuple[int, ShareEvent, asyncio.Future[int] | None]] = []
        self._batch_fut: asyncio.Future[int] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0

    # -- open / close -----------------------------------------------------------

    def open(self) -> int:
        """Find the last durable record (cutting a torn tail) and open for appending."""
        self.directory.mkdir(parents=True, exist_ok=True)
        segments = sorted(self.directory.glob(SEGMENT_GLOB), key=_segment_start)
        last = 0
        if segments:
            for path in reversed(segments):
                seq, good = _scan(path)
                if path.stat().st_size != good:
                    log.warning(
                        "share log %s: cutting a torn tail of %d bytes",
                        path.name,
                        path.stat().st_size - good,
                    )
                    with path.open("r+b") as fh:
                        fh.truncate(good)
                        os.fsync(fh.fileno())
                if seq >= 0:
                    last = seq
                    break
                # An empty segment (crash right after rotation): its start is next.
                last = max(last, _segment_start(path) - 1)
        self.last_seq = last
        self._open_segment(segments[-1] if segments else None)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="share-log")
        return last

    def _open_segment(self, path: Path | None) -> None:
        if path is None:
            path = self.directory / _segment_name(self.last_seq + 1)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._segment_size = os.fstat(self._fd).st_size
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        dfd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- append / commit ----------------------------------------------------------

    def append(self, ev: ShareEvent) -> asyncio.Future[int]:
        """Queue a record; the future resolves with its seq once it is on disk."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue(ev, fut)
        return fut

    def append_batched(self, ev: ShareEvent) -> asyncio.Future[int]:
        """Queue a record; the returned future is shared by its whole group commit and
        resolves with the batch's last seq. One future and one wake-up per batch instead
        of per share: the Stratum server acknowledges through this."""
        self._queue(ev, None)
        if self._batch_fut is None:
            self._batch_fut = asyncio.get_running_loop().create_future()
        return self._batch_fut

    def _queue(self, ev: ShareEvent, fut: asyncio.Future[int] | None) -> None:
        if self._closed:
            raise RuntimeError("share log is closed")
        self.last_seq += 1
        seq = self.last_seq
        payload = encode_event(ev)
        self._buf += HEADER.pack(
            len(payload), zlib.crc32(payload, zlib.crc32(seq.to_bytes(8, "little"))), seq
        )
        self._buf += payload
        self._pending.append((seq, ev, fut))
        self._wake.set()

    def _write_sync(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fdatasync(self._fd)

    async def _run(self) -> None:
        while True:
            if not self._closed:
                await self._wake.wait()
            if not self._pending and self._closed:
                return
            # Let a batch gather: this wait is the group commit.
            await asyncio.sleep(self.commit_interval)
            self._wake.clear()
            if not self._pending:
                continue
            data, batch, batch_fut = bytes(self._buf), self._pending, self._batch_fut
            self._buf = bytearray()
            self._pending = []
            self._batch_fut = None
            try:
                await asyncio.to_thread(self._write_sync, data)
            except OSError as exc:
                # Nothing of this batch is acknowledged; the miners see an error. Cut any
                # partial bytes, or the next open would cut later, acknowledged batches.
                log.error("share log write failed: %s", exc)
                try:
                    assert self._fd is not None
                    os.ftruncate(self._fd, self._segment_size)
                    os.fdatasync(self._fd)
                except OSError:
                    log.exception("share log: could not cut a failed write; stopping")
                    self._closed = True
                for _, _, fut in batch:
                    if fut is not None and not fut.done():
                        fut.set_exception(exc)
                if batch_fut is not None and not batch_fut.done():
                    batch_fut.set_exception(exc)
                continue
            self.batches += 1
            self._segment_size += len(data)
            for seq, _, fut in batch:
                if fut is not None and not fut.done():
                    fut.set_result(seq)
            if batch_fut is not None and not batch_fut.done():
                batch_fut.set_result(batch[-1][0])
            if self.on_commit is not None:
                try:
                    self.on_commit([(seq, ev) for seq, ev, _ in batch])
                except Exception:
                    log.exception("share log consumer failed")
            if self._segment_size >= self.segment_bytes:
                self._rotate()

    def _rotate(self) -> None:
        assert self._fd is not None
        os.close(self._fd)
        # Named after its first record: appends may already be waiting for it.
        first = self._pending[0][0] if self._pending else self.last_seq + 1
        self._open_segment(self.directory / _segment_name(first))

    # -- replay / retention ---------------------------------------------------------

    def replay(self, after_seq: int) -> Iterator[tuple[int, ShareEvent]]:
        for seq, payload in iter_records(self.directory, after_seq):
            yield seq, decode_event(payload)

    def prune(self, applied_seq: int, now: float | None = None) -> int:
        """Delete segments older than the retention that hold only applied records."""
        now = time.time() if now is None else now
        segments = sorted(self.directory.glob(SEGMENT_GLOB), key=_segment_start)
        removed = 0
        for i, path in enumerate(segments[:-1]):  # never the one being written
            next_start = _segment_start(segments[i + 1])
            if next_start - 1 > applied_seq:
                break
            if now - path.stat().st_mtime < self.retention_seconds:
                break
            path.unlink()
            removed += 1
        return removed

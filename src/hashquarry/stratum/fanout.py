"""Job broadcasts written from sender threads, so the kernel's part runs on several cores.

A broadcast is one write per miner. At 10,000 miners the pool's own work is a few ms;
the rest is the kernel sending (measured by `hashquarry bench stratum`, figure 3). The
C helper (_fanout.c) does the writes of a chunk of sockets with the GIL released, so
while the event loop thread prepares the next chunk, sender threads push earlier
chunks through the kernel in parallel.

Only sockets whose transport has nothing queued are written directly, and the event
loop thread waits in `finish()` until every chunk is out: nothing else writes to those
sockets meanwhile, so each connection's bytes stay in order. Whatever a socket did not
take (a full buffer, an error) is handed back to be written through its transport,
which buffers it or reports the error as for any other write.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

try:
    from hashquarry.stratum._fanout import send_each
except ImportError:  # not built: the server writes through its transports
    NATIVE = False
else:
    NATIVE = True

log = logging.getLogger(__name__)

T = TypeVar("T")

# Sockets per unit of work: large enough that handing a chunk to a thread is noise,
# small enough that 1,000 miners already spread over two senders.
CHUNK = 512
HANDOFF_SWITCH_INTERVAL = 1e-4


def _unsent(items: Sized, where: str) -> list[tuple[int, int]]:
    # send_each checks its whole input before the first send, so a failure means none of
    # the chunk went out: the transports write all of it.
    log.exception("broadcast chunk of %d sockets failed %s", len(items), where)
    return [(i, 0) for i in range(len(items))]


class Fanout:
    """A pool of sender threads (none: the calling thread sends every chunk itself)."""

    def __init__(self, threads: int, chunk: int = CHUNK) -> None:
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.chunk = chunk
        self._pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="stratum-send")
            if threads and NATIVE
            else None
        )

    @property
    def enabled(self) -> bool:
        return NATIVE

    def batch(self) -> FanoutBatch[T]:
        return FanoutBatch(self._pool, self.chunk)

    @contextlib.contextmanager
    def handing_off(self) -> Iterator[None]:
        """A sender thread needs the GIL for a moment to start each chunk, while the
        event loop thread holds it preparing the next. At the default 5 ms switch
        interval the first chunk waited that long (measured: first miner 8.4 ms instead
        of 3.4 ms at 10,000 miners); for the broadcast the interval is 0.1 ms."""
        if self._pool is None:
            yield
            return
        before = sys.getswitchinterval()
        sys.setswitchinterval(HANDOFF_SWITCH_INTERVAL)
        try:
            yield
        finally:
            sys.setswitchinterval(before)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class FanoutBatch(Generic[T]):
    """One broadcast: `add` each socket's payload, then `finish` before any other write."""

    __slots__ = ("_chunk", "_fds", "_owners", "_payloads", "_pending", "_pool", "_short")

    def __init__(self, pool: ThreadPoolExecutor | None, chunk: int) -> None:
        self._pool = pool
        self._chunk = chunk
        self._fds: list[int] = []
        self._payloads: list[bytes] = []
        self._owners: list[T] = []
        self._pending: list[tuple[Future[list[tuple[int, int]]], list[T], list[bytes]]] = []
        self._short: list[tuple[T, bytes, int]] = []

    def add(self, fd: int, payload: bytes, owner: T) -> None:
        self._fds.append(fd)
        self._payloads.append(payload)
        self._owners.append(owner)
        if len(self._fds) >= self._chunk:
            self._flush(last=False)

    def _flush(self, *, last: bool) -> None:
        fds, payloads, owners = self._fds, self._payloads, self._owners
        if not fds:
            return
        self._fds, self._payloads, self._owners = [], [], []
        if self._pool is None or last:
            # The last chunk goes from this thread while the others finish.
            try:
                short = send_each(fds, payloads)
            except Exception:
                short = _unsent(fds, "from the event loop thread")
            self._collect(short, owners, payloads)
        else:
            self._pending.append((self._pool.submit(send_each, fds, payloads), owners, payloads))

    def _collect(
        self, short: list[tuple[int, int]], owners: list[T], payloads: list[bytes]
    ) -> None:
        for i, result in short:
            self._short.append((owners[i], payloads[i], result))

    def finish(self) -> list[tuple[T, bytes, int]]:
        """Send what is left and wait for every chunk. Returns (owner, payload, result)
        for each payload not sent whole: result is the bytes sent or -errno."""
        self._flush(last=True)
        for fut, owners, payloads in self._pending:
            try:
                short = fut.result()
            except Exception:
                short = _unsent(owners, "from a sender thread")
            self._collect(short, owners, payloads)
        self._pending = []
        short, self._short = self._short, []
        return short

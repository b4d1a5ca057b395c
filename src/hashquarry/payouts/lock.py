"""One payout operation at a time per store and coin: across tasks, engines and processes.

Why these locks and not a transaction-scoped one: a payout holds its lock across the
wallet's sendmany, which can take as long as the RPC timeout. A lock bound to a
transaction (SELECT ... FOR UPDATE on a lock row, pg_advisory_xact_lock, SQLite's
BEGIN IMMEDIATE) would keep a database transaction open across that call; on SQLite
BEGIN IMMEDIATE would stop every other writer (the accounting writer, the API) for
that long, and on PostgreSQL a long open transaction pins a snapshot. A lease row
with an expiry would need tuning: too short and a slow sendmany loses it while still
paying, too long and a crashed payer blocks payouts until it runs out.

So the lock belongs to a session, and whatever keeps the session alive releases it
the moment its holder dies, with no expiry to tune:

- PostgreSQL: a session-level advisory lock (pg_try_advisory_lock) on a connection
  kept for the operation. A dead process's connection closes and the server drops the
  lock. It works across hosts, like PostgreSQL itself.
- SQLite: flock on a file next to the database. SQLite can only be shared by processes
  of one host, which is flock's reach, and the kernel drops the lock when the process
  dies. flock (unlike fcntl/lockf record locks) also conflicts between two descriptors
  of one process, so two engines in one process take turns too.
- A store with no file (in-memory SQLite) is private to its process: an asyncio lock.

The lock is not the only guard. A PostgreSQL connection can be lost while its holder
lives on; so every state change of an intent is compare-and-set, and reconcile leaves
an intent whose sendmany may still be running on the node alone until it is older
than the settle delay (see engine.py).

Distribution settlements take the same lock (`payout_lock`): a dividend must never be
taken from a balance a payout is halfway through paying (see distribution/holds.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

POLL = 0.05  # seconds between attempts; try-locks never leave a half-taken lock behind


class LockTimeout(Exception):
    pass


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock (hash() differs per process)."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


_local_locks: dict[tuple[int, str], asyncio.Lock] = {}


class StoreLock:
    def __init__(self, engine: AsyncEngine, name: str, *, timeout: float = 60.0) -> None:
        self.engine = engine
        self.name = name
        self.timeout = timeout

    def lock_file(self) -> str | None:
        """The flock file of a file-backed SQLite store, else None."""
        if self.engine.dialect.name != "sqlite":
            return None
        database = self.engine.url.database
        if database and database.startswith("file:"):
            # A URI filename (file:/path/db?mode=...): the lock goes next to the file, or
            # another process paying from the same store would not see it.
            database = database[len("file:") :].split("?", 1)[0]
            if self.engine.url.query.get("mode") == "memory":
                return None
        if not database or database == ":memory:":
            return None
        return f"{database}.{self.name}.lock"

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Hold the lock for the body; LockTimeout if it is not free within `timeout`."""
        if self.engine.dialect.name == "postgresql":
            async with self._advisory():
                yield
            return
        path = self.lock_file()
        if path is not None:
            async with self._flock(path):
                yield
            return
        async with self._in_process():
            yield

    async def _wait(self, deadline: float) -> None:
        if asyncio.get_running_loop().time() >= deadline:
            raise LockTimeout(f"{self.name}: still held by another payout after {self.timeout} s")
        await asyncio.sleep(POLL)

    @contextlib.asynccontextmanager
    async def _advisory(self) -> AsyncIterator[None]:
        key = advisory_key(self.name)
        deadline = asyncio.get_running_loop().time() + self.timeout
        async with self.engine.connect() as conn:
            try:
                while True:
                    got = await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
                    # End the implicit transaction: the lock is the session's, and an idle
                    # open transaction would pin a snapshot for the whole payout.
                    await conn.commit()
                    if got:
                        break
                    await self._wait(deadline)
            except BaseException:
                # Cancelled or failed between taking the lock and using it: the session
                # (maybe holding it) must not go back to the pool.
                await conn.invalidate()
                raise
            try:
                yield
            finally:
                try:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    await conn.commit()
                except BaseException:
                    # Closing the session is what surely releases the lock.
                    await conn.invalidate()
                    raise

    @contextlib.asynccontextmanager
    async def _flock(self, path: str) -> AsyncIterator[None]:
        deadline = asyncio.get_running_loop().time() + self.timeout
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await self._wait(deadline)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    @contextlib.asynccontextmanager
    async def _in_process(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        key = (id(loop), f"{self.engine.url}:{self.name}")
        lock = _local_locks.setdefault(key, asyncio.Lock())
        try:
            await asyncio.wait_for(lock.acquire(), self.timeout)
        except TimeoutError:
            raise LockTimeout(
                f"{self.name}: still held by another payout after {self.timeout} s"
            ) from None
        try:
            yield
        finally:
            lock.release()


def payout_lock(engine: AsyncEngine, coin: str, timeout: float = 60.0) -> StoreLock:
    """The one lock of a store and coin that payouts and dividend settlements share."""
    return StoreLock(engine, f"payouts-{coin}", timeout=timeout)

"""Store fixtures: every test here runs on SQLite, and on PostgreSQL when one is available.

`store_url` is a fresh, empty (unmigrated) database per test:

- "sqlite": a file in the test's tmp_path (`sqlite+aiosqlite:///...`), always.
- "postgresql": a new database `hq_test_<hex>` on the server given by
  `HASHQUARRY_TEST_PG_URL` (a `postgresql+asyncpg://user:password@host:port/db` URL; its
  database is only used to run CREATE/DROP DATABASE), or else on a local server at
  127.0.0.1:5432 (user postgres, no password) if one answers. The database is dropped
  after the test.

Without a server the postgresql tests are skipped, with the reason. They fail instead
when the server was asked for and cannot be reached: when `HASHQUARRY_TEST_PG_URL` is
set, and whenever the `CI` environment variable is set (CI must run the PostgreSQL suite).

`engine` is `store_url` migrated with `upgrade_async` and opened with `make_engine`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.store.engine import make_engine
from hashquarry.store.migrate import upgrade_async

PG_URL_ENV = "HASHQUARRY_TEST_PG_URL"
LOCAL_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
PROBE_TIMEOUT = 3.0


@dataclass(frozen=True)
class PgServer:
    """A PostgreSQL server the tests may create databases on."""

    url: URL  # postgresql+asyncpg URL of the maintenance database

    def connect_args(self, database: str | None = None) -> dict[str, Any]:
        return {
            "user": self.url.username or "postgres",
            "password": self.url.password,
            "host": self.url.host or "127.0.0.1",
            "port": self.url.port or 5432,
            "database": database or self.url.database or "postgres",
        }

    def url_for(self, database: str) -> str:
        return self.url.set(database=database).render_as_string(hide_password=False)


@dataclass(frozen=True)
class PgUnavailable:
    reason: str
    must_fail: bool  # asked for (env URL or CI) but not reachable


async def _probe(server: PgServer) -> None:
    conn = await asyncpg.connect(**server.connect_args(), timeout=PROBE_TIMEOUT)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


@functools.cache
def pg_server() -> PgServer | PgUnavailable:
    """Find the PostgreSQL server once per session (the probe runs on its own event loop)."""
    configured = os.environ.get(PG_URL_ENV, "").strip()
    in_ci = bool(os.environ.get("CI"))
    if configured:
        url = make_url(configured)
        if url.get_backend_name() != "postgresql" or url.get_driver_name() != "asyncpg":
            return PgUnavailable(
                f"{PG_URL_ENV} must be a postgresql+asyncpg:// URL, got "
                f"{url.render_as_string(hide_password=True)!r}",
                must_fail=True,
            )
        where = f"{PG_URL_ENV}={url.render_as_string(hide_password=True)}"
    else:
        url = make_url(LOCAL_PG_URL)
        where = "no HASHQUARRY_TEST_PG_URL set, and the local server at 127.0.0.1:5432"
    server = PgServer(url)
    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            pool.submit(asyncio.run, _probe(server)).result()
        except Exception as exc:
            return PgUnavailable(
                f"PostgreSQL not reachable ({where}): {type(exc).__name__}: {exc}",
                must_fail=bool(configured) or in_ci,
            )
    return server


async def _create_database(server: PgServer) -> str:
    name = f"hq_test_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(**server.connect_args(), timeout=PROBE_TIMEOUT)
    try:
        # CREATE/DROP DATABASE cannot run inside a transaction: asyncpg, autocommit.
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def _drop_database(server: PgServer, name: str) -> None:
    conn = await asyncpg.connect(**server.connect_args(), timeout=PROBE_TIMEOUT)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, unmigrated database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        return
    server = pg_server()
    if isinstance(server, PgUnavailable):
        if server.must_fail:
            pytest.fail(f"the PostgreSQL store suite must run here: {server.reason}")
        pytest.skip(server.reason)
    name = await _create_database(server)
    try:
        yield server.url_for(name)
    finally:
        await _drop_database(server, name)


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[AsyncEngine]:
    """The store at `store_url`, migrated to head."""
    await upgrade_async(store_url)
    eng = make_engine(store_url)
    try:
        yield eng
    finally:
        await eng.dispose()

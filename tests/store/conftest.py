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

`engine` is a fresh database migrated to head, opened with `make_engine`. On SQLite
each test migrates its own file with `upgrade_async`. On PostgreSQL that costs half a
second per test, so the session migrates one template database with the same code and
every test's database is `CREATE DATABASE ... TEMPLATE` of it (a file copy).
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.store.engine import make_engine
from hashquarry.store.migrate import upgrade, upgrade_async

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
        where = f"no {PG_URL_ENV} set, and no local server at {url.host}:{url.port}"
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


async def _create_database(server: PgServer, template: str | None = None) -> str:
    name = f"hq_test_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(**server.connect_args(), timeout=PROBE_TIMEOUT)
    try:
        # CREATE/DROP DATABASE cannot run inside a transaction: asyncpg, autocommit.
        await conn.execute(
            f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
        )
    finally:
        await conn.close()
    return name


async def _drop_database(server: PgServer, name: str) -> None:
    conn = await asyncpg.connect(**server.connect_args(), timeout=PROBE_TIMEOUT)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class PgTemplates:
    """Migrated template databases, made on first use and dropped at the end of the session."""

    def __init__(self) -> None:
        self.made: dict[PgServer, str] = {}

    def migrated(self, server: PgServer) -> str:
        """The template's name (blocking: call it from a worker thread)."""
        if server not in self.made:
            name = asyncio.run(_create_database(server))
            self.made[server] = name
            upgrade(server.url_for(name))  # Alembic runs its own event loop
        return self.made[server]

    def drop_all(self) -> None:
        for server, name in self.made.items():
            asyncio.run(_drop_database(server, name))
        self.made.clear()


@pytest.fixture(scope="session")
def pg_templates() -> Iterator[PgTemplates]:
    templates = PgTemplates()
    yield templates
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(templates.drop_all).result()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> PgServer | None:
    """None for SQLite; the server for PostgreSQL (or skip / fail, see the module doc)."""
    if request.param == "sqlite":
        return None
    server = pg_server()
    if isinstance(server, PgUnavailable):
        if server.must_fail:
            pytest.fail(f"the PostgreSQL store suite must run here: {server.reason}")
        pytest.skip(server.reason)
    return server


@pytest.fixture
async def store_url(backend: PgServer | None, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty (unmigrated) database URL on each backend."""
    if backend is None:
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        return
    name = await _create_database(backend)
    try:
        yield backend.url_for(name)
    finally:
        await _drop_database(backend, name)


@pytest.fixture
async def engine(
    backend: PgServer | None, tmp_path: Path, pg_templates: PgTemplates
) -> AsyncIterator[AsyncEngine]:
    """A fresh database migrated to head on each backend."""
    name: str | None = None
    if backend is None:
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        await upgrade_async(url)
    else:
        template = await asyncio.to_thread(pg_templates.migrated, backend)
        name = await _create_database(backend, template)
        url = backend.url_for(name)
    eng = make_engine(url)
    try:
        yield eng
    finally:
        await eng.dispose()
        if backend is not None and name is not None:
            await _drop_database(backend, name)

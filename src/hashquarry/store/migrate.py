"""Alembic, driven from code: `hashquarry db upgrade` and the start-up check."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.store.engine import make_engine

MIGRATIONS = Path(__file__).with_name("migrations")


class StoreNotMigrated(RuntimeError):
    pass


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations (synchronous: Alembic's env.py runs its own event loop)."""
    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, url, revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
        )


async def check_migrated(engine: AsyncEngine) -> None:
    current = await current_revision(engine)
    head = head_revision()
    if current != head:
        raise StoreNotMigrated(
            f"the store at {engine.url.render_as_string(hide_password=True)} is at migration "
            f"{current or 'none'}, the code needs {head}: run `hashquarry db upgrade` first"
        )


async def open_store(url: str) -> AsyncEngine:
    engine = make_engine(url)
    try:
        await check_migrated(engine)
    except BaseException:
        await engine.dispose()
        raise
    return engine

"""Where the cross-process payout lock of a SQLite store lives: next to the database
file, also when the store is named by a URI filename; none for a memory database."""

from __future__ import annotations

import warnings

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from hashquarry.payouts.lock import StoreLock


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite+aiosqlite:////srv/pool/hq.db", "/srv/pool/hq.db.payouts-bitcoin.lock"),
        (
            "sqlite+aiosqlite:///file:/srv/pool/hq.db?mode=rwc&uri=true",
            "/srv/pool/hq.db.payouts-bitcoin.lock",
        ),
        ("sqlite+aiosqlite://", None),
        ("sqlite+aiosqlite:///file:mem1?mode=memory&cache=shared&uri=true", None),
    ],
)
def test_lock_file(url: str, expected: str | None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy's notice about memory-mode pools
        engine = create_async_engine(url)
    assert StoreLock(engine, "payouts-bitcoin").lock_file() == expected

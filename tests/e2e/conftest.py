"""Real nodes and a real pool for end-to-end tests."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from hashquarry.chain.regtest import RegtestNode
from hashquarry.config import Settings, load_settings
from hashquarry.pool import Pool
from hashquarry.store.engine import default_url, make_engine
from hashquarry.store.migrate import upgrade_async

pytestmark = pytest.mark.e2e


@functools.cache
def _scratch() -> Path:
    """One directory for every pool data dir a test run makes, removed when it ends
    (a test may stop and restart a pool on its data dir, so not at stop_pool)."""
    base = Path(tempfile.mkdtemp(prefix="hashquarry-test-"))
    atexit.register(shutil.rmtree, base, True)
    return base


@pytest.fixture(scope="module")
def regtest() -> Iterator[RegtestNode]:
    with RegtestNode() as node:
        yield node


@pytest.fixture(scope="module")
def difficulty1() -> Iterator[RegtestNode]:
    """A private difficulty-1 network: shares are not blocks there."""
    with RegtestNode(chain="difficulty1") as node:
        yield node


def pool_settings(
    node: RegtestNode,
    data_dir: Path | None = None,
    accounting: dict[str, Any] | None = None,
    accounts_cfg: dict[str, Any] | None = None,
    **stratum: Any,
) -> Settings:
    address = node.call("getnewaddress")
    st: dict[str, Any] = {
        "ports": [{"port": 0, "difficulty": 0.0002, "host": "127.0.0.1"}],
        "vardiff": {"target_interval": 1.0, "retarget_window": 5.0},
    }
    st.update(stratum)
    return load_settings(
        None,
        node={
            "url": node.rpc_url,
            "user": node.user,
            "password": node.password,
            "zmq_hashblock": node.zmq_url,
            "poll_interval": 0.5,
            "rpc_retries": 1,
        },
        pool={"address": address, "network": node.network},
        stratum=st,
        data_dir=data_dir or Path(tempfile.mkdtemp(dir=_scratch())),
        accounting=accounting or {},
        accounts=accounts_cfg or {},
    )


async def start_pool(settings: Settings, start: bool = True) -> Pool:
    """A pool with durable accounting on a freshly migrated SQLite store."""
    url = default_url(settings.data_dir)
    await upgrade_async(url)
    pool = Pool(settings, store=make_engine(url))
    if start:
        await pool.start()
    return pool


async def stop_pool(pool: Pool) -> None:
    await pool.stop()
    if pool.accounting is not None:
        await pool.accounting.engine.dispose()


@pytest.fixture
async def regtest_pool(regtest: RegtestNode) -> AsyncIterator[Pool]:
    pool = await start_pool(pool_settings(regtest))
    try:
        yield pool
    finally:
        await stop_pool(pool)


@pytest.fixture
async def d1_pool(difficulty1: RegtestNode) -> AsyncIterator[Pool]:
    pool = await start_pool(pool_settings(difficulty1))
    try:
        yield pool
    finally:
        await stop_pool(pool)

"""Real nodes and a real pool for end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from hashquarry.chain.regtest import RegtestNode
from hashquarry.config import load_settings
from hashquarry.pool import Pool

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def regtest() -> Iterator[RegtestNode]:
    with RegtestNode() as node:
        yield node


@pytest.fixture(scope="module")
def difficulty1() -> Iterator[RegtestNode]:
    """A private difficulty-1 network: shares are not blocks there."""
    with RegtestNode(chain="difficulty1") as node:
        yield node


def pool_settings(node: RegtestNode, **stratum: Any) -> Any:
    address = node.call("getnewaddress")
    st: dict[str, Any] = {
        "ports": [{"port": 0, "difficulty": 0.0002, "host": "127.0.0.1"}],
        "vardiff": {"target_interval": 1.0, "retarget_window": 5.0},
    }
    st.update(stratum)
    return load_settings(
        None,
        node={"url": node.rpc_url, "user": node.user, "password": node.password,
              "zmq_hashblock": node.zmq_url, "poll_interval": 0.5, "rpc_retries": 1},
        pool={"address": address, "network": node.network},
        stratum=st,
    )


@pytest.fixture
async def regtest_pool(regtest: RegtestNode) -> AsyncIterator[Pool]:
    pool = Pool(pool_settings(regtest))
    await pool.start()
    try:
        yield pool
    finally:
        await pool.stop()


@pytest.fixture
async def d1_pool(difficulty1: RegtestNode) -> AsyncIterator[Pool]:
    pool = Pool(pool_settings(difficulty1))
    await pool.start()
    try:
        yield pool
    finally:
        await pool.stop()

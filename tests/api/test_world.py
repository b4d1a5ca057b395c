"""The shared pool run itself: what the contract tests rely on."""

from __future__ import annotations

import httpx
import pytest

from .conftest import World

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_world_has_blocks_balances_and_a_payout(world: World) -> None:
    assert world.pool.stats.blocks_accepted >= 8
    assert world.payout is not None and world.payout.status == "sent"
    assert world.miner_report["shares_accepted"] > 0


async def test_openapi_and_metrics(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["info"]["title"] == "hashquarry"
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert "hashquarry_shares_total" in metrics.text

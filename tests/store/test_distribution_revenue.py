"""Revenue distribution on every backend: a proportion of the distributor's revenue,
floored, after its hashrate orders, for the time each distribution was in force."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.accounts.errors import ConflictError
from hashquarry.distribution.math import PPM

from .builders import COIN
from .test_distribution_kit import D0, DAY, DAY_INCOME, HALF_RATE, World, make_world


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    return await make_world(engine)


async def _a_day_with_a_block(world: World) -> int:
    """alice mines all of day D0 and finds a solo block in it; returns her day's income."""
    await world.mine("alice", D0 - 600, D0 + DAY)
    await world.solo_block(1, "alice", D0 + 7200)
    world.clock.now = D0 + DAY + 60
    await world.settle_pps(D0 + DAY)
    await world.mature(1)
    return await world.income("alice", D0)


async def test_a_share_of_0_3_moves_30_percent_floored(world: World) -> None:
    world.clock.now = D0 - 3600
    share = await world.dist.revenue_add("acme", COIN, "alice", "ann", 0.3, "ann's cut")
    assert (share.proportion_ppm, share.proportion, share.description) == (
        300_000,
        0.3,
        "ann's cut",
    )
    income = await _a_day_with_a_block(world)
    assert income == DAY_INCOME + 618_762_224  # PPS, and the block less its 1% fee
    assert income % 10  # not a multiple of 10: 30% of it needs flooring

    report = await world.dist.settle(COIN, D0, D0 + DAY)

    assert [(r.distribution_id, r.amount) for r in report.revenue] == [(share.id, income * 3 // 10)]
    assert await world.dividends("ann") == income * 3 // 10 == 217_704_667
    assert await world.dividends("alice") == -(income * 3 // 10)
    again = await world.snapshot()
    assert (await world.dist.settle(COIN, D0, D0 + DAY)).revenue == []
    assert await world.snapshot() == again


async def test_revenue_shares_apply_after_hashrate_orders(world: World) -> None:
    await world.mine("alice", D0 - 600, D0)
    await world.dist.distribute("acme", COIN, "alice", "amy", HALF_RATE, D0, D0 + DAY)
    await world.dist.revenue_add("acme", COIN, "alice", "ann", 0.3)
    await world.mine("alice", D0, D0 + DAY)
    world.clock.now = D0 + DAY + 60
    await world.settle_pps(D0 + DAY)

    await world.dist.settle(COIN, D0, D0 + DAY)

    left = DAY_INCOME - DAY_INCOME // 2
    assert await world.dividends("amy") == DAY_INCOME // 2
    assert await world.dividends("ann") == left * 3 // 10
    assert await world.dividends("alice") == -(DAY_INCOME // 2 + left * 3 // 10)


async def test_info_add_and_delete(world: World) -> None:
    dist = world.dist
    world.clock.now = D0 - DAY
    ann = await dist.revenue_add("acme", COIN, "alice", "ann", "0.3")
    amy = await dist.revenue_add("acme", COIN, "alice", "amy", 0.5)
    assert await dist.revenue_info("acme", COIN, "alice") == [ann, amy]
    assert await dist.revenue_info("acme", COIN, "alice", "amy") == [amy]
    assert await dist.revenue_info("acme", COIN, "amy") == []

    with pytest.raises(ConflictError) as err:
        await dist.revenue_add("acme", COIN, "alice", "amy", 0.200001)
    assert err.value.field == "proportion"
    full = await dist.revenue_add("acme", COIN, "alice", "amy", 0.2)  # exactly 1 in total
    assert sum(r.proportion_ppm for r in await dist.revenue_info("acme", COIN, "alice")) == PPM

    world.clock.now = D0 + DAY / 2
    deleted = await dist.revenue_delete("acme", "alice", amy.id)
    assert deleted.deleted_at == D0 + DAY / 2
    assert await dist.revenue_info("acme", COIN, "alice") == [ann, full]
    await dist.revenue_add("acme", COIN, "alice", "amy", 0.5)  # room again from now on

    await world.mine("alice", D0, D0 + DAY)
    world.clock.now = D0 + DAY + 60
    await world.settle_pps(D0 + DAY)
    report = await dist.settle(COIN, D0, D0 + DAY)

    # ann 0.3 all day; amy 0.5 until noon (deleted) and 0.2 all day and 0.5 from noon
    moved = {r.distribution_id: r.amount for r in report.revenue}
    assert moved[ann.id] == DAY_INCOME * 3 // 10
    assert moved[amy.id] == DAY_INCOME // 4
    assert moved[full.id] == DAY_INCOME * 2 // 10
    assert sum(moved.values()) <= DAY_INCOME
    assert await world.dividends("alice") == -sum(moved.values())

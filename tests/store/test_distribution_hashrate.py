"""Hashrate distribution on every backend: orders move what their hashes earned.

Income comes from the real pipeline (shares through the Aggregator and write_batch, the
ledger's PPS settlement, solo block credits maturing); the settlement's dividend entries
are checked to the base unit, for idempotency, and for conservation of balances.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.accounting.ledger import balances
from hashquarry.accounts.errors import ConflictError
from hashquarry.distribution import tables as t
from hashquarry.store import models as m

from .builders import COIN, rows
from .test_distribution_kit import (
    D0,
    DAY,
    DAY_INCOME,
    FULL_RATE,
    HALF_RATE,
    World,
    make_world,
)


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    return await make_world(engine)


async def _total_balance(world: World) -> int:
    async with world.engine.connect() as conn:
        value = await conn.scalar(
            select(func.coalesce(func.sum(m.ledger.c.amount), 0)).where(
                m.ledger.c.bucket == "balance"
            )
        )
    return int(value or 0)


async def _balances_are_ledger_sums(world: World) -> None:
    async with world.engine.connect() as conn:
        shown = await balances(conn, COIN, world.clock.now)
    for account, b in shown.items():
        assert b.balance == await world.balance(account), account


async def test_an_order_for_half_the_hashrate_moves_half_the_earnings(world: World) -> None:
    await world.mine("alice", D0 - 600, D0 + DAY)
    info = await world.dist.hashrate_info("acme", COIN, "alice", HALF_RATE, D0, D0 + DAY)
    assert (info.current_hash_rate, info.sold_hash_rate) == (FULL_RATE, 0.0)
    order = await world.dist.distribute("acme", COIN, "alice", "amy", HALF_RATE, D0, D0 + DAY)
    info = await world.dist.hashrate_info("acme", COIN, "alice", 1.0, D0, D0 + DAY, "amy")
    assert (info.current_hash_rate, info.sold_hash_rate, info.remaining_hash_rate) == (
        FULL_RATE,
        HALF_RATE,
        HALF_RATE,
    )

    world.clock.now = D0 + DAY + 60
    await world.settle_pps(D0 + DAY)
    income = await world.income("alice", D0)
    assert income == DAY_INCOME
    before_total = await _total_balance(world)
    alice_before = await world.balance("alice")

    report = await world.dist.settle(COIN, D0, D0 + DAY)

    assert report.deferred == []
    assert [(s.order.id, s.income) for s in report.hashrate] == [(order.id, income // 2)]
    assert await world.dividends("amy") == income // 2 == 53_460_000
    assert await world.balance("alice") == alice_before - income // 2
    assert await _total_balance(world) == before_total  # dividends are zero-sum
    await _balances_are_ledger_sums(world)

    [settled] = await world.dist.settlements("acme", COIN, "alice")
    assert settled.order == order
    assert (settled.period_start, settled.period_end) == (D0, D0 + DAY)
    assert settled.hashes == HALF_RATE * DAY  # hashes, not a rate
    assert settled.distributor_hashes == FULL_RATE * DAY
    assert (settled.income, settled.distributor_income) == (income // 2, income)
    assert await world.dist.orders("acme", COIN, "alice") == [order]

    async with world.engine.connect() as conn:
        entries = await rows(conn, m.ledger, where=m.ledger.c.kind == "dividend", skip=["id"])
    assert {(e["account"], e["amount"], e["ref"], e["mining_date"]) for e in entries} == {
        ("alice", -(income // 2), f"hrdist:{order.id}:{int(D0)}", "2027-01-15"),
        ("amy", income // 2, f"hrdist:{order.id}:{int(D0)}", "2027-01-15"),
    }


async def test_settling_twice_changes_nothing(world: World) -> None:
    await world.mine("alice", D0 - 600, D0 + DAY)
    await world.dist.distribute("acme", COIN, "alice", "amy", HALF_RATE, D0, D0 + DAY)
    await world.dist.revenue_add("acme", COIN, "alice", "ann", 0.3)
    world.clock.now = D0 + DAY + 60
    await world.settle_pps(D0 + DAY)
    first = await world.dist.settle(COIN, D0, D0 + DAY)
    assert first.moved > 0
    after_first = await world.snapshot()

    again = await world.dist.settle(COIN, D0 - DAY, D0 + DAY)  # overlapping range, too
    due = await world.dist.settle_due(COIN)

    assert (again.hashrate, again.revenue, again.deferred) == ([], [], [])
    assert due.moved == 0
    assert await world.snapshot() == after_first


async def test_an_order_over_part_of_two_days_gets_its_part_of_each(world: World) -> None:
    await world.mine("alice", D0 - 600, D0 + 2 * DAY)
    start, end = D0 + DAY / 2, D0 + DAY + DAY / 2  # noon to noon
    await world.dist.distribute("acme", COIN, "alice", "amy", HALF_RATE, start, end)
    world.clock.now = D0 + 2 * DAY + 60
    await world.settle_pps(D0 + 2 * DAY)

    report = await world.dist.settle(COIN, D0, D0 + 2 * DAY)

    # half the hashrate for half of each day: a quarter of each day's income
    assert [s.income for s in report.hashrate] == [DAY_INCOME // 4, DAY_INCOME // 4]
    assert [s.hashes for s in report.hashrate] == [HALF_RATE * DAY / 2] * 2
    assert await world.dividends("amy") == DAY_INCOME // 2
    assert await world.dividends("alice") == -(DAY_INCOME // 2)
    await _balances_are_ledger_sums(world)


async def test_terminate_settles_up_to_then_and_stops_the_order(world: World) -> None:
    await world.mine("alice", D0 - 600, D0 + 3 * DAY)
    order = await world.dist.distribute("acme", COIN, "alice", "amy", HALF_RATE, D0, D0 + 3 * DAY)
    world.clock.now = D0 + DAY + 3600
    await world.settle_pps(D0 + DAY)

    ended = await world.dist.terminate("acme", order.id)

    assert (ended.terminate_at, ended.status) == (D0 + DAY + 3600, "terminated")
    assert ended.effective_end == D0 + DAY + 3600
    [first] = await world.dist.settlements("acme", COIN, "alice")  # day 1, by terminate
    assert (first.period_start, first.income) == (D0, DAY_INCOME // 2)
    with pytest.raises(ConflictError) as err:
        await world.dist.terminate("acme", order.id)
    assert err.value.field == "order_id"

    world.clock.now = D0 + 3 * DAY + 60
    await world.settle_pps(D0 + 3 * DAY)
    report = await world.dist.settle(COIN, D0, D0 + 3 * DAY)

    # day 2: the hour it still ran (1/24 of the day, at half the hashrate); day 3: nothing
    assert [(s.period_start, s.income) for s in report.hashrate] == [(D0 + DAY, DAY_INCOME // 48)]
    assert await world.income("alice", D0 + 2 * DAY) == DAY_INCOME  # alice still earned
    assert await world.dividends("amy") == DAY_INCOME // 2 + DAY_INCOME // 48
    info = await world.dist.hashrate_info("acme", COIN, "alice", 1.0, D0 + 2 * DAY, D0 + 3 * DAY)
    assert info.sold_hash_rate == 0.0  # a terminated order no longer counts as sold


async def test_terminate_cannot_reach_back_into_a_settled_day(world: World) -> None:
    await world.mine("alice", D0 - 600, D0 + DAY)
    order = await world.dist.distribute("acme", COIN, "alice", "amy", HALF_RATE, D0, D0 + 2 * DAY)
    world.clock.now = D0 + DAY + 100
    await world.settle_pps(D0 + DAY)
    await world.dist.settle(COIN, D0, D0 + DAY)
    before = await world.snapshot()

    with pytest.raises(ConflictError) as err:  # 200 s back: within the start tolerance
        await world.dist.terminate("acme", order.id, D0 + DAY - 100)

    assert err.value.field == "terminate_at"
    assert await world.snapshot() == before
    ended = await world.dist.terminate("acme", order.id, D0 + DAY)  # from midnight is fine
    assert ended.effective_end == D0 + DAY


async def test_days_wait_until_their_income_is_final(world: World) -> None:
    await world.mine("alice", D0 - 600, D0 + DAY)
    await world.dist.distribute("acme", COIN, "alice", "amy", HALF_RATE, D0, D0 + DAY)
    await world.solo_block(1, "alice", D0 + 3600)
    world.clock.now = D0 + DAY + 60
    nothing = await world.snapshot()

    # PPS accruals of the day not settled yet, and an immature block credit dated in it
    pending = await world.dist.settle(COIN, D0, D0 + DAY)
    assert pending.deferred == [("alice", D0)]
    assert await world.snapshot() == nothing
    await world.settle_pps(D0 + DAY)
    nothing = await world.snapshot()
    still = await world.dist.settle(COIN, D0, D0 + DAY)
    assert still.deferred == [("alice", D0)]
    assert await world.snapshot() == nothing

    await world.mature(1)
    income = await world.income("alice", D0)
    assert income > DAY_INCOME  # PPS plus the matured block credit dated that day
    done = await world.dist.settle_due(COIN)
    assert done.deferred == []
    assert [s.income for s in done.hashrate] == [income // 2]
    assert await world.dividends("amy") == income // 2


async def test_oversold_orders_share_what_was_mined_and_never_more(world: World) -> None:
    await world.mine("alice", D0 - 600, D0 + 60)  # 2^33 H/s when the orders are made
    await world.dist.distribute("acme", COIN, "alice", "amy", HALF_RATE, D0, D0 + DAY)
    await world.dist.distribute("acme", COIN, "alice", "ann", HALF_RATE, D0, D0 + DAY)
    await world.mine("alice", D0 + 3600, D0 + 3600 + 6 * 3600)  # then only a quarter day
    world.clock.now = D0 + DAY + 60
    await world.settle_pps(D0 + DAY)
    income = await world.income("alice", D0)

    report = await world.dist.settle(COIN, D0, D0 + DAY)

    assert [s.income for s in report.hashrate] == [income // 2, income // 2]
    assert sum(s.income for s in report.hashrate) <= income
    mined = report.hashrate[0].distributor_hashes
    assert [s.hashes for s in report.hashrate] == [mined / 2, mined / 2]
    assert await world.balance("alice") >= 0
    await _balances_are_ledger_sums(world)


async def test_sold_hashrate_is_counted_per_instant(world: World) -> None:
    await world.mine("alice", D0 - 600, D0 + 60)
    dist = world.dist
    await dist.distribute("acme", COIN, "alice", "amy", HALF_RATE, D0, D0 + DAY)
    # back to back with the first: the whole hashrate is free again from D0 + DAY
    await dist.distribute("acme", COIN, "alice", "ann", FULL_RATE, D0 + DAY, D0 + 2 * DAY)
    # exactly what is left in the first window fits
    await dist.distribute("acme", COIN, "alice", "ann", HALF_RATE, D0 + 60, D0 + 120)
    with pytest.raises(ConflictError) as err:
        await dist.distribute("acme", COIN, "alice", "ann", 1.0, D0 + 90, D0 + DAY + 10)
    assert err.value.field == "hash_rate"
    assert "oversell" in err.value.reason
    info = await dist.hashrate_info("acme", COIN, "alice", 1.0, D0 + 100, D0 + 200)
    assert (info.sold_hash_rate, info.remaining_hash_rate) == (FULL_RATE, 0.0)
    async with world.engine.connect() as conn:
        assert len(await rows(conn, t.hashrate_orders)) == 3

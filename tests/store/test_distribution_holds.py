"""Payouts and dividends on every backend: a distributor's income of a day whose
dividends are not settled yet is held back from payouts (distribution/holds.py).

Income comes from the real pipeline (shares through the Aggregator, the ledger's PPS
settlement, solo block credits maturing); payouts are the engine's own `due` and
`withdraw` on the real store (the wallet side is tests/e2e/test_payout_distribution.py),
and a paid payout is its real intent debit (`book.write_intent`).
"""

from __future__ import annotations

import logging
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.accounts.errors import ConflictError
from hashquarry.distribution.holds import held_by_day
from hashquarry.distribution.reserve import DividendReserve
from hashquarry.distribution.service import DistributionService
from hashquarry.payouts import book
from hashquarry.payouts.engine import PayoutEngine, PayoutError, PayoutTarget
from hashquarry.payouts.lock import payout_lock

from .builders import COIN
from .test_distribution_kit import D0, DAY, DAY_INCOME, HALF_RATE, World, make_world

NET_BLOCK = 618_762_224  # BLOCK_INCOME less the 1% fee
USERS = ("alice", "amy", "ann")


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    return await make_world(engine)


def payer(world: World, *, reserve: bool = True) -> PayoutEngine:
    """The engine as build_engine makes it; `due` and the checks before paying need no node."""

    async def targets() -> list[PayoutTarget]:
        return [PayoutTarget(u, f"addr-{u}", 1) for u in USERS]

    return PayoutEngine(
        world.engine,
        None,  # type: ignore[arg-type]
        coin=COIN,
        targets=targets,
        reserve=DividendReserve(world.engine, COIN) if reserve else None,
        clock=world.clock,
    )


async def pay(world: World, engine: PayoutEngine) -> dict[str, int]:
    """One payout run as run_once makes it, with the wallet's part taken as done: under
    the lock, settle, read what is due, write the intent and its debits, mark it sent."""
    now = world.clock.now
    async with engine.exclusive():
        if engine.reserve is not None:
            await engine.reserve.settle(now)
        due = await engine.due(now)
        if due:
            payout_id = uuid.uuid4().hex
            async with world.engine.begin() as conn:
                await book.write_intent(
                    conn, COIN, payout_id, kind="auto", due=due, fee_policy="pool", now=now
                )
                await book.set_status(
                    conn, payout_id, ["intent"], status="sent", txid="ab" * 32, sent_at=now
                )
    return {a: amount for a, (_, amount) in due.items()}


async def no_one_negative(world: World) -> None:
    for user in USERS:
        assert await world.balance(user) >= 0, user


async def _income_before_d0(world: World) -> None:
    """alice mines the day before D0: PPS revenue dated then, free of any distribution."""
    await world.mine("alice", D0 - DAY, D0)
    world.clock.now = D0
    await world.settle_pps(D0)


async def test_revenue_distributor_is_paid_only_what_is_not_owed(world: World) -> None:
    await _income_before_d0(world)
    await world.dist.revenue_add("acme", COIN, "alice", "ann", 0.3)  # from D0 on
    # During D0: shares (PPS, in the balance after the day) and a block found and matured.
    await world.mine("alice", D0, D0 + DAY)
    await world.solo_block(1, "alice", D0 + 3600)
    world.clock.now = D0 + 7200
    await world.mature(1)
    engine = payer(world)
    assert await payer(world, reserve=False).due(world.clock.now) == {
        "alice": ("addr-alice", DAY_INCOME + NET_BLOCK)  # what used to be paid
    }

    paid = await pay(world, engine)

    assert paid == {"alice": DAY_INCOME}  # the day before: no distribution covered it
    assert await world.balance("alice") == NET_BLOCK  # held: 30% of it belongs to ann
    async with world.engine.connect() as conn:
        assert await held_by_day(conn, COIN, world.clock.now) == {"alice": {D0: NET_BLOCK}}
    assert await pay(world, engine) == {}  # an hour later: still nothing payable

    # D0 is over; its PPS is settled. The next payout settles D0 first, then pays.
    world.clock.now = D0 + DAY + 60
    await world.settle_pps(D0 + DAY)
    income = DAY_INCOME + NET_BLOCK
    assert await world.income("alice", D0) == income
    paid = await pay(world, engine)

    dividend = income * 3 // 10
    assert await world.dividends("ann") == dividend
    assert paid == {"alice": income - dividend, "ann": dividend}
    assert [await world.balance(u) for u in USERS] == [0, 0, 0]
    assert (await world.dist.settle_due(COIN)).moved == 0  # the daily run finds it done


async def test_hashrate_distributor_holds_until_the_day_is_final(world: World) -> None:
    await world.mine("alice", D0 - 600, D0)
    await world.dist.distribute("acme", COIN, "alice", "amy", HALF_RATE, D0, D0 + DAY)
    await world.mine("alice", D0, D0 + DAY)
    await world.solo_block(1, "alice", D0 + 3600)  # immature until after the day
    world.clock.now = D0 + DAY + 60
    await world.settle_pps(D0 + DAY)
    engine = payer(world)

    # The day's PPS is in the balance, but the block credit dated in it is immature: the
    # day cannot be settled yet, so all of its income in the balance stays.
    before = await world.balance("alice")
    assert await pay(world, engine) == {"alice": before - DAY_INCOME}
    assert await world.balance("alice") == DAY_INCOME
    with pytest.raises(PayoutError, match="held back until the dividends"):
        await engine.withdraw(["alice"], now=world.clock.now)

    await world.mature(1)
    paid = await pay(world, engine)

    income = DAY_INCOME + NET_BLOCK
    assert await world.dividends("amy") == income // 2
    assert paid == {"alice": income - income // 2, "amy": income // 2}
    await no_one_negative(world)
    assert await world.balance("alice") == 0


async def test_income_paid_before_a_distribution_covered_it_caps_the_dividend(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A revenue distribution added in the afternoon splits the whole day's income
    (pro rata of the hours it was in force), but the morning's matured block was already
    paid: the dividend takes what is left, never the balance below zero."""
    await world.solo_block(1, "alice", D0 + 3600)
    world.clock.now = D0 + 7200
    await world.mature(1)
    engine = payer(world)
    assert await pay(world, engine) == {"alice": NET_BLOCK}  # nothing covered D0 then
    world.clock.now = D0 + DAY // 2
    await world.dist.revenue_add("acme", COIN, "alice", "ann", 1)
    await world.solo_block(2, "alice", D0 + DAY // 2 + 60)
    await world.mature(2)
    assert await pay(world, engine) == {}  # block 2 is held from now on

    world.clock.now = D0 + DAY + 60
    with caplog.at_level(logging.WARNING, "hashquarry.distribution.settlement"):
        paid = await pay(world, engine)

    # Due: all income of D0 x 1 x half a day = one block; present: block 2 only.
    assert await world.dividends("ann") == NET_BLOCK
    assert paid == {"ann": NET_BLOCK}
    assert "capped" not in caplog.text
    await no_one_negative(world)

    # Without a second block, an afternoon rule meets an empty balance: capped at 0.
    await world.solo_block(3, "amy", D0 + DAY + 60)
    world.clock.now = D0 + DAY + 7200
    await world.mature(3)
    assert await pay(world, engine) == {"amy": NET_BLOCK}
    world.clock.now = D0 + DAY + DAY // 2
    await world.dist.revenue_add("acme", COIN, "amy", "ann", 1)
    world.clock.now = D0 + 2 * DAY + 60
    with caplog.at_level(logging.WARNING, "hashquarry.distribution.settlement"):
        await pay(world, engine)
    assert "capped at 0 of" in caplog.text
    await no_one_negative(world)


async def test_settlement_and_payout_take_one_lock(world: World) -> None:
    await world.mine("alice", D0 - 600, D0)
    order = await world.dist.distribute(
        "acme", COIN, "alice", "amy", HALF_RATE, D0, D0 + 2 * DAY
    )  # fmt: skip
    world.clock.now = D0 + DAY + 60
    dist = DistributionService(world.engine, world.accounts, clock=world.clock, lock_timeout=0.3)
    before = await world.snapshot()
    async with payer(world).exclusive():  # a payout is running
        with pytest.raises(ConflictError) as err:
            await dist.settle(COIN, D0, D0 + DAY)
        assert err.value.field == "currency" and "payout" in err.value.reason
        with pytest.raises(ConflictError) as err:
            await dist.terminate("acme", order.id)
        assert err.value.field == "order_id"
        assert await world.snapshot() == before
    async with payout_lock(world.engine, COIN, 0.3).hold():  # another process's payout
        with pytest.raises(ConflictError):
            await dist.settle_due(COIN)
    await dist.settle(COIN, D0, D0 + DAY)
    assert (await dist.terminate("acme", order.id)).status == "terminated"

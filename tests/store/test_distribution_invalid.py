"""Bad requests get an error naming the field and the reason, and change nothing.

Each case runs against a store with an order, a revenue distribution and alice mining;
every row of every table is compared before and after the refused call.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.accounts.errors import AccountsError, ConflictError, NotFoundError

from .builders import COIN
from .test_distribution_kit import D0, DAY, HALF_RATE, World, make_world

Call = Callable[[World], Awaitable[Any]]


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    w = await make_world(engine)
    await w.mine("alice", D0 - 600, D0 + 60)  # 2^33 H/s at D0
    made = await w.dist.distribute("acme", COIN, "alice", "amy", HALF_RATE, D0, D0 + DAY)
    w.ids["order"] = made.id
    w.ids["rule"] = (await w.dist.revenue_add("acme", COIN, "alice", "ann", 0.6)).id
    return w


def order(
    owner: str = "acme",
    distributor: str = "alice",
    recipient: str = "amy",
    rate: Any = HALF_RATE / 2,
    start: Any = D0 + 60,
    end: Any = D0 + 3600,
    coin: str = COIN,
) -> Call:
    """A valid order request but for the one argument a case changes."""
    return lambda w: w.dist.distribute(owner, coin, distributor, recipient, rate, start, end)


def share(
    owner: str = "acme",
    distributor: str = "alice",
    recipient: str = "amy",
    proportion: Any = 0.1,
    coin: str = COIN,
) -> Call:
    """A valid revenue distribution request but for the one argument a case changes."""
    return lambda w: w.dist.revenue_add(owner, coin, distributor, recipient, proportion)


CASES: list[tuple[str, Call, type[AccountsError], str]] = [
    # hashrate orders
    ("end before start", order(start=D0 + 3600, end=D0 + 60), AccountsError, "end_date"),
    ("end equal to start", order(start=D0 + 60, end=D0 + 60), AccountsError, "end_date"),
    ("start in the past", order(start=D0 - 301), AccountsError, "start_date"),
    ("start not a number", order(start="soon"), AccountsError, "start_date"),
    ("end infinite", order(end=math.inf), AccountsError, "end_date"),
    ("zero hashrate", order(rate=0), AccountsError, "hash_rate"),
    ("negative hashrate", order(rate=-1.0), AccountsError, "hash_rate"),
    ("NaN hashrate", order(rate=math.nan), AccountsError, "hash_rate"),
    ("hashrate as text", order(rate="1e9"), AccountsError, "hash_rate"),
    ("unknown distributor", order(distributor="zed"), NotFoundError, "distributor"),
    ("unknown recipient", order(recipient="zed"), NotFoundError, "recipient"),
    ("invalid user name", order(recipient="Bad!"), AccountsError, "recipient"),
    ("another owner's recipient", order(recipient="bob"), NotFoundError, "recipient"),
    ("another owner's distributor", order(distributor="bob"), NotFoundError, "distributor"),
    ("users seen by another owner", order(owner="bolt"), NotFoundError, "distributor"),
    ("unknown owner", order(owner="nobody"), NotFoundError, "owner"),
    ("recipient is the distributor", order(recipient="alice"), AccountsError, "recipient"),
    ("unknown currency", order(coin="dogecoin"), AccountsError, "currency"),
    ("overselling", order(rate=HALF_RATE + 1), ConflictError, "hash_rate"),
    ("no hashrate to sell", order(distributor="amy", recipient="ann"), ConflictError, "hash_rate"),
    # revenue distributions
    ("proportions above 1 in total", share(proportion=0.400001), ConflictError, "proportion"),
    ("proportion above 1", share(proportion=1.5), AccountsError, "proportion"),
    ("proportion zero", share(proportion=0), AccountsError, "proportion"),
    ("proportion negative", share(proportion=-0.1), AccountsError, "proportion"),
    ("proportion NaN", share(proportion=math.nan), AccountsError, "proportion"),
    ("proportion too precise", share(proportion=0.1234567), AccountsError, "proportion"),
    ("revenue to another owner's user", share(recipient="bob"), NotFoundError, "recipient"),
    ("revenue to oneself", share(recipient="alice"), AccountsError, "recipient"),
    ("revenue seen by another owner", share(owner="bolt"), NotFoundError, "distributor"),
    (
        "long description",
        lambda w: w.dist.revenue_add("acme", COIN, "alice", "amy", 0.1, "x" * 300),
        AccountsError,
        "description",
    ),
    (
        "delete an unknown id",
        lambda w: w.dist.revenue_delete("acme", "alice", 999),
        NotFoundError,
        "id",
    ),
    (
        "delete with the wrong distributor",
        lambda w: w.dist.revenue_delete("acme", "amy", w.ids["rule"]),
        NotFoundError,
        "id",
    ),
    (
        "delete another owner's",
        lambda w: w.dist.revenue_delete("bolt", "alice", w.ids["rule"]),
        NotFoundError,
        "distributor",
    ),
    (
        "delete a bad id",
        lambda w: w.dist.revenue_delete("acme", "alice", -3),
        AccountsError,
        "id",
    ),
    # terminate
    (
        "terminate an unknown order",
        lambda w: w.dist.terminate("acme", 999),
        NotFoundError,
        "order_id",
    ),
    (
        "terminate another owner's order",
        lambda w: w.dist.terminate("bolt", w.ids["order"]),
        NotFoundError,
        "order_id",
    ),
    (
        "terminate in the past",
        lambda w: w.dist.terminate("acme", w.ids["order"], D0 - 3600),
        AccountsError,
        "terminate_at",
    ),
    (
        "terminate after the end",
        lambda w: w.dist.terminate("acme", w.ids["order"], D0 + DAY),
        ConflictError,
        "order_id",
    ),
    # lists and settlement
    (
        "orders of another owner's user",
        lambda w: w.dist.orders("bolt", COIN, "alice"),
        NotFoundError,
        "distributor",
    ),
    (
        "settlements of an unknown user",
        lambda w: w.dist.settlements("acme", COIN, "zed"),
        NotFoundError,
        "distributor",
    ),
    (
        "settle a period cut inside a day",
        lambda w: w.dist.settle(COIN, D0 + 60, D0 + DAY, D0 + DAY),
        AccountsError,
        "period_start",
    ),
    (
        "settle a day not over",
        lambda w: w.dist.settle(COIN, D0, D0 + DAY, D0 + 3600),
        AccountsError,
        "period_end",
    ),
    (
        "settle an empty period",
        lambda w: w.dist.settle(COIN, D0, D0, D0 + DAY),
        AccountsError,
        "period_end",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_refused_and_nothing_changed(
    world: World, call: Call, error: type[AccountsError], field: str
) -> None:
    before = await world.snapshot()
    with pytest.raises(error) as err:
        await call(world)
    assert err.value.field == field, err.value
    assert err.value.reason  # says why
    assert await world.snapshot() == before


async def test_the_limits_themselves_are_accepted(world: World) -> None:
    """The edges of the rules are allowed: what is left exactly, a start within the
    tolerance, proportions summing to exactly 1."""
    world.clock.now = D0  # when alice mines 2^33 H/s; the start is 200 s in the past
    await world.dist.distribute("acme", COIN, "alice", "ann", HALF_RATE, D0 - 200, D0 + 7200)
    await world.dist.revenue_add("acme", COIN, "alice", "amy", 0.4)
    info = await world.dist.hashrate_info("acme", COIN, "alice", 1.0, D0, D0 + DAY)
    assert info.remaining_hash_rate == 0.0

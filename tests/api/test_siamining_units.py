"""SiaMining's pure parts: subsidy, retarget estimate (real mainnet vectors), number
formats, price-source parsing, time windows. No pool, no node."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from hashquarry.api.siamining import whole_or_fraction
from hashquarry.api.siamining_network import (
    COIN,
    MIN_DIFFICULTY,
    Unavailable,
    coin_string,
    decimal_string,
    estimate_retarget,
    parse_prices,
    subsidy,
)
from hashquarry.api.siamining_queries import SETTLED_MINUTES, WorkTotal, windows
from hashquarry.store import models as m

from .test_siamining import conforms


def difficulty_of(bits: int) -> float:
    """Bitcoin difficulty of compact `bits`: the difficulty-1 target over the target."""

    def target(b: int) -> int:
        return (b & 0xFFFFFF) * 256 ** ((b >> 24) - 3)

    return target(0x1D00FFFF) / target(bits)


@pytest.mark.parametrize(
    ("height", "shown"),
    [(1, 50), (210_000, 25), (420_000, 12.5), (630_000, 6.25), (840_000, 3.125), (13_440_000, 0)],
)
def test_block_reward_is_in_whole_coins_as_the_sample(height: int, shown: float) -> None:
    """The document's block_reward (236469) is coins: an integer when the subsidy is whole
    coins (as its sample), the exact fraction after halvings, never satoshis."""
    got = whole_or_fraction(subsidy(height))
    assert got == shown
    assert isinstance(got, int) == float(shown).is_integer()


def test_subsidy_halves_on_schedule() -> None:
    assert subsidy(0) == 50 * COIN
    assert subsidy(209_999) == 50 * COIN
    assert subsidy(210_000) == 25 * COIN
    assert subsidy(630_000) == 625_000_000  # the 2020 halving: 6.25 BTC
    assert subsidy(840_000) == 312_500_000
    assert subsidy(64 * 210_000) == 0
    assert subsidy(149, 150) == 50 * COIN  # regtest halves every 150 blocks
    assert subsidy(300, 150) == 1_250_000_000  # 12.5 BTC: whole coins would lose it


# Bitcoin Core's pow_tests.cpp: (last retarget time, last block's height, its time,
# its bits) -> the bits the next block must have. Real mainnet periods.
RETARGETS = [
    (1261130161, 32255, 1262152739, 0x1D00FFFF, 0x1D00D86A),  # get_next_work
    (1231006505, 2015, 1233061996, 0x1D00FFFF, 0x1D00FFFF),  # pow limit
    (1279008237, 68543, 1279297671, 0x1C05A3F4, 0x1C0168FD),  # lower limit on timespan
    (1263163443, 46367, 1269211443, 0x1C387F6F, 0x1D00E1FD),  # upper limit on timespan
]


@pytest.mark.parametrize(("start_time", "height", "tip_time", "bits", "expected"), RETARGETS)
def test_retarget_estimate_at_the_end_of_a_real_period(
    start_time: int, height: int, tip_time: int, bits: int, expected: int
) -> None:
    r = estimate_retarget(height, difficulty_of(bits), tip_time, start_time, retargets=True)
    # The node rounds the target into compact form (3 significant bytes): 1e-4 covers it.
    assert r.next_difficulty == pytest.approx(difficulty_of(expected), rel=1e-4)
    assert r.blocks_to_retarget == 1
    assert r.time_to_retarget == round((tip_time - start_time) / 2015)
    assert r.retargets


def test_retarget_mid_period_extrapolates_the_spacing() -> None:
    # 1,000 blocks into a period at 500 s each: the period would take 2015 x 500 s.
    r = estimate_retarget(2016 * 300 + 1000, 2.0, 1_000_500_000, 1_000_000_000, retargets=True)
    assert r.blocks_to_retarget == 1016
    assert r.time_to_retarget == 1016 * 500
    assert r.next_difficulty == pytest.approx(2.0 * 2016 * 600 / (2015 * 500))


def test_retarget_without_a_spacing_yet_or_on_regtest() -> None:
    opening = estimate_retarget(4032, 3.5, 1_000, 1_000, retargets=True)
    assert (opening.next_difficulty, opening.blocks_to_retarget) == (3.5, 2016)
    assert opening.time_to_retarget == 2016 * 600
    regtest = estimate_retarget(118, 4.656542373906925e-10, 2_000_000, 1_000, retargets=False)
    assert regtest.next_difficulty == 4.656542373906925e-10
    assert (regtest.blocks_to_retarget, regtest.time_to_retarget, regtest.retargets) == (
        0,
        0,
        False,
    )


@given(
    st.integers(0, 2016 * 500),
    st.floats(1.0, 1e15),
    st.integers(0, 10**6),
    st.integers(1, 10**7),
)
def test_retarget_stays_within_bitcoins_bounds(
    height: int, difficulty: float, start: int, elapsed: int
) -> None:
    r = estimate_retarget(height, difficulty, start + elapsed, start, retargets=True)
    assert 1 <= r.blocks_to_retarget <= 2016
    assert (height + r.blocks_to_retarget) % 2016 == 0
    assert r.time_to_retarget >= 0
    low = max(difficulty / 4, MIN_DIFFICULTY)
    assert (
        low * (1 - 1e-12) <= r.next_difficulty <= max(difficulty * 4, MIN_DIFFICULTY) * (1 + 1e-12)
    )


def test_decimal_string_is_plain() -> None:
    assert decimal_string(4.656542373906925e-10) == "0.0000000004656542373906925"
    assert decimal_string(1e16) == "10000000000000000"
    assert decimal_string(8080167148533014.0) == "8080167148533014"
    assert decimal_string(110568428300952.69) == "110568428300952.69"
    with pytest.raises(ValueError, match="finite"):
        decimal_string(math.inf)


@given(st.floats(min_value=0, allow_nan=False, allow_infinity=False))
def test_decimal_string_round_trips(value: float) -> None:
    text = decimal_string(value)
    assert "e" not in text.lower()
    assert float(text) == value


def test_coin_string() -> None:
    assert coin_string(0) == "0.00000000"
    assert coin_string(12_345_678) == "0.12345678"
    assert coin_string(5_000_000_000) == "50.00000000"
    assert coin_string(-1) == "-0.00000001"


@given(st.integers(-(21 * 10**14), 21 * 10**14))
def test_coin_string_is_exact(sats: int) -> None:
    text = coin_string(sats)
    assert len(text.split(".")[1]) == 8
    assert Decimal(text) * COIN == sats


def test_parse_prices_shapes() -> None:
    own = parse_prices({"btc_price": 0.00000096, "usd_price": 0.000551}, "bitcoin")
    assert (own.btc_price, own.usd_price) == (0.00000096, 0.000551)
    gecko = parse_prices({"bitcoin": {"usd": 97123.5}}, "bitcoin")
    assert (gecko.btc_price, gecko.usd_price) == (1.0, 97123.5)
    ltc = parse_prices({"litecoin": {"btc": "0.00085", "usd": 84}}, "litecoin")
    assert (ltc.btc_price, ltc.usd_price) == (0.00085, 84.0)
    assert isinstance(ltc.usd_price, float)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([1, 2], "JSON object"),
        ({"price": 1}, "neither usd_price"),
        ({"btc_price": 1, "usd_price": None}, "not a number"),
        ({"btc_price": 1, "usd_price": True}, "not a number"),
        ({"btc_price": 1, "usd_price": "lots"}, "not a number"),
        ({"btc_price": 1, "usd_price": -5}, "-5"),
        ({"btc_price": float("nan"), "usd_price": 1}, "nan"),
        ({"litecoin": {"usd": 84}}, "BTC price"),  # only bitcoin's BTC price is implied
    ],
)
def test_parse_prices_refuses_nonsense(payload: object, reason: str) -> None:
    coin = "litecoin" if isinstance(payload, dict) and "litecoin" in payload else "bitcoin"
    with pytest.raises(Unavailable, match=reason):
        parse_prices(payload, coin)


@given(st.floats(1e9, 4e9), st.sampled_from([300, 900, 3600, 86400]))
def test_windows_cover_the_interval(now: float, seconds: int) -> None:
    end, (w,) = windows(now, (seconds,))
    assert end * 60 < now <= (end + 1) * 60  # the minute `now` falls in is the last one
    assert w.seconds == seconds
    assert seconds - 60 < w.covered <= seconds
    if now % 60 == 0:
        assert w.covered == seconds


def test_conforms_tells_int_from_float_and_finds_missing_keys() -> None:
    conforms({"a": 1, "b": [{"c": 1.5}], "extra": 0}, {"a": 2, "b": [{"c": 0.1}]})
    with pytest.raises(AssertionError, match="float"):
        conforms({"a": 1.0}, {"a": 2})
    with pytest.raises(AssertionError, match="missing 'c'"):
        conforms({"a": [{"d": 1}]}, {"a": [{"c": 1}]})
    with pytest.raises(AssertionError):
        conforms([[1, 2.0]], [[1, 2]])
    with pytest.raises(AssertionError):
        conforms([[1]], [[1, 2]])


async def test_work_total_keeps_settled_minutes_and_adds_new_ones() -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    t = m.account_minutes

    def row(account: str, minute: int, diff: float) -> dict[str, object]:
        return {"coin": "bitcoin", "account": account, "minute": minute, "accepted": 1,
                "accepted_diff": diff, "first_share": minute * 60.0,
                "last_share": minute * 60.0}  # fmt: skip

    async def everything(conn: AsyncConnection) -> float:
        q = select(func.sum(t.c.accepted_diff)).where(t.c.coin == "bitcoin")
        return float(await conn.scalar(q) or 0.0)

    try:
        async with engine.begin() as conn:
            await conn.run_sync(m.metadata.create_all)
            await conn.execute(
                t.insert(), [row(a, n, 0.25 * n) for a in "ab" for n in range(100, 121)]
            )
            await conn.execute(t.insert(), [row("c", 120, 1.0) | {"coin": "litecoin"}])
            work = WorkTotal()
            assert await work.read(conn, "bitcoin", 120) == await everything(conn)
            assert work.upto == 120 - SETTLED_MINUTES
            # The live minutes change and new ones arrive: all of it is counted.
            await conn.execute(
                update(t).where(t.c.minute == 119).values(accepted_diff=t.c.accepted_diff + 7)
            )
            await conn.execute(t.insert(), [row("a", 121, 3.0), row("d", 122, 4.0)])
            assert await work.read(conn, "bitcoin", 122) == await everything(conn)
            assert work.upto == 122 - SETTLED_MINUTES
            assert await work.read(conn, "bitcoin", 122) == await everything(conn)
    finally:
        await engine.dispose()

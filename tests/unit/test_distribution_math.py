"""The distribution arithmetic: exact splits that never move more than was earned."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashquarry.distribution.math import (
    PPM,
    delivered_hashes,
    order_share,
    overlap,
    peak_sold,
    proportion_ppm,
    proportions_fit,
    revenue_share,
    split,
)

amounts = st.integers(min_value=0, max_value=21_000_000 * 10**8)
rates = st.floats(min_value=1e-3, max_value=1e21, allow_nan=False, allow_infinity=False)
hash_counts = st.floats(min_value=0.0, max_value=1e30, allow_nan=False, allow_infinity=False)
fractions = st.fractions(min_value=0, max_value=10**30)


# --------------------------------------------------------------------------- examples


def test_half_of_the_hashes_earn_half_of_the_income() -> None:
    # 2^32 H/s for a day against a distributor that mined 2^33 H/s all day
    assert order_share(10_692_000_001, 2**32, 86_400, 2**33 * 86_400) == 5_346_000_000


def test_an_order_never_takes_more_than_everything() -> None:
    assert order_share(1000, 2**40, 86_400, 2**32 * 86_400) == 1000


def test_no_distributor_hashes_means_the_order_takes_the_income() -> None:
    # the brief's rule: min(1, sold / 0) is 1
    assert order_share(777, 1.0, 60, 0.0) == 777


def test_oversold_orders_share_pro_rata_instead_of_each_taking_all() -> None:
    parts, rest = split(1000, {"a": Fraction(3), "b": Fraction(1)}, Fraction(2))
    assert parts == {"a": 750, "b": 250}
    assert rest == 0


def test_split_floors_and_keeps_the_remainder() -> None:
    parts, rest = split(10, {"a": Fraction(1), "b": Fraction(1)}, Fraction(3))
    assert parts == {"a": 3, "b": 3}
    assert rest == 4


def test_delivered_hashes_are_scaled_when_oversold() -> None:
    assert delivered_hashes(Fraction(6), Fraction(4), Fraction(8)) == 3
    assert delivered_hashes(Fraction(6), Fraction(10), Fraction(8)) == 6
    assert delivered_hashes(Fraction(6), Fraction(0), Fraction(6)) == 0


def test_revenue_share_floors() -> None:
    assert revenue_share(625_012_347, 300_000) == 187_503_704  # 187,503,704.1
    assert revenue_share(9, PPM) == 9
    assert revenue_share(0, 500_000) == 0


@pytest.mark.parametrize(
    ("value", "ppm"),
    [
        (0.3, 300_000),
        ("0.3", 300_000),
        (Decimal("0.125"), 125_000),
        (Fraction(1, 4), 250_000),
        (1, PPM),
        (1.0, PPM),
        (0.000001, 1),
        ("1e-6", 1),
    ],
)
def test_proportions_are_exact_parts_per_million(value: object, ppm: int) -> None:
    assert proportion_ppm(value) == ppm


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (0, "greater than 0"),
        (0.0, "greater than 0"),
        (-0.1, "greater than 0"),
        (1.000001, "at most 1"),
        (2, "at most 1"),
        (0.0000001, "more than 6 decimal places"),
        (Fraction(1, 3), "more than 6 decimal places"),
        (math.nan, "finite"),
        (math.inf, "finite"),
        ("abc", "not a number"),
        ("NaN", "not a number"),
        (True, "boolean"),
        (None, "NoneType"),
    ],
)
def test_bad_proportions_say_why(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        proportion_ppm(value)


def test_proportions_fit_up_to_exactly_one() -> None:
    assert proportions_fit([300_000, 400_000], 300_000)
    assert not proportions_fit([300_000, 400_000], 300_001)
    assert proportions_fit([], PPM)


def test_overlap_is_half_open() -> None:
    assert overlap(0, 10, 10, 20) == 0
    assert overlap(0, 10, 5, 20) == 5
    assert overlap(5, 6, 0, 100) == 1
    assert overlap(0.5, 1.75, 1, 2) == Fraction(3, 4)


def test_peak_sold_counts_only_what_runs_at_one_instant() -> None:
    orders = [(0, 10, 1.0), (10, 20, 2.0), (5, 15, 4.0)]
    assert peak_sold(orders, 0, 20) == 6  # 2 + 4 during [10, 15)
    assert peak_sold(orders, 0, 5) == 1
    assert peak_sold(orders, 15, 30) == 2
    assert peak_sold(orders, 20, 30) == 0  # an order ending at 20 is over at 20
    assert peak_sold([(0, 10, 0.1), (0, 10, 0.2)], 0, 10) == Fraction(0.1) + Fraction(0.2)


# --------------------------------------------------------------------------- properties


@given(amounts, st.dictionaries(st.integers(0, 20), fractions, max_size=8), fractions)
def test_split_never_moves_more_than_the_amount(
    amount: int, weights: dict[int, Fraction], whole: Fraction
) -> None:
    parts, rest = split(amount, weights, whole)
    assert set(parts) == set(weights)
    assert all(p >= 0 for p in parts.values())
    assert rest >= 0
    assert sum(parts.values()) + rest == amount
    denominator = max(whole, sum(weights.values(), Fraction(0)))
    for key, part in parts.items():
        exact_part = amount * weights[key] / denominator if denominator else Fraction(0)
        assert part <= exact_part < part + 1  # each part is the floor of its exact share


@given(amounts, rates, st.integers(0, 10 * 86_400), hash_counts)
def test_one_order_is_income_times_min_one_ratio_floored(
    income: int, rate: float, seconds: int, mined: float
) -> None:
    got = order_share(income, rate, seconds, mined)
    sold = Fraction(rate) * seconds
    ratio = min(Fraction(1), sold / Fraction(mined)) if mined else (Fraction(1) if sold else 0)
    assert got == math.floor(income * ratio)
    assert 0 <= got <= income


@given(amounts, st.lists(st.integers(1, PPM), max_size=6))
def test_revenue_shares_within_one_never_exceed_the_revenue(
    revenue: int, proportions: list[int]
) -> None:
    accepted: list[int] = []
    for p in proportions:
        if proportions_fit(accepted, p):
            accepted.append(p)
    assert sum(accepted) <= PPM
    shares = [revenue_share(revenue, p) for p in accepted]
    assert sum(shares) <= revenue
    for p, s in zip(accepted, shares, strict=True):
        assert s == revenue * p // PPM


@given(
    st.lists(
        st.tuples(st.integers(0, 100), st.integers(1, 50), st.integers(1, 1000)),
        max_size=8,
    ),
    st.integers(0, 100),
    st.integers(1, 60),
)
def test_peak_sold_matches_a_scan_of_every_second(
    raw: list[tuple[int, int, int]], start: int, length: int
) -> None:
    orders = [(float(s), float(s + d), float(r)) for s, d, r in raw]
    end = start + length
    scanned = max(
        (sum(r for s, e, r in orders if s <= t < e) for t in range(start, end)), default=0.0
    )
    assert peak_sold(orders, start, end) == Fraction(scanned)


@given(st.decimals(min_value=Decimal("0.000001"), max_value=1, places=6))
def test_any_six_decimal_proportion_round_trips(value: Decimal) -> None:
    ppm = proportion_ppm(value)
    assert Fraction(ppm, PPM) == Fraction(value)
    assert proportion_ppm(float(value)) == ppm  # a float reads by its shortest decimal form
    assert proportion_ppm(str(value)) == ppm

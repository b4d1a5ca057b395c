"""Payout-scheme math: hand-computed cases per scheme, and exactness properties with hypothesis.

The properties are the accounting invariants: every satoshi of a reward is credited, charged
as fee or retained (never more, never less); no credit is negative; splits are within one
satoshi of the exact proportion and independent of mapping order; PPLNS over a window that
holds every share is PROP; per-share PPS values add up to the block value less at most one
nano-satoshi per share; settling nano-satoshis never loses or creates value.

`bench_pplns` measures `pplns_credits` over a million shares; the test only prints it.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hashquarry.accounting.schemes import (
    BPS,
    HASHES_PER_DIFF1,
    NANO,
    Credits,
    apply_fee,
    expected_block_hashes,
    fpps_share_value_nano,
    pplns_credits,
    pplns_window,
    pplns_window_weight,
    pps_share_value_nano,
    prop_credits,
    settle_nano,
    share_weight,
    solo_credits,
    split_exact,
)

D1 = HASHES_PER_DIFF1
COIN = 100_000_000
SUBSIDY = 312_500_000  # 3.125 BTC

accounts = st.sampled_from(["alice", "bob", "carol", "dave", "erin", "frank", "grace"])
difficulties = st.one_of(
    st.sampled_from([1.0, 0.5, 1e-6, 16384.0, 65536.0, 1.024e6]),
    st.floats(min_value=1e-9, max_value=1e12, allow_nan=False, allow_infinity=False),
    st.integers(min_value=1, max_value=10**6),
)
share_lists = st.lists(st.tuples(accounts, difficulties), min_size=1, max_size=60)
rewards = st.integers(min_value=0, max_value=21_000_000 * COIN)
fees = st.integers(min_value=0, max_value=BPS)
ineligible_sets = st.frozensets(accounts)
fast = settings(deadline=None)


def full_weights(shares: list[tuple[str, float]]) -> dict[str, int]:
    weights: Counter[str] = Counter()
    for account, difficulty in shares:
        weights[account] += share_weight(difficulty)
    return dict(weights)


def assert_sound(credits: Credits, reward: int, fee_bps: int) -> None:
    assert sum(credits.per_account.values()) + credits.fee + credits.retained == reward
    assert credits.total == reward
    assert credits.fee == reward * fee_bps // BPS
    assert credits.retained >= 0
    assert all(amount >= 0 for amount in credits.per_account.values())


# --------------------------------------------------------------------------- share_weight


def test_share_weight_hand_values() -> None:
    assert share_weight(1.0) == D1
    assert share_weight(1) == D1
    assert share_weight(0.5) == D1 // 2
    assert share_weight(65536.0) == 2**48
    assert share_weight(1e-6) == round(1e-6 * 2**32) == 4295
    assert share_weight(1e-12) == 1  # below one hash still counts as one
    assert share_weight(10**400) == 10**400 * D1  # exact for ints beyond float range
    assert share_weight(1e300) == int(1e300) * D1  # d * 2**32 overflows a float


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, -(10**9), math.nan, math.inf, -math.inf, "1", None])
def test_share_weight_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="difficulty"):
        share_weight(bad)  # type: ignore[arg-type]


@given(st.floats(min_value=5e-324, max_value=1e300, allow_nan=False, allow_infinity=False))
def test_share_weight_is_rounded_exact_product(difficulty: float) -> None:
    weight = share_weight(difficulty)
    exact = Fraction(difficulty) * D1
    assert weight >= 1
    assert abs(weight - exact) <= Fraction(1, 2) or (weight == 1 and exact < 1)


def test_block_and_window_weights() -> None:
    assert expected_block_hashes(1.0) == D1
    assert expected_block_hashes(2.5) == 5 * D1 // 2
    assert pplns_window_weight(2, 1000.0) == 2000 * D1
    assert pplns_window_weight(0.5, 3.0) == 3 * D1 // 2
    assert pplns_window_weight(1e-30, 1e-30) == 1
    with pytest.raises(ValueError, match="network_difficulty must be positive"):
        expected_block_hashes(0.0)
    with pytest.raises(ValueError, match="n must be positive"):
        pplns_window_weight(-1, 1.0)
    with pytest.raises(ValueError, match="network_difficulty must be finite"):
        pplns_window_weight(1, math.nan)


# --------------------------------------------------------------------------- fees and splits


def test_apply_fee_rounds_down() -> None:
    assert apply_fee(100, 250) == (98, 2)  # 2.5 sat fee -> 2
    assert apply_fee(9_999, 1) == (9_999, 0)  # 0.9999 -> 0
    assert apply_fee(10_000, 1) == (9_999, 1)
    assert apply_fee(SUBSIDY, 200) == (306_250_000, 6_250_000)
    assert apply_fee(12_345, 0) == (12_345, 0)
    assert apply_fee(12_345, BPS) == (0, 12_345)
    assert apply_fee(0, 500) == (0, 0)


@pytest.mark.parametrize(
    ("amount", "fee_bps", "match"),
    [
        (100, -1, "fee_bps must be between 0 and 10000"),
        (100, 10_001, "fee_bps must be between 0 and 10000"),
        (100, 1.5, "fee_bps must be an int"),
        (100, True, "fee_bps must be an int"),
        (-1, 100, "amount must not be negative"),
        (1.0, 100, "amount must be an int number of satoshis"),
    ],
)
def test_apply_fee_rejects(amount: object, fee_bps: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        apply_fee(amount, fee_bps)  # type: ignore[arg-type]


@given(rewards, fees)
def test_apply_fee_property(amount: int, fee_bps: int) -> None:
    net, fee = apply_fee(amount, fee_bps)
    assert net + fee == amount
    assert 0 <= fee * BPS <= amount * fee_bps < (fee + 1) * BPS


def test_split_exact_largest_remainder() -> None:
    # 10 * 1/3 = 3.33, 10 * 2/3 = 6.67: floors 3 + 6, the spare satoshi to the larger remainder
    assert split_exact(10, {"x": 1, "y": 2}) == {"x": 3, "y": 7}
    assert split_exact(100, {"a": 1, "b": 1, "c": 2}) == {"a": 25, "b": 25, "c": 50}


def test_split_exact_ties_go_to_smallest_key() -> None:
    assert split_exact(1, {"b": 1, "a": 1}) == {"a": 1, "b": 0}
    assert split_exact(2, {"c": 5, "b": 5, "a": 5}) == {"a": 1, "b": 1, "c": 0}
    # remainders 1/3 (a) and 2/3 (b, c): the spare satoshis go to b and c, not a
    assert split_exact(2, {"a": 1, "b": 2, "c": 2}) == {"a": 0, "b": 1, "c": 1}


def test_split_exact_zero_weights_and_amounts() -> None:
    assert split_exact(7, {"a": 0, "b": 3}) == {"b": 7}
    assert split_exact(0, {"a": 0}) == {}
    assert split_exact(0, {}) == {}
    assert split_exact(0, {"a": 2, "b": 1}) == {"a": 0, "b": 0}
    assert list(split_exact(9, {"z": 1, "m": 1, "a": 1})) == ["a", "m", "z"]


@pytest.mark.parametrize(
    ("amount", "weights", "match"),
    [
        (-1, {"a": 1}, "amount must not be negative"),
        (5, {"a": 1, "b": -1}, r"weights\['b'\] must not be negative"),
        (5, {"a": 1.5}, r"weights\['a'\] must be an int"),
        (5, {"a": 0, "b": 0}, "weights are all zero"),
        (5, {}, "weights are all zero"),
    ],
)
def test_split_exact_rejects(amount: int, weights: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        split_exact(amount, weights)


@fast
@given(
    st.integers(min_value=0, max_value=10**18),
    st.dictionaries(st.text(min_size=1, max_size=3), st.integers(0, 10**30), max_size=40),
)
def test_split_exact_sum_and_proportion(amount: int, weights: dict[str, int]) -> None:
    total = sum(weights.values())
    assume(total > 0 or amount == 0)
    parts = split_exact(amount, weights)
    assert sum(parts.values()) == amount
    assert set(parts) == {key for key, weight in weights.items() if weight > 0}
    for key, part in parts.items():
        # |part - amount * w / total| < 1, in integers
        assert abs(part * total - amount * weights[key]) < total


@fast
@given(
    st.integers(min_value=0, max_value=10**12),
    st.lists(
        st.tuples(st.text(alphabet="abc", min_size=1, max_size=3), st.integers(0, 50)),
        min_size=1,
        max_size=30,
        unique_by=lambda item: item[0],
    ),
    st.data(),
)
def test_split_exact_ignores_mapping_order(
    amount: int, items: list[tuple[str, int]], data: st.DataObject
) -> None:
    assume(any(weight for _, weight in items))
    shuffled = data.draw(st.permutations(items))
    first, second = split_exact(amount, dict(items)), split_exact(amount, dict(shuffled))
    assert list(first.items()) == list(second.items())


# --------------------------------------------------------------------------- PPLNS


def test_pplns_window_boundary_share_is_partial() -> None:
    shares = [("alice", 1.0), ("bob", 1.0), ("carol", 1.0)]
    window = pplns_window_weight(2.5, 1.0)
    assert pplns_window(shares, window) == {"alice": D1, "bob": D1, "carol": D1 // 2}


def test_pplns_window_stops_at_the_boundary() -> None:
    def log():
        yield ("alice", 2.0)
        yield ("bob", 1.0)  # crosses the boundary: only 1/4 of it fits
        raise AssertionError("read past the window")

    assert pplns_window(log(), 9 * D1 // 4) == {"alice": 2 * D1, "bob": D1 // 4}


def test_pplns_window_shorter_log_and_repeats() -> None:
    shares = [("alice", 1.0), ("bob", 0.5), ("alice", 0.25)]
    assert pplns_window(shares, 100 * D1) == {"alice": D1 + D1 // 4, "bob": D1 // 2}
    assert pplns_window([], 5) == {}


@pytest.mark.parametrize(
    ("shares", "window", "match"),
    [
        ([("a", 1.0)], 0, "window_weight must be at least 1"),
        ([("a", 1.0)], 1.5, "window_weight must be an int"),
        ([("a", 1.0), ("b", -1.0)], 10 * D1, r"share of 'b': difficulty must be positive"),
        ([("a", math.nan)], 10 * D1, r"share of 'a': difficulty must be finite"),
    ],
)
def test_pplns_window_rejects(shares: list, window: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pplns_window(shares, window)  # type: ignore[arg-type]


def test_pplns_credits_hand_values() -> None:
    shares = [("alice", 1.0), ("bob", 1.0), ("alice", 1.0), ("bob", 1.0), ("carol", 2.0)]
    window = pplns_window_weight(5, 1.0)  # alice 2, bob 2, carol 1 of her 2
    credits = pplns_credits(shares, window, 50 * COIN, 100)
    assert credits == Credits(
        {"alice": 1_980_000_000, "bob": 1_980_000_000, "carol": 990_000_000}, 50_000_000
    )
    pps_carol = pplns_credits(shares, window, 50 * COIN, 100, eligible=lambda a: a != "carol")
    assert pps_carol == Credits(
        {"alice": 1_980_000_000, "bob": 1_980_000_000}, 50_000_000, 990_000_000
    )


def test_pplns_credits_rejects() -> None:
    with pytest.raises(ValueError, match="shares_newest_first is empty"):
        pplns_credits([], 10, 1, 0)
    assert pplns_credits([], 10, 0, 0) == Credits({}, 0)
    with pytest.raises(ValueError, match="reward must not be negative"):
        pplns_credits([("a", 1.0)], 10, -5, 0)
    with pytest.raises(ValueError, match="fee_bps must be between"):
        pplns_credits([("a", 1.0)], 10, 5, 20_000)


@fast
@given(share_lists, st.integers(1, 10**6 * D1), rewards, fees, ineligible_sets)
def test_pplns_conserves_reward(
    shares: list, window: int, reward: int, fee_bps: int, ineligible: frozenset[str]
) -> None:
    credits = pplns_credits(shares, window, reward, fee_bps, eligible=lambda a: a not in ineligible)
    assert_sound(credits, reward, fee_bps)
    assert not set(credits.per_account) & ineligible


@fast
@given(share_lists, st.integers(1, 10**6 * D1))
def test_pplns_window_is_exact_and_bounded(shares: list, window: int) -> None:
    weights = pplns_window(shares, window)
    full = full_weights(shares)
    assert sum(weights.values()) == min(window, sum(full.values()))
    assert all(0 < weights[a] <= full[a] for a in weights)


@fast
@given(share_lists, st.integers(0, 10**3 * D1), rewards, fees)
def test_pplns_covering_every_share_is_prop(
    shares: list, extra: int, reward: int, fee_bps: int
) -> None:
    full = full_weights(shares)
    window = sum(full.values()) + extra
    assert pplns_window(shares, window) == full
    assert pplns_credits(shares, window, reward, fee_bps) == prop_credits(full, reward, fee_bps)


@fast
@given(share_lists, st.integers(1, 10**6 * D1), rewards, fees, ineligible_sets)
def test_pplns_ineligible_part_moves_to_retained(
    shares: list, window: int, reward: int, fee_bps: int, ineligible: frozenset[str]
) -> None:
    everyone = pplns_credits(shares, window, reward, fee_bps)
    filtered = pplns_credits(
        shares, window, reward, fee_bps, eligible=lambda a: a not in ineligible
    )
    assert filtered.fee == everyone.fee
    assert filtered.per_account == {
        a: v for a, v in everyone.per_account.items() if a not in ineligible
    }
    assert filtered.retained == sum(v for a, v in everyone.per_account.items() if a in ineligible)


# --------------------------------------------------------------------------- PROP and SOLO


def test_prop_credits_hand_values() -> None:
    assert prop_credits({"a": 1, "b": 2}, 1_000, 250) == Credits({"a": 325, "b": 650}, 25)
    assert prop_credits({"a": 1, "b": 2, "c": 0}, 1_000, 250, eligible=lambda a: a != "b") == (
        Credits({"a": 325}, 25, 650)
    )
    with pytest.raises(ValueError, match="round_weights has no positive weight"):
        prop_credits({"a": 0}, 1_000, 0)


def test_solo_credits_hand_values() -> None:
    assert solo_credits("alice", 625_000_000, 200) == Credits({"alice": 612_500_000}, 12_500_000)
    assert solo_credits("alice", 625_000_000, 0) == Credits({"alice": 625_000_000}, 0)
    with pytest.raises(ValueError, match="finder must be a non-empty account name"):
        solo_credits("", 1, 0)


@given(
    st.dictionaries(accounts, st.integers(0, 2**80), min_size=1),
    rewards,
    fees,
    ineligible_sets,
)
def test_prop_conserves_reward(
    weights: dict[str, int], reward: int, fee_bps: int, ineligible: frozenset[str]
) -> None:
    assume(any(weights.values()) or reward == 0)
    credits = prop_credits(weights, reward, fee_bps, eligible=lambda a: a not in ineligible)
    assert_sound(credits, reward, fee_bps)


@given(accounts, rewards, fees)
def test_solo_conserves_reward(finder: str, reward: int, fee_bps: int) -> None:
    credits = solo_credits(finder, reward, fee_bps)
    assert_sound(credits, reward, fee_bps)
    assert list(credits.per_account) == [finder]


def test_credits_rejects_negative_parts() -> None:
    with pytest.raises(ValueError, match="retained must not be negative"):
        Credits({}, 0, -1)
    with pytest.raises(ValueError, match=r"per_account\['a'\] must not be negative"):
        Credits({"a": -1}, 0)


# --------------------------------------------------------------------------- PPS and FPPS


def test_pps_share_value_hand_values() -> None:
    # 312_500_000 sat / 2**32 = 0.0727595761... sat = 72_759_576.14 nano
    assert pps_share_value_nano(1.0, float(2**32), SUBSIDY, 0) == 72_759_576
    assert pps_share_value_nano(1.0, float(2**32), SUBSIDY, 200) == 71_304_384  # x 0.98 = ...4.62
    assert pps_share_value_nano(1.0, 1000.0, SUBSIDY, 0) == SUBSIDY * NANO // 1000
    # above network difficulty: capped at one block (the pool earns at most one)
    assert pps_share_value_nano(2.0, 1.0, SUBSIDY, 0) == SUBSIDY * NANO
    # 0.1 is converted exactly (0.1000000000000000055...), so not exactly a tenth
    assert pps_share_value_nano(0.1, 1.0, 10, 0) == 1_000_000_000
    assert pps_share_value_nano(1e-6, 1e14, SUBSIDY, 0) == 0  # worth 3e-12 sat: under a nano


def test_fpps_share_value_hand_values() -> None:
    assert fpps_share_value_nano(1.0, 1000.0, SUBSIDY, 12_500_000, 0) == 325_000 * NANO
    assert fpps_share_value_nano(1.0, 1000.0, SUBSIDY, 12_500_000, 400) == 312_000 * NANO
    assert fpps_share_value_nano(1.0, 8.0, SUBSIDY, 0, 100) == pps_share_value_nano(
        1.0, 8.0, SUBSIDY, 100
    )


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0.0, 1.0, SUBSIDY, 0), "difficulty must be positive"),
        ((1.0, math.inf, SUBSIDY, 0), "network_difficulty must be finite"),
        ((1.0, 1.0, -1, 0), "block_subsidy must not be negative"),
        ((1.0, 1.0, 1.5, 0), "block_subsidy must be an int"),
        ((1.0, 1.0, SUBSIDY, 10_001), "fee_bps must be between"),
    ],
)
def test_pps_rejects(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pps_share_value_nano(*args)


def test_fpps_rejects_negative_fees() -> None:
    with pytest.raises(ValueError, match="expected_fees must not be negative"):
        fpps_share_value_nano(1.0, 1.0, SUBSIDY, -1, 0)


@fast
@given(
    st.lists(st.integers(1, 2**20), min_size=1, max_size=60),
    st.integers(0, 40),
    st.integers(0, 50 * COIN),
    st.integers(0, COIN),
    fees,
)
def test_pps_values_over_one_block_of_work_sum_to_the_block(
    numerators: list[int], scale: int, subsidy: int, tx_fees: int, fee_bps: int
) -> None:
    # dyadic difficulties m / 2**scale are floats whose sum is exact, so sum(d) == D exactly
    diffs = [m / 2**scale for m in numerators]
    network = sum(numerators) / 2**scale
    assert sum(Fraction(d) for d in diffs) == Fraction(network)
    k = len(diffs)
    for block_value, value in (
        (subsidy, lambda d: pps_share_value_nano(d, network, subsidy, fee_bps)),
        (subsidy + tx_fees, lambda d: fpps_share_value_nano(d, network, subsidy, tx_fees, fee_bps)),
    ):
        exact = Fraction(block_value * (BPS - fee_bps) * NANO, BPS)
        paid = sum(value(d) for d in diffs)
        assert exact - k < paid <= exact


# --------------------------------------------------------------------------- settlement


def test_settle_nano_hand_values() -> None:
    assert settle_nano(2_500_000_000) == (2, 500_000_000)
    assert settle_nano(999_999_999) == (0, 999_999_999)
    assert settle_nano(0) == (0, 0)
    with pytest.raises(ValueError, match="accrued_nano must not be negative"):
        settle_nano(-1)
    with pytest.raises(ValueError, match="accrued_nano must be an int number of nano-satoshis"):
        settle_nano(1.5)  # type: ignore[arg-type]


@given(st.lists(st.lists(st.integers(0, 10**12), max_size=20), max_size=60))
def test_settle_nano_over_days_conserves_value(days: list[list[int]]) -> None:
    carry = 0
    paid = 0
    accrued = 0
    for day in days:
        today = sum(day)
        accrued += today
        sats, carry = settle_nano(carry + today)
        assert sats >= 0
        assert 0 <= carry < NANO
        paid += sats
    assert paid * NANO + carry == accrued


# --------------------------------------------------------------------------- performance


def bench_pplns(n: int = 1_000_000) -> float:
    """Seconds `pplns_credits` takes over `n` shares (10,000 accounts, vardiff difficulties).

    The shares are built first (not timed); the window holds all of them so every share is
    walked. Returns the wall time of the call alone.
    """
    rng = random.Random(20261121)
    names = [f"acct{i:05d}" for i in range(10_000)]
    diffs = [16384.0, 32768.0, 65536.0, 131072.0, 262144.0, 5.12e5, 1.024e6, 2.048e6]
    shares = list(zip(rng.choices(names, k=n), rng.choices(diffs, k=n), strict=True))
    window = sum(share_weight(d) for _, d in shares)
    start = time.perf_counter()
    credits = pplns_credits(shares, window, SUBSIDY + 12_345_678, 150)
    elapsed = time.perf_counter() - start
    assert credits.total == SUBSIDY + 12_345_678
    return elapsed


def test_bench_pplns_million_shares() -> None:
    seconds = bench_pplns(1_000_000)
    print(f"pplns_credits over 1,000,000 shares: {seconds:.3f} s")

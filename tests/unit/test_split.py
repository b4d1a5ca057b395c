"""The mixed-mode block split (accounting.split): hand-worked cases and exactness properties.

Properties: for every reward, fee, basis and mix of modes, credits + fee + pool remainder
is the reward exactly, nothing is negative, PPS/FPPS and SOLO-mode work (when the finder
is not SOLO) is never credited; with every account in one mode the split is exactly the
pure scheme's (pplns_credits / prop_credits / solo_credits).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashquarry.accounting.schemes import (
    BPS,
    HASHES_PER_DIFF1,
    Credits,
    pplns_credits,
    prop_credits,
    solo_credits,
    split_exact,
)
from hashquarry.accounting.split import MODES, Key, basis_of, split_block

D1 = HASHES_PER_DIFF1
R = 1_200_000
FEE = 100

# window: alice 2000, bob 2000, carol 2000; round: alice 1000, bob 1000, carol 2000
W = {"alice": 2000 * D1, "bob": 2000 * D1, "carol": 2000 * D1}
RND = {"alice": 1000 * D1, "bob": 1000 * D1, "carol": 2000 * D1}


def keyed(weights: dict[str, int], modes: dict[str, str]) -> dict[Key, int]:
    return {(a, modes[a]): w for a, w in weights.items()}


def split(
    modes: dict[str, str], basis: str, finder: str = "alice", reward: int = R, fee: int = FEE
) -> Credits:
    return split_block(
        reward,
        fee,
        finder=finder,
        finder_mode=modes[finder],
        basis=basis,
        window=keyed(W, modes),
        round_=keyed(RND, modes),
    )


def test_basis_is_the_round_only_on_prop_coins() -> None:
    assert [basis_of(s) for s in MODES] == ["window", "round", "window", "window", "window"]
    with pytest.raises(ValueError, match="coin_scheme"):
        basis_of("ppln")


@pytest.mark.parametrize(
    ("modes", "basis", "finder", "credits", "fee", "retained"),
    [
        # one mode for all: the pure schemes
        ({"alice": "pplns", "bob": "pplns", "carol": "pplns"}, "window", "alice",
         {"alice": 396_000, "bob": 396_000, "carol": 396_000}, 12_000, 0),
        ({"alice": "prop", "bob": "prop", "carol": "prop"}, "round", "alice",
         {"alice": 297_000, "bob": 297_000, "carol": 594_000}, 12_000, 0),
        ({"alice": "pps", "bob": "fpps", "carol": "pps"}, "window", "bob", {}, 0, R),
        ({"alice": "solo", "bob": "solo", "carol": "solo"}, "window", "carol",
         {"carol": 1_188_000}, 12_000, 0),
        # bob in PROP on a PPLNS coin: his third of the window, split among PROP miners
        ({"alice": "pplns", "bob": "prop", "carol": "pplns"}, "window", "alice",
         {"alice": 396_000, "bob": 396_000, "carol": 396_000}, 12_000, 0),
        # alice in PPLNS on a PROP coin: her quarter of the round, split among PPLNS miners
        ({"alice": "pplns", "bob": "prop", "carol": "prop"}, "round", "bob",
         {"alice": 297_000, "bob": 297_000, "carol": 594_000}, 12_000, 0),
        # bob in PPS: his part stays with the pool, no fee on it
        ({"alice": "pplns", "bob": "pps", "carol": "pplns"}, "window", "bob",
         {"alice": 396_000, "carol": 396_000}, 8_000, 400_000),
        ({"alice": "prop", "bob": "fpps", "carol": "prop"}, "round", "alice",
         {"alice": 297_000, "carol": 594_000}, 9_000, 300_000),
        # bob in SOLO, not the finder: his work is not the pool's, the others share it all
        ({"alice": "pplns", "bob": "solo", "carol": "pplns"}, "window", "alice",
         {"alice": 594_000, "carol": 594_000}, 12_000, 0),
        # bob in SOLO finds it: his alone
        ({"alice": "pplns", "bob": "solo", "carol": "pplns"}, "window", "bob",
         {"bob": 1_188_000}, 12_000, 0),
        # a PPS account finds a block on a SOLO coin: the pool's (it paid per share)
        ({"alice": "solo", "bob": "pps", "carol": "solo"}, "window", "bob", {}, 0, R),
        # a PPLNS account on a PPS coin: its window part
        ({"alice": "pps", "bob": "pplns", "carol": "pps"}, "window", "alice",
         {"bob": 396_000}, 4_000, 800_000),
    ],
)  # fmt: skip
def test_hand_worked(
    modes: dict[str, str],
    basis: str,
    finder: str,
    credits: dict[str, int],
    fee: int,
    retained: int,
) -> None:
    got = split(modes, basis, finder)
    assert (got.per_account, got.fee, got.retained) == (credits, fee, retained)
    assert got.total == R


def test_own_rule_inside_the_group() -> None:
    """Two PROP accounts on a PPLNS coin: their window parts (2/3) are pooled and split
    by their round weights (1000 : 2000), not by their window weights (2000 : 2000)."""
    got = split({"alice": "pplns", "bob": "prop", "carol": "prop"}, "window")
    # pot 800,000 - fee 8,000 = 792,000 -> bob 1/3, carol 2/3
    assert got.per_account == {"alice": 396_000, "bob": 264_000, "carol": 528_000}


def test_group_without_own_weight_uses_its_basis_weights() -> None:
    """PROP shares in the window but none in the round: still paid, by window weight."""
    got = split_block(
        R,
        FEE,
        finder="alice",
        finder_mode="pplns",
        basis="window",
        window={("alice", "pplns"): 1, ("bob", "prop"): 1},
        round_={("alice", "pplns"): 5},
    )
    assert got.per_account == {"alice": 594_000, "bob": 594_000}


def test_empty_basis_falls_back_to_the_finder() -> None:
    for mode, expect in [("pplns", {"alice": 1_188_000}), ("prop", {"alice": 1_188_000})]:
        got = split_block(
            R, FEE, finder="alice", finder_mode=mode, basis="window", window={}, round_={}
        )
        assert got.per_account == expect and got.fee == 12_000
    got = split_block(
        R, FEE, finder="alice", finder_mode="pps", basis="round", window={}, round_={}
    )
    assert (got.per_account, got.retained) == ({}, R)


def test_rejects_unknown_modes_and_basis() -> None:
    with pytest.raises(ValueError, match="finder_mode"):
        split_block(R, 0, finder="a", finder_mode="x", basis="window", window={}, round_={})
    with pytest.raises(ValueError, match="basis"):
        split_block(R, 0, finder="a", finder_mode="pps", basis="shift", window={}, round_={})
    with pytest.raises(ValueError, match="window"):
        split_block(
            R, 0, finder="a", finder_mode="pps", basis="window", window={("a", "?"): 1}, round_={}
        )


# --------------------------------------------------------------------------- properties

accounts = st.sampled_from(["alice", "bob", "carol", "dave", "erin"])
modes = st.sampled_from(MODES)
weights = st.dictionaries(
    st.tuples(accounts, modes), st.integers(0, 10**6) | st.integers(0, 10**30), max_size=12
)
rewards = st.integers(0, 21_000_000 * 10**8)
fees = st.integers(0, BPS)


@settings(max_examples=400, deadline=None)
@given(rewards, fees, accounts, modes, st.sampled_from(MODES), weights, weights)
def test_credits_fee_and_pool_remainder_are_the_reward(
    reward: int,
    fee_bps: int,
    finder: str,
    finder_mode: str,
    coin_scheme: str,
    window: dict[Key, int],
    round_: dict[Key, int],
) -> None:
    got = split_block(
        reward,
        fee_bps,
        finder=finder,
        finder_mode=finder_mode,
        basis=basis_of(coin_scheme),
        window=window,
        round_=round_,
    )
    assert sum(got.per_account.values()) + got.fee + got.retained == reward
    assert got.fee >= 0 and got.retained >= 0 and min(got.per_account.values(), default=0) >= 0
    assert got.fee <= reward * fee_bps // BPS  # never more than the stated rate
    if finder_mode == "solo":
        assert got == solo_credits(finder, reward, fee_bps)
        return

    # Only PPLNS/PROP work is ever credited (PPS/FPPS work was paid per share, SOLO work
    # is not the pool's); the finder's own share stands in for a basis the store lost.
    def did_pool_work(account: str) -> bool:
        return any(
            a == account and m in ("pplns", "prop") and w > 0
            for measure in (window, round_)
            for (a, m), w in measure.items()
        )

    for account in got.per_account:
        assert did_pool_work(account) or account == finder
    if finder_mode in ("pps", "fpps") and not any(
        m in ("pplns", "prop") and w
        for measure in (window, round_)
        for (_, m), w in measure.items()
    ):
        assert got == Credits({}, 0, reward)  # nobody in a block mode: the pool's block


@settings(max_examples=200, deadline=None)
@given(rewards, fees, st.dictionaries(accounts, st.integers(1, 10**9), min_size=1), accounts)
def test_one_mode_for_everyone_is_the_pure_scheme(
    reward: int, fee_bps: int, by_account: dict[str, int], finder: str
) -> None:
    window = {(a, "pplns"): w for a, w in by_account.items()}
    got = split_block(
        reward, fee_bps, finder=finder, finder_mode="pplns", basis="window",
        window=window, round_={},
    )  # fmt: skip
    # pplns_credits is this split over the window's weights (see test_schemes)
    shares = [(a, w / D1) for a, w in by_account.items()]
    assert got == pplns_credits(shares, sum(by_account.values()), reward, fee_bps)
    got = split_block(
        reward, fee_bps, finder=finder, finder_mode="prop", basis="round",
        window={}, round_={(a, "prop"): w for a, w in by_account.items()},
    )  # fmt: skip
    assert got == prop_credits(by_account, reward, fee_bps)
    pps = {(a, "pps"): w for a, w in by_account.items()}
    got = split_block(
        reward, fee_bps, finder=finder, finder_mode="pps", basis="window", window=pps, round_={}
    )
    assert got == Credits({}, 0, reward)


@settings(max_examples=200, deadline=None)
@given(
    rewards,
    fees,
    st.dictionaries(accounts, st.integers(1, 10**9), min_size=2),
    st.sampled_from(["pps", "fpps", "prop"]),
)
def test_other_modes_do_not_change_a_pplns_accounts_part_of_the_window(
    reward: int, fee_bps: int, by_account: dict[str, int], other: str
) -> None:
    """alice's gross part of the block is her window part whatever the others' modes; she
    is charged the fee rate on it (within the rounding of her group's fee and split)."""
    window = {(a, "pplns" if a == "alice" else other): w for a, w in by_account.items()}
    window.setdefault(("alice", "pplns"), 7)
    got = split_block(
        reward, fee_bps, finder="alice", finder_mode="pplns", basis="window",
        window=window, round_={},
    )  # fmt: skip
    gross = split_exact(reward, window)[("alice", "pplns")]
    assert got.per_account["alice"] == gross - gross * fee_bps // BPS

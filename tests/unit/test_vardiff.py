"""Variable difficulty: convergence for simulated miners, the variance band, ceiling and steps."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hashquarry.chain.target import bits_to_difficulty
from hashquarry.stratum.vardiff import (
    EARLY_FACTOR,
    MAX_STEP_DOWN,
    MAX_STEP_UP,
    Vardiff,
    VardiffRules,
    round_difficulty,
)

TWO32 = 2.0**32
REGTEST_DIFFICULTY = bits_to_difficulty(0x207FFFFF)  # ~4.66e-10
ROUNDING = 1e-3  # round_difficulty keeps four significant digits

hashrates = st.floats(min_value=1e3, max_value=1e12)


def ideal(rules: VardiffRules, hashrate: float, network: float | None = None) -> float:
    """The difficulty that gives one share per target interval, within the rules' bounds."""
    return rules.clamp(hashrate * rules.target_interval / TWO32, network)


def simulate(
    rules: VardiffRules,
    hashrate: float,
    start: float,
    *,
    network: float | None = None,
    windows: int = 120,
    job_interval: float = 30.0,
    rng: random.Random | None = None,
) -> tuple[Vardiff, list[float]]:
    """A miner finding a share every difficulty*2**32/hashrate seconds (or exponentially
    distributed intervals with that mean), plus a new job every `job_interval` seconds (which
    is when a session retargets a silent miner). Returns the vardiff and its difficulty at
    the end of every retarget window."""
    vd = Vardiff(rules, start, 0.0)

    def gap() -> float:
        mean = vd.difficulty * TWO32 / hashrate
        return rng.expovariate(1.0 / mean) if rng else mean

    end = windows * rules.retarget_window
    now = 0.0
    next_share = gap()
    next_job = job_interval
    next_sample = rules.retarget_window
    trace: list[float] = []
    events = 0
    while now < end:
        events += 1
        assert events < 400_000, "simulation ran away"
        if next_share <= next_job:
            now = next_share
            changed = vd.on_share(now, network) is not None
        else:
            now = next_job
            next_job += job_interval
            changed = vd.retarget(now, network) is not None
        # The miner restarts its work when its difficulty changes.
        next_share = now + gap() if changed or now >= next_share else next_share
        while now >= next_sample:
            trace.append(vd.difficulty)
            next_sample += rules.retarget_window
    return vd, trace


def within(value: float, goal: float, factor: float) -> bool:
    return goal / factor <= value <= goal * factor


# -- convergence ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    hashrate=hashrates,
    start_frac=st.floats(min_value=0.0, max_value=1.0),
    target_interval=st.sampled_from([5.0, 10.0, 15.0, 30.0]),
)
def test_converges_to_one_share_per_interval(
    hashrate: float, start_frac: float, target_interval: float
) -> None:
    rules = VardiffRules(target_interval=target_interval)
    # Anywhere between min and max, spread evenly on a log scale.
    lo, hi = math.log(rules.min_difficulty), math.log(rules.max_difficulty)
    start = round_difficulty(math.exp(lo + start_frac * (hi - lo)))
    vd, trace = simulate(rules, hashrate, start)
    goal = ideal(rules, hashrate)
    assert within(vd.difficulty, goal, 2.0), (vd.difficulty, goal)
    # And it stays there: the last ten windows are all near the goal.
    assert all(within(d, goal, 2.0) for d in trace[-10:]), trace[-10:]


@settings(max_examples=50, deadline=None)
@given(
    hashrate=hashrates,
    # Where the maximum sits relative to the ideal difficulty (log10): below it by up to
    # 20x (a miner too fast for the pool's range), or far above.
    max_pos=st.floats(min_value=-1.3, max_value=8.0),
    span=st.floats(min_value=0.0, max_value=8.0),
    start_frac=st.floats(min_value=0.0, max_value=1.0),
)
def test_converges_within_clamped_bounds(
    hashrate: float, max_pos: float, span: float, start_frac: float
) -> None:
    unclamped = hashrate * 10.0 / TWO32
    hi = round_difficulty(unclamped * 10.0**max_pos)
    lo = round_difficulty(hi / 10.0**span)
    assume(lo > 0)
    rules = VardiffRules(min_difficulty=lo, max_difficulty=hi)
    start = round_difficulty(lo * (hi / lo) ** start_frac)
    vd, _ = simulate(rules, hashrate, start)
    goal = ideal(rules, hashrate)
    assert rules.min_difficulty <= vd.difficulty <= rules.max_difficulty
    assert within(vd.difficulty, goal, 2.0), (vd.difficulty, goal)


@pytest.mark.parametrize("hashrate", [1e3, 5e6, 1.4e10, 1e12])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_converges_with_random_share_times(hashrate: float, seed: int) -> None:
    """Poisson shares: single windows are noisy, the typical difficulty is still right."""
    rules = VardiffRules()
    for start in (rules.min_difficulty, 1.0, 1e9):
        _, trace = simulate(rules, hashrate, start, windows=300, rng=random.Random(seed))
        tail = trace[-200:]
        geo_mean = math.exp(sum(math.log(d) for d in tail) / len(tail))
        goal = ideal(rules, hashrate)
        assert within(geo_mean, goal, 2.0), (start, geo_mean, goal)


# -- the variance band and step limits ------------------------------------------------------


def after(rules: VardiffRules, difficulty: float, shares: int, elapsed: float) -> float | None:
    vd = Vardiff(rules, difficulty, 1000.0)
    for _ in range(shares):
        assert vd.on_share(1000.0) is None  # no time has passed: never a retarget
    return vd.retarget(1000.0 + elapsed)


@settings(max_examples=200, deadline=None)
@given(
    difficulty=st.floats(min_value=1e-3, max_value=1e9),
    shares=st.integers(min_value=1, max_value=EARLY_FACTOR * 6 - 1),
    band_pos=st.floats(min_value=-0.999, max_value=0.999),
    variance=st.sampled_from([0.1, 0.3, 0.5]),
)
def test_no_change_inside_variance_band(
    difficulty: float, shares: int, band_pos: float, variance: float
) -> None:
    rules = VardiffRules(variance=variance)
    ratio = 1.0 + band_pos * variance  # target_interval / observed interval
    elapsed = shares * rules.target_interval / ratio
    assume(elapsed >= rules.retarget_window)
    assert after(rules, round_difficulty(difficulty), shares, elapsed) is None


def test_just_outside_the_band_changes() -> None:
    rules = VardiffRules()  # 10 s target, 60 s window, 30 % band
    assert after(rules, 100.0, 6, 60.0) is None  # exactly on target
    assert after(rules, 100.0, 7, 60.0) is None  # ratio 1.17
    assert after(rules, 100.0, 5, 60.0) is None  # ratio 0.83
    assert after(rules, 100.0, 8, 60.0) == 133.3  # ratio 1.33
    assert after(rules, 100.0, 4, 60.0) == 66.67  # ratio 0.67
    assert after(rules, 100.0, 2, 60.0) == 33.33


@settings(max_examples=300, deadline=None)
@given(
    difficulty=st.floats(min_value=1e-5, max_value=1e12),
    shares=st.integers(min_value=0, max_value=100_000),
    elapsed=st.floats(min_value=1e-3, max_value=1e6),
)
def test_step_limits(difficulty: float, shares: int, elapsed: float) -> None:
    rules = VardiffRules()
    d = round_difficulty(difficulty)
    new = after(rules, d, shares, elapsed)
    if new is None:
        return
    assert d * MAX_STEP_DOWN * (1 - ROUNDING) <= new <= d * MAX_STEP_UP * (1 + ROUNDING)
    assert rules.min_difficulty <= new <= rules.max_difficulty
    assert new == round_difficulty(new)


def test_step_limit_values() -> None:
    assert (MAX_STEP_UP, MAX_STEP_DOWN) == (16.0, 0.25)
    rules = VardiffRules()
    assert after(rules, 1.0, 10_000, 60.0) == 16.0  # 1667x too easy: one step of x16
    assert after(rules, 1.0, 1, 6000.0) == 0.25  # 100x too hard: one step of /4
    assert after(rules, 1.0, 0, 60.0) == 0.25  # silence for a window: /4


def test_flood_retargets_before_the_window_ends() -> None:
    rules = VardiffRules()
    vd = Vardiff(rules, 1.0, 0.0)
    expected = rules.retarget_window / rules.target_interval
    results = [vd.on_share(0.1 * (i + 1)) for i in range(int(EARLY_FACTOR * expected))]
    assert results[:-1] == [None] * (len(results) - 1)
    assert results[-1] == 16.0  # 24 shares in 2.4 s
    assert vd.count == 0


def test_slow_trickle_waits_for_the_window() -> None:
    vd = Vardiff(VardiffRules(), 1.0, 0.0)
    assert vd.on_share(5.0) is None
    assert vd.retarget(59.9) is None
    assert vd.retarget(60.0) == 0.25  # one share in a minute: 6x too hard, one /4 step


# -- the ceiling ----------------------------------------------------------------------------


def test_ceiling_rules() -> None:
    rules = VardiffRules(min_difficulty=1e-3, max_difficulty=1e6)
    assert rules.ceiling(None) == 1e6
    assert rules.ceiling(500.0) == 500.0
    assert rules.ceiling(1e-3) == 1e-3  # equal to the minimum still caps
    assert rules.ceiling(1e9) == 1e6
    assert rules.ceiling(1e-4) == 1e6  # below the minimum: every share is a block anyway
    assert rules.clamp(1e5, 500.0) == 500.0
    assert rules.clamp(1e-9, 500.0) == 1e-3
    assert rules.clamp(1e5, 1e-4) == 1e5


@settings(max_examples=30, deadline=None)
@given(network=st.integers(min_value=1, max_value=10_000), excess=st.floats(1.5, 20.0))
def test_capped_at_network_difficulty(network: int, excess: float) -> None:
    rules = VardiffRules()  # min 1e-6 <= network difficulty: the cap applies
    hashrate = network * excess * TWO32 / rules.target_interval  # wants `excess` x a block
    vd, trace = simulate(rules, hashrate, 1e-6, network=float(network), windows=40)
    assert max(trace) <= network
    assert vd.difficulty == network


def test_cap_is_not_exceeded_by_rounding() -> None:
    rules = VardiffRules()
    vd = Vardiff(rules, 1.0, 0.0)
    for i in range(EARLY_FACTOR * 6):
        vd.on_share(0.01 * (i + 1), 1.015625)
    assert vd.difficulty <= 1.015625


@settings(max_examples=30, deadline=None)
@given(hashrate=hashrates)
def test_regtest_network_difficulty_below_minimum_is_not_a_cap(hashrate: float) -> None:
    rules = VardiffRules()
    assert rules.min_difficulty > REGTEST_DIFFICULTY
    vd, _ = simulate(rules, hashrate, 1e-6, network=REGTEST_DIFFICULTY)
    goal = ideal(rules, hashrate, REGTEST_DIFFICULTY)
    assert goal > REGTEST_DIFFICULTY
    assert within(vd.difficulty, goal, 2.0)


def test_regtest_fast_miner_runs_up_to_the_maximum() -> None:
    rules = VardiffRules(max_difficulty=50.0)
    vd, _ = simulate(rules, 1e13, 1e-6, network=REGTEST_DIFFICULTY, windows=40)
    assert vd.difficulty == 50.0


def test_network_drop_below_current_difficulty_is_applied_even_inside_band() -> None:
    rules = VardiffRules()
    vd = Vardiff(rules, 2000.0, 0.0)
    for i in range(6):  # exactly on target: one share every 10 s
        vd.on_share(10.0 * (i + 1) - 0.5, 5000.0)
    new = vd.retarget(60.0, network_difficulty=1000.0)
    assert new == 1000.0

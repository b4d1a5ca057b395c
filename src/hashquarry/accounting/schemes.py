"""Payout-scheme math: PPLNS, PROP, SOLO, PPS and FPPS as pure functions.

Nothing here does I/O, reads a clock or touches a database: the caller passes
the shares, the reward and the fee, and gets back exact integers. Money is
satoshis as ``int``; every split is exact to the satoshi, so for every block

    sum(credits.per_account) + credits.fee + credits.retained == reward

holds with no rounding dust appearing or vanishing.

Work is measured as *weight*: the expected number of hashes behind a share,
``difficulty * 2**32`` as an exact integer. Shares of different difficulties
then add up without floats, and a PPLNS window ("the last N blocks' worth of
work") is just a weight.

The 2**32 hashes per difficulty-1 share is the pool convention (the exact
figure is 2**256 / (0xffff * 2**208 + 1), about 2**32 * (1 + 2**-16)); it is
used for shares and network alike, so every ratio between them is exact.

Fees are in basis points (1/100 of a percent) and always rounded in the pool's
favour by at most one satoshi per block; per-share PPS values are rounded down
to a nano-satoshi, so the pool never pays out more than the expected value.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, TypeVar

__all__ = [
    "BPS",
    "HASHES_PER_DIFF1",
    "NANO",
    "Credits",
    "apply_fee",
    "expected_block_hashes",
    "fpps_share_value_nano",
    "pplns_credits",
    "pplns_window",
    "pplns_window_weight",
    "pps_share_value_nano",
    "prop_credits",
    "settle_nano",
    "share_weight",
    "solo_credits",
    "split_exact",
]

HASHES_PER_DIFF1 = 2**32
BPS = 10_000  # basis points in a whole
NANO = 10**9  # nano-satoshis per satoshi

_TWO32_FLOAT = float(HASHES_PER_DIFF1)

# Payee keys: account names, or (account, mode) pairs when a block is split by settle
# mode first (accounting.split). Any hashable, totally ordered key works.
K = TypeVar("K", bound=Any)
_WEIGHT_CACHE_LIMIT = 4096  # distinct share difficulties remembered inside one window walk


# --------------------------------------------------------------------------- validation


def _satoshis(name: str, value: object, unit: str = "satoshis") -> int:
    """An amount of money: a non-negative ``int`` (never a float, never a bool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int number of {unit}, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value


def _fee_bps(fee_bps: object) -> int:
    if isinstance(fee_bps, bool) or not isinstance(fee_bps, int):
        raise ValueError(f"fee_bps must be an int of basis points, got {type(fee_bps).__name__}")
    if not 0 <= fee_bps <= BPS:
        raise ValueError(f"fee_bps must be between 0 and {BPS} basis points, got {fee_bps}")
    return fee_bps


def _positive_real(name: str, value: object) -> int | float:
    """A positive, finite difficulty-like number (``int`` kept exact, other reals as float)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {type(value).__name__}")
    if not isinstance(value, int):
        value = float(value)
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"{name} must be finite, got {value}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def _exact(name: str, value: object) -> Fraction:
    """The exact rational value of a positive difficulty (a float converts without rounding)."""
    return Fraction(_positive_real(name, value))


# --------------------------------------------------------------------------- weights and fees


def _weight(name: str, difficulty: object) -> int:
    d = _positive_real(name, difficulty)
    if isinstance(d, int):
        return d * HASHES_PER_DIFF1
    try:
        weight = round(d * _TWO32_FLOAT)
    except OverflowError:  # d * 2**32 beyond float range: d is then a whole number already
        weight = int(d) * HASHES_PER_DIFF1
    return weight if weight >= 1 else 1


def share_weight(difficulty: float) -> int:
    """Expected hashes behind a share of ``difficulty``: ``round(difficulty * 2**32)``, >= 1.

    Integers so that weights add up exactly over millions of shares. Multiplying
    a float by 2**32 is exact (it only moves the exponent), so the only rounding
    is the final one to a whole hash; tiny positive difficulties (below 2**-33)
    count as one hash rather than nothing, so every accepted share has weight.
    """
    return _weight("difficulty", difficulty)


def expected_block_hashes(network_difficulty: float) -> int:
    """Expected hashes to find one block at ``network_difficulty``: the weight of one block."""
    return _weight("network_difficulty", network_difficulty)


def pplns_window_weight(n: float, network_difficulty: float) -> int:
    """Weight of a PPLNS window of ``n`` blocks: ``round(n * network_difficulty * 2**32)``.

    Expressing N as work rather than as a share count keeps the window the same
    length in expected blocks whatever share difficulties vardiff hands out, so
    a miner gains nothing by choosing a low or a high difficulty.
    """
    exact = _exact("n", n) * _exact("network_difficulty", network_difficulty) * HASHES_PER_DIFF1
    return max(1, round(exact))


def apply_fee(amount: int, fee_bps: int) -> tuple[int, int]:
    """Split ``amount`` into ``(net, fee)`` with ``fee = floor(amount * fee_bps / 10000)``.

    The fee is rounded down so a miner is never charged more than the stated
    rate; ``net`` is the rest, so ``net + fee == amount`` always.
    """
    amount = _satoshis("amount", amount)
    fee = amount * _fee_bps(fee_bps) // BPS
    return amount - fee, fee


def split_exact(amount: int, weights: Mapping[K, int]) -> dict[K, int]:
    """Split ``amount`` satoshis in proportion to integer ``weights``, exactly.

    Largest-remainder method: everyone gets the floor of their exact share,
    then the satoshis left over (fewer than the number of payees) go one each to
    the largest fractional remainders, ties broken by key ascending. Every part
    is therefore the floor or the ceiling of its exact proportion, the parts sum
    to ``amount``, and the result depends only on the contents of ``weights``,
    not on its iteration order (the returned dict is sorted by key).

    Keys of zero weight are left out; keys of positive weight are present even
    when their part is 0.
    """
    amount = _satoshis("amount", amount)
    positive: list[tuple[K, int]] = []
    total = 0
    for key, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise ValueError(f"weights[{key!r}] must be an int, got {type(weight).__name__}")
        if weight < 0:
            raise ValueError(f"weights[{key!r}] must not be negative, got {weight}")
        if weight:
            positive.append((key, weight))
            total += weight
    if total == 0:
        if amount:
            raise ValueError(f"weights are all zero, nobody to give amount={amount} to")
        return {}
    positive.sort()
    parts: dict[K, int] = {}
    remainders: list[tuple[int, K]] = []
    given = 0
    for key, weight in positive:
        part, remainder = divmod(amount * weight, total)
        parts[key] = part
        given += part
        if remainder:
            remainders.append((-remainder, key))
    leftover = amount - given  # == sum(remainders) / total, so < len(remainders)
    if leftover:
        remainders.sort()
        for _, key in remainders[:leftover]:
            parts[key] += 1
    return parts


# --------------------------------------------------------------------------- block schemes


@dataclass(frozen=True, slots=True)
class Credits:
    """What one block reward becomes: per-account credits, the pool fee, and what the pool keeps.

    ``retained`` is the part of the reward earned by work the pool has already
    paid for another way (accounts in PPS/FPPS mode) or that has nobody to go
    to; it stays with the pool and is kept apart from ``fee`` so the books show
    why. ``sum(per_account) + fee + retained`` is exactly the reward.
    """

    per_account: dict[str, int]
    fee: int
    retained: int = 0

    def __post_init__(self) -> None:
        _satoshis("fee", self.fee)
        _satoshis("retained", self.retained)
        for account, amount in self.per_account.items():
            _satoshis(f"per_account[{account!r}]", amount)

    @property
    def credited(self) -> int:
        """Satoshis credited to accounts."""
        return sum(self.per_account.values())

    @property
    def total(self) -> int:
        """The whole reward accounted for: credits + fee + retained."""
        return self.credited + self.fee + self.retained


def _credits_from_weights(
    weights: Mapping[str, int],
    reward: int,
    fee_bps: int,
    eligible: Callable[[str], bool] | None,
) -> Credits:
    """Fee off the whole reward, the rest split by weight, ineligible parts retained.

    The split is made over every account (eligible or not) before anything is
    moved to ``retained``, so an eligible account's credit is the same whether
    or not other accounts are eligible: turning one miner's PPS mode on or off
    never changes what anyone else gets.
    """
    net, fee = apply_fee(reward, fee_bps)
    parts = split_exact(net, weights)
    if eligible is None:
        return Credits(parts, fee)
    per_account: dict[str, int] = {}
    retained = 0
    for account, amount in parts.items():
        if eligible(account):
            per_account[account] = amount
        else:
            retained += amount
    return Credits(per_account, fee, retained)


def pplns_window(
    shares_newest_first: Iterable[tuple[K, float]], window_weight: int
) -> dict[K, int]:
    """Weight per account of the last ``window_weight`` hashes' worth of shares.

    Shares are walked newest first and their weights added until the window is
    full. The share that crosses the boundary counts only for the part that
    fits: the window is then exactly ``window_weight`` long, whatever the share
    difficulties, so one high-difficulty share at the edge cannot stretch it
    (and no miner gains by the position of their shares relative to the edge).
    The iterable is not read past the boundary share, so a database cursor over
    the whole share log can be passed in. Shares before the window is full are
    all that count when the log is shorter than the window (a new pool).

    This is the hot loop of PPLNS (millions of shares per block): it allocates
    nothing per share beyond the caller's tuple, accumulates in one dict, and
    remembers the weight of each distinct difficulty (vardiff rounds them to a
    handful of values).
    """
    if isinstance(window_weight, bool) or not isinstance(window_weight, int):
        raise ValueError(
            f"window_weight must be an int (hashes), got {type(window_weight).__name__}"
        )
    if window_weight < 1:
        raise ValueError(f"window_weight must be at least 1, got {window_weight}")
    acc: dict[K, int] = {}
    get = acc.get
    cache: dict[float, int] = {}
    cached = cache.get
    remaining = window_weight
    for account, difficulty in shares_newest_first:
        weight = cached(difficulty)
        if weight is None:
            try:
                weight = share_weight(difficulty)
            except ValueError as exc:
                raise ValueError(f"shares_newest_first: share of {account!r}: {exc}") from None
            if len(cache) < _WEIGHT_CACHE_LIMIT:
                cache[difficulty] = weight
        if weight >= remaining:
            acc[account] = get(account, 0) + remaining
            break
        acc[account] = get(account, 0) + weight
        remaining -= weight
    return acc


def pplns_credits(
    shares_newest_first: Iterable[tuple[str, float]],
    window_weight: int,
    reward: int,
    fee_bps: int,
    eligible: Callable[[str], bool] | None = None,
) -> Credits:
    """PPLNS: the reward (less the fee) split by weight over the last ``window_weight`` of work.

    ``eligible(account)`` False (an account in PPS/FPPS mode, already paid per
    share) means its part of the window is ``retained`` by the pool rather than
    redistributed: giving it to the PPLNS miners would pay them for work they
    did not do. An empty window with a positive reward is an error (a block is
    always found by a share, so the caller passed the wrong log).
    """
    reward = _satoshis("reward", reward)
    _fee_bps(fee_bps)
    weights = pplns_window(shares_newest_first, window_weight)
    if not weights and reward:
        raise ValueError("shares_newest_first is empty: no share to credit the reward to")
    return _credits_from_weights(weights, reward, fee_bps, eligible)


def prop_credits(
    round_weights: Mapping[str, int],
    reward: int,
    fee_bps: int,
    eligible: Callable[[str], bool] | None = None,
) -> Credits:
    """PROP: the reward (less the fee) split by each account's weight in the round.

    ``round_weights`` is the summed ``share_weight`` per account since the last
    block; ineligible accounts' parts are retained, as in PPLNS.
    """
    reward = _satoshis("reward", reward)
    _fee_bps(fee_bps)
    if not any(round_weights.values()) and reward:
        raise ValueError("round_weights has no positive weight: no share to credit the reward to")
    return _credits_from_weights(round_weights, reward, fee_bps, eligible)


def solo_credits(finder: str, reward: int, fee_bps: int) -> Credits:
    """SOLO: the finder of the block gets the whole reward less the fee."""
    if not isinstance(finder, str) or not finder:
        raise ValueError(f"finder must be a non-empty account name, got {finder!r}")
    net, fee = apply_fee(reward, fee_bps)
    return Credits({finder: net}, fee)


# --------------------------------------------------------------------------- per-share schemes


def _share_value_nano(
    difficulty: float, network_difficulty: float, block_value: int, fee_bps: int
) -> int:
    ratio = _exact("difficulty", difficulty) / _exact("network_difficulty", network_difficulty)
    # A share can never earn the pool more than one block (see pps_share_value_nano).
    ratio = min(ratio, Fraction(1))
    exact = ratio * block_value * (BPS - _fee_bps(fee_bps)) * NANO / BPS
    return math.floor(exact)


def pps_share_value_nano(
    difficulty: float, network_difficulty: float, block_subsidy: int, fee_bps: int
) -> int:
    """PPS value of one share in nano-satoshis: ``floor(subsidy * d / D * (1 - fee) * 1e9)``.

    A share of difficulty ``d`` is ``d / D`` of the expected work for a block at
    network difficulty ``D``, so that is its expected value, paid whether or
    not the pool finds blocks. A single share is usually worth far less than a
    satoshi (difficulty 65536 on a 1e14 network: ~0.0002 sat), so values are
    kept in nano-satoshis: the floor then costs the miner under 1e-9 satoshi
    per share instead of the whole value, and accrued values are turned into
    satoshis by ``settle_nano`` with the remainder carried.

    The arithmetic is exact (``Fraction``; a float difficulty converts without
    rounding), so the only rounding is the final floor, in the pool's favour.

    ``d > D`` is capped at one block: a share above the network difficulty is
    also a block, and the pool earns at most one block per share (hashes that
    solve the block but not the share are never submitted). This matters on
    regtest, where every share is a block; vardiff's ceiling prevents it
    elsewhere.
    """
    return _share_value_nano(
        difficulty, network_difficulty, _satoshis("block_subsidy", block_subsidy), fee_bps
    )


def fpps_share_value_nano(
    difficulty: float,
    network_difficulty: float,
    block_subsidy: int,
    expected_fees: int,
    fee_bps: int,
) -> int:
    """FPPS value of one share in nano-satoshis: PPS on ``block_subsidy + expected_fees``.

    ``expected_fees`` is the transaction fees a block is expected to carry
    (e.g. the average over recent blocks, or the current template's), so the
    miner is also paid for the fees the pool expects to collect.
    """
    block_value = _satoshis("block_subsidy", block_subsidy) + _satoshis(
        "expected_fees", expected_fees
    )
    return _share_value_nano(difficulty, network_difficulty, block_value, fee_bps)


def settle_nano(accrued_nano: int) -> tuple[int, int]:
    """Turn accrued nano-satoshis into ``(satoshis paid now, nano-satoshis carried)``.

    Only whole satoshis can be credited; the remainder (< 1e9) is carried to
    the next settlement, so over any number of settlements
    ``sum(paid) * 1e9 + final carry == sum(accrued)``: nothing lost, nothing made.
    """
    accrued_nano = _satoshis("accrued_nano", accrued_nano, "nano-satoshis")
    return divmod(accrued_nano, NANO)

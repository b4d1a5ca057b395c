"""Distribution arithmetic: pure, exact, no I/O and no clock.

Hashrates and hash counts arrive as floats (f2pool sends doubles; share difficulty sums
are floats). A finite float converts to a `Fraction` without rounding, so every sum,
ratio and comparison here is exact, and the one rounding is the final floor to a whole
base unit. Floors leave the remainder with the distributor: a split never moves more
than was earned, and `sum(parts) + remainder == amount` always.
"""

from __future__ import annotations

import math as _math
import numbers
from collections.abc import Hashable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import TypeVar

__all__ = [
    "DAY",
    "HASHES_PER_DIFF1",
    "PPM",
    "Interval",
    "delivered_hashes",
    "exact",
    "order_share",
    "overlap",
    "peak_sold",
    "proportion_ppm",
    "proportions_fit",
    "revenue_share",
    "split",
]

K = TypeVar("K", bound=Hashable)

DAY = 86_400
PPM = 1_000_000  # proportions are integer parts per million
HASHES_PER_DIFF1 = 2**32  # the pool's convention (see accounting.schemes)

# (start, end, hash_rate): an order's effective interval, end exclusive.
Interval = tuple[float, float, float]


def exact(value: object, name: str = "value") -> Fraction:
    """The exact rational value of a finite real number (floats convert without rounding)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {type(value).__name__}")
    if isinstance(value, float) and not _math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return Fraction(value)  # type: ignore[arg-type]


def overlap(a_start: float, a_end: float, b_start: float, b_end: float) -> Fraction:
    """Seconds that [a_start, a_end) and [b_start, b_end) share (0 if they do not meet)."""
    lo = max(exact(a_start), exact(b_start))
    hi = min(exact(a_end), exact(b_end))
    return hi - lo if hi > lo else Fraction(0)


def split(amount: int, weights: Mapping[K, Fraction], whole: Fraction) -> tuple[dict[K, int], int]:
    """Each key's part of `amount`: floor(amount x weight / max(whole, sum of weights)).

    `whole` is what the weights are a part of (the distributor's hashes; 1 for
    proportions). Taking the larger of `whole` and the weights' sum caps the total at
    `amount` when more was sold than delivered (the distributor's hashrate fell after
    the orders were made): the recipients then share the income pro rata instead of
    each taking up to all of it. Returns (parts, remainder), remainder >= 0.
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise ValueError(f"amount must be a non-negative int of base units, got {amount!r}")
    if whole < 0:
        raise ValueError(f"whole must not be negative, got {whole}")
    total = Fraction(0)
    for key, weight in weights.items():
        if weight < 0:
            raise ValueError(f"weights[{key!r}] must not be negative, got {weight}")
        total += weight
    denominator = max(whole, total)
    if denominator == 0:
        return {key: 0 for key in weights}, amount
    parts = {key: _math.floor(amount * weight / denominator) for key, weight in weights.items()}
    return parts, amount - sum(parts.values())


def order_share(income: int, hash_rate: float, seconds: float, distributor_hashes: float) -> int:
    """What one order earned: income x min(1, hash_rate x seconds / distributor_hashes),
    floored; with no distributor hashes at all, the order takes the whole income."""
    weight = exact(hash_rate, "hash_rate") * exact(seconds, "seconds")
    parts, _ = split(income, {0: weight}, exact(distributor_hashes, "distributor_hashes"))
    return parts[0]


def delivered_hashes(
    sold: Fraction, distributor_hashes: Fraction, total_sold: Fraction
) -> Fraction:
    """The hashes an order actually got: all it bought, or its pro-rata part of what the
    distributor mined when the orders together bought more than that."""
    denominator = max(distributor_hashes, total_sold)
    if denominator == 0:
        return Fraction(0)
    return sold * distributor_hashes / denominator


def peak_sold(orders: Iterable[Interval], start: float, end: float) -> Fraction:
    """The most hashrate sold at any one instant of [start, end) by the given orders.

    The sum of active rates is piecewise constant and only rises where an order starts,
    so its maximum over the window is reached at the window's start or at an order start
    inside it. Intervals are half-open: an order ending at t and one starting at t never
    count together.
    """
    lo, hi = exact(start, "start"), exact(end, "end")
    spans = [(exact(s), exact(e), exact(r)) for s, e, r in orders]
    spans = [(max(s, lo), min(e, hi), r) for s, e, r in spans if s < hi and e > lo and e > s]
    peak = Fraction(0)
    for point in {lo, *(s for s, _, _ in spans)}:
        peak = max(peak, sum((r for s, e, r in spans if s <= point < e), Fraction(0)))
    return peak


def revenue_share(revenue: int, proportion_ppm: int) -> int:
    """floor(revenue x proportion): the distributor keeps the fraction of a base unit."""
    if isinstance(revenue, bool) or not isinstance(revenue, int) or revenue < 0:
        raise ValueError(f"revenue must be a non-negative int of base units, got {revenue!r}")
    if not 0 <= proportion_ppm <= PPM:
        raise ValueError(f"proportion_ppm must be within 0..{PPM}, got {proportion_ppm}")
    return revenue * proportion_ppm // PPM


def proportion_ppm(value: object) -> int:
    """A proportion 0 < p <= 1 as exact parts per million.

    A float is read by its shortest decimal form (0.3 is "0.3", not the binary value just
    below it), so what a client typed is what is stored; more than six decimals is an
    error rather than a silent rounding of someone's money.
    """
    if isinstance(value, bool):
        raise ValueError("must be a number between 0 and 1, not a boolean")
    if isinstance(value, float):
        if not _math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value}")
        exact_value = Fraction(Decimal(repr(value)))
    elif isinstance(value, int | Fraction | Decimal):
        try:
            exact_value = Fraction(value)
        except (ValueError, InvalidOperation, OverflowError):
            raise ValueError(f"must be a finite number, got {value}") from None
    elif isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
            exact_value = Fraction(parsed)
        except (ValueError, InvalidOperation, OverflowError):
            raise ValueError(f"{value!r} is not a number") from None
    else:
        raise ValueError(f"must be a number between 0 and 1, got {type(value).__name__}")
    if not 0 < exact_value <= 1:
        raise ValueError(f"must be greater than 0 and at most 1, got {_show(exact_value)}")
    ppm = exact_value * PPM
    if ppm.denominator != 1:
        raise ValueError(f"{_show(exact_value)} has more than 6 decimal places")
    return int(ppm)


def proportions_fit(existing_ppm: Iterable[int], new_ppm: int) -> bool:
    """Whether a distributor's live proportions plus a new one stay at or below 1."""
    return sum(existing_ppm) + new_ppm <= PPM


def _show(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.12g}"

"""Input checks for the distribution service: each raises AccountsError(field, reason)
with f2pool's field names, before anything touches the store."""

from __future__ import annotations

import math as _math
import numbers

from hashquarry.accounts.errors import AccountsError
from hashquarry.distribution import math as dm

# A few minutes of slack for clients whose clocks run behind; an order reaching further
# back would buy hashes that were already mined, and perhaps already settled.
START_TOLERANCE = 300.0


def timestamp(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AccountsError(field, f"must be a Unix timestamp in seconds, not {value!r}")
    out = float(value)
    if not _math.isfinite(out) or out < 0:
        raise AccountsError(field, f"must be a Unix timestamp in seconds, not {value!r}")
    return out


def window(start: object, end: object) -> tuple[float, float]:
    lo = timestamp(start, "start_date")
    hi = timestamp(end, "end_date")
    if hi <= lo:
        raise AccountsError("end_date", f"must be later than start_date ({hi:.0f} <= {lo:.0f})")
    return lo, hi


def future_window(
    start: object, end: object, now: float, tolerance: float = START_TOLERANCE
) -> tuple[float, float]:
    lo, hi = window(start, end)
    if lo < now - tolerance:
        raise AccountsError(
            "start_date",
            f"{lo:.0f} is {now - lo:.0f} s in the past; an order may start at most "
            f"{tolerance:.0f} s before now",
        )
    return lo, hi


def hash_rate(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AccountsError("hash_rate", f"must be a number of H/s, not {value!r}")
    out = float(value)
    if not _math.isfinite(out) or out <= 0:
        raise AccountsError("hash_rate", f"must be a positive number of H/s, not {value!r}")
    return out


def proportion(value: object) -> int:
    try:
        return dm.proportion_ppm(value)
    except ValueError as exc:
        raise AccountsError("proportion", str(exc)) from None


def record_id(value: object, field: str) -> int:
    """A row id; f2pool sends them as int64 and sometimes as strings of digits."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise AccountsError(field, f"must be a positive integer id, not {value!r}")
    return value


def day_aligned(value: object, field: str) -> float:
    """Settlement periods are whole UTC days: the ledger dates income by day
    (`mining_date`), so a period cut inside a day could not say which income is in it."""
    out = timestamp(value, field)
    if out % dm.DAY:
        raise AccountsError(field, f"must be a UTC midnight (a multiple of {dm.DAY}), not {out}")
    return out

"""Settle-mode switches (pure): which modes exist and when a switch may take effect.

A switch is a row in `store.models.settle_modes` that the accounting code reads as a
history: an account is under the latest mode whose activation time has passed. Past
activations are refused because blocks and PPS days already credited under the old mode
would not be re-credited, so the history would disagree with the ledger.
"""

from __future__ import annotations

import datetime as dt
import math

from hashquarry.accounts.errors import AccountsError

SETTLE_MODES = ("pps", "fpps", "pplns", "prop", "solo")
MAX_AHEAD = 366 * 86_400.0  # further ahead is most likely milliseconds, not seconds


def check_mode(mode: object) -> str:
    if not isinstance(mode, str) or mode.lower() not in SETTLE_MODES:
        raise AccountsError(
            "mode", f"{mode!r} is not a settle mode (one of {', '.join(SETTLE_MODES)})"
        )
    return mode.lower()


def next_utc_midnight(now: float) -> float:
    day = dt.datetime.fromtimestamp(now, dt.UTC).date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()


def activation_time(activate_at: object, now: float) -> float:
    """When a switch takes effect: by default the next 00:00 UTC, because PPS earnings
    accrue and settle per UTC day and a day under two modes would be split arbitrarily."""
    if activate_at is None:
        return next_utc_midnight(now)
    if isinstance(activate_at, bool) or not isinstance(activate_at, int | float):
        raise AccountsError("activated_at", f"must be Unix seconds, not {activate_at!r}")
    at = float(activate_at)
    if not math.isfinite(at):
        raise AccountsError("activated_at", "must be a finite number of Unix seconds")
    if at < now:
        raise AccountsError(
            "activated_at",
            f"{activate_at} is in the past (now is {int(now)}): a switch cannot rewrite "
            "earnings already credited",
        )
    if at > now + MAX_AHEAD:
        raise AccountsError(
            "activated_at",
            f"{activate_at} is more than a year ahead; Unix seconds are expected (milliseconds?)",
        )
    return at

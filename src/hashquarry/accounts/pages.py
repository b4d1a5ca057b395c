"""Read-only pages (pure): permissions, what they allow, and page keys.

f2pool's permissions are a comma list of:
  1  the mining hashrate and the worker list
  2  revenue data, including the payment information
  3  revenue data without payment information
A page shows exactly what its permissions name and refuses everything else.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from enum import StrEnum

from hashquarry.accounts.errors import AccountsError

PAGE_NAME_MAX = 64
_KEY_BYTES = 18  # 144 bits: unguessable, and 24 characters keep the URL short


class View(StrEnum):
    """What a read-only page request wants to see."""

    HASHRATE = "hashrate"
    WORKERS = "workers"
    REVENUE = "revenue"
    PAYMENTS = "payments"


_ALLOWS: dict[int, frozenset[View]] = {
    1: frozenset({View.HASHRATE, View.WORKERS}),
    2: frozenset({View.REVENUE, View.PAYMENTS}),
    3: frozenset({View.REVENUE}),
}


def new_page_key() -> str:
    # A key that begins with "-" reads as an option on a command line (`user page-delete`),
    # so such draws are discarded; the key keeps its full randomness otherwise.
    while True:
        key = secrets.token_urlsafe(_KEY_BYTES)
        if not key.startswith("-"):
            return key


def parse_permissions(value: str | int | Iterable[int | str]) -> frozenset[int]:
    """Permissions from "1,3", 2 or [1, 3]; AccountsError(field="permissions") otherwise."""
    if isinstance(value, bool):
        raise AccountsError("permissions", "must be 1, 2 or 3 (a comma list), not a boolean")
    if isinstance(value, int):
        parts: list[object] = [value]
    elif isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
    else:
        parts = list(value)
    if not parts:
        raise AccountsError("permissions", "at least one of 1, 2 or 3 is needed")
    out: set[int] = set()
    for part in parts:
        if isinstance(part, bool):
            raise AccountsError("permissions", "must be 1, 2 or 3, not a boolean")
        try:
            number = int(part) if isinstance(part, str | int) else None
        except ValueError:
            number = None
        if number not in _ALLOWS:
            raise AccountsError(
                "permissions",
                f"{part!r} is not a permission: 1 (hashrate and workers), "
                "2 (revenue with payments) or 3 (revenue without payments)",
            )
        out.add(number)
    return frozenset(out)


def format_permissions(permissions: Iterable[int]) -> str:
    return ",".join(str(p) for p in sorted(set(permissions)))


def page_allows(permissions: Iterable[int], view: View | str) -> bool:
    """Whether a page with these permissions may show `view` (revenue needs 2 or 3,
    payments need 2)."""
    wanted = View(view)
    return any(wanted in _ALLOWS.get(p, frozenset()) for p in permissions)


def check_page_name(name: object) -> str:
    if name is None:
        return ""
    if not isinstance(name, str):
        raise AccountsError("page_name", "must be a string")
    if len(name) > PAGE_NAME_MAX:
        raise AccountsError("page_name", f"is {len(name)} characters long; at most 64")
    if any(not c.isprintable() for c in name):
        raise AccountsError("page_name", "contains a control character")
    return name
